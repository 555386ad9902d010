"""Typed result records: one schema, one writer, readers that accept older runs.

A record is a flat mapping anyone can compare (RobustBench style): ``method``, ``dataset``,
``model``, ``attack``, ``eps``, ``metric``, ``value``, ``n``, ``seed``, ``config_hash``,
``versions``, a :class:`ThreatModel`, the ``surrogate`` of a transfer result and a
``schema_version``; producers add their own extra fields (member index, attack parameters,
...). :class:`Record` validates them; every producer writes through :func:`write_json_records`
and every consumer reads through :func:`read_json_records`, which maps the spellings of older
runs (``"white-box"``, ``"transfer from <path>"``) to the enumeration.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from robens.utils import atomic_write_text, versions

#: version 2: threat_model is a ThreatModel value; transfer records name their surrogate
SCHEMA_VERSION = 2

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


class ThreatModel(StrEnum):
    """How the evaluated inputs were produced."""

    WHITE_BOX = "white_box"
    TRANSFER = "transfer"
    UNIVERSAL = "universal"
    MEMBER_TRANSFER = "member_transfer"
    GAAS = "gaas"
    NOISE = "noise"
    ROTATION = "rotation"
    NONE = "none"


THREAT_MODELS = tuple(t.value for t in ThreatModel)


def normalize_threat(value: Any) -> tuple[str | None, str | None]:
    """``(threat_model, surrogate)`` for any spelling robens ever wrote.

    ``"white-box"`` -> ``("white_box", None)``; ``"transfer from runs/s"`` ->
    ``("transfer", "runs/s")``; ``None`` stays ``None``; unknown strings raise ValueError.
    """
    if value is None:
        return None, None
    text = value.value if isinstance(value, ThreatModel) else str(value).strip()
    if text.startswith("transfer from "):
        return ThreatModel.TRANSFER.value, text[len("transfer from "):]
    key = text.replace("-", "_").lower()
    if key in THREAT_MODELS:
        return key, None
    raise ValueError(f"unknown threat model {value!r}; one of {', '.join(THREAT_MODELS)}")


class Record(BaseModel):
    """One result (extra fields are kept as given)."""

    model_config = ConfigDict(extra="allow")

    method: str
    dataset: str
    model: str
    metric: str
    value: float | None
    attack: str = "none"
    eps: float = 0.0
    seed: int | None = None
    config_hash: str | None = None
    versions: dict[str, Any] | None = None
    threat_model: ThreatModel | None = None

    @field_validator("threat_model", mode="before")
    @classmethod
    def _threat(cls, v: Any) -> Any:
        return normalize_threat(v)[0]

    def to_dict(self) -> dict[str, Any]:
        """The plain mapping written to disk (enum as its string value)."""
        out = self.model_dump(exclude_none=False)
        if out.get("threat_model") is not None:
            out["threat_model"] = ThreatModel(out["threat_model"]).value
        return out


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
    """One result record; ``extra`` keys (member index, threat model, ...) are kept.

    A ``threat_model`` given in any older spelling is stored as the :class:`ThreatModel` value.
    """
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
    if "threat_model" in rec:
        rec["threat_model"], surrogate = normalize_threat(rec["threat_model"])
        if surrogate is not None:
            rec.setdefault("surrogate", surrogate)
    rec.setdefault("schema_version", SCHEMA_VERSION)
    return rec


def upgrade_record(rec: dict[str, Any]) -> dict[str, Any]:
    """A record of any schema version in the current one (a copy; values untouched)."""
    out = dict(rec)
    if "threat_model" in out:
        try:
            out["threat_model"], surrogate = normalize_threat(out["threat_model"])
        except ValueError:
            return out
        if surrogate is not None:
            out.setdefault("surrogate", surrogate)
    out.setdefault("schema_version", 1)
    return out


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


def validate_record(rec: dict[str, Any]) -> dict[str, Any]:
    """Check ``rec`` against :class:`Record` (raises pydantic's ValidationError); returns it."""
    Record.model_validate(rec)
    return rec


def write_json_records(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """The one record writer: validate each record, write JSON lines atomically."""
    for r in records:
        validate_record(r)
    text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records)
    atomic_write_text(path, text)


def read_json_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read JSON-lines records of any schema version, upgraded to the current one.

    A torn last line from an older writer, or a line that is not a JSON object, is ignored.
    """
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out.append(upgrade_record(obj))
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
