"""The report's provenance section: how each run folder's results were made.

Read from what a run folder holds, never from the checkpoint's weights: ``invocations.jsonl``
(the command, start time, machine and versions of every ``robens run``;
:mod:`robens.runinfo`), ``config.yaml`` and the records (seeds, config hash, versions),
``history.json`` (training time per epoch), ``surrogates/*/history.json`` and
``suite/units/*.json`` (seconds per suite unit). What a folder does not hold is printed as
"not recorded", never guessed.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robens.report.runs import Run
from robens.report.tables import Table
from robens.runinfo import read_invocations

MISSING = "not recorded"
#: largest config.yaml shown inline (characters)
MAX_CONFIG = 20000


@dataclass
class Provenance:
    """One run folder's provenance: a table of facts, one of wall times, its config text."""

    folder: str
    facts: Table
    times: Table | None
    config: str


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _distinct(runs: list[Run], key: str) -> list[str]:
    out: list[str] = []
    for run in runs:
        for r in run.records:
            v = r.get(key)
            if v is not None and str(v) not in out:
                out.append(str(v))
    return out


def _versions(runs: list[Run], invocations: list[dict[str, Any]]) -> str:
    seen: list[str] = []
    for v in [r.get("versions") for run in runs for r in run.records] + [
            i.get("versions") for i in invocations]:
        if isinstance(v, dict):
            text = ", ".join(f"{k} {v[k]}" for k in ("robens", "torch", "numpy", "python")
                             if k in v)
            if text and text not in seen:
                seen.append(text)
    return " | ".join(seen) or MISSING


def _machine(invocations: list[dict[str, Any]]) -> str:
    seen: list[str] = []
    for inv in invocations:
        m = inv.get("machine") or {}
        text = (f"{m.get('platform', '?')}, {m.get('cpu_count', '?')} CPUs"
                f" ({m.get('torch_threads', '?')} torch threads), GPU: {m.get('gpu') or 'none'}")
        if text not in seen:
            seen.append(text)
    return " | ".join(seen) or MISSING


def _history_seconds(path: Path) -> tuple[float, int] | None:
    hist = _json(path)
    if not isinstance(hist, list):
        return None
    secs = [float(h.get("seconds") or 0) for h in hist if isinstance(h, dict)]
    return sum(secs), len(secs)


def wall_times(folder: Path) -> Table | None:
    """Seconds of training (per history.json) and of every finished suite unit."""
    rows: list[list[str]] = []
    train = _history_seconds(folder / "history.json")
    if train is not None:
        rows.append(["training", f"{train[0]:.1f}", f"{train[1]} epoch(s), history.json"])
    for hist in sorted(folder.glob("surrogates/*/history.json")):
        got = _history_seconds(hist)
        if got is not None:
            rows.append([f"surrogate {hist.parent.name} training", f"{got[0]:.1f}",
                         f"{got[1]} epoch(s)"])
    units = []
    for path in sorted((folder / "suite" / "units").glob("*.json")):
        data = _json(path)
        if isinstance(data, dict) and data.get("seconds") is not None:
            units.append((str(data.get("unit", path.stem)), float(data["seconds"])))
    rows += [[f"suite unit {uid}", f"{sec:.1f}", ""] for uid, sec in units]
    if units:
        rows.append(["suite, all units", f"{sum(s for _, s in units):.1f}",
                     f"{len(units)} unit(s)"])
    if not rows:
        return None
    return Table(f"Wall times: {folder}", ["stage", "seconds", "detail"], rows,
                 note="Seconds as the trainer and the suite measured them; a unit read back on"
                 " a resumed run keeps the time of the run that computed it.", collapsed=True)


def _command(invocations: list[dict[str, Any]]) -> str:
    if not invocations:
        return (f"{MISSING} (invocations.jsonl is written by robens run; this folder has"
                " none)")
    lines = []
    for inv in invocations:
        cmd = shlex.join(str(a) for a in inv.get("command") or []) or "?"
        lines.append(f"{cmd} (started {inv.get('started_utc', '?')} in {inv.get('cwd', '?')})")
    return " ; then ".join(lines)


def provenance(runs: list[Run]) -> list[Provenance]:
    """The provenance of every run folder among ``runs`` (folders in order of appearance)."""
    folders: dict[str, list[Run]] = {}
    for run in runs:
        folders.setdefault(run.run_dir, []).append(run)
    out = []
    for folder, group in folders.items():
        path = Path(folder)
        inv = read_invocations(path)
        config = path / "config.yaml"
        text = config.read_text(encoding="utf-8") if config.is_file() else ""
        seeds = [("training seed", _distinct(group, "seed")),
                 ("evaluation (suite) seed", _distinct(group, "eval_seed")),
                 ("surrogate seed", _distinct(group, "surrogate_seed")),
                 ("attack seed", _distinct(group, "attack_seed"))]
        rows = [["method(s)", ", ".join(r.label for r in group)],
                ["command", _command(inv)],
                ["config hash", ", ".join(_distinct(group, "config_hash")) or MISSING],
                ["config file", "config.yaml (below)" if text else MISSING]]
        rows += [[k, ", ".join(v) or MISSING] for k, v in seeds]
        rows += [["versions (robens, torch, numpy, python)", _versions(group, inv)],
                 ["machine", _machine(inv)]]
        facts = Table(f"Provenance: {folder}", ["item", "value"], rows,
                      note="From the run folder: invocations.jsonl, config.yaml, the records,"
                      " history.json and suite/units/*.json.", css="facts")
        out.append(Provenance(folder, facts, wall_times(path),
                              text if len(text) <= MAX_CONFIG else text[:MAX_CONFIG] + "\n..."))
    return out
