"""Sweeps: a grid of experiment configs (methods x lambdas x members x seeds) run as trials.

A grid is a YAML file (or a mapping)::

    name: gal-vs-ce
    base: ../main.yaml             # experiment YAML, relative to this file, or a mapping
    axes:                          # dotted config keys -> values (cartesian product)
      name: [ce, gal]
      objective: ["ce", "ce + 0.5*gal"]
      model.members: [3]
      seed: [0, 1]
    zip: [[name, objective]]       # axes that vary together (equal lengths)
    suite: ../suites/quick.yaml    # optional attack suite, relative to this file
    output_dir: runs/sweeps/gal-vs-ce

Every trial is an ordinary ``Trainer.fit(resume=True)`` followed by an evaluation, run as a
Ray task (a local Ray instance by default, a cluster given an address) or in-process one by
one (``backend="serial"``). Layout of ``output_dir``::

    plan.json                   the trial table (id, name, overrides)
    trials/<id>/                an ordinary run directory, plus trial.json and, written
                                atomically last, DONE.json holding the trial's records
    records.jsonl, records.csv  every trial's records tagged with its id and overrides

A trial whose ``DONE.json`` exists is skipped; any other trial resumes from its checkpoint, so
a killed sweep is simply run again. On a cluster ``output_dir`` must be on a filesystem shared
by every node.

This module runs a sweep (:func:`run_sweep`); the grid and plan are in
:mod:`robens.sweeps.grid`, one trial's state and run in :mod:`robens.sweeps.trials`, and Ray is
started in :mod:`robens.raysession`. Their public names are importable from here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from robens.errors import ConfigError, RobensError
from robens.progress import Progress
from robens.raysession import check_ray_target, import_ray, ray_session
from robens.records import clean_record
from robens.runlock import RunLock
from robens.source import source_fingerprint
from robens.sweeps.grid import (
    SweepGrid,
    SweepPlan,
    Trial,
    TrialResources,
    load_grid,
    plan_sweep,
    trial_id,
    trial_name,
)
from robens.sweeps.trials import (
    DONE_NAME,
    PLAN_NAME,
    SUITE_MODULE,
    TRIAL_NAME,
    collect_records,
    format_plan,
    plan_table,
    prepare,
    read_done,
    run_trial,
    suite_key,
    suite_runner,
    trial_status,
    write_sweep_records,
)

Echo = Callable[[str], None]
_import_ray = import_ray  # looked up at call time, so tests can hand the runner a fake Ray


class SweepError(RobensError):
    """Some trials of a sweep failed; ``result`` holds what the others produced."""

    def __init__(self, message: str, result: SweepResult | None = None) -> None:
        super().__init__(message)
        self.result = result


# ---------------------------------------------------------------------------- results
class SweepResult(list):
    """The aggregated records (a list), plus which trials ran, were skipped or failed."""

    def __init__(self, plan: SweepPlan, records: list[dict[str, Any]] | None = None) -> None:
        super().__init__(records or [])
        self.plan = plan
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.failed: dict[str, str] = {}
        self.records_path = plan.output_dir / "records.jsonl"
        self.csv_path = plan.output_dir / "records.csv"


# ---------------------------------------------------------------------------- runners
Outcome = tuple[dict[str, Any], dict[str, Any] | None, BaseException | None]


def _iter_serial(specs: list[dict[str, Any]]) -> Iterator[Outcome]:
    for spec in specs:
        try:
            out = run_trial(spec)
        except Exception as exc:  # a failed trial must not stop the others
            yield spec, None, exc
            continue
        yield spec, out, None


def _iter_ray(
    specs: list[dict[str, Any]],
    resources: TrialResources,
    address: str | None,
    max_concurrent: int | None,
    num_cpus: int | None,
    ray_init: Mapping[str, Any] | None,
) -> Iterator[Outcome]:
    with ray_session(address, num_cpus, ray_init, ray=_import_ray()) as ray:
        task = ray.remote(num_cpus=resources.cpus, num_gpus=resources.gpus)(run_trial)
        queue = list(specs)
        cap = max_concurrent or len(queue)
        running: dict[Any, dict[str, Any]] = {}
        while queue or running:
            while queue and len(running) < cap:
                spec = queue.pop(0)
                running[task.options(name=f"trial-{spec['id']}").remote(spec)] = spec
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                spec = running.pop(ref)
                try:
                    out, err = ray.get(ref), None
                except Exception as exc:
                    out, err = None, getattr(exc, "cause", None) or exc
                yield spec, out, err


# ---------------------------------------------------------------------------- sweep
def run_sweep(
    grid: str | os.PathLike | Mapping[str, Any] | SweepGrid | SweepPlan,
    address: str | None = None,
    max_concurrent: int | None = None,
    local_mode: bool = False,
    progress: bool = True,
    backend: Literal["ray", "serial"] = "ray",
    num_cpus: int | None = None,
    output_dir: str | os.PathLike | None = None,
    echo: Echo | None = print,
    ray_init: Mapping[str, Any] | None = None,
) -> SweepResult:
    """Run every trial of a grid (skipping complete ones) and aggregate their records.

    Args:
        grid: grid YAML path, mapping, :class:`SweepGrid` or :func:`plan_sweep` result.
        address: Ray cluster address (``None``: start a local Ray instance).
        max_concurrent: at most this many trials at once (Ray backend).
        local_mode: run trials in-process (Ray dropped its own local mode): ``serial``.
        progress: show a progress bar over trials.
        backend: ``ray``, or ``serial`` (in-process, one by one; no Ray needed).
        num_cpus: CPUs of the local Ray instance (all by default).
        output_dir: overrides the grid's ``output_dir``.
        echo: one line per trial (``None`` silences it).
        ray_init: extra ``ray.init`` keyword arguments (e.g. ``runtime_env``).

    Returns:
        a :class:`SweepResult`: the list of all records, with ``ran``, ``skipped`` and
        ``failed``. Raises :class:`SweepError` (after aggregating) when a trial failed.
    """
    say = echo or (lambda _m: None)
    if local_mode:
        backend = "serial"
    if backend not in ("ray", "serial"):
        raise ConfigError(f"backend must be 'ray' or 'serial', got {backend!r}")
    if max_concurrent is not None and max_concurrent < 1:
        raise ConfigError(f"max_concurrent must be at least 1, got {max_concurrent}")
    if backend == "ray":
        _import_ray()  # a clear error before anything is written
        check_ray_target(address, num_cpus)
    plan = grid if isinstance(grid, SweepPlan) else plan_sweep(grid, output_dir=output_dir)
    result = SweepResult(plan)
    n = len(plan.trials)
    with RunLock(plan.output_dir):
        suite = plan.suite
        if suite is not None and suite_runner() is None:
            say(f"warning: {SUITE_MODULE} is not available; trials get clean evaluation only")
            suite = None
        skey = suite_key(suite)
        prepare(plan)
        outcomes: dict[str, list[dict[str, Any]]] = {}
        specs = []
        fingerprint = source_fingerprint()
        for t in plan.trials:
            done = read_done(t.run_dir, t.config_hash, skey)
            if done is not None:
                outcomes[t.id] = done["records"]
                result.skipped.append(t.id)
            else:
                specs.append(_spec(plan, t, suite, skey, backend, fingerprint))
        say(
            f"sweep {plan.grid.name}: {n} trial(s), {len(result.skipped)} complete (skipped),"
            f" {len(specs)} to run [{backend}]"
        )
        if specs:
            runner = (
                _iter_serial(specs)
                if backend == "serial"
                else _iter_ray(
                    specs, plan.grid.resources, address, max_concurrent, num_cpus, ray_init
                )
            )
            with contextlib.closing(runner), Progress(progress, eta=False) as bars:
                bar = bars.task("trials", total=len(specs))
                for spec, out, err in runner:
                    tid = spec["id"]
                    if err is not None:
                        msg = f"{type(err).__name__}: {_one_line(err)}"
                        result.failed[tid] = msg
                        say(f"trial {tid} [{spec['name']}] failed: {msg}")
                    else:
                        outcomes[tid] = out["records"]
                        (result.skipped if out["status"] == "skipped" else result.ran).append(tid)
                        say(f"trial {tid} [{spec['name']}] {_outcome_line(out)}")
                    bar.advance()
        for t in plan.trials:
            result.extend(outcomes.get(t.id, []))
        write_sweep_records(plan.output_dir, list(result))
    if result.failed:
        names = {t.id: t.name for t in plan.trials}
        listed = "; ".join(f"{k} [{names[k]}]: {v}" for k, v in result.failed.items())
        raise SweepError(
            f"{len(result.failed)} of {n} trial(s) failed ({listed}); the records of the others"
            f" are in {result.records_path}; run the sweep again to retry the failed ones",
            result,
        )
    say(f"records: {result.records_path} ({len(result)} records)")
    return result


def _one_line(err: BaseException, limit: int = 400) -> str:
    text = " ".join(ln.strip() for ln in str(err).splitlines() if ln.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _outcome_line(out: dict[str, Any]) -> str:
    if out["status"] == "skipped":
        return "complete (skipped)"
    rec = clean_record(out["records"])
    tail = (f", clean accuracy {100 * rec['value']:.2f}% on {rec.get('n')} images" if rec
            else "")
    return f"done in {out.get('seconds', 0):.1f}s{tail}"


def _spec(
    plan: SweepPlan, t: Trial, suite: str | dict | None, skey: str | None, backend: str,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    return {
        "id": t.id,
        "index": t.index,
        "name": t.name,
        "overrides": t.overrides,
        "config": t.config.to_dict(),
        "run_dir": str(t.run_dir),
        "suite": suite,
        "suite_key": skey,
        "sweep": plan.grid.name,
        "threads": plan.grid.resources.threads if backend == "ray" else None,
        "source": fingerprint,
    }


__all__ = [
    "DONE_NAME",
    "PLAN_NAME",
    "SUITE_MODULE",
    "TRIAL_NAME",
    "SweepError",
    "SweepGrid",
    "SweepPlan",
    "SweepResult",
    "Trial",
    "TrialResources",
    "collect_records",
    "format_plan",
    "load_grid",
    "plan_sweep",
    "plan_table",
    "read_done",
    "run_sweep",
    "run_trial",
    "suite_key",
    "trial_id",
    "trial_name",
    "trial_status",
    "write_sweep_records",
]
