"""Resume identity: harmless changes resume, more epochs extend, a refusal names each key."""

from __future__ import annotations

import json

import pytest
import torch

from robens.checkpoint import load_checkpoint
from robens.cli import main
from robens.config import validate_config
from robens.errors import CheckpointError, ConfigError
from robens.identity import identity_diff, train_identity
from robens.sweeps.grid import plan_sweep
from robens.sweeps.trials import prepare, trial_status
from robens.training import Trainer
from robens.training.schedules import length_change_error
from tests.conftest import small_config

TRAIN = ["train", "--dataset", "synthetic", "--train-size", "120", "--test-size", "40",
         "--batch-size", "40", "--members", "2", "--seed", "5", "--no-progress"]


@pytest.fixture
def one_thread():
    """Run with one torch thread (as ``--threads 1`` sets) and restore the count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(tmp_path, **over) -> dict:
    """:func:`small_config` with 100 training and 20 test images (two steps an epoch)."""
    return small_config(tmp_path, **{"data.train_size": 100, "data.test_size": 20, **over})


def _tensors(run) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoint.safetensors")[0]


def test_resume_after_harmless_changes_and_more_epochs_is_bit_identical(
    tmp_path, monkeypatch, one_thread, capsys
):
    # thread counts change float rounding, so both runs compute with one thread; the configs
    # differ in training.threads (unset, then 1), which must not block the resume
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "--epochs", "2", "--threads", "1", "-o", "ref"]) == 0
    assert main([*TRAIN, "--epochs", "1", "-o", "run"]) == 0  # relative path, threads unset
    absolute = str(tmp_path / "run") + "/"
    assert main([*TRAIN, "--epochs", "1", "-o", absolute, "--resume"]) == 0
    assert main([*TRAIN, "--epochs", "1", "-o", absolute, "--threads", "1", "--resume",
                 "--test-size", "30", "--set", "data.eval_batch_size=7"]) == 0
    capsys.readouterr()
    assert main([*TRAIN, "--epochs", "2", "-o", "run", "--threads", "1", "--resume"]) == 0
    assert "resuming" in capsys.readouterr().out
    ref, run = _tensors(tmp_path / "ref"), _tensors(tmp_path / "run")
    assert set(ref) == set(run)
    for k in ref:  # weights, optimizer state, everything
        assert torch.equal(ref[k], run[k]), k
    meta = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")[1]
    assert meta["epoch"] == 2 and meta["complete"] is True and len(meta["history"]) == 2
    # a different learning rate is refused, naming the key and both values
    capsys.readouterr()
    assert main([*TRAIN, "--epochs", "2", "-o", "run", "--lr", "0.01", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1
    assert "optimizer.lr" in err and "0.001" in err and "0.01" in err
    assert "seed" not in err and "threads" not in err  # only the differing key


def test_refusal_lists_every_differing_key(tmp_path):
    cfg = validate_config(tiny(tmp_path))
    Trainer(cfg, progress=False, echo=None).fit()
    other = validate_config(tiny(tmp_path, seed=3, **{"optimizer.lr": 0.01,
                                                              "data.batch_size": 20}))
    with pytest.raises(CheckpointError) as info:
        Trainer(other, progress=False, echo=None).fit(resume=True)
    msg = str(info.value)
    for key, old, new in (("seed", "0", "3"), ("optimizer.lr", "0.001", "0.01"),
                          ("data.batch_size", "50", "20")):
        assert f"{key}: {old} (checkpoint) vs {new} (now)" in msg


def test_length_dependent_schedule_refuses_more_epochs_and_fewer_than_done(tmp_path):
    base = tiny(tmp_path, **{"schedule.name": "cosine"})
    Trainer(validate_config(base), progress=False, echo=None).fit()
    longer = validate_config({**base, "training": {**base["training"], "epochs": 2}})
    with pytest.raises(CheckpointError, match="schedule 'cosine' spans training.epochs") as info:
        Trainer(longer, progress=False, echo=None).fit(resume=True)
    assert "from 1 to 2" in str(info.value) and "2 step(s)" in str(info.value)
    # a constant or step schedule is defined for any length; the cosine one is not
    constant = validate_config(tiny(tmp_path)).schedule
    assert length_change_error(constant, 1, 5, 8) is None
    step = constant.model_copy(update={"name": "step", "milestones": [3]})
    assert length_change_error(step, 1, 5, 8) is None
    cyclic = constant.model_copy(update={"name": "cyclic_cosine"})
    assert "cyclic_cosine" in length_change_error(cyclic, 2, 3, 8)


def test_fewer_epochs_than_trained_are_refused(tmp_path):
    base = tiny(tmp_path, **{"training.epochs": 2, "data.train_size": 100})
    Trainer(validate_config(base), progress=False, echo=None).fit()
    shorter = validate_config({**base, "training": {**base["training"], "epochs": 1}})
    with pytest.raises(CheckpointError, match="already trained 2 epoch"):
        Trainer(shorter, progress=False, echo=None).fit(resume=True)


def test_progress_dependent_objective_refuses_another_length(tmp_path):
    base = tiny(tmp_path, objective="ce + trs", terms={"trs": {"steps": 1}})
    trainer = Trainer(validate_config(base), progress=False, echo=None)
    meta = {"train_identity": trainer.identity, "epoch": 1, "global_step": 8,
            "config": {"training": {"epochs": 3}}}
    with pytest.raises(CheckpointError, match="trs follow the training progress"):
        trainer._check_resume(meta)
    flat = tiny(tmp_path, objective="ce + trs",
                        terms={"trs": {"steps": 1, "init_eps": 0.2, "adv_eps": 0.2}})
    trainer = Trainer(validate_config(flat), progress=False, echo=None)
    trainer._check_resume({**meta, "train_identity": trainer.identity})  # no ramp: allowed


def test_interrupted_run_resumed_with_its_last_epoch_as_the_end(tmp_path, monkeypatch):
    """A 3-epoch run stopped after epoch 1, resumed with epochs 1, equals a 1-epoch run."""
    one = tiny(tmp_path, output_dir=str(tmp_path / "one"))
    Trainer(validate_config(one), progress=False, echo=None).fit()
    three = {**one, "output_dir": str(tmp_path / "cut"),
             "training": {**one["training"], "epochs": 3}}
    trainer = Trainer(validate_config(three), progress=False, echo=None)
    run_epoch = trainer.run_epoch

    def stop_after_first(epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return run_epoch(epoch)

    monkeypatch.setattr(trainer, "run_epoch", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.safetensors")[1]["complete"] is False
    cut = {**three, "training": {**three["training"], "epochs": 1}}
    Trainer(validate_config(cut), progress=False, echo=None).fit(resume=True)
    a, b = _tensors(tmp_path / "one"), _tensors(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.safetensors")[1]["complete"] is True


def test_identity_normalises_paths_and_leaves_out_run_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = validate_config(tiny(tmp_path, output_dir="out", **{"data.root": "data"}))
    b = validate_config(tiny(
        tmp_path, output_dir=str(tmp_path / "elsewhere") + "/", name="renamed",
        **{"data.root": str(tmp_path / "data") + "/", "training.threads": 1,
           "training.device": "cpu", "training.epochs": 9, "data.eval_batch_size": 3,
           "data.test_size": 10}))
    assert identity_diff(train_identity(a.to_dict()), train_identity(b.to_dict())) == []
    c = validate_config(tiny(tmp_path, **{"data.root": str(tmp_path / "other")}))
    assert [k for k, _, _ in identity_diff(train_identity(a.to_dict()),
                                           train_identity(c.to_dict()))] == ["data.root"]


def test_sweep_reuses_trial_folders_after_harmless_changes(tmp_path):
    grid = {"name": "g", "base": tiny(tmp_path), "axes": {"seed": [0, 1]}}
    plan = plan_sweep(grid, output_dir=tmp_path / "sweep")
    prepare(plan)
    base = {**grid["base"], "training": {**grid["base"]["training"], "threads": 1}}
    again = plan_sweep({**grid, "base": base}, output_dir=str(tmp_path / "sweep") + "/")
    prepare(again)  # threads and the spelling of the output folder do not conflict
    assert [trial_status(t) for t in again.trials] == ["pending", "pending"]
    edited = {**grid["base"], "optimizer": {"lr": 0.5}}
    bad = plan_sweep({**grid, "base": edited}, output_dir=tmp_path / "sweep")
    assert trial_status(bad.trials[0]) == "conflict"
    with pytest.raises(ConfigError, match=r"optimizer\.lr: 0\.001 \(trial folder\) vs 0\.5"):
        prepare(bad)
    info = json.loads((plan.trials[0].run_dir / "trial.json").read_text())
    assert info["config_hash"] == plan.trials[0].config_hash  # the record field is unchanged


@pytest.mark.slow  # three trainings
def test_extending_a_soft_voted_run_votes_again_at_the_new_end(tmp_path):
    over = {"data.val_size": 30, "data.train_size": 90, "training.soft_voting": "val_accuracy",
            "training.epochs": 2}
    ref = tiny(tmp_path, output_dir=str(tmp_path / "ref"), **over)
    Trainer(validate_config(ref), progress=False, echo=None).fit()
    short = {**ref, "output_dir": str(tmp_path / "run"),
             "training": {**ref["training"], "epochs": 1}}
    Trainer(validate_config(short), progress=False, echo=None).fit()  # voted after epoch 1
    longer = {**short, "training": {**short["training"], "epochs": 2}}
    Trainer(validate_config(longer), progress=False, echo=None).fit(resume=True)
    a, b = _tensors(tmp_path / "ref"), _tensors(tmp_path / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the weights buffer included
    meta = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")[1]
    ref_meta = load_checkpoint(tmp_path / "ref" / "checkpoint.safetensors")[1]
    assert meta["strategy"]["soft_voting"] == ref_meta["strategy"]["soft_voting"]
