"""Reliability: run-directory lock, repeated SIGKILL/resume rounds, bounded evaluation memory,
validation at the API boundary."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from robens.checkpoint import load_checkpoint
from robens.config import validate_config
from robens.errors import InputError, RunLockedError
from robens.runlock import RunLock
from robens.training import Trainer
from tests.conftest import small_config


def test_two_processes_cannot_share_a_run_directory(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from robens.runlock import RunLock;"
         f"l = RunLock({str(tmp_path)!r}); l.acquire(); print('locked', flush=True);"
         "time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match="in use by pid"):
            RunLock(tmp_path).acquire()
        cfg = validate_config(small_config(tmp_path, output_dir=str(tmp_path)))
        with pytest.raises(RunLockedError):
            Trainer(cfg, progress=False, echo=None).fit()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path):  # released when its holder died
        pass


def _cmd(out):
    return [sys.executable, "-m", "robens.cli", "train", "--dataset", "synthetic",
            "--train-size", "600", "--test-size", "100", "--batch-size", "30", "--members", "2",
            "--epochs", "4", "--threads", "1", "--seed", "3", "--out", str(out), "--no-progress"]


def test_repeated_sigkill_at_random_points_resumes_to_the_same_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run(_cmd(ref), check=True, env=env, capture_output=True)
    rng = random.Random(1234)
    rounds = 0
    for _ in range(3):
        proc = subprocess.Popen(_cmd(run) + ["--resume"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            rounds += 1
        proc.wait()
        for f in run.glob("*.json"):
            json.loads(f.read_text())  # never half-written
        if (run / "checkpoint.safetensors").exists():
            load_checkpoint(run / "checkpoint.safetensors")  # verifies the digest
    subprocess.run(_cmd(run) + ["--resume"], check=True, env=env, capture_output=True)
    a, _ = load_checkpoint(ref / "checkpoint.safetensors")
    b, meta = load_checkpoint(run / "checkpoint.safetensors")
    assert meta["epoch"] == 4 and rounds >= 1
    for k in a:
        if k.startswith("model/"):
            assert torch.equal(a[k], b[k]), k


def test_class_count_mismatch_between_checkpoint_and_data(tmp_path):
    from robens.evaluate.clean import checkpoint_test_set

    meta = {"config": {"data": {"dataset": "synthetic"}},
            "dataset": {"num_classes": 4, "in_shape": [1, 28, 28]}}
    with pytest.raises(InputError, match="4 classes"):
        checkpoint_test_set(meta)
    meta["dataset"] = {"num_classes": 10, "in_shape": [3, 32, 32]}
    with pytest.raises(InputError, match="shape"):
        checkpoint_test_set(meta)


def test_batch_labels_validated():
    from robens.validation import check_eps, check_labels

    with pytest.raises(InputError, match=r"y has labels in \[0, 12\], expected \[0, 9\]"):
        check_labels(torch.tensor([0, 12]), 10)
    with pytest.raises(InputError, match="integer class indices"):
        check_labels(torch.tensor([0.0, 1.0]), 10)
    with pytest.raises(InputError, match="3 labels for a batch of 2"):
        check_labels(torch.tensor([0, 1, 2]), 10, batch_size=2)
    for bad in (-0.1, 1.5, "x", None):
        with pytest.raises(InputError, match="eps"):
            check_eps(bad)


def test_lock_holder_removes_temp_files_of_killed_writes(tmp_path):
    stale = tmp_path / ".checkpoint.safetensors.abc123.tmp"
    stale.write_bytes(b"half a file")
    keep = tmp_path / "history.json"
    keep.write_text("[]")
    with RunLock(tmp_path):
        assert not stale.exists() and keep.exists()
