"""Reading result records back and grouping them into runs (the report's only input).

A run directory holds ``records.jsonl`` (clean evaluation), ``results.jsonl`` (attack suite)
and/or ``attack-*.json`` (``robens attack``); a directory without any is searched one level
down (``robens report runs/``). Records of older runs are upgraded on reading
(:func:`robens.records.read_json_records`).

Each record is kept once per run (:func:`robens.records.dedupe_records`: the same identity read
from two files counts once) and tagged with the file it came from (``source_file``). Where
several records answer one question (the same metric, attack and eps on samples of different
sizes), the report uses the one on the most images (:meth:`Run.best`), for clean and robust
figures alike, and derives the weighted accuracy from those same figures.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robens.errors import InputError
from robens.records import RecordSelection, dedupe_records, parse_model_label
from robens.report.check import read_valid_records

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

    def uap_records(self) -> list[dict[str, Any]]:
        """The universal robust-accuracy records used: at each eps, those on the most images."""
        uap = self.select("robust_accuracy", threat_model="universal")
        out = []
        for e in sorted({float(r["eps"]) for r in uap}):
            at = [r for r in uap if abs(float(r["eps"]) - e) <= 1e-9]
            most = max(int(r.get("n") or 0) for r in at)
            out += [r for r in at if int(r.get("n") or 0) == most]
        return out

    def weighted(self) -> float | None:
        """``(clean + mean UAP accuracy over eps) / 2`` from the figures the report shows (the
        largest samples); the suite's own ``weighted_accuracy`` record when either is missing."""
        clean, uap = self.clean(), [r.get("value") for r in self.uap_records()]
        if clean is None or not uap or any(v is None for v in uap):
            return RecordSelection.value(self, "weighted_accuracy")
        return 0.5 * clean + 0.5 * sum(float(v) for v in uap) / len(uap)

    def value(self, metric: str, **filters: Any) -> float | None:
        """As :meth:`RecordSelection.value`; ``weighted_accuracy`` (no filters) is
        :meth:`weighted`, so it never mixes a small-sample clean figure with a larger one."""
        if metric == "weighted_accuracy" and not filters:
            return self.weighted()
        return super().value(metric, **filters)

    def robust(self) -> list[dict[str, Any]]:
        return self.select("robust_accuracy")

    @property
    def reg_lambda(self) -> float | None:
        v = self.info.get("reg_lambda")
        return None if v is None else float(v)


def _members_from_model(model: Any) -> int | None:
    parsed = parse_model_label(model)
    return parsed[0] if parsed else None


def load_runs(run_dirs: Sequence[str | os.PathLike]) -> list[Run]:
    """Read every records file and group the records into :class:`Run` objects."""
    runs: dict[tuple[str, str], Run] = {}
    for path in find_record_files(run_dirs):
        for r in read_valid_records(path)[0]:
            method = str(r.get("method", "?"))
            key = (str(path.parent), method)
            run = runs.setdefault(key, Run(label=method, method=method, run_dir=str(path.parent)))
            run.records.append({**r, "source_file": path.name})
    for run in runs.values():
        run.records = dedupe_records(run.records)
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
        parsed = parse_model_label(info["model"])
        info["arch"] = parsed[1] if parsed else str(info["model"])
    return info


def _unique_labels(runs: list[Run]) -> None:
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.method] = counts.get(r.method, 0) + 1
    for r in runs:
        if counts[r.method] > 1:
            r.label = f"{r.method} ({Path(r.run_dir).name}, seed {r.info.get('seed')})"
