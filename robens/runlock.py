"""A lock on a run directory: one writer (exclusive) or many readers (shared), never both.

Training and the suite hold it exclusively, so two processes cannot write one run at once;
``robens evaluate`` and ``robens attack`` hold it shared, so they cannot read a run that is
being trained (nor training start under them), while several evaluations may run together.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from robens.errors import RunLockedError
from robens.filelock import still_at_path

#: what makes a subfolder another run, cleaned by its own lock holder: its lock while in use,
#: the config every training run writes first
NESTED_RUN_MARKS = (".lock", "config.yaml")


class RunLock:
    """``with RunLock(run_dir): ...`` holds ``run_dir/.lock`` (released on exit or on death).

    ``shared=True`` takes a reader's lock: any number of readers, no writer. The exclusive
    holder writes its pid into the file (a refused reader names it); readers write nothing. A
    reader of a folder where no lock file can be created (read-only) holds no lock: nothing can
    train there either.

    A clean release removes the file: the exclusive holder unlinks it while still holding it,
    and a reader does so when it can take the lock exclusively at release (it is the last
    holder). A killed holder leaves it, unlocked, for the next one. Another process may have
    opened the file just before it was unlinked: having locked it, it checks that the path
    still names the file it locked (:func:`~robens.filelock.still_at_path`) and otherwise
    starts again.
    """

    #: seconds a refused acquisition keeps retrying: long enough for a holder in the midst of
    #: its release (locked, unlinking) to finish, short enough to refuse a live run at once
    RETRY_SECONDS = 0.25

    def __init__(self, run_dir: str | os.PathLike, shared: bool = False) -> None:
        self.path = Path(run_dir) / ".lock"
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> None:
        deadline = time.monotonic() + self.RETRY_SECONDS
        while True:
            fd = self._open()
            if fd is None:
                return
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                if still_at_path(self.path, fd) and time.monotonic() >= deadline:
                    self._refuse(fd)
                os.close(fd)
                time.sleep(0.01)
                continue
            if still_at_path(self.path, fd):
                break
            os.close(fd)  # locked a file its last holder had just removed: start again
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

    def _refuse(self, fd: int) -> None:
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
        there. A subfolder that is another run (a surrogate, a sweep's trial: it holds a
        ``.lock`` while in use, a ``config.yaml`` once trained) is skipped: its holder cleans it."""
        root = self.path.parent
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not any(os.path.exists(os.path.join(folder, d, mark))
                                                  for mark in NESTED_RUN_MARKS)]
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    try:
                        os.unlink(os.path.join(folder, name))
                    except OSError:
                        pass

    def release(self) -> None:
        """Unlock and, where this holder is the last one, remove the lock file (see the class)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            last = not self.shared
            if self.shared:  # the last reader? (converting may drop the shared lock: released)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    last = True
                except BlockingIOError:
                    pass
            if last:
                try:
                    if still_at_path(self.path, fd):
                        os.unlink(self.path)
                except OSError:  # cannot remove it (read-only folder): leave it empty
                    if not self.shared:  # the pid names the holder only while it holds it
                        os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
