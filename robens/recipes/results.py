"""A recipe's results: the records of its complete trials (:func:`trial_views`), the summary
its ``summary:`` names (:func:`summarize`), ``summary.json`` and the report."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from robens.recipes.planning import RecipePlan
from robens.recipes.summaries import SUMMARIES
from robens.recipes.summaries.base import make_check
from robens.recipes.views import TrialView
from robens.sweeps.trials import collect_records
from robens.utils import atomic_write_json


def trial_views(plan: RecipePlan) -> list[TrialView]:
    """Every complete trial of the plan with its records (nothing is run)."""
    views = []
    for stage in plan.stages:
        records = collect_records(stage.sweep)
        by_trial: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            by_trial.setdefault(str(r.get("trial")), []).append(r)
        for t in stage.trials:
            if t.id in by_trial:
                views.append(TrialView(stage.name, stage.grid_of[t.id], t.id, t.overrides,
                                       t.config, t.run_dir, by_trial[t.id]))
    return views


def summarize(plan: RecipePlan, views: list[TrialView]) -> dict[str, Any]:
    """``{"tables", "checks", "data"}`` of the recipe's summary kind."""
    fn = SUMMARIES.get(plan.recipe.summary)
    if not views:
        return {"tables": [], "checks": [make_check("results", None, "no trial has finished yet")],
                "data": {}}
    return fn(plan, views)


def trial_seconds(plan: RecipePlan) -> float:
    """The sum of the recorded run times of the plan's finished trials (``DONE.json``)."""
    total = 0.0
    for _, t in plan.trials():
        try:
            total += float(json.loads((t.run_dir / "DONE.json").read_text())["seconds"])
        except (FileNotFoundError, KeyError, ValueError, TypeError):
            continue
    return round(total, 1)


def write_summary(
    plan: RecipePlan, timing: dict[str, Any] | None = None, command: str | None = None
) -> tuple[dict[str, Any], Path]:
    """Compute the recipe's summary from the records of its complete trials and write
    ``summary.json``; returns ``(summary, path)``."""
    if timing is None:
        try:
            timing = json.loads((plan.output_dir / "timing.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            timing = {"invocations": []}
    views = trial_views(plan)
    summary = summarize(plan, views)
    total = sum(len(s.trials) for s in plan.stages)
    invocations = timing.get("invocations", [])
    summary.update({
        "recipe": plan.name,
        "title": plan.recipe.title,
        "scale": plan.scale,
        "dataset": plan.dataset,
        "source": plan.source,
        "output_dir": str(plan.output_dir),
        "notes": plan.notes,
        "overrides": plan.overrides,
        "trials_complete": len(views),
        "trials_total": total,
        "wall_seconds": round(sum(i.get("wall_seconds", 0.0) for i in invocations), 1),
        "wall_seconds_last": invocations[-1]["wall_seconds"] if invocations else None,
        "trial_seconds": trial_seconds(plan),
        "command": command or (invocations[-1].get("command") if invocations else None),
        "cpus": os.cpu_count(),
        "finished": _dt.datetime.now().isoformat(timespec="seconds"),
    })
    path = plan.output_dir / "summary.json"
    atomic_write_json(path, summary)
    return summary, path


def build_report(plan: RecipePlan, summary: dict[str, Any] | None = None) -> Path:
    """The recipe's report (``report/index.html``, ``summary.md``, ``full/``)."""
    from robens.report.reproduce import build_recipe_report

    if summary is None:
        summary, _ = write_summary(plan)
    dirs = [t.run_dir for _, t in plan.trials() if (t.run_dir / "DONE.json").exists()]
    return build_recipe_report(summary, plan.report_dir, dirs)


__all__ = ["build_report", "summarize", "trial_seconds", "trial_views", "write_summary"]
