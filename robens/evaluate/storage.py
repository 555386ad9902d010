"""Unit storage of an attack suite: unit ids, finished units on disk, the results files.

Every (attack entry, eps) pair and every metric is a *unit*. Its id hashes what determines its
records (the entry or metric spec, the checkpoint digest and the data settings), so a changed
entry gets a new id and runs anew while an unchanged one is read back. A finished unit is
written atomically to ``<out>/suite/units/<id>.json``; after every unit ``<out>/results.jsonl``
and ``<out>/results.csv`` are rewritten (atomically) from the finished units.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from robens.records import write_csv_records, write_json_records
from robens.samples import samples_path
from robens.utils import atomic_write_bytes, atomic_write_json

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
_NO_SURROGATE = object()


def unit_hash(obj: Any) -> str:
    """Ten hex digits of the SHA-256 of ``obj`` as sorted JSON (``str`` for other objects)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def slug(s: str) -> str:
    """``s`` with every run of characters other than ``[A-Za-z0-9_.-]`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def clean_unit_id(fingerprint: dict[str, Any], test_size: int | None) -> str:
    """``clean-<hash>``: the clean-accuracy unit of a checkpoint and test subset."""
    return f"clean-{unit_hash({**fingerprint, 'test_size': test_size})}"


def attack_unit_id(label: str, eps: float, spec: dict[str, Any], fingerprint: dict) -> str:
    """``<label>-eps<eps>-<hash>`` of an attack entry's dump ``spec`` at one ``eps``."""
    return f"{slug(label)}-eps{eps:g}-{unit_hash([spec, eps, fingerprint])}"


def metric_unit_id(
    key: str, spec: dict[str, Any], test_size: int | None, fingerprint: dict,
    surrogate: Any = _NO_SURROGATE,
) -> str:
    """``metric-<key>-<hash>``; ``surrogate`` (the spec of a surrogate it reads) is hashed in."""
    h = unit_hash([key, spec, test_size, fingerprint])
    if surrogate is not _NO_SURROGATE:
        h = unit_hash([h, surrogate])
    return f"metric-{key}-{h}"


class UnitStore:
    """Finished units and per-sample arrays of one suite output folder ``out``."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.units_dir = self.out / "suite" / "units"

    @property
    def results_jsonl(self) -> Path:
        return self.out / RESULTS_JSONL

    @property
    def results_csv(self) -> Path:
        return self.out / RESULTS_CSV

    def path(self, uid: str) -> Path:
        return self.units_dir / f"{uid}.json"

    def done(self, uid: str) -> bool:
        """Whether unit ``uid`` has finished (its records are on disk)."""
        return self.path(uid).exists()

    def write_unit(self, uid: str, seconds: float, records: list[dict[str, Any]]) -> None:
        """Store a finished unit's records (atomically)."""
        atomic_write_json(self.path(uid), {"unit": uid, "seconds": seconds, "records": records})

    def records(self, uids: list[str]) -> list[dict[str, Any]]:
        """The records of the finished units among ``uids``, in that order."""
        out: list[dict[str, Any]] = []
        for uid in uids:
            path = self.path(uid)
            if path.exists():
                out.extend(json.loads(path.read_text())["records"])
        return out

    def write_results(self, records: list[dict[str, Any]]) -> None:
        """Rewrite ``results.jsonl`` and ``results.csv`` (lists and dicts JSON-encoded)."""
        write_json_records(self.results_jsonl, records)
        rows = [
            {k: (json.dumps(v) if isinstance(v, (list, dict)) and k != "versions" else v)
             for k, v in r.items()}
            for r in records
        ]
        write_csv_records(self.results_csv, rows)

    def save_arrays(self, name: str, **arrays: np.ndarray) -> Path:
        """Write ``arrays`` to ``suite/samples/<name>.npz`` (compressed, atomically)."""
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        path = samples_path(self.out, name)
        atomic_write_bytes(path, buf.getvalue())
        return path
