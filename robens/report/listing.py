"""The report's list of every record it read: each once, with its sample size and source.

It answers "which result did the summary use?": where several records measure one thing on
different samples (a 100-image and a 10,000-image clean evaluation, a suite's 1,000-image PGD
and a ``robens attack`` on all test images), all are listed, and the one the summary uses (the
largest sample, :meth:`robens.report.runs.Run.best`) is marked.
"""

from __future__ import annotations

from typing import Any

from robens.report.runs import Run
from robens.report.tables import Table, num, pct

#: record fields that, beside the metric, say what a figure of the summary is about
_FILTERS = ("threat_model", "attack", "eps", "member")
#: metrics the summary reads from any record (a clean figure beside an attack counts too)
_ANY_ATTACK = ("clean_accuracy", "member_clean_accuracy")
#: metrics whose values are fractions shown in %
_PERCENT = ("accuracy", "rate", "disagreement")


def _used(run: Run, rec: dict[str, Any]) -> bool:
    metric = str(rec.get("metric"))
    keys = ("member",) if metric in _ANY_ATTACK else _FILTERS
    filters = {k: rec.get(k) for k in keys if rec.get(k) is not None}
    return run.best(metric, **filters) is rec


def _fmt(rec: dict[str, Any]) -> str:
    value = rec.get("value")
    metric = str(rec.get("metric", ""))
    if isinstance(value, (int, float)) and any(k in metric for k in _PERCENT):
        return pct(float(value), 2)
    return num(value)


def records_table(runs: list[Run]) -> Table:
    """One row per record of every run: metric, threat model, attack, eps, surrogate, n,
    value, the checkpoint's epoch (``*`` when unfinished), whether the summary uses it, file."""
    headers = ["run", "metric", "threat model", "attack", "eps", "surrogate", "member", "n",
               "value", "epoch", "used", "file"]
    rows = []
    for run in runs:
        for r in run.records:
            epoch = "—" if r.get("epoch") is None else str(r["epoch"])
            if r.get("complete") is False:
                epoch += "*"
            rows.append([
                run.label, str(r.get("metric")), str(r.get("threat_model") or "—"),
                str(r.get("attack", "none")), f"{float(r.get('eps') or 0):g}",
                str(r.get("surrogate") or "—"),
                "—" if r.get("member") is None else str(r["member"]),
                "—" if r.get("n") is None else str(r["n"]), _fmt(r), epoch,
                "yes" if _used(run, r) else "", str(r.get("source_file", "")),
            ])
    return Table(
        "Every record read", headers, rows, [""] * len(rows),
        note="Each record once (the same result read from two files counts once). n = images"
        " evaluated; where records differ only in their sample, the summary uses the one on the"
        " most images ('used'), for clean and robust figures alike; epoch* = an unfinished"
        " checkpoint (complete: false).",
        collapsed=True,
    )
