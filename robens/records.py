"""Typed result records: one schema, one writer, readers that accept older runs.

A record is a flat mapping anyone can compare (RobustBench style): ``method``, ``dataset``,
``model``, ``attack``, ``eps``, ``metric``, ``value``, ``n``, ``seed``, ``config_hash``,
``versions``, a :class:`ThreatModel`, the ``surrogate`` of a transfer result and a
``schema_version``; producers add their own extra fields (member index, attack parameters,
...). :class:`Record` validates them; every producer writes through :func:`write_json_records`
and every consumer reads through :func:`read_json_records`, which maps the spellings of older
runs (``"white-box"``, ``"transfer from <path>"``) to the enumeration.

A record's *identity* (:func:`record_identity`) is every field except those that describe the
result rather than tell it apart (:data:`DESCRIPTIVE_KEYS`: the value, versions, warnings, the
checkpoint's epoch, ...): the threat model, the surrogate, every attack parameter, the sample
(``n``, ``sample_seed``) and the seeds. Writers merge by it (:func:`merge_json_records`), so a
result replaces only an earlier result of the same identity, and ``robens attack`` names its
files after it (:func:`identity_key`).
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from robens.utils import atomic_write_text, versions

#: version 2: threat_model is a ThreatModel value; transfer records name their surrogate;
#: version 3: records carry the checkpoint's ``epoch`` and ``complete`` and, on a seeded test
#: subset, its ``sample_seed`` (older records simply lack them)
SCHEMA_VERSION = 3

#: fields that describe a result without telling two results apart (not in its identity): a
#: later evaluation of a further-trained checkpoint of the same config replaces an earlier one
DESCRIPTIVE_KEYS = frozenset({
    "value", "versions", "warnings", "stages", "stages_by_aggregation", "schema_version",
    "epoch", "complete",
    "seconds", "ci_low", "ci_high", "interval", "source_file", "surrogate_epoch",
    "surrogate_complete",
})

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
    surrogate: str | None = None
    n: int | None = None
    sample_seed: int | None = None
    #: the checkpoint's completed epochs and whether its training had finished
    epoch: int | None = None
    complete: bool | None = None

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
    return {
        "method": cfg.get("name", "experiment"),
        "dataset": meta.get("dataset", {}).get("name", cfg.get("data", {}).get("dataset", "?")),
        "model": model_label(meta),
        "seed": meta.get("seed"),
        "config_hash": meta.get("config_hash"),
        **checkpoint_state(meta),
        **fields,
    }


def model_label(meta: dict[str, Any]) -> str:
    """The ``model`` field of a checkpoint's records: its members' architectures.

    ``3xlenet`` when every member has one architecture; otherwise the architectures in order
    of first appearance joined by ``+``, each with its count when above one: ``archs: [conv3,
    lenet]`` is ``conv3+lenet`` and ``[mycnn, mymlp, mycnn]`` is ``2xmycnn+mymlp``. Read from
    the config's ``model.archs`` (else ``model.arch`` times ``model.members``), or from the
    member specs of checkpoints without a config.
    """
    model = meta.get("config", {}).get("model", {})
    specs = meta.get("model", {}).get("members", [])
    archs = model.get("archs")
    if not archs:
        if "arch" in model or not specs:
            archs = [model.get("arch", "?")] * int(model.get("members", len(specs)))
        else:
            archs = [str(s.get("name", "?")) if isinstance(s, dict) else "?" for s in specs]
    counts: dict[str, int] = {}
    for arch in archs:
        counts[str(arch)] = counts.get(str(arch), 0) + 1
    if len(counts) <= 1:
        return f"{len(archs)}x{archs[0] if archs else model.get('arch', '?')}"
    return "+".join(name if n == 1 else f"{n}x{name}" for name, n in counts.items())


def parse_model_label(label: Any) -> tuple[int, str] | None:
    """``(members, arch)`` of a :func:`model_label`; ``arch`` is the label itself when mixed.

    ``"3xlenet"`` -> ``(3, "lenet")``, ``"2xmycnn+mymlp"`` -> ``(3, "2xmycnn+mymlp")``;
    ``None`` for a label of another form.
    """
    parts = str(label or "").split("+")
    total = 0
    for part in parts:
        m = re.fullmatch(r"(\d+)x(.+)", part)
        if m is None and (len(parts) == 1 or not part):
            return None
        total += int(m.group(1)) if m else 1
    if len(parts) == 1:
        return total, str(label).split("x", 1)[1]
    return total, str(label)


def checkpoint_state(meta: dict[str, Any]) -> dict[str, Any]:
    """``{"epoch", "complete"}`` of checkpoint metadata (``None`` where it does not say)."""
    epoch, complete = meta.get("epoch"), meta.get("complete")
    return {"epoch": None if epoch is None else int(epoch),
            "complete": None if complete is None else bool(complete)}


def record_identity(rec: dict[str, Any]) -> dict[str, Any]:
    """The fields that tell ``rec`` apart from any other result (see :data:`DESCRIPTIVE_KEYS`).

    A field that is absent and one that is ``None`` are the same; floats are compared as
    written (``eps`` 0.1 and 0.1 are one identity).
    """
    return {k: v for k, v in sorted(rec.items()) if k not in DESCRIPTIVE_KEYS and v is not None}


def identity_key(rec: dict[str, Any], digits: int = 10) -> str:
    """Hex digits of the SHA-256 of :func:`record_identity` (sorted JSON)."""
    text = json.dumps(record_identity(rec), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


def dedupe_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per identity, in first-seen order; of duplicates the later-trained (higher
    ``epoch``, then the one read last) wins."""
    best: dict[str, dict[str, Any]] = {}
    for r in records:
        key = identity_key(r)
        old = best.get(key)
        if old is None or (r.get("epoch") or 0) >= (old.get("epoch") or 0):
            best[key] = r
    return list(best.values())


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


def merge_json_records(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Write ``records`` into the JSON-lines file ``path``, keeping every record already there
    whose identity differs; a record of the same identity is replaced (its result re-measured).

    Concurrent writers of one folder are serialised (an exclusive ``flock`` on the folder).
    """
    for r in records:
        validate_record(r)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        new = {identity_key(r) for r in records}
        kept = [r for r in (read_json_records(path) if path.is_file() else [])
                if identity_key(r) not in new]  # kept as read (not re-validated)
        text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n"
                       for r in kept + list(records))
        atomic_write_text(path, text)
    finally:
        os.close(fd)  # closing releases the lock


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

    def best(self, metric: str, **filters: Any) -> dict[str, Any] | None:
        """The matching record a summary uses: the most samples, then a finished checkpoint's,
        then the latest epoch's, then the first read (``None`` if none matches)."""
        recs = self.select(metric, **filters)
        if not recs:
            return None
        return max(recs, key=_preference)

    def value(self, metric: str, **filters: Any) -> float | None:
        """The value of :meth:`best` (``None`` if absent or NaN)."""
        best = self.best(metric, **filters)
        v = None if best is None else best.get("value")
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _preference(r: dict[str, Any]) -> tuple[int, bool, int]:
    return (int(r.get("n") or 0), r.get("complete") is not False, int(r.get("epoch") or 0))


def _equal(a: Any, b: Any) -> bool:
    if (isinstance(a, (int, float)) and isinstance(b, (int, float))
            and not isinstance(a, bool) and not isinstance(b, bool)):
        return abs(float(a) - float(b)) <= 1e-9
    return a == b


def clean_record(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The clean-accuracy record a trial's printed clean accuracy comes from, everywhere (the
    sweep's progress lines, recipe tables and checks): the suite's clean unit, measured on the
    images the attacks run on, else any ``clean_accuracy`` record; the largest ``n`` first."""
    recs = [r for r in records if r.get("metric") == "clean_accuracy"]
    suite = [r for r in recs if str(r.get("unit", "")).startswith("clean-")]
    pool = suite or recs
    return max(pool, key=lambda r: r.get("n") or 0) if pool else None
