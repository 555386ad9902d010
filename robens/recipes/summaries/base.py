"""The registry of recipe summaries and the small helpers every summary uses.

A summary is a function ``(plan, views) -> {"tables", "checks", "data"}`` registered by name;
a recipe's ``summary:`` key picks it. ``tables`` are dicts made by :func:`table`, ``checks``
dicts made by :func:`check`, ``data`` plain JSON-able numbers for ``summary.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from robens.recipes.views import PlanInfo, TrialView
from robens.registry import Registry

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


def make_check(name: str, passed: bool | None, detail: str) -> dict[str, Any]:
    """One check of a paper's claim (``passed`` is ``None`` when it cannot be decided)."""
    return {"name": name, "passed": passed, "detail": detail}


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
    "SUMMARIES", "Summary", "make_check", "make_table", "pair", "pct", "ref_dataset", "roles",
]
