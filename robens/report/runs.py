"""Reading result records back and grouping them into runs (the report's only input).

A run directory holds ``records.jsonl`` (clean evaluation), ``results.jsonl`` (attack suite)
and/or ``attack-*.json`` (``robens attack``); a directory without any is searched one level
down (``robens report runs/``). Records of older runs are upgraded on reading
(:func:`robens.records.read_json_records`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robens.errors import InputError
from robens.records import RecordSelection, read_json_records

RECORD_FILES = ("records.jsonl", "results.jsonl")
#: the record files ``robens attack`` writes beside a checkpoint
ATTACK_RECORDS = "attack-*.json"
INFO_KEYS = ("dataset", "model", "members", "arch", "objective", "reg_term", "reg_lambda",
             "strategy", "combine", "adversarial_training", "seed", "config_hash")


def find_record_files(run_dirs: Sequence[str | os.PathLike]) -> list[Path]:
    """Records files of the run directories (or of their immediate subdirectories)."""
    files: list[Path] = []
    for d in run_dirs:
        d = Path(d)
        if d.is_file():
            files.append(d)
            continue
        if not d.is_dir():
            raise InputError(f"run directory not found: {d}")
        own = _own_files(d)
        if not own:
            own = [f for sub in sorted(d.iterdir()) if sub.is_dir() for f in _own_files(sub)]
        files.extend(own)
    if not files:
        raise InputError(
            "no records found (records.jsonl / results.jsonl / attack-*.json) in "
            + ", ".join(str(d) for d in run_dirs)
        )
    return files


def _own_files(d: Path) -> list[Path]:
    files = [d / f for f in RECORD_FILES if (d / f).is_file()]
    return files + sorted(p for p in d.glob(ATTACK_RECORDS) if p.is_file())


@dataclass
class Run(RecordSelection):
    """The records of one trained model (one run directory and method name)."""

    label: str
    method: str
    run_dir: str
    records: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def clean(self) -> float | None:
        """Clean ensemble accuracy (the evaluation on the most test images)."""
        return self.value("clean_accuracy")

    def robust(self) -> list[dict[str, Any]]:
        return self.select("robust_accuracy")

    @property
    def reg_lambda(self) -> float | None:
        v = self.info.get("reg_lambda")
        return None if v is None else float(v)


def _members_from_model(model: Any) -> int | None:
    m = re.match(r"^(\d+)x", str(model or ""))
    return int(m.group(1)) if m else None


def load_runs(run_dirs: Sequence[str | os.PathLike]) -> list[Run]:
    """Read every records file and group the records into :class:`Run` objects."""
    runs: dict[tuple[str, str], Run] = {}
    for path in find_record_files(run_dirs):
        for r in read_json_records(path):
            if not isinstance(r, dict) or "metric" not in r:
                continue
            method = str(r.get("method", "?"))
            key = (str(path.parent), method)
            run = runs.setdefault(key, Run(label=method, method=method, run_dir=str(path.parent)))
            run.records.append(r)
    for run in runs.values():
        run.info = _run_info(run.records)
    _unique_labels(list(runs.values()))
    return sorted(runs.values(), key=lambda r: (r.info.get("members") or 0, r.reg_lambda or 0,
                                                r.label))


def _run_info(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for r in records:
        for k in INFO_KEYS:
            if k not in info and r.get(k) is not None:
                info[k] = r[k]
    if "members" not in info:
        m = _members_from_model(info.get("model"))
        if m is not None:
            info["members"] = m
    if "arch" not in info and info.get("model"):
        info["arch"] = str(info["model"]).split("x", 1)[-1]
    return info


def _unique_labels(runs: list[Run]) -> None:
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.method] = counts.get(r.method, 0) + 1
    for r in runs:
        if counts[r.method] > 1:
            r.label = f"{r.method} ({Path(r.run_dir).name}, seed {r.info.get('seed')})"
