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


@pytest.mark.slow  # about 60 s; the single-kill form is test_trainer's, in the default suite
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


def test_lock_holder_cleans_temp_files_in_subfolders_but_not_in_nested_runs(tmp_path):
    unit = tmp_path / "suite" / "units" / ".pgd-abc.json.1f2e.tmp"
    surrogate = tmp_path / "surrogates" / ".cache.json.99.tmp"
    nested = tmp_path / "surrogates" / "s1" / ".checkpoint.safetensors.7a.tmp"
    for f in (unit, surrogate, nested):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"torn")
    (nested.parent / ".lock").write_text("")  # another run: its own holder cleans it
    keep = tmp_path / "suite" / "units" / "pgd-abc.json"
    keep.write_text("{}")
    with RunLock(tmp_path, shared=True):  # a reader never deletes anything
        assert unit.exists() and surrogate.exists()
    with RunLock(tmp_path):
        assert not unit.exists() and not surrogate.exists()
        assert nested.exists() and keep.exists()
    with RunLock(nested.parent):
        assert not nested.exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_result_files_respect_the_umask(tmp_path, umask):
    from robens.records import write_json_records
    from robens.utils import atomic_write_json

    before = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        write_json_records(tmp_path / "records.jsonl", [
            {"method": "m", "dataset": "synthetic", "model": "1xlenet",
             "metric": "clean_accuracy", "value": 0.5, "n": 10}])
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(before)
    expected = 0o666 & ~umask
    for name in ("a.json", "records.jsonl", "plain.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name
    assert not list(tmp_path.glob(".*.tmp"))


def _bn_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(3 * 6 * 6, 4))


def _stats(model: torch.nn.Module) -> list[torch.Tensor]:
    return [b.clone() for b in model.buffers()]


def _grad(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, train: bool) -> torch.Tensor:
    import copy

    net = copy.deepcopy(model).train(train)
    x = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(net(x), y, reduction="sum").backward()
    return x.grad.reshape(1, x.shape[0], -1)


def test_jacobians_and_input_gradients_leave_batchnorm_statistics_alone():
    from robens.metrics import member_jacobians
    from robens.objectives import input_gradients

    net = _bn_net().train()
    with torch.no_grad():  # non-trivial running statistics
        net(torch.rand(16, 1, 8, 8) * 3)
    x, y = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 0])
    before = _stats(net)
    jac = member_jacobians(net, x)  # eval mode: the inference function
    assert net.training and all(torch.equal(a, b) for a, b in zip(before, _stats(net), strict=True))
    eval_net = _bn_net().eval()
    eval_net.load_state_dict(net.state_dict())
    assert torch.allclose(jac, member_jacobians(eval_net, x))
    g_eval = input_gradients(net, x, y)  # default: eval mode
    assert torch.allclose(g_eval, _grad(net, x, y, train=False), atol=1e-6)
    g_train = input_gradients(net, x, y, mode="train")  # the training forward's gradients
    assert torch.allclose(g_train, _grad(net, x, y, train=True), atol=1e-6)
    assert not torch.allclose(g_train, g_eval, atol=1e-4)
    assert net.training and all(torch.equal(a, b) for a, b in zip(before, _stats(net), strict=True))
    with pytest.raises(InputError, match="mode must be"):
        input_gradients(net, x, y, mode="training")
