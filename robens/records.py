"""Result records: flat dicts anyone can compare (RobustBench style).

``{"method", "dataset", "model", "attack", "eps", "metric", "value", "seed", "config_hash",
"versions", ...extra}``; tables and figures are built from lists of these.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from robens.utils import atomic_write_text, versions

RECORD_KEYS = (
    "method",
    "dataset",
    "model",
    "attack",
    "eps",
    "metric",
    "value",
    "seed",
    "config_hash",
    "versions",
)


def make_record(
    *,
    method: str,
    dataset: str,
    model: str,
    metric: str,
    value: float,
    attack: str = "none",
    eps: float = 0.0,
    seed: int | None = None,
    config_hash: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One result record; ``extra`` keys (member index, threat model, ...) are kept."""
    rec = {
        "method": method,
        "dataset": dataset,
        "model": model,
        "attack": attack,
        "eps": float(eps),
        "metric": metric,
        "value": float(value),
        "seed": seed,
        "config_hash": config_hash,
        "versions": versions(),
    }
    rec.update(extra)
    return rec


def records_from_meta(meta: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The identifying fields of a record, taken from checkpoint metadata."""
    cfg = meta.get("config", {})
    model = cfg.get("model", {})
    members = model.get("members", len(meta.get("model", {}).get("members", [])))
    return {
        "method": cfg.get("name", "experiment"),
        "dataset": meta.get("dataset", {}).get("name", cfg.get("data", {}).get("dataset", "?")),
        "model": f"{members}x{model.get('arch', '?')}",
        "seed": meta.get("seed"),
        "config_hash": meta.get("config_hash"),
        **fields,
    }


def write_json_records(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Write records as JSON lines, atomically."""
    text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
    atomic_write_text(path, text)


def read_json_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read JSON-lines records (a torn last line from an older writer is ignored)."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def write_csv_records(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Write records as CSV (versions flattened to a string), atomically."""
    records = list(records)
    keys: list[str] = list(RECORD_KEYS)
    for r in records:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in records:
        row = dict(r)
        if isinstance(row.get("versions"), dict):
            row["versions"] = ";".join(f"{k}={v}" for k, v in row["versions"].items())
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())


class RecordSelection:
    """``select`` / ``value`` over a ``records`` list (shared by report runs and recipe trials)."""

    records: list[dict[str, Any]]

    def select(self, metric: str, **filters: Any) -> list[dict[str, Any]]:
        """Records of ``metric`` whose fields equal ``filters`` (floats compared to 1e-9)."""
        out = []
        for r in self.records:
            if r.get("metric") != metric:
                continue
            if all(_equal(r.get(k), v) for k, v in filters.items()):
                out.append(r)
        return out

    def value(self, metric: str, **filters: Any) -> float | None:
        """The value of the matching record with the most samples (``None`` if absent)."""
        recs = self.select(metric, **filters)
        if not recs:
            return None
        best = max(recs, key=lambda r: (r.get("n") or 0))
        v = best.get("value")
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _equal(a: Any, b: Any) -> bool:
    if (isinstance(a, (int, float)) and isinstance(b, (int, float))
            and not isinstance(a, bool) and not isinstance(b, bool)):
        return abs(float(a) - float(b)) <= 1e-9
    return a == b
