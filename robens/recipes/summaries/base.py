"""The registry of recipe summaries and the small helpers every summary uses.

A summary is a function ``(plan, views) -> {"tables", "checks", "data"}`` registered by name;
a recipe's ``summary:`` key picks it. ``tables`` are dicts made by :func:`table`, ``checks``
dicts made by :func:`make_check` (or :func:`verdict_check`), ``data`` plain JSON-able numbers
for ``summary.json``.

Every check has a verdict, PASS / FAIL / INCONCLUSIVE (:class:`robens.stats.Verdict`): PASS
only when every model involved is significantly above chance on clean data
(:func:`chance_gate`) and the claim holds under its test (:func:`robens.stats.claim_verdict`;
accuracy differences by McNemar's exact test on the same adversarial images, see
:func:`paired_findings`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from robens.recipes.views import PlanInfo, TrialView
from robens.registry import Registry
from robens.stats import (
    ALPHA,
    Claim,
    Finding,
    Verdict,
    above_chance,
    claim_verdict,
    paired_comparison,
    verdict_of,
)

Summary = Callable[[PlanInfo, list[TrialView]], dict[str, Any]]

#: Name -> summary function (``robens.recipes.summaries`` registers the built-in ones).
SUMMARIES: Registry[Summary] = Registry("recipe summary")


def pct(v: float | None, digits: int = 1) -> str:
    """``v`` as a percentage with ``digits`` decimals (``—`` when missing)."""
    return "—" if v is None else f"{100 * v:.{digits}f}"


def pair(values: list[float | None]) -> str:
    """Percentages joined by ``/`` (one per eps)."""
    return "/".join(pct(v) for v in values)


def make_table(key: str, title: str, headers: list[str], rows: list[list[str]],
          classes: list[str] | None = None, note: str = "", source: str = "") -> dict[str, Any]:
    """A summary table (rows of class ``published`` or ``ours`` are styled apart)."""
    return {"key": key, "title": title, "headers": headers, "rows": rows,
            "classes": classes or [""] * len(rows), "note": note, "source": source}


def make_check(
    name: str, verdict: Verdict | bool | None, detail: str, *, test: str | None = None,
    p: float | None = None, cells: Sequence[Finding] = (),
) -> dict[str, Any]:
    """One check of a paper's claim: ``verdict`` (``True``/``False``/``None`` read as PASS /
    FAIL / INCONCLUSIVE), the test and p-value it rests on, and its tested cells.
    ``passed`` mirrors the verdict (``None`` when inconclusive) for older readers."""
    if not isinstance(verdict, Verdict):
        verdict = {True: Verdict.PASS, False: Verdict.FAIL, None: Verdict.INCONCLUSIVE}[verdict]
    return {"name": name, "verdict": str(verdict),
            "passed": {Verdict.PASS: True, Verdict.FAIL: False}.get(verdict), "detail": detail,
            "test": test, "p": p, "alpha": ALPHA, "cells": [c.to_dict() for c in cells]}


def chance_gate(views: Mapping[str, TrialView]) -> str | None:
    """``None`` when every model's clean accuracy is significantly above chance (one-sided
    binomial test at level ALPHA), else the reason naming the models that are not."""
    bad = []
    for label, v in views.items():
        count = v.clean_count()
        if count is None:
            bad.append(f"{label}: no clean accuracy with its n")
            continue
        k, n = count
        if not above_chance(k, n, v.num_classes):
            bad.append(f"{label} {pct(k / n if n else None)}% of {n}")
    if not bad:
        return None
    chance = 100 / next(iter(views.values())).num_classes
    return f"not clearly above chance ({chance:.0f}%) on clean data: {', '.join(bad)}"


def paired_findings(
    a: TrialView, b: TrialView, cells: Mapping[str, tuple[dict | None, dict | None]]
) -> tuple[list[Finding], list[str]]:
    """McNemar exact tests of a's per-image outcomes against b's, per cell label -> (record of
    a, record of b), on the images both were attacked on; and the reasons of cells without a
    test (a record of one model only, no per-sample outcomes stored, no images in common);
    cells neither model has a record of are left out (not run at this scale)."""
    found, missing = [], []
    for label, (ra, rb) in cells.items():
        if ra is None and rb is None:
            continue  # a cell this scale does not run
        if ra is None or rb is None:
            missing.append(f"{label}: no record for {b.name if ra else a.name}")
            continue
        oa, ob = a.outcomes(ra), b.outcomes(rb)
        if oa is None or ob is None:
            missing.append(f"{label}: per-sample outcomes not stored")
            continue
        common, ia, ib = _common(oa[0], ob[0])
        if not common:
            missing.append(f"{label}: not evaluated on the same images")
            continue
        c = paired_comparison(oa[1][ia], ob[1][ib])
        found.append(Finding(label, c.diff, c.p, c.test,
                             f"{label}: {pct(c.acc_a)}% vs {pct(c.acc_b)}% on {c.n}"
                             f" (+{c.only_a}/-{c.only_b}, p={c.p:.2g})"))
    return found, missing


def _common(ia: Any, ib: Any) -> tuple[int, Any, Any]:
    import numpy as np

    both, pa, pb = np.intersect1d(ia, ib, assume_unique=True, return_indices=True)
    return len(both), pa, pb


def verdict_check(
    name: str, findings: Sequence[Finding], claim: Claim = "every", gate: str | None = None,
    missing: Sequence[str] = (), note: str = "",
) -> dict[str, Any]:
    """A check from tested cells under a claim (``every`` / ``most``, see
    :func:`robens.stats.claim_verdict`); the cells in ``missing`` could not be tested and count
    as neither wins nor losses."""
    untested = [Finding(m, 0.0, 1.0, "") for m in missing]
    verdict, p, reason = claim_verdict([*findings, *untested], claim, gate)
    if missing:
        reason += f"; untested: {'; '.join(missing)}"
    tests = sorted({f.test for f in findings})
    detail = "; ".join([reason] + [f.detail for f in findings] + ([note] if note else []))
    return make_check(name, verdict, detail, test=", ".join(tests) or None, p=p, cells=findings)


def ref_dataset(plan: PlanInfo, published: list[str]) -> str | None:
    """The dataset whose published rows we show: ours, else the recipe's default, else the
    first one published."""
    for d in (plan.dataset, next(iter(plan.recipe.datasets))):
        if d in published:
            return d
    return published[0] if published else None


def roles(views: list[TrialView], names: Mapping[str, str]) -> dict[str, TrialView]:
    """The first trial of each config name in ``names`` (a recipe's roles)."""
    out: dict[str, TrialView] = {}
    for v in views:
        if v.name in names and v.name not in out:
            out[v.name] = v
    return out


__all__ = [
    "SUMMARIES", "Summary", "chance_gate", "make_check", "make_table", "pair", "paired_findings",
    "pct", "ref_dataset", "roles", "verdict_check", "verdict_of",
]
