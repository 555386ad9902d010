"""Report tables: a summary of our runs and the published tables with our numbers beside them.

Tables are plain data (headers, rows of strings, a CSS class per row) rendered as HTML and
Markdown by :mod:`robens.report.build`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robens.report.published import GAL_EPS, PUBLISHED_TABLES
from robens.report.runs import Run

THREAT_SHORT = {"white_box": "WB", "transfer": "transfer", "universal": "UAP"}


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    classes: list[str] = field(default_factory=list)
    note: str = ""
    source: str = ""
    collapsed: bool = False


def pct(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{100 * v:.{digits}f}"


def num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    try:
        return f"{float(v):.{digits}g}"
    except (TypeError, ValueError):
        return str(v)


# ---------------------------------------------------------------------------- summary
def robust_columns(runs: list[Run]) -> list[tuple[str, str, float]]:
    keys = {
        (r.get("threat_model", "white_box"), r["attack"], float(r["eps"]))
        for run in runs for r in run.robust()
    }
    order = {"white_box": 0, "transfer": 1, "universal": 2}
    return sorted(keys, key=lambda k: (order.get(k[0], 9), k[1], k[2]))


def summary_table(runs: list[Run]) -> Table:
    """One row per run: recipe, clean, robust accuracy per (threat, attack, eps), diversity."""
    cols = robust_columns(runs)
    extra = [("weighted_accuracy", "weighted", pct), ("coherence", "coherence", num),
             ("gdr", "GDR", num), ("disagreement_pairwise", "disagree %", pct)]
    extra = [e for e in extra if any(r.select(e[0]) for r in runs)]
    headers = ["method", "data", "model", "objective", "λ", "clean %"]
    headers += [f"{THREAT_SHORT.get(t, t)} {a} {e:g} %" for t, a, e in cols]
    headers += [h for _, h, _ in extra] + ["warnings"]
    rows = []
    for run in runs:
        info = run.info
        row = [
            run.label, str(info.get("dataset", "?")), str(info.get("model", "?")),
            str(info.get("objective", "?")), num(run.reg_lambda), pct(run.clean(), 2),
        ]
        row += [pct(run.value("robust_accuracy", threat_model=t, attack=a, eps=e), 2)
                for t, a, e in cols]
        row += [fmt(run.value(metric)) for metric, _, fmt in extra]
        row.append(str(len(run_warnings(run))))
        rows.append(row)
    return Table(
        "Summary of our runs", headers, rows, [""] * len(rows),
        note="Accuracies in %; WB = white-box on the ensemble, transfer = crafted on the"
        " surrogate, UAP = worst SGD-UAP over seeds. Built only from the records files.",
    )


def run_warnings(run: Run) -> list[str]:
    out: list[str] = []
    for r in run.records:
        for w in r.get("warnings") or []:
            msg = f"{r.get('threat_model', '')} {r.get('attack', '')} eps={r.get('eps', 0):g}: {w}"
            if msg not in out:
                out.append(msg)
    return out


# ---------------------------------------------------------------------------- published
def _matches(run: Run, match: dict[str, Any]) -> bool:
    for k, v in match.items():
        have = run.info.get(k)
        if k == "adversarial":
            have = bool(run.info.get("adversarial_training", False))
        if k == "reg_lambda":
            if have is None or abs(float(have) - float(v)) > 1e-9:
                return False
            continue
        if k == "reg_term" and v == "none" and have in (None, "none"):
            continue
        if have != v:
            return False
    return True


def _fmt_pub(v: Any) -> str:
    if isinstance(v, tuple):
        return "/".join(f"{x:g}" for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _ours_uap(run: Run) -> dict[str, str]:
    uap = [float(r["value"]) for r in run.select("robust_accuracy", threat_model="universal")]
    avg = float(np.mean(uap)) if uap else None
    w = run.value("weighted_accuracy")
    clean = run.clean()
    if w is None and avg is not None and clean is not None:
        w = 0.5 * (clean + avg)
    return {"clean": pct(clean), "avg_uap": pct(avg), "weighted": pct(w)}


def _ours_transfer(run: Run, table: dict[str, Any]) -> dict[str, str]:
    eps = table["eps"].get(run.info.get("dataset"), ())
    out = {"clean": pct(run.clean())}
    for key, _ in table["columns"][1:]:
        vals = [run.value("robust_accuracy", threat_model="transfer", attack=key, eps=e)
                for e in eps]
        out[key] = "/".join(pct(v) for v in vals) if vals else "—"
    return out


def _recipe_table(table: dict[str, Any], runs: list[Run], datasets: set[str]) -> Table | None:
    rows_pub = [r for r in table["rows"] if r["dataset"] in datasets]
    relevant = rows_pub or (
        table["rows"] if any(_family(table, r) for r in runs) else []
    )
    if not relevant:
        return None
    headers = [h for _, h in table["label_columns"]] + [h for _, h in table["columns"]]
    rows, classes = [], []
    matched = 0
    for pub in relevant:
        rows.append([_fmt_pub(pub[k]) for k, _ in table["label_columns"]]
                    + [_fmt_pub(pub[k]) for k, _ in table["columns"]])
        classes.append("published")
        for run in runs:
            if not _matches(run, pub.get("match", {})):
                continue
            ours = _ours_uap(run) if table["kind"] == "uap" else _ours_transfer(run, table)
            label = [f"ours: {run.label}"] + [""] * (len(table["label_columns"]) - 1)
            rows.append(label + [ours.get(k, "—") for k, _ in table["columns"]])
            classes.append("ours")
            matched += 1
    note = "Published rows first; rows marked 'ours' are our runs with the same recipe."
    if not matched:
        note = "No run here has one of these recipes; published numbers shown for reference."
    if not rows_pub:
        note += " Published on another dataset than ours."
    if table["key"] == "je_table1":
        note += (" The F-MNIST rows Bagging M=9 λ=0 and Standard M=1 list weighted accuracies"
                 " (51.2, 50.9) that differ from (clean + avg UAP) / 2 (51.95, 51.45).")
    return Table(table["title"], headers, rows, classes, note, table["source"],
                 collapsed=not rows_pub)


def _family(table: dict[str, Any], run: Run) -> bool:
    term = run.info.get("reg_term")
    return {"uap": term == "jr", "transfer": term == "gal", "white_box": term == "adp"}.get(
        table["kind"], False
    )


def _attack_table(table: dict[str, Any], runs: list[Run], datasets: set[str]) -> Table | None:
    rows_pub = [r for r in table["rows"] if r["dataset"] in datasets]
    if table["kind"] == "detection":
        show = rows_pub or (table["rows"] if any(r.select("detection_auc") for r in runs) else [])
    elif table["kind"] == "reference":
        show = rows_pub
    else:
        show = rows_pub or (table["rows"] if any(_family(table, r) for r in runs) else [])
    if not show:
        return None
    ours_runs = [r for r in runs if r.info.get("dataset") in {p["dataset"] for p in show}]
    if table["kind"] == "reference":
        ours_runs = []
    headers = [h for _, h in table["label_columns"]] + [h for _, h in table["columns"]]
    headers += [f"ours: {r.label}" for r in ours_runs]
    rows = []
    for pub in show:
        row = [_fmt_pub(pub[k]) for k, _ in table["label_columns"]]
        row += [_fmt_pub(pub[k]) for k, _ in table["columns"]]
        for run in ours_runs:
            if table["kind"] == "detection":
                vals = [run.value("detection_auc", attack=pub["attack"], detector=d)
                        for d, _ in table["columns"]]
                row.append("/".join(pct(v) for v in vals) if any(v is not None for v in vals)
                           else "—")
            else:
                row.append(pct(run.value("robust_accuracy", threat_model="white_box",
                                         attack=pub["attack"], eps=pub["param"])))
        rows.append(row)
    note = "Our columns: the same attack and parameter on our runs of that dataset ('—' where" \
        " not evaluated)."
    if table["kind"] == "detection":
        note = "Our columns: confidence/non-ME/K-density AUC (%) for the same attack."
    if not rows_pub:
        note += " Published on another dataset than ours."
    return Table(table["title"], headers, rows, ["published"] * len(rows), note,
                 table["source"], collapsed=not rows_pub)


def published_tables(runs: list[Run]) -> list[Table]:
    """The published tables relevant to our runs (same dataset or same method family)."""
    datasets = {str(r.info.get("dataset")) for r in runs}
    out = []
    for table in PUBLISHED_TABLES:
        if table["kind"] in ("uap", "transfer"):
            t = _recipe_table(table, runs, datasets)
        else:
            t = _attack_table(table, runs, datasets)
        if t is not None:
            out.append(t)
    return out


__all__ = ["GAL_EPS", "Table", "published_tables", "run_warnings", "summary_table"]
