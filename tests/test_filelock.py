"""robens.filelock: a waiting exclusive lock, never two holders, released by a killed holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from robens.filelock import LockBusy, exclusive_lock


def test_second_claim_waits_for_the_holder_and_is_told_who_holds_it(tmp_path):
    path = tmp_path / "k.lock"
    held, release, told, order = threading.Event(), threading.Event(), [], []

    def holder():
        with exclusive_lock(path) as ok:
            assert ok
            order.append("first in")
            held.set()
            release.wait(10)
            order.append("first out")

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    waiter = threading.Thread(target=_enter, args=(path, told, order))
    waiter.start()
    deadline = time.monotonic() + 10
    while not told and time.monotonic() < deadline:
        time.sleep(0.01)
    assert told == [f"pid {os.getpid()}"]  # the holder's pid, told once, before waiting
    assert order == ["first in"]  # still waiting
    release.set()
    t.join(10)
    waiter.join(10)
    assert order == ["first in", "first out", "second in"]
    assert not path.exists()  # a clean release removes the file


def _enter(path, told, order):
    with exclusive_lock(path, on_wait=told.append):
        order.append("second in")


def test_never_two_holders_while_files_are_removed_and_recreated(tmp_path):
    path = tmp_path / "k.lock"
    inside, worst, lock = [0], [0], threading.Lock()

    def worker():
        for _ in range(40):
            with exclusive_lock(path):
                with lock:
                    inside[0] += 1
                    worst[0] = max(worst[0], inside[0])
                time.sleep(0.0005)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert worst[0] == 1 and inside[0] == 0


def test_killed_holder_releases_the_lock(tmp_path):
    path = tmp_path / "k.lock"
    script = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'pid 1'); print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert path.exists()  # left by the killed holder, unlocked
    told = []
    with exclusive_lock(path, on_wait=told.append) as ok:
        assert ok and told == []  # taken at once: nobody holds it
    assert not path.exists()


def test_folder_that_cannot_hold_the_file_yields_no_lock(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with exclusive_lock(blocker / "sub" / "k.lock") as ok:
        assert ok is False
    assert blocker.read_text() == "x"


def test_busy_lock_without_waiting_raises_and_leaves_the_holder_alone(tmp_path):
    path = tmp_path / "k.lock"
    errors: list = []
    with exclusive_lock(path):
        other = threading.Thread(target=lambda: errors.append(_try(path)))
        other.start()
        other.join(10)
        (busy,) = errors
        assert isinstance(busy, LockBusy) and busy.holder == f"pid {os.getpid()}"
        assert path.read_text() == f"pid {os.getpid()}"  # still ours
    with exclusive_lock(path, wait=False) as ok:  # free again: taken at once
        assert ok


def _try(path):
    try:
        with exclusive_lock(path, wait=False):
            return None
    except LockBusy as exc:
        return exc
