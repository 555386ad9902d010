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
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from robens.config import (
    ExperimentConfig,
    Strict,
    apply_overrides,
    load_yaml,
    validate_config,
    validate_schema,
)
from robens.errors import ConfigError, RobensError
from robens.records import read_json_records, write_csv_records, write_json_records
from robens.runlock import RunLock
from robens.source import check_source, source_fingerprint
from robens.utils import atomic_write_json, config_hash, rich_progress

DONE_NAME = "DONE.json"
TRIAL_NAME = "trial.json"
PLAN_NAME = "plan.json"
SUITE_MODULE = "robens.evaluate.suite"

Echo = Callable[[str], None]


class SweepError(RobensError):
    """Some trials of a sweep failed; ``result`` holds what the others produced."""

    def __init__(self, message: str, result: SweepResult | None = None) -> None:
        super().__init__(message)
        self.result = result


# ---------------------------------------------------------------------------- schema
class TrialResources(Strict):
    """What one trial asks of a Ray worker."""

    cpus: float = Field(1.0, gt=0.0, description="Ray CPUs reserved per trial")
    gpus: float = Field(0.0, ge=0.0, description="Ray GPUs reserved per trial")
    threads: int = Field(
        1, ge=1, description="torch threads in a Ray worker (training.threads, if set, wins)"
    )


class SweepGrid(Strict):
    """A sweep grid; unknown keys are errors."""

    name: str = Field("sweep", pattern=r"^[A-Za-z0-9][\w.+-]*$")
    base: str | dict[str, Any] = Field(
        default_factory=dict, description="experiment YAML (relative to the grid) or a mapping"
    )
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[list[str]] = Field(default_factory=list, description="axes varying together")
    suite: str | dict[str, Any] | None = None
    output_dir: str | None = Field(None, description="default runs/sweeps/<name>")
    resources: TrialResources = TrialResources()

    @field_validator("axes")
    @classmethod
    def _check_axes(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if not key or any(not part for part in key.split(".")):
                raise ValueError(f"axis {key!r} is not a dotted config key")
            if key == "output_dir":
                raise ValueError("output_dir cannot be an axis: the sweep sets each trial's")
            if not values:
                raise ValueError(f"axis {key} has no values")
            seen: list[str] = []
            for v in values:
                blob = json.dumps(v, sort_keys=True, default=str)
                if blob in seen:
                    raise ValueError(f"axis {key} repeats the value {v!r}")
                seen.append(blob)
        keys = sorted(axes)
        for a, b in itertools.pairwise(keys):
            if b.startswith(a + "."):
                raise ValueError(f"axes {a} and {b} overlap")
        return axes

    @model_validator(mode="after")
    def _check_zip(self) -> SweepGrid:
        grouped: set[str] = set()
        for group in self.zip:
            if not group:
                raise ValueError("a zip group is empty")
            for key in group:
                if key not in self.axes:
                    raise ValueError(f"zip names {key!r}, which is not an axis")
                if key in grouped:
                    raise ValueError(f"axis {key} is in more than one zip group")
                grouped.add(key)
            lengths = {k: len(self.axes[k]) for k in group}
            if len(set(lengths.values())) > 1:
                sizes = ", ".join(f"{k}: {n}" for k, n in lengths.items())
                raise ValueError(f"zipped axes need equal lengths ({sizes})")
        return self


@dataclass(frozen=True)
class Trial:
    """One point of the grid: its overrides of the base config and its run directory."""

    index: int
    id: str
    name: str
    overrides: dict[str, Any]
    config: ExperimentConfig
    run_dir: Path  # absolute

    @property
    def config_hash(self) -> str:
        return config_hash(self.config.to_dict())


@dataclass
class SweepPlan:
    """An expanded grid: validated trials, output folder and the resolved suite."""

    grid: SweepGrid
    source: str
    output_dir: Path
    trials: list[Trial]
    suite: str | dict[str, Any] | None  # absolute path or inline mapping


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


# ---------------------------------------------------------------------------- planning
def load_grid(source: str | os.PathLike | Mapping[str, Any] | SweepGrid) -> SweepGrid:
    """Validate a grid file or mapping; errors name the offending key."""
    if isinstance(source, SweepGrid):
        return source
    label = "(mapping)"
    if not isinstance(source, Mapping):
        label = str(source)
        source = load_yaml(source)
    return validate_schema(SweepGrid, source, label, kind="sweep grid")


def _expand(grid: SweepGrid) -> list[dict[str, Any]]:
    """The overrides of every trial: cartesian product over axes, zipped axes together."""
    group_of = {key: group for group in grid.zip for key in group}
    factors: list[list[dict[str, Any]]] = []
    placed: set[str] = set()
    for key, values in grid.axes.items():
        if key in placed:
            continue
        group = group_of.get(key, [key])
        placed.update(group)
        factors.append([{k: grid.axes[k][i] for k in group} for i in range(len(values))])
    out = []
    for combo in itertools.product(*factors):
        overrides: dict[str, Any] = {}
        for part in combo:
            overrides.update(part)
        out.append({k: overrides[k] for k in grid.axes})  # axis order
    return out


def trial_id(overrides: Mapping[str, Any]) -> str:
    """Stable short id of a trial: a hash of its overrides (key order does not matter)."""
    return config_hash(dict(overrides))[:12]


def trial_name(overrides: Mapping[str, Any]) -> str:
    """A readable label: ``name=gal, model.members=3, seed=1`` (``base`` when empty)."""
    def fmt(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, default=str)

    return ", ".join(f"{k}={fmt(v)}" for k, v in overrides.items()) or "base"


def plan_sweep(
    source: str | os.PathLike | Mapping[str, Any] | SweepGrid,
    output_dir: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
) -> SweepPlan:
    """Expand a grid into validated trials; fails before running anything on a bad trial.

    Relative ``base`` and ``suite`` paths are resolved against the grid file's folder (or
    ``root``, default the working directory, for a mapping).
    """
    grid = load_grid(source)
    is_file = isinstance(source, str | os.PathLike)
    here = Path(root) if root is not None else (Path(source).parent if is_file else Path("."))
    label = str(source) if is_file else grid.name
    if isinstance(grid.base, str):
        base_path = here / grid.base
        base = load_yaml(base_path)
        if base is None:
            base = {}
        if not isinstance(base, dict):
            raise ConfigError(f"base config {base_path} must be a mapping of keys")
    else:
        base = grid.base
    suite: str | dict[str, Any] | None = grid.suite
    if isinstance(suite, str):
        suite_path = here / suite
        if not suite_path.is_file():
            raise ConfigError(f"sweep {label}: suite file not found: {suite_path}")
        suite = str(suite_path.absolute())
    if output_dir is None:
        output_dir = grid.output_dir or f"runs/sweeps/{grid.name}"
    out = str(output_dir)

    from robens.objectives import parse_objective

    trials: list[Trial] = []
    seen: dict[str, int] = {}
    for index, overrides in enumerate(_expand(grid)):
        tid = trial_id(overrides)
        name = trial_name(overrides)
        if tid in seen:  # pragma: no cover - distinct overrides, 48-bit hash
            raise ConfigError(f"trials {seen[tid]} and {index} share the id {tid}")
        seen[tid] = index
        data = apply_overrides(base, overrides)
        data["output_dir"] = str(Path(out) / "trials" / tid)
        cfg = validate_config(data, source=f"for trial {index} [{name}] (id {tid})")
        try:
            parse_objective(cfg.objective, cfg.terms)
        except ConfigError as exc:
            raise ConfigError(f"trial {index} [{name}] (id {tid}): objective: {exc}") from None
        trials.append(Trial(index, tid, name, overrides, cfg, Path(cfg.output_dir).absolute()))
    return SweepPlan(grid, label, Path(out).absolute(), trials, suite)


# ---------------------------------------------------------------------------- trial state
def _suite_runner() -> Callable[..., Any] | None:
    """``robens.evaluate.suite.run_suite`` when that module exists, else ``None``."""
    try:
        from robens.evaluate.suite import run_suite
    except ModuleNotFoundError as exc:
        if exc.name != SUITE_MODULE:
            raise
        return None
    return run_suite


def suite_key(suite: str | dict[str, Any] | None) -> str | None:
    """A hash of the suite's content (``None`` when no suite runs)."""
    if suite is None:
        return None
    if isinstance(suite, dict):
        return config_hash(suite)
    return config_hash(Path(suite).read_text(encoding="utf-8"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_done(run_dir: str | os.PathLike, cfg_hash: str, suite: str | None) -> dict | None:
    """A trial's ``DONE.json`` if it matches the config and suite, else ``None``."""
    done = _read_json(Path(run_dir) / DONE_NAME)
    if not isinstance(done, dict):
        return None
    if done.get("config_hash") != cfg_hash or done.get("suite_key") != suite:
        return None
    return done


def trial_status(trial: Trial, suite: str | None = None) -> str:
    """``complete``, ``re-evaluate`` (done under another suite), ``started``, ``pending`` or
    ``conflict`` (the folder holds a trial of another config: running refuses it)."""
    if read_done(trial.run_dir, trial.config_hash, suite) is not None:
        return "complete"
    info = _read_json(trial.run_dir / TRIAL_NAME)
    if isinstance(info, dict) and info.get("config_hash") != trial.config_hash:
        return "conflict"
    if (trial.run_dir / DONE_NAME).exists():
        return "re-evaluate"
    if (trial.run_dir / "checkpoint.safetensors").exists():
        return "started"
    return "pending"


# ---------------------------------------------------------------------------- one trial
def run_trial(spec: dict[str, Any]) -> dict[str, Any]:
    """Train (resuming) and evaluate one trial; writes ``DONE.json`` last, atomically.

    ``spec`` is plain data (picklable for Ray): id, name, index, overrides, config,
    run_dir, suite, suite_key, sweep, threads. Returns ``{"status", "records", ...}``.
    """
    run_dir = Path(spec["run_dir"])
    check_source(spec.get("source"), "before the trial started")
    cfg = validate_config(spec["config"], source=f"for trial {spec['id']}")
    cfg_hash = config_hash(cfg.to_dict())
    done = read_done(run_dir, cfg_hash, spec.get("suite_key"))
    if done is not None:
        return {"trial": spec["id"], "status": "skipped", "records": done["records"]}
    t0 = time.perf_counter()
    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    from robens.checkpoint import load_checkpoint
    from robens.training import Trainer
    from robens.training.trainer import CHECKPOINT_NAME

    ckpt = run_dir / CHECKPOINT_NAME
    trained = ckpt.exists() and bool(load_checkpoint(ckpt, verify=False)[1].get("complete"))
    if not trained:
        Trainer(cfg, run_dir=run_dir, progress=False, echo=None).fit(resume=True)
    records = _evaluate_trial(cfg, ckpt, run_dir, spec.get("suite"))
    tags = {
        "sweep": spec.get("sweep"),
        "trial": spec["id"],
        "trial_name": spec["name"],
        "overrides": spec["overrides"],
    }
    records = [{**r, **tags} for r in records]
    seconds = round(time.perf_counter() - t0, 3)
    check_source(spec.get("source"), "while the trial ran")
    atomic_write_json(
        run_dir / DONE_NAME,
        {
            "trial": spec["id"],
            "name": spec["name"],
            "index": spec.get("index"),
            "overrides": spec["overrides"],
            "config_hash": cfg_hash,
            "suite_key": spec.get("suite_key"),
            "seconds": seconds,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "records": records,
        },
    )
    return {"trial": spec["id"], "status": "done", "records": records, "seconds": seconds}


def _evaluate_trial(
    cfg: ExperimentConfig, ckpt: Path, run_dir: Path, suite: str | dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Clean accuracy (``records.jsonl``), then the attack suite (``results.jsonl``) if any."""
    from robens.evaluate.clean import evaluate_clean_checkpoint

    summary = evaluate_clean_checkpoint(
        ckpt,
        root=cfg.data.root,
        test_size=cfg.data.test_size,
        batch_size=cfg.data.eval_batch_size,
        out=run_dir,
        device=cfg.training.device,
        seed=cfg.seed,
    )
    records = read_json_records(summary["records_path"])
    run_suite = _suite_runner() if suite is not None else None
    if run_suite is not None:  # resumable itself: finished attack units are kept
        returned = run_suite(ckpt, suite, out=run_dir, progress=False, echo=lambda _m: None)
        if isinstance(returned, dict) and isinstance(returned.get("records"), list):
            records += returned["records"]
        elif (run_dir / "results.jsonl").exists():
            records += read_json_records(run_dir / "results.jsonl")
    return records


# ---------------------------------------------------------------------------- runners
def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray backend needs Ray: pip install ray (or run with backend='serial' /"
            " --backend serial)"
        ) from None
    return ray


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
    ray = _import_ray()
    owns = not ray.is_initialized()
    if owns:
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if address:
            kwargs["address"] = address
        elif num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        kwargs.update(ray_init or {})
        ray.init(**kwargs)
    try:
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
    finally:
        if owns:
            ray.shutdown()


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
    plan = grid if isinstance(grid, SweepPlan) else plan_sweep(grid, output_dir=output_dir)
    result = SweepResult(plan)
    n = len(plan.trials)
    with RunLock(plan.output_dir):
        suite = plan.suite
        if suite is not None and _suite_runner() is None:
            say(f"warning: {SUITE_MODULE} is not available; trials get clean evaluation only")
            suite = None
        skey = suite_key(suite)
        _prepare(plan)
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
            with contextlib.closing(runner), _TrialBar(progress, len(specs)) as bar:
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
    acc = [r["value"] for r in out["records"] if r.get("metric") == "clean_accuracy"]
    tail = f", clean accuracy {100 * acc[0]:.2f}%" if acc else ""
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


def _prepare(plan: SweepPlan) -> None:
    """Refuse trial folders written by another config; write trial.json and plan.json."""
    for t in plan.trials:
        info = _read_json(t.run_dir / TRIAL_NAME)
        if isinstance(info, dict) and info.get("config_hash") != t.config_hash:
            raise ConfigError(
                f"{t.run_dir} holds trial {t.id} [{t.name}] run with a different config (was"
                " the base config edited?); use another output_dir or remove that folder"
            )
    for t in plan.trials:
        if not (t.run_dir / TRIAL_NAME).exists():
            atomic_write_json(
                t.run_dir / TRIAL_NAME,
                {
                    "trial": t.id,
                    "name": t.name,
                    "index": t.index,
                    "overrides": t.overrides,
                    "config_hash": t.config_hash,
                    "config": t.config.to_dict(),
                },
            )
    atomic_write_json(plan.output_dir / PLAN_NAME, plan_table(plan))


def plan_table(plan: SweepPlan) -> dict[str, Any]:
    """The plan as plain data (what ``plan.json`` holds)."""
    return {
        "name": plan.grid.name,
        "source": plan.source,
        "output_dir": str(plan.output_dir),
        "suite": plan.suite,
        "trials": [
            {"index": t.index, "id": t.id, "name": t.name, "overrides": t.overrides}
            for t in plan.trials
        ],
    }


def format_plan(plan: SweepPlan) -> str:
    """A text table of the trials and their status (``robens sweep --dry-run``)."""
    skey = suite_key(plan.suite) if plan.suite is not None and _suite_runner() else None
    rows = [("#", "id", "status", "overrides")]
    rows += [(str(t.index), t.id, trial_status(t, skey), t.name) for t in plan.trials]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
             for r in rows]
    head = f"sweep {plan.grid.name}: {len(plan.trials)} trial(s) -> {plan.output_dir}"
    return "\n".join([head, *lines])


def write_sweep_records(output_dir: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Aggregated records as ``records.jsonl`` and ``records.csv`` (overrides as JSON)."""
    out = Path(output_dir)
    write_json_records(out / "records.jsonl", records)
    flat = [
        {**r, "overrides": json.dumps(r["overrides"], sort_keys=True, default=str)}
        if isinstance(r.get("overrides"), dict)
        else r
        for r in records
    ]
    write_csv_records(out / "records.csv", flat)


def collect_records(plan: SweepPlan | str | os.PathLike | Mapping[str, Any]) -> list[dict]:
    """Records of the complete trials of a sweep, in plan order (nothing is run)."""
    plan = plan if isinstance(plan, SweepPlan) else plan_sweep(plan)
    out: list[dict[str, Any]] = []
    for t in plan.trials:
        done = _read_json(t.run_dir / DONE_NAME)
        if isinstance(done, dict) and done.get("config_hash") == t.config_hash:
            out.extend(done.get("records", []))
    return out


@dataclass
class _TrialBar:
    """A rich progress bar over trials (a no-op when disabled)."""

    enabled: bool
    total: int
    _p: Any = field(default=None, repr=False)

    def __enter__(self) -> _TrialBar:
        if self.enabled:
            self._p = rich_progress(eta=False)
            self._p.__enter__()
            self._task = self._p.add_task("trials", total=self.total)
        return self

    def advance(self) -> None:
        if self._p is not None:
            self._p.update(self._task, advance=1)

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)


__all__ = [
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
    "run_sweep",
    "run_trial",
    "trial_id",
    "trial_name",
    "trial_status",
]
