"""One trial of a sweep: its state on disk, its run (train, then evaluate) and the records.

A trial's folder is an ordinary run directory plus ``trial.json`` and, written atomically
last, ``DONE.json`` holding its records (see :mod:`robens.sweep`).

A folder belongs to a trial when its ``trial.json`` config has the trial's training identity
(:mod:`robens.identity`): a sweep rerun with other threads, device or output path reuses it.
``DONE.json`` is matched on the whole config's hash, so such a rerun evaluates the trained
checkpoint again (it never retrains a finished one), and a trial whose ``training.epochs`` grew
trains on from its checkpoint.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from robens.config import ExperimentConfig, validate_config
from robens.errors import ConfigError
from robens.identity import format_diff, identity_diff, train_identity
from robens.records import read_json_records, write_csv_records, write_json_records
from robens.source import check_source
from robens.sweeps.grid import SweepPlan, Trial, plan_sweep
from robens.utils import atomic_write_json, config_hash

DONE_NAME = "DONE.json"
TRIAL_NAME = "trial.json"
PLAN_NAME = "plan.json"
SUITE_MODULE = "robens.evaluate.suite"


# ---------------------------------------------------------------------------- trial state
def suite_runner() -> Callable[..., Any] | None:
    """``run_suite`` of :data:`SUITE_MODULE` when that module exists, else ``None``."""
    if SUITE_MODULE in sys.modules and sys.modules[SUITE_MODULE] is None:
        return None  # hidden on purpose
    if SUITE_MODULE not in sys.modules and importlib.util.find_spec(SUITE_MODULE) is None:
        return None
    # import_module, not sys.modules: recipe stages plan in threads, and import_module waits
    # for a module another thread is still initialising instead of returning it half-built
    return importlib.import_module(SUITE_MODULE).run_suite


def suite_key(suite: str | dict[str, Any] | None) -> str | None:
    """A hash of the suite's content (``None`` when no suite runs)."""
    if suite is None:
        return None
    if isinstance(suite, dict):
        return config_hash(suite)
    return config_hash(Path(suite).read_text(encoding="utf-8"))


def read_json(path: Path) -> Any:
    """The parsed JSON file at ``path``; ``None`` when it is missing or malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_done(run_dir: str | os.PathLike, cfg_hash: str, suite: str | None) -> dict | None:
    """A trial's ``DONE.json`` if it matches the config and suite, else ``None``."""
    done = read_json(Path(run_dir) / DONE_NAME)
    if not isinstance(done, dict):
        return None
    if done.get("config_hash") != cfg_hash or done.get("suite_key") != suite:
        return None
    return done


def identity_conflict(info: Any, trial: Trial) -> str | None:
    """How the ``trial.json`` content ``info`` differs from ``trial``'s training identity.

    ``None`` when it does not (or there is no ``trial.json``); ``""`` when an old
    ``trial.json`` without a config has another config hash.
    """
    if not isinstance(info, dict):
        return None
    stored = info.get("config")
    if isinstance(stored, dict):
        diff = identity_diff(train_identity(stored), train_identity(trial.config.to_dict()))
        return format_diff(diff, "trial folder", "this sweep") if diff else None
    return None if info.get("config_hash") == trial.config_hash else ""


def trial_status(trial: Trial, suite: str | None = None) -> str:
    """``complete``, ``re-evaluate`` (done under another suite), ``started``, ``pending`` or
    ``conflict`` (the folder holds a trial of another config: running refuses it)."""
    if read_done(trial.run_dir, trial.config_hash, suite) is not None:
        return "complete"
    if identity_conflict(read_json(trial.run_dir / TRIAL_NAME), trial) is not None:
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
    meta = load_checkpoint(ckpt, verify=False)[1] if ckpt.exists() else {}
    trained = bool(meta.get("complete")) and meta.get("epoch") == cfg.training.epochs
    if not trained:
        Trainer(cfg, run_dir=run_dir, progress=False, echo=None).fit(resume=True)
    records = evaluate_trial(cfg, ckpt, run_dir, spec.get("suite"))
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


def evaluate_trial(
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
    run_suite = suite_runner() if suite is not None else None
    if run_suite is not None:  # resumable itself: finished attack units are kept
        returned = run_suite(ckpt, suite, out=run_dir, progress=False, echo=lambda _m: None)
        if isinstance(returned, dict) and isinstance(returned.get("records"), list):
            records += returned["records"]
        elif (run_dir / "results.jsonl").exists():
            records += read_json_records(run_dir / "results.jsonl")
    return records


def prepare(plan: SweepPlan) -> None:
    """Refuse trial folders written by another config; write trial.json and plan.json."""
    for t in plan.trials:
        diff = identity_conflict(read_json(t.run_dir / TRIAL_NAME), t)
        if diff is not None:
            detail = f": {diff}" if diff else ""
            raise ConfigError(
                f"{t.run_dir} holds trial {t.id} [{t.name}] run with a different config{detail}"
                " (was the base config edited?); use another output_dir or remove that folder"
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
    skey = suite_key(plan.suite) if plan.suite is not None and suite_runner() else None
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
        done = read_json(t.run_dir / DONE_NAME)
        if isinstance(done, dict) and done.get("config_hash") == t.config_hash:
            out.extend(done.get("records", []))
    return out


__all__ = [
    "DONE_NAME",
    "PLAN_NAME",
    "SUITE_MODULE",
    "TRIAL_NAME",
    "collect_records",
    "evaluate_trial",
    "format_plan",
    "identity_conflict",
    "plan_table",
    "prepare",
    "read_done",
    "read_json",
    "run_trial",
    "suite_key",
    "suite_runner",
    "trial_status",
    "write_sweep_records",
]
