"""A lock on a run directory: one writer (exclusive) or many readers (shared), never both.

Training and the suite hold it exclusively, so two processes cannot write one run at once;
``robens evaluate`` and ``robens attack`` hold it shared, so they cannot read a run that is
being trained (nor training start under them), while several evaluations may run together.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from robens.errors import RunLockedError


class RunLock:
    """``with RunLock(run_dir): ...`` holds ``run_dir/.lock`` (released on exit or on death).

    ``shared=True`` takes a reader's lock: any number of readers, no writer. The exclusive
    holder writes its pid into the file (a refused reader names it); readers write nothing. A
    reader of a folder where no lock file can be created (read-only) holds no lock: nothing can
    train there either.
    """

    def __init__(self, run_dir: str | os.PathLike, shared: bool = False) -> None:
        self.path = Path(run_dir) / ".lock"
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = self._open()
        if fd is None:
            return
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            if self.shared:
                raise RunLockedError(
                    f"run directory {self.path.parent} is being written by"
                    f" {holder or 'another process'} (training or an attack suite); wait for it"
                    " to finish before evaluating it"
                ) from None
            raise RunLockedError(
                f"run directory {self.path.parent} is in use by"
                f" {holder or 'another process (an evaluation reading it)'}; wait for it to"
                " finish or choose another output directory"
            ) from None
        self._fd = fd
        if self.shared:  # no writer holds it: a pid left by a killed one is stale
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        self._remove_stale_temp_files()

    def _open(self) -> int | None:
        if not self.shared:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
            try:
                return os.open(self.path, flags, 0o644)
            except OSError:
                continue
        return None

    def _remove_stale_temp_files(self) -> None:
        """Temp files (``.*.tmp``) of atomic writes killed mid-way, in the run folder and its
        subfolders (``suite/units/``, ``surrogates/``, ...); only the exclusive holder writes
        there. A subfolder with its own ``.lock`` is another run (a surrogate, a sweep's trial):
        its holder cleans it, so it is skipped."""
        root = self.path.parent
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not os.path.exists(os.path.join(folder, d, ".lock"))]
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    try:
                        os.unlink(os.path.join(folder, name))
                    except OSError:
                        pass

    def release(self) -> None:
        if self._fd is not None:
            if not self.shared:  # the pid names the holder only while it holds the lock
                os.ftruncate(self._fd, 0)
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
