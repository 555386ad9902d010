"""What a run folder holds: the checkpoint is just the weights, the optimizer state is beside it
(bound to that checkpoint), and no ``.lock`` is left once its holders are done."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
import yaml
from conftest import interrupt_at_epoch

from robens.checkpoint import (
    OPTIMIZER_NAME,
    load_checkpoint,
    load_resume_state,
    save_checkpoint,
)
from robens.cli import main
from robens.config import validate_config
from robens.errors import CheckpointError, RunLockedError
from robens.runlock import RunLock
from robens.training import Trainer
from tests.conftest import small_config

pytestmark = pytest.mark.usefixtures("one_thread_module")


def tiny(tmp_path, name="run", **over) -> dict:
    """One LeNet, 100 training images (two steps an epoch), one thread."""
    return small_config(tmp_path, **{"data.train_size": 100, "data.test_size": 20,
                                     "model.members": 1,
                                     "training.threads": 1, "output_dir": str(tmp_path / name),
                                     **over})


def fit(cfg: dict, resume: bool = False):
    return Trainer(validate_config(cfg), progress=False, echo=None).fit(resume=resume)


def _read_state(run):
    """The tensors and metadata of ``run``'s optimizer file (verified against its checkpoint)."""
    tensors, meta = load_checkpoint(run)
    return load_resume_state(run / "checkpoint.safetensors", tensors, meta)


def locks(root) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f == ".lock"]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoint_holds_the_weights_and_the_optimizer_state_is_beside_it(tmp_path):
    fit(tiny(tmp_path))
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.safetensors", "config.yaml", "history.json", OPTIMIZER_NAME]  # no .lock
    tensors, meta = load_checkpoint(run / "checkpoint.safetensors")
    assert tensors and all(k.startswith("model/") for k in tensors)
    assert "optimizer" not in meta and meta["resume_state"] == OPTIMIZER_NAME
    state, smeta = _read_state(run)
    assert state and all(k.startswith("optim/") for k in state)
    assert smeta["checkpoint_sha256"] == meta["sha256"] and smeta["optimizer"]["param_groups"]
    with pytest.raises(CheckpointError, match="optimizer state, not a checkpoint"):
        load_checkpoint(run / OPTIMIZER_NAME)  # never mistaken for the model


def test_interrupted_run_resumes_to_the_uninterrupted_weights_and_optimizer(
    tmp_path, monkeypatch
):
    fit(tiny(tmp_path, "ref", **{"training.epochs": 3}))
    with interrupt_at_epoch(monkeypatch, 2), pytest.raises(KeyboardInterrupt):  # in epoch 3
        fit(tiny(tmp_path, **{"training.epochs": 3}))
    run = tmp_path / "run"
    assert load_checkpoint(run)[1]["epoch"] == 2 and not locks(tmp_path)
    fit(tiny(tmp_path, **{"training.epochs": 3}), resume=True)
    assert_same(load_checkpoint(tmp_path / "ref")[0], load_checkpoint(run)[0])
    assert_same(_read_state(tmp_path / "ref")[0], _read_state(run)[0])


def test_a_mismatched_or_missing_optimizer_state_is_refused(tmp_path):
    fit(tiny(tmp_path, "ref", **{"training.epochs": 2}))
    fit(tiny(tmp_path))
    fit(tiny(tmp_path, "other", seed=1))
    run, longer = tmp_path / "run", tiny(tmp_path, **{"training.epochs": 2})
    mine = (run / OPTIMIZER_NAME).read_bytes()
    shutil.copyfile(tmp_path / "other" / OPTIMIZER_NAME, run / OPTIMIZER_NAME)
    with pytest.raises(CheckpointError, match="mismatched optimizer state") as info:
        fit(longer, resume=True)
    assert "written with another checkpoint" in str(info.value)
    (run / OPTIMIZER_NAME).unlink()
    with pytest.raises(CheckpointError, match="optimizer state .* is missing"):
        fit(longer, resume=True)
    fit(tiny(tmp_path), resume=True)  # finished, nothing to train: no optimizer state needed
    # killed between the checkpoint and the rename of its state: the staged file is used
    (run / "optimizer.next.safetensors").write_bytes(mine)
    shutil.copyfile(tmp_path / "other" / OPTIMIZER_NAME, run / OPTIMIZER_NAME)
    fit(longer, resume=True)
    assert not (run / "optimizer.next.safetensors").exists()
    assert_same(load_checkpoint(tmp_path / "ref")[0], load_checkpoint(run)[0])
    assert_same(_read_state(tmp_path / "ref")[0], _read_state(run)[0])


def test_a_checkpoint_with_the_optimizer_state_inside_still_resumes(tmp_path):
    """Checkpoints written before the split hold ``optim/`` tensors and ``optimizer`` meta."""
    fit(tiny(tmp_path, "ref", **{"training.epochs": 2}))
    fit(tiny(tmp_path))
    run = tmp_path / "run"
    tensors, meta = load_checkpoint(run)
    state, smeta = _read_state(run)
    old = {k: v for k, v in meta.items() if k not in ("resume_state", "sha256")}
    save_checkpoint(run / "checkpoint.safetensors", {**tensors, **state},
                    {**old, "optimizer": smeta["optimizer"]})
    (run / OPTIMIZER_NAME).unlink()
    fit(tiny(tmp_path, **{"training.epochs": 2}), resume=True)
    assert_same(load_checkpoint(tmp_path / "ref")[0], load_checkpoint(run)[0])


def test_no_lock_is_left_after_training_evaluation_and_a_suite(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--train-size", "100", "--test-size", "20",
                 "--batch-size", "50", "--members", "1", "--threads", "1", "--out", str(run),
                 "--no-progress"]) == 0
    assert not locks(tmp_path)
    assert main(["evaluate", str(run), "--test-size", "20"]) == 0  # a reader creates one
    assert not locks(tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"test_size": 20, "batch_size": 10, "attacks": [
        {"attack": "fgsm", "eps": [0.1], "masking_checks": False}]}))
    assert main(["evaluate", str(run), "--suite", str(suite), "--no-progress"]) == 0
    assert (run / "results.jsonl").exists() and not locks(tmp_path)
    capsys.readouterr()


def test_the_last_holder_removes_the_lock_file(tmp_path):
    path = tmp_path / ".lock"
    a, b = RunLock(tmp_path, shared=True), RunLock(tmp_path, shared=True)
    a.acquire()
    b.acquire()
    a.release()
    assert path.exists()  # b still holds it
    with pytest.raises(RunLockedError):
        RunLock(tmp_path).acquire()
    b.release()
    assert not path.exists()
    with RunLock(tmp_path):
        assert path.read_text() == f"pid {os.getpid()}"
    assert not path.exists()


def test_a_lock_file_that_cannot_be_removed_is_left_empty(tmp_path, monkeypatch):
    def refuse(path, *a, **k):  # as a folder turned read-only while the lock was held
        raise PermissionError(13, "Permission denied", str(path))

    lock = RunLock(tmp_path)
    lock.acquire()
    monkeypatch.setattr(os, "unlink", refuse)
    lock.release()
    assert (tmp_path / ".lock").read_text() == ""  # the pid is gone with its holder
    with RunLock(tmp_path, shared=True):  # a reader locks it, and cannot remove it either
        with pytest.raises(RunLockedError, match="in use by another process"):
            RunLock(tmp_path).acquire()
    assert (tmp_path / ".lock").exists()
    monkeypatch.undo()
    with RunLock(tmp_path):
        pass
    assert not (tmp_path / ".lock").exists()


def test_a_lock_taken_on_a_just_removed_file_is_taken_again(tmp_path, monkeypatch):
    """A process that opened ``.lock`` just before its holder removed it, and locks it after:
    it holds a lock on a file no longer in the folder, so it opens the path again."""
    first = RunLock(tmp_path)
    first.acquire()
    stale = os.open(tmp_path / ".lock", os.O_RDWR)
    first.release()
    assert not (tmp_path / ".lock").exists()
    late = RunLock(tmp_path)
    opened = iter([stale])
    real = RunLock._open
    monkeypatch.setattr(RunLock, "_open", lambda self: next(opened, None) or real(self))
    late.acquire()  # locks the orphan first, notices, and locks the file at the path
    try:
        assert os.fstat(late._fd).st_ino == os.stat(tmp_path / ".lock").st_ino
        monkeypatch.setattr(RunLock, "_open", real)
        with pytest.raises(RunLockedError, match=f"in use by pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
        with pytest.raises(RunLockedError, match="being written"):
            RunLock(tmp_path, shared=True).acquire()
    finally:
        late.release()
    assert not (tmp_path / ".lock").exists()
