"""Trainer: learning, resume after SIGKILL equals an uninterrupted run, non-finite faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from robens.checkpoint import load_checkpoint, split_prefix
from robens.config import validate_config
from robens.errors import CheckpointError, TrainingError
from robens.objectives import Term, register_term
from robens.training import Trainer
from tests.conftest import small_config


def test_training_learns_and_writes_run(tmp_path):
    cfg = validate_config(small_config(tmp_path, **{"training.epochs": 2}))
    result = Trainer(cfg, progress=False, echo=None).fit()
    assert result.test_accuracy > 0.6
    run = tmp_path / "run"
    assert {"checkpoint.safetensors", "config.yaml", "history.json"} <= {
        p.name for p in run.iterdir()
    }
    _, meta = load_checkpoint(run / "checkpoint.safetensors")
    assert meta["epoch"] == 2 and meta["complete"] and meta["seed"] == 0
    assert meta["config"]["model"]["members"] == 2
    assert len(json.loads((run / "history.json").read_text())) == 2


def test_refuses_to_overwrite_and_resume_of_complete_run_is_noop(tmp_path):
    cfg = validate_config(small_config(tmp_path))
    Trainer(cfg, progress=False, echo=None).fit()
    with pytest.raises(CheckpointError, match="--resume"):
        Trainer(cfg, progress=False, echo=None).fit()
    res = Trainer(cfg, progress=False, echo=None).fit(resume=True)
    assert len(res.history) == 1
    other = validate_config(small_config(tmp_path, **{"optimizer.lr": 0.01}))
    with pytest.raises(CheckpointError, match="different config"):
        Trainer(other, progress=False, echo=None).fit(resume=True)


def _train_cmd(out, epochs=3):
    return [
        sys.executable, "-m", "robens.cli", "train", "--dataset", "synthetic",
        "--train-size", "1200", "--test-size", "100", "--batch-size", "40", "--members", "2",
        "--epochs", str(epochs), "--threads", "1", "--seed", "7", "--out", str(out),
        "--no-progress",
    ]


def _epochs_done(run):
    path = run / "history.json"
    try:
        return len(json.loads(path.read_text())) if path.exists() else 0
    except json.JSONDecodeError:  # pragma: no cover - atomic writes make this impossible
        raise AssertionError("history.json was half-written") from None


def test_sigkill_during_epoch_2_then_resume_equals_uninterrupted(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_train_cmd(ref), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(_train_cmd(killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _epochs_done(killed) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.2)  # well inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, meta = load_checkpoint(killed / "checkpoint.safetensors")
    assert meta["epoch"] == 1, "the kill should land during epoch 2"
    subprocess.run(_train_cmd(killed) + ["--resume"], check=True, env=env, capture_output=True)
    a, ma = load_checkpoint(ref / "checkpoint.safetensors")
    b, mb = load_checkpoint(killed / "checkpoint.safetensors")
    assert ma["epoch"] == mb["epoch"] == 3
    wa, wb = split_prefix(a, "model"), split_prefix(b, "model")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@register_term("test_explode")
class _Explode(Term):
    name = "test_explode"

    def __init__(self, at_step: int = 3) -> None:
        self.at_step = at_step
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        bad = float("nan") if self.calls == self.at_step else 0.0
        return batch.member_logits.sum() * 0 + bad


def test_nonfinite_loss_stops_naming_the_term_and_keeps_checkpoint(tmp_path):
    cfg = validate_config(small_config(tmp_path, objective="ce + test_explode",
                                       **{"training.epochs": 2}))
    trainer = Trainer(cfg, progress=False, echo=None)
    trainer.objective.terms[1][1].at_step = 12  # epoch 2 (8 steps per epoch)
    with pytest.raises(TrainingError, match="test_explode") as info:
        trainer.fit()
    assert "last good checkpoint" in str(info.value) and "grad_clip" in str(info.value)
    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert meta["epoch"] == 1


def test_nonfinite_skip_option(tmp_path):
    cfg = validate_config(small_config(tmp_path, objective="ce + test_explode",
                                       **{"training.on_nonfinite": "skip"}))
    result = Trainer(cfg, progress=False, echo=None).fit()
    assert result.skipped_batches == 1
    for p in result.ensemble.parameters():
        assert torch.isfinite(p).all()
