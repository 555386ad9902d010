"""Properties every attack carries (docs/attacks-and-testing.md, "Tests every attack carries").

eps = 0 returns the input; the perturbation stays in the eps-ball and the box; the input is not
mutated; the model's (mixed) train/eval modes are restored and it runs in eval mode; parameter
``.grad`` stays ``None``; batch == one-by-one for deterministic attacks; seeds reproduce; device
and dtype are preserved; bad inputs raise InputError naming the argument. Plus the CW hinge's
closed form, ensemble combination rules and the registry.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from robens.attacks import (
    ATTACKS,
    CW,
    FGSM,
    JSMA,
    PGD,
    SGDUAP,
    Attack,
    build_attack,
    cw_hinge,
    cw_margin,
    least_likely_targets,
    next_class_targets,
    per_sample_norm,
    random_targets,
)
from robens.attacks.base import project
from robens.errors import InputError

NUM_CLASSES = 4


pytestmark = pytest.mark.usefixtures("one_thread_module")


class ModeProbe(nn.Module):
    """Identity that records the mode it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.training)
        return x


class Tiny(nn.Module):
    """Small CNN for any C x H x W (H, W >= 2), with BatchNorm and Dropout."""

    def __init__(self, channels: int = 1, num_classes: int = NUM_CLASSES, seed: int = 0) -> None:
        super().__init__()
        g = torch.random.fork_rng()
        with g:
            torch.manual_seed(seed)
            self.conv = nn.Conv2d(channels, 6, 3, padding=1)
            self.bn = nn.BatchNorm2d(6)
            self.act = nn.LeakyReLU(0.1)
            self.drop = nn.Dropout(0.3)
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.fc = nn.Linear(24, num_classes)
        self.probe = ModeProbe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.act(self.bn(self.conv(self.probe(x)))))
        return self.fc(self.pool(h).flatten(1))


def make_attack(name: str, model, eps: float, **extra) -> Attack:
    """Each attack with small, fast settings; ``eps`` is its budget in its own norm."""
    kw: dict = {}
    if name in ("ifgsm", "bim", "mifgsm", "pgd", "pgd_cw"):
        kw["steps"] = 3
    if name in ("cw", "ead"):
        kw.update(steps=4, binary_search_steps=2, eps=eps)
    elif name == "jsma":
        kw["gamma"] = 0.1 if eps > 0 else 0.0
    else:
        kw["eps"] = eps
    if name == "spsa":
        kw.update(steps=2, nb_samples=4)
    if name == "uap":
        kw.update(iterations=3)
    if name in ("apgd", "apgd_t"):
        kw["steps"] = 5
    if name == "apgd_t":
        kw["n_target_classes"] = 2
    if name == "square":
        kw["n_queries"] = 50
    if name == "autoattack":
        kw.update(steps=5, n_target_classes=2, n_queries=20)
    kw.update(extra)
    return build_attack(name, model, **kw)


def budget(atk: Attack, x: torch.Tensor) -> tuple[str, float]:
    if isinstance(atk, JSMA):
        return "l0", 2 * atk.max_iterations(x[0].numel())
    return atk.norm, atk.eps


ALL = list(ATTACKS)
QUERY_ATTACKS = ("spsa", "square")  # score-based attacks count their queries
DETERMINISTIC = ["fgsm", "ifgsm", "bim", "mifgsm", "cw", "ead", "jsma"]
SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def batches(draw):
    seed = draw(st.integers(0, 2**16))
    b = draw(st.integers(1, 3))
    c = draw(st.sampled_from([1, 3]))
    h = draw(st.integers(4, 7))
    w = draw(st.integers(4, 7))
    eps = draw(st.sampled_from([0.01, 0.05, 0.1, 0.3]))
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g)
    if draw(st.booleans()):  # saturated pixels exercise the box constraint
        x = (x * 1.6 - 0.3).clamp(0, 1)
    y = torch.randint(0, NUM_CLASSES, (b,), generator=g)
    return x, y, eps


# ---------------------------------------------------------------------------- core properties
@pytest.mark.parametrize("name", ALL)
@SETTINGS
@given(data=batches())
def test_attack_properties(name, data):
    x, y, eps = data
    model = Tiny(x.shape[1])
    model.train()
    model.drop.eval()  # a mixed-mode model must come back exactly as it was
    modes = {n: m.training for n, m in model.named_modules()}
    bn_mean = model.bn.running_mean.clone()
    x_copy, y_copy = x.clone(), y.clone()
    if name in ("cw", "ead"):
        eps = eps * 10  # L2 / L1 budgets
    atk = make_attack(name, model, eps, seed=1)
    res = atk.run(x, y)
    adv = res.x_adv
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert not adv.requires_grad and adv.grad_fn is None
    norm, bound = budget(atk, x)
    assert (per_sample_norm(adv - x, norm) <= bound + 1e-6).all()
    if isinstance(atk, JSMA):
        assert (adv - x).abs().max() <= abs(atk.theta) + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert model.probe.seen and not any(model.probe.seen)  # ran in eval mode only
    assert torch.equal(model.bn.running_mean, bn_mean)
    assert all(p.grad is None for p in model.parameters())
    assert res.success.shape == res.norm.shape == res.loss.shape == (x.shape[0],)
    assert res.success.dtype == torch.bool
    if name in QUERY_ATTACKS:
        assert res.queries is not None and res.queries.shape == (x.shape[0],)
    else:
        assert res.queries is None
    fields = res.to_record_fields()
    assert fields["attack"] == atk.name and fields["n"] == x.shape[0]
    # __call__ agrees with run (seeded)
    assert torch.equal(atk(x, y), adv)


@pytest.mark.parametrize("name", ALL)
def test_eps_zero_returns_input(name):
    x = torch.rand(3, 1, 6, 6)
    atk = make_attack(name, Tiny(), 0.0)
    out = atk(x)
    assert torch.equal(out, x) and out is not x


@pytest.mark.parametrize("name", DETERMINISTIC + ["pgd_nostart", "pgd_cw_nostart"])
def test_batch_equals_one_by_one(name):
    torch.manual_seed(3)
    model = Tiny(3).double().eval()
    x = torch.rand(4, 3, 5, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    base, _, extra = name.partition("_nostart")
    kw = {"random_start": False} if _ == "_nostart" else {}
    atk = make_attack(base, model, 0.1 if base not in ("cw", "ead") else 1.0, **kw)
    whole = atk(x, y)
    single = torch.cat([atk(x[i : i + 1], y[i : i + 1]) for i in range(4)])
    assert torch.allclose(whole, single, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_seeded_reproducibility(name):
    model = Tiny(1).eval()
    x = torch.rand(4, 1, 6, 6)
    a = make_attack(name, model, 0.1 if name not in ("cw", "ead") else 1.0, seed=7)
    b = make_attack(name, model, 0.1 if name not in ("cw", "ead") else 1.0, seed=7)
    assert torch.equal(a(x), b(x))
    assert torch.equal(a(x), a(x))  # re-seeded on every call


@pytest.mark.parametrize("name", ["rfgsm", "pgd", "spsa"])
def test_random_attacks_use_seed_or_global_rng(name):
    model = Tiny(1).eval()
    x = torch.rand(4, 1, 6, 6)
    a = make_attack(name, model, 0.1, seed=1)(x)
    b = make_attack(name, model, 0.1, seed=2)(x)
    assert not torch.equal(a, b)
    atk = make_attack(name, model, 0.1)  # seed=None: global RNG, torchattacks-style
    torch.manual_seed(5)
    c = atk(x)
    torch.manual_seed(5)
    assert torch.equal(atk(x), c)


@pytest.mark.parametrize("name", ALL)
def test_float64_preserved(name):
    model = Tiny(1).double().eval()
    x = torch.rand(2, 1, 5, 5, dtype=torch.float64)
    out = make_attack(name, model, 0.1 if name not in ("cw", "ead") else 1.0, seed=0)(x)
    assert out.dtype == torch.float64 and out.device == x.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ALL)
def test_cuda_device_preserved(name):  # pragma: no cover - needs a GPU
    model = Tiny(1).cuda().eval()
    x = torch.rand(2, 1, 5, 5, device="cuda")
    out = make_attack(name, model, 0.1 if name not in ("cw", "ead") else 1.0, seed=0)(x)
    assert out.device == x.device


# ---------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("name", ALL)
def test_bad_inputs_name_the_argument(name):
    model = Tiny(1).eval()
    atk = make_attack(name, model, 0.1 if name not in ("cw", "ead") else 1.0)
    x = torch.rand(2, 1, 5, 5)
    with pytest.raises(InputError, match="x"):
        atk(x * 2 - 0.5)
    with pytest.raises(InputError, match="x"):
        atk(x[0])
    with pytest.raises(InputError, match="x"):
        atk((x * 255).to(torch.uint8))
    with pytest.raises(InputError, match="y"):
        atk(x, torch.tensor([0, NUM_CLASSES]))
    with pytest.raises(InputError, match="y"):
        atk(x, torch.tensor([0, -1]))
    with pytest.raises(InputError, match="y"):
        atk(x, torch.tensor([0, 1, 2]))
    with pytest.raises(InputError, match="y"):
        atk(x, torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("name", [n for n in ALL if n not in ("cw", "ead", "jsma")])
@pytest.mark.parametrize("eps", [-0.1, 1.5, float("nan"), "a"])
def test_bad_eps(name, eps):
    with pytest.raises(InputError, match="eps"):
        make_attack(name, Tiny(), eps)


def test_l2_eps_bounded_by_sqrt_d_and_other_bad_arguments():
    x = torch.rand(2, 1, 4, 4)
    PGD(Tiny(), 3.9, norm="l2", steps=1)(x)  # sqrt(16) = 4
    with pytest.raises(InputError, match="eps"):
        PGD(Tiny(), 4.5, norm="l2", steps=1)(x)
    with pytest.raises(InputError, match="eps"):
        CW(Tiny(), eps=-1.0)
    with pytest.raises(InputError, match="norm"):
        PGD(Tiny(), 0.1, norm="l7")
    with pytest.raises(InputError, match="loss"):
        PGD(Tiny(), 0.1, loss="hinge")
    with pytest.raises(InputError, match="steps"):
        PGD(Tiny(), 0.1, steps=0)
    with pytest.raises(InputError, match="alpha"):
        PGD(Tiny(), 0.1, alpha=-1.0)
    with pytest.raises(InputError, match="restarts"):
        PGD(Tiny(), 0.1, random_start=False, restarts=2)
    with pytest.raises(InputError, match="combine"):
        FGSM(Tiny(), 0.1, combine="logits")  # a single model has nothing to combine
    with pytest.raises(InputError, match="combine"):
        FGSM([Tiny(), Tiny()], 0.1, combine="votes")
    with pytest.raises(InputError, match="mmc"):
        FGSM(Tiny(), 0.1, loss="mmc")
    with pytest.raises(InputError, match="y"):
        FGSM(Tiny(), 0.1, targeted=True)(x)
    with pytest.raises(InputError, match="theta"):
        JSMA(Tiny(), theta=0.0)
    with pytest.raises(InputError, match="target"):
        SGDUAP(Tiny(), 0.1, target=3)


def test_registry():
    assert {
        "fgsm",
        "rfgsm",
        "ifgsm",
        "bim",
        "mifgsm",
        "pgd",
        "pgd_cw",
        "cw",
        "ead",
        "jsma",
        "spsa",
    } <= set(ATTACKS)
    with pytest.raises(InputError, match="available attacks: fgsm"):
        build_attack("deepfool", Tiny(), eps=0.1)
    with pytest.raises(InputError, match="stepz"):
        build_attack("pgd", Tiny(), eps=0.1, stepz=3)
    atk = build_attack("PGD-CW", Tiny(), eps=0.1)
    assert atk.loss == "cw" and atk.kappa == 50.0 and atk.steps == 30
    assert build_attack("I-FGSM", Tiny(), eps=0.1).name == "ifgsm"


# ---------------------------------------------------------------------------- closed forms
def test_cw_hinge_closed_form_with_negative_logits():
    z = torch.tensor(
        [
            [-5.0, -2.0, -9.0, -3.0],  # all negative, y = 0: max other = -2
            [-1.0, -4.0, -0.5, -7.0],  # all negative, y = 2 is the largest
            [3.0, -1.0, 2.0, 10.0],  # mixed
            [-100.0, -100.0, -100.0, -100.0],  # ties
        ]
    )
    y = torch.tensor([0, 2, 1, 3])
    # untargeted: max(Z_y - max_{j != y} Z_j, -kappa)
    margin = torch.tensor([-5.0 - (-2.0), -0.5 - (-1.0), -1.0 - 10.0, 0.0])
    assert torch.equal(cw_margin(z, y), margin)
    assert torch.equal(cw_hinge(z, y, kappa=0.0), torch.tensor([-0.0, 0.5, -0.0, 0.0]))
    assert torch.equal(cw_hinge(z, y, kappa=2.0), torch.tensor([-2.0, 0.5, -2.0, 0.0]))
    assert torch.equal(cw_hinge(z, y, kappa=50.0), torch.tensor([-3.0, 0.5, -11.0, 0.0]))
    assert torch.equal(cw_hinge(z, y, kappa=math.inf), margin)
    # targeted at t: max(max_{j != t} Z_j - Z_t, -kappa)
    t = torch.tensor([1, 0, 3, 2])
    tm = torch.tensor([-3.0 - (-2.0), -0.5 - (-1.0), 3.0 - 10.0, 0.0])
    assert torch.equal(cw_margin(z, t, targeted=True), tm)
    assert torch.equal(
        cw_hinge(z, t, kappa=4.0, targeted=True), torch.tensor([-1.0, 0.5, -4.0, 0.0])
    )


def test_cw_objective_in_attack_is_negated_hinge():
    model = Tiny().eval()
    x = torch.rand(3, 1, 5, 5)
    y = torch.tensor([0, 1, 2])
    atk = PGD(model, 0.1, loss="cw", kappa=1.5)
    with torch.no_grad():
        logits, obj = atk.scores(x, y)
    assert torch.allclose(obj, -cw_hinge(logits, y, 1.5))


def test_projection_helpers():
    x = torch.full((2, 1, 2, 2), 0.5)
    far = torch.tensor([[[[1.0, 0.0], [0.6, 0.5]]], [[[0.9, 0.9], [0.9, 0.9]]]])
    p = project(far, x, 0.2, "linf")
    assert torch.allclose(p, torch.tensor([[[[0.7, 0.3], [0.6, 0.5]]], [[[0.7, 0.7], [0.7, 0.7]]]]))
    p2 = project(far, x, 0.2, "l2")
    assert torch.allclose(per_sample_norm(p2 - x, "l2"), torch.tensor([0.2, 0.2]))
    p1 = project(far, x, 0.3, "l1")
    assert torch.allclose(per_sample_norm(p1 - x, "l1"), torch.tensor([0.3, 0.3]))
    # L1 projection equals the closed form for a uniform excess: shrink each entry by 0.1 - 0.075
    assert torch.allclose(p1[1], torch.full((1, 2, 2), 0.575))


# ---------------------------------------------------------------------------- ensembles
class AvgLogits(nn.Module):
    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        return torch.stack([m(x) for m in self.members]).mean(0)


def test_combine_rules_for_lists_and_ensembles():
    from robens.ensemble import Ensemble

    members = [Tiny(1, seed=s).double().eval() for s in range(3)]
    x = torch.rand(4, 1, 5, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    # averaged logits == a module that averages logits
    a = FGSM(members, 0.1, combine="logits").gradient(x, y)[0]
    b = FGSM(AvgLogits(members), 0.1).gradient(x, y)[0]
    assert torch.allclose(a, b, atol=1e-12)
    # averaged losses == mean of member gradients
    g = FGSM(members, 0.1, combine="loss").gradient(x, y)[0]
    ref = sum(FGSM(m, 0.1).gradient(x, y)[0] for m in members) / 3
    assert torch.allclose(g, ref, atol=1e-12)
    # averaged probabilities: CE of log mean softmax
    atk = FGSM(members, 0.1, combine="probs")
    with torch.no_grad():
        _, obj = atk.scores(x, y)
        probs = torch.stack([torch.softmax(m(x), -1) for m in members]).mean(0)
    assert torch.allclose(obj, -probs.log().gather(1, y[:, None]).squeeze(1))
    # an Ensemble given combine uses its own weights
    ens = Ensemble(members, weights=[0.5, 0.25, 0.25], in_shape=(1, 5, 5)).double().eval()
    g_ens = FGSM(ens, 0.1, combine="loss").gradient(x, y)[0]
    ref = sum(
        w * FGSM(m, 0.1).gradient(x, y)[0] for w, m in zip([0.5, 0.25, 0.25], members, strict=True)
    )
    assert torch.allclose(g_ens, ref, atol=1e-12)
    # default for an Ensemble: attack its own output
    g_own = FGSM(ens, 0.1).gradient(x, y)[0]
    assert torch.allclose(g_own, FGSM(ens, 0.1, combine="logits").gradient(x, y)[0], atol=1e-12)
    res = FGSM(ens, 0.1, combine="loss").run(x, y)
    assert res.to_record_fields()["combine"] == "loss"


def test_targets_helpers_and_targeted_attack():
    y = torch.tensor([0, 1, 2, 3] * 5)
    t = random_targets(y, NUM_CLASSES, torch.Generator().manual_seed(0))
    assert (t != y).all() and t.min() >= 0 and t.max() < NUM_CLASSES
    assert torch.equal(next_class_targets(y, NUM_CLASSES), (y + 1) % NUM_CLASSES)
    model = Tiny().eval()
    model.train()
    x = torch.rand(5, 1, 5, 5)
    ll = least_likely_targets(model, x)
    assert model.training
    model.eval()
    with torch.no_grad():
        assert torch.equal(ll, model(x).argmin(-1))
    res = PGD(model, 0.3, steps=10, targeted=True, seed=0).run(x, ll)
    with torch.no_grad():
        pred = model(res.x_adv).argmax(-1)
    assert torch.equal(res.success, pred == ll)


def test_restarts_keep_the_per_sample_best():
    model = Tiny(1, seed=4).eval()
    x = torch.rand(6, 1, 6, 6)
    y = torch.arange(6) % NUM_CLASSES
    r1 = PGD(model, 0.03, steps=2, seed=11).run(x, y)
    r3 = PGD(model, 0.03, steps=2, restarts=3, seed=11).run(x, y)
    assert (r3.success | ~r1.success).all()
    both_fail = ~r1.success & ~r3.success
    assert (r3.loss[both_fail] >= r1.loss[both_fail] - 1e-6).all()


@pytest.mark.parametrize("name", ["fgsm", "ifgsm", "mifgsm", "pgd"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_norm_and_targeted_variants_respect_the_budget(name, norm, targeted):
    model = Tiny(3).eval()
    x = torch.rand(3, 3, 5, 5)
    y = torch.tensor([1, 2, 3])
    eps = 0.05 if norm == "linf" else 0.5
    kw = {} if name == "fgsm" else {"steps": 3}
    atk = build_attack(name, model, eps=eps, norm=norm, targeted=targeted, seed=0, **kw)
    res = atk.run(x, y)
    assert (per_sample_norm(res.x_adv - x, norm) <= eps + 1e-6).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    with torch.no_grad():
        pred = model(res.x_adv).argmax(-1)
    assert torch.equal(res.success, pred == y if targeted else pred != y)
