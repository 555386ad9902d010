"""Training strategies end to end: bagging, snapshot, soft voting, adversarial training,
ensemble adversarial training and noise augmentation, each producing a checkpoint that
``robens evaluate`` reads; plus the recipes in configs/."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import interrupt_at_epoch
from torch import nn

from robens.config import AdversarialConfig, load_config, validate_config
from robens.errors import ConfigError
from robens.evaluate import evaluate_clean_checkpoint
from robens.factory import load_ensemble
from robens.objectives import parse_objective
from robens.training import Trainer
from robens.training.adversarial import AdversarialAugmenter, fgsm, pgd
from robens.training.schedules import learning_rate
from robens.training.strategies import STRATEGIES

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BASE: dict[str, Any] = {
    "seed": 0,
    "data": {
        "dataset": "synthetic",
        "train_size": 16,
        "test_size": 20,
        "batch_size": 16,
        "eval_batch_size": 100,
    },
    "model": {"arch": "lenet", "members": 2, "activation": "leaky_relu"},
    "training": {"epochs": 1},
}


def config(**overrides: Any):
    data = copy.deepcopy(BASE)
    for dotted, value in overrides.items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return validate_config(data)


def train(tmp_path: Path, name: str, **overrides: Any):
    trainer = Trainer(config(**overrides), run_dir=tmp_path / name, progress=False, echo=None)
    result = trainer.fit()
    summary = evaluate_clean_checkpoint(result.checkpoint, test_size=20, out=tmp_path / name)
    assert len(summary["members"]) == trainer.ensemble.num_members
    assert 0.0 <= summary["ensemble"] <= 1.0 and summary["n"] == 20
    return trainer, result, summary


@pytest.fixture(scope="module")
def source_checkpoint(tmp_path_factory) -> Path:
    """A small trained joint ensemble (a static source for ensemble adversarial training)."""
    tmp = tmp_path_factory.mktemp("source")
    _, result, _ = train(tmp, "joint", **{"data.augment": {"noise_eps": 0.3}})
    return result.checkpoint


def test_registry():
    assert set(STRATEGIES) == {"joint", "bagging", "snapshot", "dverge"}


# ------------------------------------------------------------------ recipes
@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_recipes_validate(path):
    from robens.config import load_yaml
    from robens.job import ensemble_configs, is_job

    data = load_yaml(path)
    cfgs = list(ensemble_configs(data, str(path)).values()) if is_job(data) else [load_config(path)]
    for cfg in cfgs:  # a job (configs/main.yaml): each of its ensembles
        parse_objective(cfg.objective, cfg.terms)
        assert cfg.data.dataset == "fashion-mnist"


def test_recipes_cover_every_method():
    names = {p.stem for p in CONFIGS.glob("*.yaml")}
    need = {"gal", "cosine", "gdr", "adp", "jr", "mmc", "rce", "bagging", "snapshot",
            "soft-voting", "adversarial", "ensemble-adversarial", "noise"}
    assert need <= names


# ------------------------------------------------------------------ noise augmentation
def test_noise_augmentation_is_truncated_normal_sigma_half_eps(source_checkpoint):
    trainer = Trainer(config(**{"data.augment": {"noise_eps": 0.3}}), progress=False, echo=None,
                      run_dir=source_checkpoint.parent / "unused")
    x = torch.full((400, 1, 28, 28), 0.5)
    y = torch.arange(400) % 10
    xa, ya = trainer.strategy.transform_batch(x, y, torch.Generator().manual_seed(0))
    assert xa.shape[0] == 800 and torch.equal(xa[:400], x) and torch.equal(ya[400:], y)
    noise = xa[400:] - x
    assert noise.abs().max() <= 0.3 + 1e-6  # cut at 2 sigma = eps
    assert noise.std().item() == pytest.approx(0.15 * 0.8796, rel=0.02)
    assert abs(noise.mean().item()) < 2e-3


# ------------------------------------------------------------------ bagging
def test_bagging_bootstrap_per_member(tmp_path):
    cfg = config(**{"training.strategy": "bagging", "model.members": 3})
    t1 = Trainer(cfg, run_dir=tmp_path / "a", progress=False, echo=None)
    t2 = Trainer(cfg, run_dir=tmp_path / "b", progress=False, echo=None)
    idx = t1.strategy.indices
    assert len(idx) == 3 and all(len(i) == len(t1.train_set) for i in idx)
    assert all(torch.equal(a, b) for a, b in zip(idx, t2.strategy.indices, strict=True))
    assert not torch.equal(idx[0], idx[1])
    assert any(len(torch.unique(i)) < len(i) for i in idx)  # drawn with replacement
    x, y = next(t1.strategy.epoch_batches(0))
    assert x.shape == (3, 16, 1, 28, 28) and y.shape == (3, 16)
    for m in range(3):
        ref_x, ref_y = t1.train_set.tensors(idx[m])
        rows = {tuple(r.flatten().tolist()[:40]) for r in ref_x}
        assert all(tuple(r.flatten().tolist()[:40]) in rows for r in x[m])


def test_bagging_end_to_end(tmp_path):
    trainer, result, summary = train(tmp_path, "bag", **{"training.strategy": "bagging"})
    assert 0.0 <= result.history[-1]["train"]["acc"] <= 1.0
    assert len(trainer.strategy.state_meta()["bootstrap_fingerprint"]) == 2
    with pytest.raises(ConfigError, match="bagging"):
        train(tmp_path, "bag-gal", **{"training.strategy": "bagging", "objective": "ce + gal"})


# ------------------------------------------------------------------ snapshot
def test_snapshot_schedule_is_set_or_checked(tmp_path):
    t = Trainer(config(**{"training.strategy": "snapshot", "data.train_size": 32}),
                run_dir=tmp_path / "s",
                progress=False, echo=None)
    assert t.cfg.schedule.name == "cyclic_cosine" and t.cfg.schedule.cycles == 2
    with pytest.raises(ConfigError, match="cycles"):
        Trainer(config(**{"training.strategy": "snapshot",
                          "schedule": {"name": "cyclic_cosine", "cycles": 3}}),
                run_dir=tmp_path / "bad", progress=False, echo=None)
    with pytest.raises(ConfigError, match="cyclic_cosine"):
        Trainer(config(**{"training.strategy": "snapshot", "schedule": {"name": "cosine"}}),
                run_dir=tmp_path / "bad2", progress=False, echo=None)


def snapshot_overrides() -> dict[str, Any]:
    return {"training.strategy": "snapshot", "training.epochs": 2, "optimizer.lr": 0.01,
            "data.train_size": 32}


def test_snapshot_takes_one_member_per_cycle_and_resumes(tmp_path, monkeypatch):
    trainer, result, summary = train(tmp_path, "snap", **snapshot_overrides())
    ens = trainer.ensemble
    taken = trainer.strategy.state_meta()
    assert taken["snapshots_taken"] == 2 and taken["cycle_ends"] == [2, 4]
    p0, p1 = (torch.cat([p.flatten() for p in m.parameters()]) for m in ens.members)
    assert not torch.equal(p0, p1)
    lrs = [learning_rate(trainer.cfg.schedule, 0.01, s, 2, 2) for s in range(4)]
    assert lrs[0] == lrs[2] == 0.01 and lrs[1] < 0.01  # the cosine restarts every cycle

    # interrupted after epoch 1, then resumed: the same final weights as the uninterrupted run
    cfg = config(**snapshot_overrides())
    t2 = Trainer(cfg, run_dir=tmp_path / "snap2", progress=False, echo=None)
    with interrupt_at_epoch(monkeypatch, 1), pytest.raises(KeyboardInterrupt):
        t2.fit()
    t3 = Trainer(cfg, run_dir=tmp_path / "snap2", progress=False, echo=None)
    t3.fit(resume=True)
    for a, b in zip(ens.state_dict().values(), t3.ensemble.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# ------------------------------------------------------------------ soft voting
def test_soft_voting_needs_validation_images(tmp_path):
    with pytest.raises(ConfigError, match="val_size"):
        Trainer(config(**{"training.soft_voting": "val_accuracy"}), run_dir=tmp_path,
                progress=False, echo=None)


def test_soft_voting_weights_from_validation_accuracy(tmp_path):
    trainer, result, summary = train(
        tmp_path, "vote",
        **{"training.soft_voting": "val_accuracy", "data.val_size": 16, "data.train_size": 32},
    )
    vote = trainer.strategy.vote
    acc = torch.tensor(vote["val_accuracy"], dtype=torch.float64).clamp_min(1e-6)
    assert torch.allclose(torch.tensor(vote["weights"], dtype=torch.float64), acc / acc.sum())
    ens, meta = load_ensemble(result.checkpoint)
    assert torch.allclose(ens.weights.double(), acc / acc.sum(), atol=1e-6)
    assert meta["strategy"]["soft_voting"]["weights"] == vote["weights"]
    assert len(trainer.train_set) == 16 and vote["val_size"] == 16


# ------------------------------------------------------------------ adversarial training
class Lin(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_internal_attacks_respect_per_example_eps_and_leave_model_alone():
    model = Lin().train()
    x, y = torch.rand(6, 1, 4, 4), torch.arange(6)
    eps = torch.tensor([0.0, 0.01, 0.02, 0.05, 0.1, 0.3])
    for x_adv in (fgsm(model, x, y, eps), pgd(model, x, y, eps, steps=5,
                                                generator=torch.Generator().manual_seed(0))):
        d = (x_adv - x).abs().flatten(1).amax(1)
        assert (d <= eps + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1
        assert torch.equal(x_adv[0], x[0])
    assert model.training and all(p.grad is None for p in model.parameters())
    loss = nn.functional.cross_entropy
    assert loss(model(fgsm(model, x, y, eps)), y) > loss(model(x), y)


def test_eps_sampling():
    gen = torch.Generator().manual_seed(0)
    u = AdversarialAugmenter(AdversarialConfig(attack="pgd", eps=0.05, eps_min=0.01))
    e = u.sample_eps(5000, gen)
    assert e.min() >= 0.01 and e.max() <= 0.05 and abs(e.mean().item() - 0.03) < 1e-3
    fixed = AdversarialAugmenter(AdversarialConfig(attack="fgsm", eps=0.1)).sample_eps(4, gen)
    assert torch.equal(fixed, torch.full((4,), 0.1))
    with pytest.raises(ConfigError):
        AdversarialAugmenter(AdversarialConfig(attack="pgd", eps=0.05, eps_min=0.1))


def test_fgsm_adversarial_training_end_to_end(tmp_path):
    adv = {"attack": "fgsm", "eps": 0.1, "ratio": 0.5}
    trainer, result, summary = train(tmp_path, "at", **{"training.adversarial": adv})
    x, y = torch.rand(32, 1, 28, 28), torch.arange(32) % 10
    xa, ya = trainer.strategy.transform_batch(x, y, torch.Generator().manual_seed(0))
    assert xa.shape[0] == 48 and torch.equal(ya[32:], y[:16])
    assert ((xa[32:] - x[:16]).abs().amax((1, 2, 3)) <= 0.1 + 1e-6).all()


def test_adversarial_training_with_adp_and_with_mmc(tmp_path):
    adv = {"attack": "pgd", "eps": 0.05, "eps_min": 0.01, "steps": 2}
    train(tmp_path, "at-adp", **{"training.adversarial": adv, "objective": "ce + adp",
                                 "terms": {"ce": {"reduction": "sum"}}})
    trainer, _, _ = train(tmp_path, "at-mmc", **{"training.adversarial": adv, "objective": "mmc",
                                                 "model.head": "mmc"})
    from robens.objectives.mmc import mmc_per_sample
    from robens.training.adversarial import attack_loss_for

    loss = attack_loss_for(trainer.ensemble)
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3])
    with torch.no_grad():
        ref = mmc_per_sample(trainer.ensemble.member_logits(x), y).mean(0)
        assert torch.allclose(loss(trainer.ensemble, x, y), ref)


def test_bagging_with_adversarial_training(tmp_path):
    adv = {"attack": "fgsm", "eps": 0.1}
    trainer, _, _ = train(tmp_path, "bag-at", **{"training.strategy": "bagging",
                                                 "training.adversarial": adv})
    x, y = next(trainer.strategy.epoch_batches(0))
    xa, ya = trainer.strategy.transform_batch(x, y, torch.Generator().manual_seed(0))
    assert xa.shape[:2] == (2, 32) and torch.equal(ya[:, 16:], y)


def test_ensemble_adversarial_training(tmp_path, source_checkpoint):
    adv = {"eps": 0.3, "sources": [str(source_checkpoint)]}
    trainer, result, summary = train(tmp_path, "ens-at", **{"training.adversarial": adv})
    aug = trainer.strategy.adversarial
    assert aug is not None and len(aug.sources) == 1
    e = aug.sample_eps(20000, torch.Generator().manual_seed(0))
    assert e.min() >= 0 and e.max() <= 0.3 + 1e-6
    # |N(0, s^2)| truncated at 2 s: mean = s * sqrt(2/pi) * (1 - exp(-2)) / (2 Phi(2) - 1)
    s = 0.15
    mean = s * math.sqrt(2 / math.pi) * (1 - math.exp(-2)) / math.erf(2 / math.sqrt(2))
    assert e.mean().item() == pytest.approx(mean, rel=0.02)
    assert all(not p.requires_grad for p in aug.sources[0].parameters())
    with pytest.raises(ConfigError, match="FGSM"):
        train(tmp_path, "ens-pgd", **{"training.adversarial": {**adv, "attack": "pgd"}})


def test_mmc_and_rce_members_train_end_to_end(tmp_path):
    _, _, s1 = train(tmp_path, "mmc", **{"model.head": "mmc", "objective": "mmc"})
    _, _, s2 = train(tmp_path, "rce", **{"model.rce": True, "objective": "rce"})
    ens, _ = load_ensemble(tmp_path / "rce" / "checkpoint.safetensors")
    x = torch.rand(2, 1, 28, 28)
    member = ens.members[0]
    assert torch.allclose(member(x), -member.raw_logits(x))
