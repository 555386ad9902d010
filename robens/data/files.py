"""Reading dataset files: one place that turns an unreadable file into a :class:`DatasetError`."""

from __future__ import annotations

import os
from pathlib import Path

from robens.errors import DatasetError


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The raw bytes of ``path``; an OS error becomes a :class:`DatasetError` naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {Path(path)}: {exc.strerror or exc}") from None
