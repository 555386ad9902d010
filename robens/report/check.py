"""Which lines of a records file the report can use, and why the others are skipped.

A record is usable when it is a JSON object with a string ``metric`` and a numeric (or null)
``value``, plus the fields its metric's figures read: ``attack`` and a numeric ``eps`` for
robust accuracy, attack success and transfer matrices, integer ``source`` / ``target`` for a
transfer matrix. :func:`read_valid_records` returns the usable ones (upgraded to the current
schema) and one line per skipped line; :func:`scan_records` raises when no file holds any.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robens.errors import InputError
from robens.records import upgrade_record

#: metric -> the fields (beyond metric and value) its figures and tables read
NEEDS: dict[str, tuple[str, ...]] = {
    "robust_accuracy": ("attack", "eps"),
    "attack_success_rate": ("attack", "eps"),
    "transfer_matrix_accuracy": ("attack", "eps", "source", "target"),
}
_NUMBER = (int, float)
_SHOWN = 5


def _is_number(v: Any) -> bool:
    return isinstance(v, _NUMBER) and not isinstance(v, bool)


def record_problem(rec: Any) -> str | None:
    """Why ``rec`` cannot be reported (``None`` when it can)."""
    if not isinstance(rec, dict):
        return f"not a JSON object ({type(rec).__name__})"
    metric = rec.get("metric")
    if not isinstance(metric, str) or not metric:
        return "no 'metric'"
    if "value" not in rec:
        return f"{metric} record without 'value'"
    if rec["value"] is not None and not _is_number(rec["value"]):
        return f"{metric} record whose 'value' is not a number ({rec['value']!r})"
    for key in NEEDS.get(metric, ()):
        if key not in rec:
            return f"{metric} record without {key!r}"
    if "eps" in rec and rec["eps"] is not None and not _is_number(rec["eps"]):
        return f"{metric} record whose 'eps' is not a number ({rec['eps']!r})"
    for key in ("source", "target"):
        if key in NEEDS.get(metric, ()) and (not isinstance(rec[key], int)
                                             or isinstance(rec[key], bool)):
            return f"{metric} record whose {key!r} is not an integer"
    return None


def read_valid_records(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """``(records, skipped)``: the usable records of a JSON-lines file, and ``"FILE:LINE:
    reason"`` for each non-empty line that is not one."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return [], [f"{path}: not a UTF-8 text file"]
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    for i, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            skipped.append(f"{path}:{i}: not JSON")
            continue
        problem = record_problem(obj)
        if problem is None:
            try:
                obj = upgrade_record(obj)
            except (TypeError, ValueError, AttributeError) as exc:
                problem = f"unreadable record ({exc})"
        if problem is None:
            records.append(obj)
        else:
            skipped.append(f"{path}:{i}: {problem}")
    return records, skipped


def scan_records(files: Sequence[str | os.PathLike], where: str = "") -> list[str]:
    """The skipped lines of the records ``files`` (``FILE:LINE: reason``); an
    :class:`InputError` listing them when not one file holds a usable record."""
    skipped: list[str] = []
    found = 0
    for path in files:
        records, bad = read_valid_records(path)
        found += len(records)
        skipped += bad
    if not found:
        shown = "; ".join(skipped[:_SHOWN]) + (
            f"; ... ({len(skipped) - _SHOWN} more)" if len(skipped) > _SHOWN else "")
        raise InputError(
            f"no valid record in {where or ', '.join(str(f) for f in files)}"
            + (f"; skipped {len(skipped)} line(s): {shown}" if skipped
               else " (the files are empty)")
        )
    return skipped
