"""Live and unfinished runs (#16): readers take a shared lock, unfinished checkpoints say so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from robens.cli import main
from robens.errors import RunLockedError
from robens.records import read_json_records
from robens.runlock import RunLock


def test_readers_share_the_lock_and_exclude_a_writer(tmp_path):
    with RunLock(tmp_path, shared=True), RunLock(tmp_path, shared=True):
        with pytest.raises(RunLockedError, match="in use by another process"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # free again: a writer gets it
        with pytest.raises(RunLockedError, match=f"being written by pid {os.getpid()}"):
            RunLock(tmp_path, shared=True).acquire()
    assert not (tmp_path / ".lock").exists()  # the pid is gone with its holder, file and all


def test_a_reader_of_a_missing_folder_holds_no_lock(tmp_path):
    with RunLock(tmp_path / "absent", shared=True):
        pass
    assert not (tmp_path / "absent").exists()  # a reader creates nothing


def _start_training(run):
    """A synthetic training of many short epochs in a subprocess (one line per epoch)."""
    cmd = [sys.executable, "-m", "robens.cli", "train", "--dataset", "synthetic",
           "--train-size", "100", "--test-size", "50", "--batch-size", "50", "--members", "1",
           "--epochs", "100000", "--threads", "1", "--seed", "0", "--out", str(run),
           "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_epoch(proc, k: int = 1, timeout: float = 180.0) -> None:
    start = time.monotonic()
    seen = 0
    while seen < k:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"training ended early (rc {proc.poll()})")
        if line.startswith("epoch "):
            seen += 1
        if time.monotonic() - start > timeout:
            pytest.fail(f"training too slow to reach epoch {k}")


def test_evaluating_a_run_while_it_trains(tmp_path, capsys):
    """Acceptance 4 of #16: refused while training; afterwards (killed) warned and recorded."""
    run = tmp_path / "run"
    proc = _start_training(run)
    try:
        _wait_for_epoch(proc)
        assert (run / "checkpoint.safetensors").exists()
        capsys.readouterr()
        assert main(["evaluate", str(run), "--test-size", "20"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and f"being written by pid {proc.pid}" in err, err
        assert main(["attack", str(run), "--attack", "fgsm", "--test-size", "20"]) == 2
        assert f"pid {proc.pid}" in capsys.readouterr().err
        assert main(["attack", str(tmp_path / "elsewhere"), "--surrogate", str(run)]) == 2
        assert f"pid {proc.pid}" in capsys.readouterr().err  # a surrogate in training too
        assert not (run / "records.jsonl").exists()
        assert not list(run.glob("attack-*.json"))  # nothing written into the live run
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()

    # the training died mid-way: its last checkpoint is unfinished, and evaluations say so
    assert main(["evaluate", str(run), "--test-size", "20"]) == 0
    err = capsys.readouterr().err
    assert "warning: UNFINISHED CHECKPOINT" in err and "complete: false" in err
    assert main(["attack", str(run), "--attack", "fgsm", "--test-size", "20"]) == 0
    err = capsys.readouterr().err
    assert err.count("UNFINISHED CHECKPOINT") == 1, err  # once, before the work
    records = read_json_records(run / "records.jsonl")
    (attack_file,) = run.glob("attack-*.json")
    records += read_json_records(attack_file)
    epochs = {r["epoch"] for r in records}
    assert len(epochs) == 1 and epochs.pop() >= 1
    assert all(r["complete"] is False for r in records)
    assert all(any("UNFINISHED" in w for w in r["warnings"]) for r in records)
