"""Compare two run folders record by record (a refactor must give identical results).

    python benchmarks/compare_runs.py RUN_A RUN_B [--ignore KEY ...]

Every record file under RUN_A (``*.jsonl``, ``attack-*.json``, suite units
``suite/units/*.json``, sweep ``DONE.json``) is matched with the file at the same relative
path under RUN_B; records are read through :func:`robens.records.read_json_records` /
:func:`robens.records.upgrade_record` (so a run written by an older schema compares with a new
one) and compared in order, field by field, exactly (floats bit for bit). Ignored by default:
``versions`` and ``schema_version`` (the library and schema versions, not results). Training
histories are compared without their wall times, and every ``*.safetensors`` file's tensors are
compared bit for bit. Suite unit ids (``suite/units/<label>-<hash>.json`` and the records'
``unit`` field) hash the checkpoint's digest, which covers its metadata and so its training
wall times: they differ between any two runs, so unit files are matched by their label and
``unit`` is ignored. Exit status 0 when everything is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from robens.records import read_json_records, upgrade_record

DEFAULT_IGNORE = ("versions", "schema_version", "unit")
_UNIT_HASH = re.compile(r"-[0-9a-f]{10}(\.json|-delta\.npz|\.npz)$")
TIMING_KEYS = ("seconds", "finished", "started", "wall_seconds")


def _records_of(path: Path) -> list[dict[str, Any]] | None:
    """The records a file holds (``None`` when it is not a record file)."""
    if path.suffix == ".jsonl" or path.name.startswith("attack-"):
        return read_json_records(path)
    if path.suffix == ".json" and (path.parent.name == "units" or path.name == "DONE.json"):
        obj = json.loads(path.read_text())
        recs = obj.get("records") if isinstance(obj, dict) else None
        return [upgrade_record(r) for r in recs] if isinstance(recs, list) else None
    return None


def _unit_key(rel: Path) -> str:
    """A unit file's path without its id hash (``units/pgd10-eps0.1``)."""
    return _UNIT_HASH.sub(r"\1", str(rel))


def _strip(obj: Any, ignore: set[str]) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v, ignore) for k, v in obj.items() if k not in ignore}
    if isinstance(obj, list):
        return [_strip(v, ignore) for v in obj]
    return obj


def _diff(a: Any, b: Any, where: str, out: list[str], limit: int = 20) -> None:
    if len(out) >= limit:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{where}.{k}: only in {'B' if k not in a else 'A'}")
            else:
                _diff(a[k], b[k], f"{where}.{k}", out, limit)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} vs {len(b)} entries")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _diff(x, y, f"{where}[{i}]", out, limit)
    elif a != b and not (a != a and b != b):  # NaN == NaN here
        out.append(f"{where}: {a!r} != {b!r}")


def compare(run_a: Path, run_b: Path, ignore: set[str]) -> dict[str, Any]:
    """``{"files", "records", "tensors", "differences": [...], "missing": [...]}``."""
    report: dict[str, Any] = {"files": 0, "records": 0, "tensors": 0, "histories": 0,
                              "differences": [], "missing": []}
    units_b = {_unit_key(p.relative_to(run_b)): p for p in run_b.rglob("*")
               if p.is_file() and p.parent.name == "units"}
    for pa in sorted(p for p in run_a.rglob("*") if p.is_file()):
        rel = pa.relative_to(run_a)
        pb = run_b / rel
        if pa.parent.name == "units":
            pb = units_b.get(_unit_key(rel), pb)
        is_weights = pa.suffix == ".safetensors"
        is_history = pa.name == "history.json"
        recs_a = None if (is_weights or is_history) else _records_of(pa)
        if recs_a is None and not (is_weights or is_history):
            continue
        if not pb.is_file():
            report["missing"].append(str(rel))
            continue
        diffs: list[str] = []
        if is_weights:
            ta, tb = load_file(str(pa)), load_file(str(pb))
            if set(ta) != set(tb):
                diffs.append(f"{rel}: tensor names differ")
            for k in sorted(set(ta) & set(tb)):
                report["tensors"] += 1
                if ta[k].dtype != tb[k].dtype or ta[k].shape != tb[k].shape or not bool(
                    (ta[k] == tb[k]).all() if ta[k].numel() else True
                ):
                    diffs.append(f"{rel}:{k}: tensors differ")
        elif is_history:
            report["histories"] += 1
            ha = _strip(json.loads(pa.read_text()), set(TIMING_KEYS))
            hb = _strip(json.loads(pb.read_text()), set(TIMING_KEYS))
            _diff(ha, hb, str(rel), diffs)
        else:
            recs_b = _records_of(pb) or []
            report["records"] += len(recs_a)
            _diff(_strip(recs_a, ignore), _strip(recs_b, ignore), str(rel), diffs)
        report["files"] += 1
        report["differences"] += diffs
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--ignore", nargs="*", default=[], help="more record keys to ignore")
    args = ap.parse_args(argv)
    ignore = set(DEFAULT_IGNORE) | set(args.ignore)
    rep = compare(args.run_a, args.run_b, ignore)
    print(f"compared {args.run_a} with {args.run_b} (ignoring {', '.join(sorted(ignore))})")
    print(f"  files: {rep['files']}  records: {rep['records']}  tensors: {rep['tensors']}"
          f"  training histories: {rep['histories']} (wall times ignored)")
    for m in rep["missing"]:
        print(f"  MISSING in B: {m}")
    for d in rep["differences"]:
        print(f"  DIFF {d}")
    same = not rep["missing"] and not rep["differences"]
    print("IDENTICAL" if same else f"DIFFERENT ({len(rep['differences'])} difference(s),"
          f" {len(rep['missing'])} missing file(s))")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
