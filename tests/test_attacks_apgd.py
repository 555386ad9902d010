"""DLR losses, APGD and APGD-T: closed forms, schedule, properties and the torchattacks oracle.

The oracle model is a small CNN trained in seconds on Fashion-MNIST (module-cached, shared with
test_attacks_square.py and test_autoattack.py). torchattacks' APGD differs from the paper in
three details we follow the paper on (its first checkpoint compares the loss with 0 instead of
the start's loss, it reduces at ``<= rho`` instead of ``< rho``, and stores losses in float32),
so a few trajectories diverge: robust accuracy and per-sample success agree, and most
adversarial examples are identical.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from robens.attacks.apgd import APGD, APGDT, checkpoints
from robens.attacks.dlr import dlr_loss, dlr_loss_targeted, top_other_classes
from robens.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread_module")
FMNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


class TinyNet(nn.Module):
    """A 2-conv CNN for 1x28x28 inputs (trains in seconds on CPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(784, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ModeNet(nn.Module):
    """Tiny CNN with BatchNorm and Dropout, to check eval mode and its restoration."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


@functools.lru_cache(maxsize=1)
def trained_fmnist() -> nn.Module:
    """TinyNet after 250 Adam steps on Fashion-MNIST training images (about 85% test accuracy)."""
    from robens.data import load_dataset

    x, y = load_dataset("fashion-mnist", "train").tensors()
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(250):
        idx = torch.randint(0, len(x), (128,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in model.parameters():
        p.grad = None
    return model.eval()


@functools.lru_cache(maxsize=2)
def fmnist_test(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from robens.data import load_dataset

    x, y = load_dataset("fashion-mnist", "test").tensors()
    return x[:n].clone(), y[:n].clone()


@pytest.fixture(scope="module")
def fm():
    import os

    if not os.path.exists(FMNIST):
        pytest.skip("Fashion-MNIST Debian package not installed")
    return trained_fmnist(), *fmnist_test(1000)


def robust_acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


# ---------------------------------------------------------------------------- DLR
def test_dlr_closed_form_with_ties_and_negative_logits() -> None:
    z = torch.tensor(
        [
            [3.0, 1.0, 0.0, -1.0],  # correct: -(3 - 1) / (3 - 0)
            [-5.0, -1.0, -2.0, -4.0],  # all negative, y=0 wrong: -(-5 + 1) / (-1 + 4)
            [2.0, 2.0, 1.0, 0.0],  # tie of z_y with the runner-up: 0
            [1.0, 1.0, 1.0, 0.0],  # top three tied: 0 / 1e-12 = 0
        ]
    )
    y = torch.tensor([0, 0, 1, 2])
    want = torch.tensor([-2 / 3, 4 / 3, 0.0, 0.0])
    assert torch.allclose(dlr_loss(z, y), want)
    t = torch.tensor([1, 1, 0, 3])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    want_t = torch.tensor([-2 / 3.5, 4 / (-1 + 4.5), 0.0, -1 / (1 - 0.5)])
    assert torch.allclose(dlr_loss_targeted(z, y, t), want_t)
    # invariant to shift and positive scale
    assert torch.allclose(dlr_loss(3 * z[:2] - 7, y[:2]), dlr_loss(z[:2], y[:2]), atol=1e-6)
    assert torch.equal(top_other_classes(z[:1], y[:1], 2), torch.tensor([[1, 2]]))
    with pytest.raises(InputError):
        dlr_loss(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(InputError):
        dlr_loss_targeted(torch.zeros(2, 3), y[:2], t[:2])


def test_checkpoints_follow_the_paper() -> None:
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [3, 5, 6, 7, 8, 9, 10]


# ---------------------------------------------------------------------------- properties
@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
@pytest.mark.parametrize("kind", ["ce", "dlr", "t"])
def test_apgd_properties(norm: str, eps: float, kind: str) -> None:
    model = ModeNet()
    model.train()
    model.drop.eval()  # mixed modes must come back as they were
    modes = [m.training for m in model.modules()]
    x = torch.rand(6, 1, 28, 28)
    x0 = x.clone()

    def make(e: float = eps, seed: int = 3):
        if kind == "t":
            return APGDT(model, eps=e, norm=norm, steps=8, n_target_classes=2, seed=seed)
        return APGD(model, eps=e, norm=norm, steps=8, loss=kind, n_restarts=2, seed=seed)

    res = make().run(x)
    assert torch.equal(x, x0)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    assert float(res.norm.max()) <= eps + 1e-5
    assert torch.equal(make()(x), res.x_adv)  # same seed, same result
    assert torch.equal(make(e=0.0)(x), x)
    assert res.info["attack"] == ("apgd_t" if kind == "t" else "apgd")


def test_apgd_rejects_bad_arguments() -> None:
    m = ModeNet()
    for kw in ({"loss": "cw"}, {"steps": 0}, {"rho": 1.5}, {"norm": "l1"}):
        with pytest.raises(InputError):
            APGD(m, eps=0.1, **kw)
    with pytest.raises(InputError):
        APGD(m, eps=0.1, loss="dlr", targeted=True)
    assert APGD(m, eps=0.1, norm="Linf").norm == "linf"  # torchattacks spelling


def test_apgd_lowers_accuracy_and_beats_its_start(fm) -> None:
    model, x, y = fm
    x, y = x[:100], y[:100]
    clean = robust_acc(model, x, y).float().mean()
    for atk in (APGD(model, eps=0.1, steps=20), APGDT(model, eps=0.1, steps=20,
                                                     n_target_classes=2)):
        res = atk.run(x, y)
        assert float((~res.success).float().mean()) < clean - 0.4
        assert torch.equal(res.success, ~robust_acc(model, res.x_adv, y))


def test_ensemble_combine_and_probability_outputs(fm) -> None:
    model, x, y = fm
    x, y = x[:20], y[:20]
    single = APGD(model, eps=0.1, steps=10, loss="dlr").run(x, y)
    as_list = APGD([model, model], eps=0.1, steps=10, loss="dlr", combine="logits").run(x, y)
    assert torch.allclose(single.x_adv, as_list.x_adv, atol=1e-6)
    for how in ("probs", "loss"):
        r = APGD([model, model], eps=0.1, steps=10, loss="dlr", combine=how).run(x, y)
        assert r.info["combine"] == how and float(r.norm.max()) <= 0.1 + 1e-6
    # a softmax-output model is attacked on its log-probabilities; DLR is shift-invariant,
    # so DLR(log softmax z) = DLR(z) and the attack equals the one on the logits
    probs = nn.Sequential(model, nn.Softmax(-1))
    on_probs = APGD(probs, eps=0.1, steps=10, loss="dlr").run(x, y)
    assert torch.equal(on_probs.success, single.success)
    assert (on_probs.x_adv - single.x_adv).abs().amax() < 1e-3


# ---------------------------------------------------------------------------- oracle
def _compare(ours, theirs: torch.Tensor, model, y) -> tuple[float, float, float, float]:
    succ_t = ~robust_acc(model, theirs, y)
    both = ours.success & succ_t
    diff = (ours.x_adv[both] - theirs[both]).abs().flatten(1).amax(1)
    return (
        float((~ours.success).float().mean()),
        float((~succ_t).float().mean()),
        float((ours.success == succ_t).float().mean()),
        float((diff <= 1e-5).float().mean()) if both.any() else 1.0,
    )


def _oracle(fm, n: int, norm: str, kind: str, n_targets: int) -> None:
    ta = pytest.importorskip("torchattacks")
    model, x, y = fm
    x, y = x[:n], y[:n]
    eps = 0.1 if norm == "linf" else 1.0
    tn = "Linf" if norm == "linf" else "L2"
    if kind == "t":
        ours = APGDT(model, eps=eps, norm=norm, steps=100, n_target_classes=n_targets).run(x, y)
        theirs = ta.APGDT(model, norm=tn, eps=eps, steps=100, seed=0,
                          n_classes=n_targets + 1)(x, y)
    else:
        ours = APGD(model, eps=eps, norm=norm, steps=100, loss=kind).run(x, y)
        theirs = ta.APGD(model, norm=tn, eps=eps, steps=100, seed=0, loss=kind)(x, y)
    rob_o, rob_t, agree, identical = _compare(ours, theirs, model, y)
    assert abs(rob_o - rob_t) <= 0.005 + 1e-9, (rob_o, rob_t)
    assert agree >= 0.98
    if not (kind == "t" and norm == "l2"):  # torchattacks' L2 APGD-T uses sample 0's step size
        assert identical >= 0.9, identical


@pytest.mark.parametrize("kind,n_targets", [("ce", 0), ("t", 3)])
def test_oracle_torchattacks_linf(fm, kind: str, n_targets: int) -> None:
    _oracle(fm, 100, "linf", kind, n_targets)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("kind", ["ce", "dlr", "t"])
def test_oracle_torchattacks_full(fm, norm: str, kind: str) -> None:
    _oracle(fm, 1000, norm, kind, 9)


# ---------------------------------------------------------------------------- early exit
@pytest.mark.parametrize("kind", ["ce", "t"])
def test_early_exit_keeps_robust_accuracy_and_the_unbroken_trajectories(fm, kind: str) -> None:
    """A sample leaves at its first fooling iterate; the others take the same steps, so the
    per-sample success and the unbroken samples' results equal the full run's."""
    model, x, y = fm
    x, y = x[:200], y[:200]

    def make():
        if kind == "t":
            return APGDT(model, eps=0.05, steps=20, n_target_classes=3)
        return APGD(model, eps=0.05, steps=20, n_restarts=2)

    full = make().run(x, y)
    atk = make()
    atk.early_exit = True
    early = atk.run(x, y)
    assert 0 < int(full.success.sum()) < len(y)  # both outcomes occur
    assert torch.equal(early.success, full.success)
    assert torch.equal(early.success, ~robust_acc(model, early.x_adv, y))
    kept = ~full.success
    assert (early.x_adv[kept] - full.x_adv[kept]).abs().amax() <= 1e-5
    assert float((early.x_adv - x).abs().amax()) <= 0.05 + 1e-6
    assert float(early.x_adv.min()) >= 0 and float(early.x_adv.max()) <= 1


def test_early_exit_with_samples_fooled_at_the_random_start(fm) -> None:
    """Samples broken by the start itself leave before the first step (no aliasing)."""
    model, x, y = fm
    x, y = x[:60], y[:60]
    atk = APGD(model, eps=0.3, steps=5)
    atk.early_exit = True
    early = atk.run(x, y)
    full = APGD(model, eps=0.3, steps=5).run(x, y)
    assert torch.equal(early.success, full.success)
    assert float((early.x_adv - x).abs().amax()) <= 0.3 + 1e-6
