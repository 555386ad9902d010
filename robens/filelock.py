"""A waiting exclusive lock on a file path: work that concurrent processes should do once.

``with exclusive_lock(path): ...`` holds an ``flock`` on ``path`` (created if missing, removed
by a clean release, released by the OS when its holder dies). A second process (or a second
open of the file in the same process) waits until the holder is done; :class:`~robens.runlock.
RunLock` is the refusing variant for run folders. The holder writes ``pid N`` into the file,
which a waiter passes to ``on_wait`` once, before it starts waiting; with ``wait=False`` it
raises :class:`LockBusy` instead (so a caller can do other work first and come back).

Removing a lock file can race with a waiter that opened it just before: having locked it, the
waiter checks that ``path`` still names the file it locked (:func:`still_at_path`) and
otherwise starts again on the new one, so two holders never overlap.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def still_at_path(path: str | os.PathLike, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, nor replaced)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


class LockBusy(Exception):
    """``exclusive_lock(..., wait=False)`` found the lock held; ``holder`` names the holder."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by {holder}")
        self.path, self.holder = path, holder


def _open(path: Path) -> int | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only folder: nobody can write the work's result there either
        return None


@contextmanager
def exclusive_lock(
    path: str | os.PathLike, on_wait: Callable[[str], None] | None = None, wait: bool = True
) -> Iterator[bool]:
    """Hold ``path`` exclusively for the block; yields True, or False (no lock) where the lock
    file cannot be created. Waits, without a limit, while another holder has it (``wait``),
    or raises :class:`LockBusy`."""
    path = Path(path)
    told = False
    while True:
        fd = _open(path)
        if fd is None:
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            if not wait:
                os.close(fd)
                raise LockBusy(path, holder) from None
            if on_wait is not None and not told:
                told = True
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        if still_at_path(path, fd):
            break
        os.close(fd)  # locked a file its last holder had just removed: start again
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield True
    finally:
        try:
            os.unlink(path)  # still ours: nobody else can hold it while we do
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
