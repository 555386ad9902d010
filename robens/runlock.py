"""An exclusive lock on a run directory, so two processes cannot write one run at once."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from robens.errors import RunLockedError


class RunLock:
    """``with RunLock(run_dir): ...`` holds ``run_dir/.lock`` (released on exit or on death)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunLockedError(
                f"run directory {self.path.parent} is in use by {holder}; wait for it to finish"
                " or choose another output directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        self._fd = fd
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        """Temp files of atomic writes killed mid-way (only the lock holder writes here)."""
        for tmp in self.path.parent.glob(".*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
