"""Running a recipe: its waves of stages through the sweep (side by side in one Ray session
when they do not read each other's checkpoints), the timing of each invocation, then the
summary and the report."""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from robens.raysession import import_ray, ray_session
from robens.recipes.planning import RecipePlan, StagePlan, plan_recipe, waves
from robens.recipes.results import build_report, write_summary
from robens.stats import verdict_of
from robens.sweep import run_sweep
from robens.sweeps.grid import TrialResources
from robens.sweeps.trials import suite_key, trial_status
from robens.utils import atomic_write_json

Echo = Callable[[str], None]


@dataclass
class RecipeResult:
    """What :func:`run_recipe` returns: the plan, the summary and where the report is."""

    plan: RecipePlan
    summary: dict[str, Any]
    summary_path: Path
    report: Path | None
    wall_seconds: float


def _pending(stage: StagePlan) -> int:
    skey = suite_key(stage.sweep.suite) if stage.sweep.suite is not None else None
    return sum(1 for t in stage.trials if trial_status(t, skey) != "complete")


def _auto_resources(wave: list[StagePlan], backend: str, address: str | None,
                    num_cpus: int | None) -> None:
    """Local Ray with fewer pending trials than idle CPUs: give each trial more threads.

    Not done on a busy machine: oversubscribed OpenMP threads can run ten times slower.
    """
    if backend != "ray" or address is not None:
        return
    cpus = num_cpus or os.cpu_count() or 1
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > cpus / 2:
        return
    pending = sum(_pending(s) for s in wave)
    if not 0 < pending < cpus:
        return
    share = max(1, cpus // pending)
    for stage in wave:
        res = stage.sweep.grid.resources
        if not stage.explicit_resources and res.gpus == 0 and res.cpus == 1 and res.threads == 1:
            stage.sweep.grid.resources = TrialResources(cpus=share, gpus=0, threads=share)


def _run_wave(
    wave: list[StagePlan], backend: str, address: str | None, max_concurrent: int | None,
    num_cpus: int | None, progress: bool, echo: Echo | None,
) -> dict[str, float]:
    """Run the sweeps of one wave: one after the other (serial backend, or a single stage),
    or side by side on one Ray instance (their trials share its CPUs)."""
    seconds: dict[str, float] = {}

    def one(stage: StagePlan, bar: bool) -> None:
        ts = time.perf_counter()
        run_sweep(stage.sweep, address=address, max_concurrent=max_concurrent, progress=bar,
                  backend=backend, num_cpus=num_cpus, echo=echo)
        seconds[stage.name] = round(time.perf_counter() - ts, 1)

    if backend != "ray" or len(wave) == 1:
        for stage in wave:
            one(stage, progress)
        return seconds
    with ray_session(address, num_cpus), ThreadPoolExecutor(max_workers=len(wave)) as pool:
        futures = [pool.submit(one, stage, False) for stage in wave]
        errors = [f.exception() for f in futures]
    for err in errors:
        if err is not None:
            raise err
    return seconds


def run_recipe(
    recipe: str | os.PathLike | Mapping[str, Any] | RecipePlan,
    scale: str = "quick",
    dataset: str | None = None,
    output_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    backend: Literal["ray", "serial"] = "ray",
    address: str | None = None,
    max_concurrent: int | None = None,
    num_cpus: int | None = None,
    gpus_per_trial: float | None = None,
    progress: bool = True,
    echo: Echo | None = print,
    report: bool = True,
    command: str | None = None,
) -> RecipeResult:
    """Run every stage of a recipe through the sweep (skipping complete trials), then write
    ``summary.json`` and the report. Stages run in order, except that consecutive stages that
    do not read each other's checkpoints run side by side on the Ray backend (:func:`waves`);
    a failed trial stops the recipe with :class:`~robens.sweep.SweepError` after its wave.

    ``gpus_per_trial`` reserves Ray GPUs per trial (default: 1 when this machine has CUDA and
    the recipe sets none, else 0); the other arguments are those of :func:`plan_recipe` and
    :func:`robens.sweep.run_sweep`.
    """
    say = echo or (lambda _m: None)
    if backend == "ray":
        import_ray()  # an optional extra: a clear error (how to install it) before any work
    plan = (recipe if isinstance(recipe, RecipePlan)
            else plan_recipe(recipe, scale, dataset, output_dir, overrides))
    if gpus_per_trial is None and backend == "ray":
        import torch

        if torch.cuda.is_available() and plan.recipe.resources.gpus == 0:
            gpus_per_trial = 1.0
    t0 = time.perf_counter()
    started = _dt.datetime.now().isoformat(timespec="seconds")
    say(f"recipe {plan.name}: scale {plan.scale}, dataset {plan.dataset}, {len(plan.stages)}"
        f" stage(s) -> {plan.output_dir}")
    for note in plan.notes:
        say(f"  {note}")
    stage_seconds: dict[str, float] = {}
    done = 0
    for wave in waves(plan):
        for stage in wave:
            done += 1
            if gpus_per_trial is not None:
                res = stage.sweep.grid.resources
                stage.sweep.grid.resources = TrialResources(cpus=res.cpus, gpus=gpus_per_trial,
                                                            threads=res.threads)
            say(f"stage {done}/{len(plan.stages)} {stage.name}: {len(stage.trials)} trial(s)"
                + (f" (reads {', '.join(stage.needs)})" if stage.needs else ""))
        _auto_resources(wave, backend, address, num_cpus)
        stage_seconds.update(_run_wave(wave, backend, address, max_concurrent, num_cpus,
                                       progress, echo))
    wall = round(time.perf_counter() - t0, 1)
    timing = update_timing(plan, started, wall, stage_seconds, command)
    summary, path = write_summary(plan, timing=timing, command=command)
    say(f"summary: {path} (wall time {wall:.0f} s)")
    for check in summary["checks"]:
        say(f"  [{verdict_of(check)}] {check['name']}: {check['detail']}")
    index = build_report(plan, summary) if report else None
    if index is not None:
        say(f"report: {index}")
    return RecipeResult(plan, summary, path, index, wall)


def update_timing(plan: RecipePlan, started: str, wall: float, stages: dict[str, float],
                   command: str | None) -> dict[str, Any]:
    path = plan.output_dir / "timing.json"
    try:
        timing = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        timing = {"invocations": []}
    timing["invocations"].append({
        "started": started, "wall_seconds": wall, "stages": stages, "command": command,
        "cpus": os.cpu_count(),
    })
    atomic_write_json(path, timing)
    return timing


__all__ = ["RecipeResult", "run_recipe", "update_timing"]
