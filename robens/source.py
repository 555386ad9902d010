"""The fingerprint of robens' own source, so a sweep never mixes two versions of the code.

A sweep's trials import robens when they start and keep importing modules lazily while they
run (Ray workers import the installed, often editable, checkout). Editing that checkout during
a sweep can therefore give a trial half old and half new code: an ``ImportError`` at best, a
silently mixed result at worst. The driver records :func:`source_fingerprint` in every trial's
spec; a trial checks it when it starts and again before it writes its results
(:func:`check_source`), and stops with a clear error if the code changed. Its checkpoint is kept,
so running the same command again resumes with one version of the code.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from robens.errors import RobensError

ALLOW_ENV = "ROBENS_ALLOW_SOURCE_MISMATCH"


class SourceChangedError(RobensError):
    """robens' source differs from the one the sweep was planned with."""


def source_fingerprint() -> str:
    """SHA-256 over the relative path and bytes of every ``.py`` file of the robens package."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def check_source(expected: str | None, when: str) -> None:
    """Raise :class:`SourceChangedError` if robens' source is not ``expected`` (None: no check;
    ``$ROBENS_ALLOW_SOURCE_MISMATCH=1``: never)."""
    if not expected or os.environ.get(ALLOW_ENV) == "1":
        return
    found = source_fingerprint()
    if found != expected:
        raise SourceChangedError(
            f"robens' source changed {when} (fingerprint {found[:12]}, the sweep was planned"
            f" with {expected[:12]}): the checkout was edited while the sweep ran, or this"
            " worker runs another robens. The trial's checkpoint is kept: run the same command"
            f" again to resume with one version of the code ({ALLOW_ENV}=1 skips this check)."
        )
