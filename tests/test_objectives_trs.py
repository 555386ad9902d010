"""TRS: equality with a transcription of the published trainer, sharing, PGD and config."""

from __future__ import annotations

import pytest
import torch
from torch import autograd, nn
from torch.nn import functional as F

from robens.ensemble import Ensemble
from robens.errors import ConfigError, InputError
from robens.objectives import Batch, build_term, parse_objective, per_sample_ce
from robens.objectives.trs import TRS, magnitude, smoothness_pgd

pytestmark = pytest.mark.usefixtures("one_thread_module")


def net(seed: int, classes: int = 5, bn: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, 4, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(4 * 6 * 6, 12), nn.Tanh(),
               nn.Linear(12, classes)]
    return nn.Sequential(*layers).double()


def data(b: int = 8, classes: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, 6, 6, generator=g, dtype=torch.float64)
    return x, torch.randint(0, classes, (b,), generator=g)


# ----------------------------------------------------------- transcription of the reference
def ref_magnitude(g: torch.Tensor) -> torch.Tensor:
    return (torch.sum(g**2, 1)).mean() * 2


def ref_grad_loss(models, adv, labels):
    """The PGD's objective: the members' summed ``Magnitude`` of their input-gradients."""
    grad_loss = 0
    for m in models:
        loss = F.cross_entropy(m(adv), labels)
        grad = autograd.grad(loss, adv, create_graph=True)[0].flatten(start_dim=1)
        grad_loss = grad_loss + ref_magnitude(grad)
    return grad_loss


def ref_pgd(models, inputs, labels, eps, gen, steps=6):
    alpha = eps / 3.0
    u = torch.rand(inputs.shape, generator=gen, dtype=inputs.dtype)
    adv = torch.clamp(inputs.detach() + (2 * u - 1) * eps, 0, 1).requires_grad_(True)
    for _ in range(steps):
        grad_loss = ref_grad_loss(models, adv, labels) / len(models)
        (step,) = autograd.grad(grad_loss, adv)
        with torch.no_grad():
            a = adv + alpha * step.sign()
            a = torch.max(torch.min(a, inputs + eps), inputs - eps).clamp(0.0, 1.0)
        adv = a.detach().requires_grad_(True)
    return adv.detach()


def ref_pgd_released(models, inputs, labels, eps, gen, steps=6):
    """The released code's ``PGD`` as written: ``adv`` stays one leaf (``.data`` updates) and
    ``grad_loss.backward()`` adds into ``adv.grad`` every step, never cleared."""
    alpha = eps / 3.0
    u = torch.rand(inputs.shape, generator=gen, dtype=inputs.dtype)
    adv = torch.clamp(inputs.detach() + (2 * u - 1) * eps, 0, 1)
    adv.requires_grad = True
    for _ in range(steps):
        grad_loss = ref_grad_loss(models, adv, labels) / 3
        grad_loss.backward()
        sign_grad = adv.grad.data.sign()
        with torch.no_grad():
            adv.data = adv.data + alpha * sign_grad
            adv.data = torch.max(torch.min(adv.data, inputs + eps), inputs - eps)
            adv.data = torch.clamp(adv.data, 0.0, 1.0)
    for m in models:  # the trainer's optimizer.zero_grad() drops what backward() left
        m.zero_grad(set_to_none=True)
    return adv.detach()


def ref_trs_loss(models, x, y, *, scale, coeff, lamda, init_eps, adv_eps, epoch, epochs, gen,
                 plus_adv=True, pgd_direction="step"):
    """TRS_Trainer's loss, member by member and pair by pair (any M: mean over pairs)."""
    inputs = x.clone().requires_grad_(True)
    grads, loss_std = [], 0
    for m in models:
        loss = F.cross_entropy(m(inputs), y)
        grads.append(autograd.grad(loss, inputs, create_graph=True)[0].flatten(start_dim=1))
        loss_std = loss_std + loss
    pairs = [(a, b) for a in range(len(models)) for b in range(a + 1, len(models))]
    cos_loss = sum(F.cosine_similarity(grads[a], grads[b]).abs().mean() for a, b in pairs)
    cos_loss = cos_loss / len(pairs)
    n = inputs.shape[0] // 2
    cureps = (adv_eps - init_eps) * epoch / epochs + init_eps
    smooth = 0
    if plus_adv:
        pgd = ref_pgd_released if pgd_direction == "sum" else ref_pgd
        adv = pgd(models, inputs[n:].detach(), y[n:], cureps, gen)
        adv_x = torch.cat([inputs[:n].detach(), adv]).requires_grad_(True)
        for m in models:
            loss = F.cross_entropy(m(adv_x), y)
            g = autograd.grad(loss, adv_x, create_graph=True)[0].flatten(start_dim=1)
            smooth = smooth + ref_magnitude(g)
    else:
        for m in models:
            loss = F.cross_entropy(m(inputs), y)
            g = autograd.grad(loss, inputs, create_graph=True)[0].flatten(start_dim=1)
            smooth = smooth + ref_magnitude(g)
    smooth = smooth / len(models)
    return loss_std + scale * (coeff * cos_loss + lamda * smooth)


PARAMS = dict(scale=5.0, coeff=2.0, lamda=2.0, init_eps=0.1, adv_eps=0.2)


def ours(ens, x, y, epoch, epochs, seed, **kw):
    obj = parse_objective("ce + trs", {"ce": {"reduction": "sum"}, "trs": {**PARAMS, **kw}})
    batch = obj.batch(ens, x, y, progress=epoch / epochs,
                      generator=torch.Generator().manual_seed(seed))
    return obj(batch)[0]


def check_equal(members, x, y, vectorize=False, **kw):
    ens = Ensemble(members, vectorize=vectorize)
    params = list(ens.parameters())
    mine = ours(ens, x, y, 3, 10, seed=7, **kw)
    ref = ref_trs_loss(members, x, y, epoch=3, epochs=10, gen=torch.Generator().manual_seed(7),
                       **PARAMS, **kw)
    g_mine = autograd.grad(mine, params)
    g_ref = autograd.grad(ref, params)
    diff = max([float((a - b).abs().max()) for a, b in zip(g_mine, g_ref, strict=True)])
    loss_diff = abs(float((mine - ref).detach()))
    assert loss_diff <= 1e-6 and diff <= 1e-6, (loss_diff, diff)
    return loss_diff, diff


@pytest.mark.parametrize("plus_adv", [True, False])
@pytest.mark.parametrize("vectorize", [False, True])
def test_m3_equals_reference(plus_adv, vectorize):
    x, y = data()
    check_equal([net(s) for s in range(3)], x, y, vectorize=vectorize, plus_adv=plus_adv)


def test_m5_general_definition_and_odd_batch():
    x, y = data(b=7, classes=4)
    check_equal([net(s, classes=4) for s in range(5)], x, y)


@pytest.mark.parametrize("vectorize", [False, True])
def test_released_code_pgd_direction_equals_its_transcription(vectorize):
    """``pgd_direction: sum`` is the released ``PGD`` (its accumulating ``adv.grad``)."""
    x, y = data(b=16)
    members = [net(s) for s in range(3)]
    check_equal(members, x, y, vectorize=vectorize, pgd_direction="sum")
    ens = Ensemble(members)
    released = ref_pgd_released(members, x, y, 0.2, torch.Generator().manual_seed(3))
    ours_sum, ours_step = (
        smoothness_pgd(ens, x, y, 0.2, 6, member_loss=per_sample_ce, direction=d,
                       generator=torch.Generator().manual_seed(3))
        for d in ("sum", "step"))
    assert float((ours_sum - released).abs().max()) <= 1e-12
    assert float((ours_step - released).abs().max()) > 1e-3  # the two rules differ


def test_training_mode_batchnorm_equals_reference():
    x, y = data()
    members = [net(s, bn=True) for s in range(3)]
    check_equal(members, x, y)


# ----------------------------------------------------------- sharing, schedule, PGD property
def test_clean_gradients_computed_once(monkeypatch):
    ens = Ensemble([net(s) for s in range(3)])
    x, y = data()
    obj = parse_objective("ce + trs + 0.5*gal")
    batch = obj.batch(ens, x, y, progress=0.5)
    calls: list[bool] = []
    real = torch.autograd.grad

    def counting(outputs, inputs, *a, **k):
        calls.append(inputs is batch._x_members)
        return real(outputs, inputs, *a, **k)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    total, parts = obj(batch)
    assert batch.backward_passes == 1 and sum(calls) == 1
    assert set(parts) == {"ce", "trs", "gal"} and torch.isfinite(total)


def test_eps_ramp_reads_progress():
    term = TRS(init_eps=0.1, adv_eps=0.3)
    assert term.eps_at(None) == pytest.approx(0.1) and term.eps_at(0.5) == pytest.approx(0.2)
    assert term.eps_at(1.0) == pytest.approx(0.3)
    with pytest.raises(InputError, match="progress"):
        Batch(Ensemble([net(0), net(1)]), *data(), progress=1.5)


def test_pgd_point_increases_gradient_norm_objective():
    ens = Ensemble([net(s) for s in range(3)])
    x, y = data(b=16)

    def objective(z):
        z = z.clone().requires_grad_(True)
        zm = z.unsqueeze(0).expand(3, *z.shape)
        (g,) = autograd.grad(per_sample_ce(ens.member_logits(zm), y).sum(), zm)
        return float(magnitude(g).mean())

    eps = 0.2
    for seed in range(3):
        adv = smoothness_pgd(ens, x, y, eps, 6, member_loss=per_sample_ce,
                             generator=torch.Generator().manual_seed(seed))
        start = smoothness_pgd(ens, x, y, eps, 0, member_loss=per_sample_ce,
                               generator=torch.Generator().manual_seed(seed))
        assert (adv - x).abs().max() <= eps + 1e-12 and adv.min() >= 0 and adv.max() <= 1
        assert objective(adv) > objective(start) and objective(adv) > objective(x)


def test_per_sample_scaling_and_validation():
    ens = Ensemble([net(s) for s in range(2)])
    x, y = data()
    a = TRS(coeff=0.0, plus_adv=False)(Batch(ens, x, y, input_grads=True))
    b = TRS(coeff=0.0, plus_adv=False, smooth_grad="per_sample")(Batch(ens, x, y, input_grads=True))
    assert torch.allclose(b, a * x.shape[0] ** 2, rtol=1e-10)
    for bad in ({"scale": -1}, {"steps": 1.5}, {"smooth_grad": "x"}, {"plus_adv": "yes"},
                {"pgd_direction": "momentum"}):
        with pytest.raises(ConfigError):
            build_term("trs", **bad)
    with pytest.raises(ConfigError, match="M >= 2"):
        TRS()(Batch(Ensemble([net(0)]), x, y, input_grads=True))


def test_config_example_parses():
    from robens.config import load_config

    cfg = load_config("configs/trs.yaml")
    obj = parse_objective(cfg.objective, cfg.terms)
    assert obj.names() == ["ce", "trs"] and cfg.model.members == 3


def test_smoothness_point_depends_on_noise_and_progress():
    ens = Ensemble([net(s) for s in range(3)])
    x, y = data()
    a = ours(ens, x, y, 3, 10, seed=1)
    assert torch.equal(a, ours(ens, x, y, 3, 10, seed=1))
    assert not torch.equal(a, ours(ens, x, y, 3, 10, seed=2))
    assert not torch.equal(a, ours(ens, x, y, 9, 10, seed=1))


def test_the_trainer_gives_trs_its_progress_and_a_seeded_generator(tmp_path, monkeypatch):
    from conftest import small_config

    from robens.config import validate_config
    from robens.training import Trainer

    seen: list[tuple[float, bool]] = []
    original = TRS.__call__

    def spy(self, batch):
        seen.append((batch.progress, batch.generator is not None))
        return original(self, batch)

    monkeypatch.setattr(TRS, "__call__", spy)
    cfg = validate_config(small_config(tmp_path, objective="ce + trs", **{
        "training.epochs": 2, "training.threads": 1, "data.train_size": 100,
        "terms": {"trs": {"steps": 1}}}))
    Trainer(cfg, progress=False, echo=None).fit()
    steps = len(seen) // 2
    assert [p for p, _ in seen] == [0.0] * steps + [0.5] * steps and all(g for _, g in seen)
