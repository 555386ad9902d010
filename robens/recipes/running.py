"""Running a recipe: its stages through the sweep, each as soon as the stages whose checkpoints
it reads have finished (side by side in one Ray session, their trials sharing its CPUs), the
timing of each invocation, then the summary and the report."""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from robens.raysession import import_ray, ray_session
from robens.recipes.planning import RecipePlan, StagePlan, plan_recipe
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


def _upstream(stages: list[StagePlan]) -> dict[str, set[str]]:
    """Every stage's transitive ``needs`` (the stages that must finish before it starts)."""
    up: dict[str, set[str]] = {}
    for stage in stages:  # plan order: a stage only reads earlier ones
        up[stage.name] = set(stage.needs).union(*(up.get(n, set()) for n in stage.needs))
    return up


def _run_stages(
    stages: list[StagePlan], backend: str, address: str | None, max_concurrent: int | None,
    num_cpus: int | None, progress: bool, echo: Echo | None, announce: Callable[[StagePlan], None],
) -> dict[str, float]:
    """Run every stage through the sweep. Serial backend (or one stage): in plan order. Ray:
    each stage starts as soon as every stage it reads has finished, side by side with the
    others in one Ray session (their trials share its CPUs), so a stage never waits for one it
    does not read. After a failure no stage starts; the running ones finish, then it is raised.
    A stage shows its progress bar only when no other stage can run beside it."""
    seconds: dict[str, float] = {}

    def one(stage: StagePlan, bar: bool) -> None:
        ts = time.perf_counter()
        run_sweep(stage.sweep, address=address, max_concurrent=max_concurrent, progress=bar,
                  backend=backend, num_cpus=num_cpus, echo=echo)
        seconds[stage.name] = round(time.perf_counter() - ts, 1)

    if backend != "ray" or len(stages) == 1:
        for stage in stages:
            announce(stage)
            _auto_resources([stage], backend, address, num_cpus)
            one(stage, progress)
        return seconds
    up = _upstream(stages)
    alone = {s.name: all(o.name in up[s.name] or s.name in up[o.name]
                         for o in stages if o is not s) for s in stages}
    todo, finished = list(stages), set()
    running: dict[Future, StagePlan] = {}
    error: BaseException | None = None
    with ray_session(address, num_cpus), ThreadPoolExecutor(max_workers=len(stages)) as pool:
        while running or (todo and error is None):
            ready = [s for s in todo if set(s.needs) <= finished] if error is None else []
            if ready and not running:  # nothing else runs: they may share the idle CPUs
                _auto_resources(ready, backend, address, num_cpus)
            for stage in ready:
                todo.remove(stage)
                announce(stage)
                running[pool.submit(one, stage, progress and alone[stage.name])] = stage
            if not running:  # pragma: no cover - plan order guarantees a ready stage
                raise RuntimeError(f"stages {[s.name for s in todo]} wait on missing stages")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                stage, err = running.pop(fut), fut.exception()
                if err is None:
                    finished.add(stage.name)
                elif error is None:
                    error = err
    if error is not None:
        raise error
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
    ``summary.json`` and the report. On the Ray backend each stage starts as soon as the
    stages whose checkpoints it reads have finished, beside any others running
    (:func:`_run_stages`); a failed trial stops the recipe with
    :class:`~robens.sweep.SweepError` once the running stages have finished.

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
    started_stages = 0

    def announce(stage: StagePlan) -> None:
        nonlocal started_stages
        started_stages += 1
        if gpus_per_trial is not None:
            res = stage.sweep.grid.resources
            stage.sweep.grid.resources = TrialResources(cpus=res.cpus, gpus=gpus_per_trial,
                                                        threads=res.threads)
        say(f"stage {started_stages}/{len(plan.stages)} {stage.name}: {len(stage.trials)} "
            f"trial(s)" + (f" (reads {', '.join(stage.needs)})" if stage.needs else ""))

    stage_seconds = _run_stages(plan.stages, backend, address, max_concurrent, num_cpus,
                                progress, echo, announce)
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
