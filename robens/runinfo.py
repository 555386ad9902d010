"""What a run folder records about how it was made: the command, when, on which machine.

``record_invocation(run_dir)`` appends one JSON line to ``<run_dir>/invocations.jsonl`` each
time a run starts (a resumed run adds a line): the command line, the working directory, the
UTC start time, the machine (platform, CPU count, torch threads, GPU) and the versions of
robens, torch, numpy and Python. The report's provenance section reads it back
(:func:`read_invocations`); nothing here imports the report.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from robens.utils import versions

INVOCATIONS = "invocations.jsonl"


def machine() -> dict[str, Any]:
    """The machine a run executes on: platform, CPU count, torch threads, GPU (or None)."""
    gpu = None
    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
    }


def _command(argv: Sequence[str]) -> list[str]:
    """``argv`` with the program shown by its name (``/x/.venv/bin/robens`` -> ``robens``)."""
    args = [str(a) for a in argv]
    if args:
        args[0] = Path(args[0]).name
    return args


def record_invocation(run_dir: str | os.PathLike, argv: Sequence[str] | None = None) -> Path:
    """Append this invocation (``argv``, default ``sys.argv``) to ``invocations.jsonl``."""
    path = Path(run_dir) / INVOCATIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "command": _command(sys.argv if argv is None else argv),
        "cwd": os.getcwd(),
        "started_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
    }
    with path.open("a", encoding="utf-8") as f:  # one short line: appends do not interleave
        f.write(json.dumps(entry, sort_keys=True) + "\n")
    return path


def read_invocations(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The invocations recorded in ``run_dir`` (oldest first; unreadable lines skipped)."""
    path = Path(run_dir) / INVOCATIONS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out
