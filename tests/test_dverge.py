"""DVERGE building blocks: feature layers, distillation, cross-training, layer draw."""

from __future__ import annotations

import pytest
import torch
from conftest import interrupt_at_epoch
from torch import nn
from torch.nn import functional as F

from robens.ensemble import Ensemble
from robens.errors import ConfigError, InputError
from robens.models import build_model
from robens.models.features import candidate_layers, layer_features, resolve_layer
from robens.objectives.dverge import (
    DistillSettings,
    cross_training_loss,
    distill,
    distill_members,
    draw_layer,
    dverge_losses,
)

pytestmark = pytest.mark.usefixtures("one_thread_module")


class Net(nn.Module):
    """conv -> act -> conv -> act -> fc, with an explicit feature function for the oracle."""

    def __init__(self, seed: int, bn: bool = False, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3) if bn else nn.Identity()
        self.act1 = nn.LeakyReLU(0.1)
        self.conv2 = nn.Conv2d(3, 4, 3, padding=1)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, classes)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act2(self.conv2(self.act1(self.bn(self.conv1(x)))))
        return self.fc(h.flatten(1))

    def get_features(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Pre-activation features of layer 1 or 2 (DVERGE's ``before_relu``)."""
        h = self.bn(self.conv1(x))
        return h if layer == 1 else self.conv2(self.act1(h))


LAYERS = {1: "act1:in", 2: "act2:in"}


def data(b: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, 6, 6, generator=g, dtype=torch.float64)
    xt = torch.rand(b, 1, 6, 6, generator=g, dtype=torch.float64)
    return x, xt, torch.randint(0, 5, (b,), generator=g)


# ------------------------------------------------------------- transcription of the reference
def ref_distill(model, dat, target, eps, alpha, steps, layer, mu=1.0, noise=None):
    """Linf_distillation: features recomputed every step, model.zero_grad + backward."""
    x_nat = dat.clone().detach()
    x_adv = dat.clone().detach() if noise is None else dat.clone().detach() + noise
    x_adv = torch.clamp(x_adv, 0.0, 1.0)
    g = torch.zeros_like(x_adv)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        out = model.get_features(x_adv, layer)
        tgt = model.get_features(target, layer).detach().clone()
        loss = nn.MSELoss()(out, tgt)
        model.zero_grad()
        loss.backward()
        grad = x_adv.grad.detach().clone()
        with torch.no_grad():
            l1 = torch.norm(grad.view(grad.shape[0], -1), 1, dim=1)
            grad = grad / torch.clamp(l1, min=1e-12).view(grad.shape[0], 1, 1, 1)
            g = mu * g + grad
            x_adv = x_adv - alpha * g.sign()
            x_adv = torch.max(torch.min(x_adv, x_nat + eps), x_nat - eps)
            x_adv = torch.clamp(x_adv, 0.0, 1.0)
    for p in model.parameters():
        p.grad = None
    return x_adv.detach()


def ref_cross_losses(models, distilled, y, adv=None, coeff=1.0):
    out = []
    for i, m in enumerate(models):
        loss = 0
        for j, d in enumerate(distilled):
            if i != j:
                loss = loss + F.cross_entropy(m(d), y)
        if adv is not None:
            loss = coeff * loss + F.cross_entropy(m(adv[i]), y)
        out.append(loss)
    return out


S = DistillSettings(eps=0.2, alpha=0.03, steps=5)


@pytest.mark.parametrize("layer", [1, 2])
def test_distillation_equals_reference(layer):
    x, xt, _ = data()
    model = Net(0)
    ref = ref_distill(model, x, xt, S.eps, S.alpha, S.steps, layer)
    mine = distill(model, LAYERS[layer], x, xt, S)
    assert float((mine - ref).abs().max()) <= 1e-12
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("bn", [False, True])
def test_batched_equals_member_by_member(bn):
    x, xt, _ = data()
    members = [Net(s, bn=bn) for s in range(3)]
    loop = distill_members(members, "act2:in", x, xt, S, vectorize=False)
    for vec in ("auto", True) if not bn else ("auto",):
        batched = distill_members(Ensemble(members), "act2:in", x, xt, S, vectorize=vec)
        assert float((batched - loop).abs().max()) <= 1e-12
    for j, m in enumerate(members):
        ref = ref_distill(m, x, xt, S.eps, S.alpha, S.steps, 2)
        assert float((loop[j] - ref).abs().max()) <= 1e-12


def test_random_start_batched_equals_loop_and_reference_noise():
    x, xt, _ = data()
    s = DistillSettings(eps=0.1, alpha=0.02, steps=3, rand_start=True)
    members = [Net(k) for k in range(3)]
    a = distill_members(members, "act1:in", x, xt, s, torch.Generator().manual_seed(3), True)
    b = distill_members(members, "act1:in", x, xt, s, torch.Generator().manual_seed(3), False)
    assert torch.equal(a, b)
    u = torch.rand((3, *x.shape), generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    ref = ref_distill(members[1], x, xt, 0.1, 0.02, 3, 1, noise=(2 * u[1] - 1) * 0.1)
    assert float((a[1] - ref).abs().max()) <= 1e-12


@pytest.mark.parametrize("seed", range(3))
def test_distilled_in_ball_and_box_and_closer_in_features(seed):
    x, xt, _ = data(seed=seed)
    x = x.round()  # pixels at 0 and 1 make the box constraint bind
    eps = 0.15
    s = DistillSettings(eps=eps, alpha=0.05, steps=8, rand_start=True)
    model = Net(seed)
    z = distill(model, "act2:in", x, xt, s, torch.Generator().manual_seed(seed))
    assert (z - x).abs().max() <= eps + 1e-12 and z.min() >= 0.0 and z.max() <= 1.0
    zd = distill(model, "act2:in", x, xt, DistillSettings(eps=eps, alpha=0.05, steps=8))
    tgt = model.get_features(xt, 2)
    assert F.mse_loss(model.get_features(zd, 2), tgt) < F.mse_loss(model.get_features(x, 2), tgt)


@pytest.mark.parametrize("plus_adv", [False, True])
@pytest.mark.parametrize("bn", [False, True])
def test_cross_training_loss_and_gradients_equal_reference(plus_adv, bn):
    x, xt, y = data()
    members = [Net(s, bn=bn) for s in range(3)]
    distilled = distill_members(members, "act2:in", x, xt, S)
    adv = (x + 0.05 * torch.randn(3, *x.shape, dtype=x.dtype)).clamp(0, 1) if plus_adv else None
    ref = ref_cross_losses(members, list(distilled), y, adv, coeff=0.7)
    mine = cross_training_loss(Ensemble(members), distilled, y, adv=adv, coeff=0.7)
    assert mine.shape == (3,)
    assert float((mine - torch.stack(ref)).detach().abs().max()) <= 1e-12
    g_mine = torch.autograd.grad(mine.sum(), list(Ensemble(members).parameters()))
    g_ref = [
        g for i, m in enumerate(members) for g in torch.autograd.grad(ref[i], list(m.parameters()))
    ]
    assert max(float((a - b).abs().max()) for a, b in zip(g_mine, g_ref, strict=True)) <= 1e-12


def test_dverge_losses_one_call_and_validation():
    x, xt, y = data()
    members = [Net(s) for s in range(3)]
    losses, distilled = dverge_losses(members, "act1:in", x, y, xt, S)
    assert losses.shape == (3,) and distilled.shape == (3, *x.shape)
    with pytest.raises(ConfigError, match="M >= 2"):
        cross_training_loss([members[0]], distilled[:1], y)
    with pytest.raises(InputError):
        cross_training_loss(members, distilled[:, :2], y)
    with pytest.raises(ConfigError):
        DistillSettings(steps=-1)


# ------------------------------------------------------------------------- layers
def test_draw_layer_reproducible_from_seed():
    layers = [f"l{i}" for i in range(20)]
    draws = [draw_layer(0, e, layers) for e in range(200)]
    assert draws == [draw_layer(0, e, layers) for e in range(200)]
    assert draws != [draw_layer(1, e, layers) for e in range(200)]
    assert set(draws) == set(layers)  # every layer drawn, a fresh draw per epoch
    assert draw_layer(5, 3, range(1, 21)) in range(1, 21)
    with pytest.raises(ConfigError):
        draw_layer(0, 0, [])


def test_candidate_layers_rule():
    assert candidate_layers(Net(0)) == ["act1:in", "act2:in", ""]
    res = candidate_layers(build_model("resnet20"))
    assert len(res) == 20 and res[0] == "stem.2:in" and res[2] == "blocks.0.act2:in"
    assert candidate_layers(build_model("lenet"), include_output=False) == [
        "body.1:in", "body.4:in", "body.8:in"
    ]

    class Functional(nn.Module):  # no activation modules: parametrised leaves
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.b(F.relu(self.a(x.flatten(1))))

    assert candidate_layers(Functional()) == ["a", "b", ""]

    class Declared(Functional):
        feature_layers = ("a:out",)

    assert candidate_layers(Declared()) == ["a:out", ""]
    assert resolve_layer(Net(0), 2) == "act2:in" and resolve_layer(Net(0), "conv1") == "conv1"
    with pytest.raises(InputError, match="candidates"):
        resolve_layer(Net(0), "nope")
    with pytest.raises(InputError, match="out of range"):
        resolve_layer(Net(0), 4)


def test_layer_features_match_explicit_and_stop_early():
    model = Net(1)
    x, _, _ = data()
    assert torch.equal(layer_features(model, "act1:in", x), model.get_features(x, 1))
    assert torch.equal(layer_features(model, "act2:in", x), model.get_features(x, 2))
    assert torch.equal(layer_features(model, "", x), model(x))

    def boom(*_a):
        raise AssertionError("forward went past the layer")

    handle = model.fc.register_forward_pre_hook(boom)
    try:
        layer_features(model, "act2:in", x)
    finally:
        handle.remove()

    class Spare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.spare = nn.Linear(36, 2), nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x.flatten(1))

    with pytest.raises(InputError, match="not reached"):
        layer_features(Spare(), "spare", torch.rand(2, 1, 6, 6))


# ------------------------------------------------------------- the training strategy
def dverge_config(tmp_path, **over):
    from robens.config import validate_config

    data = {
        "seed": 3,
        "data": {"dataset": "synthetic", "train_size": 16, "test_size": 10, "batch_size": 8,
                 "eval_batch_size": 100},
        "model": {"arch": "lenet", "members": 2},
        "optimizer": {"name": "adam", "lr": 0.01},
        "training": {"epochs": 3, "strategy": "dverge", "threads": 1,
                     "dverge": {"eps": 0.3, "alpha": 0.05, "steps": 2}},
        "output_dir": str(tmp_path / "run"),
    }
    for dotted, value in over.items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return validate_config(data)


def test_strategy_step_is_round_robin_cross_training(tmp_path):
    import copy

    from robens.training import Trainer
    from robens.utils import make_generator

    cfg = dverge_config(tmp_path, **{"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0},
                                     "training.dverge.layer": 2})
    trainer = Trainer(cfg, progress=False, echo=None)
    strat = trainer.strategy
    assert strat.layer == "body.4:in" and len(strat.optimizers) == 2
    strat.on_epoch_start(0)
    x, y = next(strat.epoch_batches(0))
    x, y = strat.transform_batch(x, y, make_generator(0, "aug"))
    x_t = strat._x_t
    assert x_t.shape == x.shape and not torch.equal(x_t, x)  # an independent target batch
    twin = copy.deepcopy(trainer.ensemble).train()
    strat.train_step(x, y, 0.1, step=0)
    gen = make_generator(cfg.seed, "dverge", 0)
    distilled = distill_members(twin, "body.4:in", x, x_t, strat.settings, gen, vectorize=False)
    for i, member in enumerate(twin.members):
        loss_i = cross_training_loss(twin, distilled, y)[i]  # sum_{j != i} CE(f_i(x'_j), y)
        grads = torch.autograd.grad(loss_i, list(member.parameters()))
        for p, g, q in zip(member.parameters(), grads, trainer.ensemble.members[i].parameters(),
                           strict=True):
            torch.testing.assert_close(q.detach(), (p - 0.1 * g).detach(), rtol=1e-5, atol=1e-6)


def test_strategy_resume_equals_uninterrupted_and_layers_follow_the_seed(tmp_path, monkeypatch):
    from robens.checkpoint import load_checkpoint
    from robens.training import Trainer

    over = {"training.dverge.plus_adv": True, "training.dverge.adv_steps": 1}
    ref = Trainer(dverge_config(tmp_path / "a", **over), progress=False, echo=None)
    ref.fit()
    layers = ref.strategy.state_meta()["layers"]
    cands = candidate_layers(ref.ensemble.members[0])
    assert layers == {str(e + 1): draw_layer(3, e, cands) for e in range(3)}

    cfg = dverge_config(tmp_path / "b", **over)
    with interrupt_at_epoch(monkeypatch, 2), pytest.raises(KeyboardInterrupt):
        Trainer(cfg, progress=False, echo=None).fit()
    _, meta = load_checkpoint(tmp_path / "b" / "run" / "checkpoint.safetensors")
    assert meta["epoch"] == 2 and len(meta["strategy"]["optimizers"]) == 2  # Adam per member
    resumed = Trainer(cfg, progress=False, echo=None)
    resumed.fit(resume=True)
    assert resumed.strategy.state_meta()["layers"] == layers
    for (k, a), b in zip(ref.ensemble.state_dict().items(),
                         resumed.ensemble.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    other = [draw_layer(4, e, cands) for e in range(50)]
    assert other != [draw_layer(3, e, cands) for e in range(50)]


def test_strategy_init_checkpoint_and_config_errors(tmp_path):
    from robens.config import validate_config
    from robens.errors import CheckpointError
    from robens.training import Trainer

    base = Trainer(dverge_config(tmp_path / "base", **{"training.strategy": "joint",
                                                       "training.dverge": {},
                                                       "training.epochs": 1}),
                   progress=False, echo=None).fit()
    cfg = dverge_config(tmp_path, **{"training.dverge.init_checkpoint": str(base.checkpoint),
                                     "optimizer.lr": 1e-9})
    start = Trainer(cfg, progress=False, echo=None)
    for a, b in zip(start.ensemble.state_dict().values(), base.ensemble.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    bad = dverge_config(tmp_path, **{"training.dverge.init_checkpoint": str(base.checkpoint),
                                     "model.members": 3})
    with pytest.raises(CheckpointError, match="does not fit"):
        Trainer(bad, progress=False, echo=None)
    with pytest.raises(ConfigError, match="own cross-training loss"):
        Trainer(dverge_config(tmp_path, objective="ce + gal"), progress=False, echo=None)
    with pytest.raises(ConfigError, match="plus_adv"):
        Trainer(dverge_config(tmp_path, **{"training.adversarial.attack": "fgsm"}),
                progress=False, echo=None)
    with pytest.raises(ConfigError, match="members >= 2"):
        Trainer(dverge_config(tmp_path, **{"model.members": 1}), progress=False, echo=None)
    with pytest.raises(InputError, match="no layer"):
        Trainer(dverge_config(tmp_path, **{"training.dverge.layer": "nope"}),
                progress=False, echo=None)
    with pytest.raises(ConfigError, match="strategy 'dverge' only"):
        validate_config({"training": {"dverge": {"eps": 0.1}}})
