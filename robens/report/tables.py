"""Report tables: a summary of our runs and the published tables with our numbers beside them.

Tables are plain data (headers, rows of strings, a CSS class per row) rendered as HTML and
Markdown by :mod:`robens.report.build`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robens.report.intervals import cell, mean_cell, settings, weighted_interval
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
    #: a second header row (e.g. the attack settings under each column label)
    subheaders: list[str] = field(default_factory=list)
    #: CSS class of the HTML table ("facts": text, left-aligned)
    css: str = ""


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


#: the definitions printed under the summary table, one per column kind (shown when present)
DEFINITIONS = {
    "accuracy": "Every accuracy is a percentage of the n test images it was measured on, with"
    " its 95% Wilson score interval in brackets.",
    "clean": "clean: the ensemble's accuracy on unperturbed test images.",
    "white_box": "WB (white-box) robust accuracy = (1/n) #{i : f(x_i) = y_i and f(x_adv_i) ="
    " y_i}, the examples crafted on the ensemble itself (on an ensemble of 2+ members, the worst"
    " case over the attacker's aggregations of the members: aggregation adaptive).",
    "transfer": "transfer robust accuracy: the same count, the examples crafted on the named"
    " surrogate and classified by the ensemble.",
    "universal": "UAP accuracy = (1/n) #{i : f(clip(x_i + delta)) = y_i}: one SGD-UAP"
    " perturbation delta (|delta| <= eps, the worst over its seeds) added to every image;"
    " clean correctness is not required (the Jacobian Ensembles convention).",
    "weighted_accuracy": "weighted = 0.5 * clean + 0.5 * mean over eps of the UAP accuracy"
    " (Co et al., Jacobian Ensembles, Table 1), computed on the suite's test sample; its"
    " interval combines the components' Wilson bounds at the Bonferroni level 1 - 0.05/(m+1)"
    " for m UAP budgets, so it covers with probability >= 95%.",
    "coherence": "coherence = mean over images of max_{a != b} cos(g_a, g_b), g_i the input"
    " gradient of member i's loss (GAL, Eq. 7; 1: aligned, lower: diverse).",
    "gdr": "GDR = mean over images of the Gradient Diversity Rating (Adam & Speciel 2020;"
    " lower: more diverse).",
    "disagreement_pairwise": "disagree % = the fraction of (image, member pair) on which the"
    " two members predict different classes, clean images.",
}


def _column_settings(runs: list[Run], threat: str, attack: str, eps: float) -> str:
    """The attack settings of a summary column (each distinct one when runs differ)."""
    seen: list[str] = []
    for run in runs:
        text = settings(run.best("robust_accuracy", threat_model=threat, attack=attack,
                             eps=eps))
        if text and text not in seen:
            seen.append(text)
    return " | ".join(seen)


def weighted_cell(run: Run, digits: int = 2) -> str:
    """The weighted accuracy (:meth:`Run.weighted`) with the sample sizes of its parts and its
    conservative 95% interval (see :data:`DEFINITIONS`)."""
    v = run.value("weighted_accuracy")
    if v is None:
        return "—"
    clean, uaps = run.best("clean_accuracy"), run.uap_records()
    ci = weighted_interval(clean, uaps)
    if ci is None:  # the suite's own record: its parts are not all in this run
        rec = run.best("weighted_accuracy") or {}
        return f"{100 * v:.{digits}f} (interval not available) n={rec.get('n')}"
    ns = sorted({int(r.get("n") or 0) for r in uaps})
    return (f"{100 * v:.{digits}f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] n={clean.get('n')} clean,"
            f" {'/'.join(map(str, ns))} UAP")


def summary_table(runs: list[Run]) -> Table:
    """One row per run: recipe, clean, robust accuracy per (threat, attack, eps), diversity;
    every accuracy with its n and 95% interval, the attack settings under each column label
    and the definition of every derived metric in the note."""
    cols = robust_columns(runs)
    extra = [("weighted_accuracy", "weighted", None), ("coherence", "coherence", num),
             ("gdr", "GDR", num), ("disagreement_pairwise", "disagree %", pct)]
    extra = [e for e in extra if any(r.select(e[0]) for r in runs)]
    headers = ["method", "data", "model", "objective", "λ", "clean %"]
    headers += [f"{THREAT_SHORT.get(t, t)} {a} {e:g} %" for t, a, e in cols]
    headers += [h for _, h, _ in extra] + ["warnings"]
    sub = [""] * 6 + [_column_settings(runs, *c) for c in cols] + [""] * (len(extra) + 1)
    rows = []
    for run in runs:
        info = run.info
        row = [
            run.label, str(info.get("dataset", "?")), str(info.get("model", "?")),
            str(info.get("objective", "?")), num(run.reg_lambda),
            cell(run.best("clean_accuracy")),
        ]
        row += [cell(run.best("robust_accuracy", threat_model=t, attack=a, eps=e))
                for t, a, e in cols]
        row += [weighted_cell(run) if fmt is None else fmt(run.value(metric))
                for metric, _, fmt in extra]
        row.append(str(len(run_warnings(run))))
        rows.append(row)
    kinds = ["accuracy", "clean", *dict.fromkeys(t for t, _, _ in cols), *(m for m, _, _ in extra)]
    note = " ".join(DEFINITIONS[k] for k in kinds if k in DEFINITIONS)
    return Table("Summary of our runs", headers, rows, [""] * len(rows),
                 note=note + " Built only from the records files.", subheaders=sub)


def member_tables(runs: list[Run]) -> list[Table]:
    """Per run with member records: each member's clean accuracy and its accuracy on the
    ensemble's white-box, transfer and universal examples, with n and 95% intervals."""
    out = []
    for run in runs:
        members = sorted({int(r["member"]) for m in ("member_clean_accuracy",
                                                     "member_robust_accuracy")
                          for r in run.select(m) if r.get("member") is not None})
        if not members:
            continue
        cols = [c for c in robust_columns([run])
                if run.select("member_robust_accuracy", threat_model=c[0], attack=c[1],
                              eps=c[2])]
        headers = ["member", "clean %"] + [f"{THREAT_SHORT.get(t, t)} {a} {e:g} %"
                                          for t, a, e in cols]
        sub = ["", ""] + [_column_settings([run], *c) for c in cols]
        rows = [[str(i), cell(run.best("member_clean_accuracy", member=i))]
                + [cell(run.best("member_robust_accuracy", member=i, threat_model=t, attack=a,
                              eps=e)) for t, a, e in cols]
                for i in members]
        rows.append(["ensemble", cell(run.best("clean_accuracy"))]
                    + [cell(run.best("robust_accuracy", threat_model=t, attack=a, eps=e))
                       for t, a, e in cols])
        out.append(Table(
            f"{run.label}: members", headers, rows, [""] * (len(rows) - 1) + ["ours"],
            note="A member's robust accuracy counts the images it classifies correctly both"
            " clean and on the adversarial examples crafted against the whole ensemble"
            " (white-box) or the surrogate (transfer); under UAP, the images it classifies"
            " correctly with the perturbation added. Percent [95% Wilson interval] n = images.",
            subheaders=sub))
    return out


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
    """Our clean, average UAP and weighted accuracy, each with n and its 95% interval."""
    clean = run.best("clean_accuracy")
    return {"clean": cell(clean, 1), "avg_uap": mean_cell(run.uap_records()),
            "weighted": weighted_cell(run, 1)}


def _ours_transfer(run: Run, table: dict[str, Any]) -> dict[str, str]:
    eps = table["eps"].get(run.info.get("dataset"), ())
    out = {"clean": cell(run.best("clean_accuracy"), 1)}
    for key, _ in table["columns"][1:]:
        recs = [run.best("robust_accuracy", threat_model="transfer", attack=key, eps=e)
                for e in eps]
        out[key] = " / ".join(cell(r, 1) for r in recs) if recs else "—"
    return out


def _recipe_table(table: dict[str, Any], runs: list[Run], datasets: set[str]) -> Table | None:
    rows_pub = [r for r in table["rows"] if r["dataset"] in datasets]
    if not reproduces(table, runs):
        return None
    relevant = rows_pub or table["rows"]
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


def reproduces(table: dict[str, Any], runs: list[Run]) -> bool:
    """Whether one of ``runs`` has the recipe of one of the table's rows (its ``match``) or,
    for a table whose rows name none, the table's ``recipe``: only then is it shown."""
    recipes = [r["match"] for r in table["rows"] if r.get("match") is not None]
    if table.get("recipe") is not None:
        recipes.append(table["recipe"])
    return any(_matches(run, m) for m in recipes for run in runs)


def _attack_table(table: dict[str, Any], runs: list[Run], datasets: set[str]) -> Table | None:
    rows_pub = [r for r in table["rows"] if r["dataset"] in datasets]
    if not reproduces(table, runs):
        return None
    show = rows_pub or table["rows"]
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
                row.append(cell(run.best("robust_accuracy", threat_model="white_box",
                                         attack=pub["attack"], eps=pub["param"]), 1))
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
    """The published tables of the recipes our runs reproduce (:func:`reproduces`); the rows
    of our datasets, or all rows collapsed when the paper used other datasets."""
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


__all__ = ["GAL_EPS", "Table", "member_tables", "published_tables", "run_warnings",
           "summary_table"]
