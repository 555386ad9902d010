"""Square Attack: properties, query accounting, L2 blocks and the torchattacks oracle.

With ``windows="shared"`` (one window per iteration for the batch, as AutoAttack's and
torchattacks' code) our draws are torchattacks' draws under the same seed, and L2 norms are
summed in torchattacks' order, so L-inf and L2 results are element-wise equal. Bit-level
agreement matters: random search is chaotic, and last-bit rounding drift in the L2 norms
(``torch.norm`` instead of ``sqrt(sum(d^2))``, sums over a transposed layout) once moved robust
accuracy by a point at 1,000 images x 1,000 queries, as much as a change of seed does.
"""

from __future__ import annotations

import pytest
import torch
from test_attacks_apgd import FMNIST, ModeNet, fmnist_test, robust_acc, trained_fmnist
from torch import nn

from robens.attacks.square import Square, eta_block, p_schedule
from robens.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def fm():
    import os

    if not os.path.exists(FMNIST):
        pytest.skip("Fashion-MNIST Debian package not installed")
    return trained_fmnist(), *fmnist_test(1000)


class NoGrad(nn.Module):
    """Wraps a model and fails if it is ever called with gradients enabled."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled(), "Square must only query the model"
        return self.inner(x)


class Recorder(nn.Module):
    """Wraps a model and keeps a copy of every input it is queried with."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return self.inner(x)


def test_schedule_and_blocks() -> None:
    assert p_schedule(0, 0.8, 10000) == 0.8
    assert p_schedule(11, 0.8, 10000) == 0.4
    assert p_schedule(9000, 0.8, 10000) == 0.8 / 512
    assert p_schedule(1, 0.8, 100) == 0.8 / 4  # rescaled: iteration 1 of 100 is 100 of 10,000
    e = eta_block(5)
    assert torch.isclose(e.pow(2).sum(), torch.tensor(1.0))
    assert bool((e[:2] > 0).all()) and bool((e[2:] < 0).all())  # halves of opposite sign
    assert float(e[0, 2]) > float(e[0, 0])  # mass concentrated towards the centre


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
@pytest.mark.parametrize("windows", ["per_sample", "shared"])
def test_square_properties(norm: str, eps: float, windows: str) -> None:
    model = ModeNet()
    model.train()
    model.drop.eval()
    modes = [m.training for m in model.modules()]
    x = torch.rand(5, 1, 28, 28)
    x0 = x.clone()

    def make(e: float = eps):
        return Square(NoGrad(model), eps=e, norm=norm, n_queries=30, seed=1, windows=windows)

    res = make().run(x)
    assert torch.equal(x, x0)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    assert float(res.norm.max()) <= eps + 1e-5
    assert torch.equal(make()(x), res.x_adv)
    assert torch.equal(make(0.0)(x), x)
    assert res.queries is not None and int(res.queries.max()) <= 30 + 2
    assert res.info["attack"] == "square" and res.info["param_windows"] == windows


def test_square_per_sample_is_batch_independent_for_one_sample() -> None:
    model = ModeNet().eval()
    x = torch.rand(3, 1, 28, 28)
    # per-sample windows: a batch of one draws exactly what torchattacks-style shared draws do
    a = Square(model, eps=0.1, n_queries=20, seed=2, windows="per_sample")(x[:1])
    b = Square(model, eps=0.1, n_queries=20, seed=2, windows="shared")(x[:1])
    assert torch.equal(a, b)


def test_square_rejects_bad_arguments() -> None:
    m = ModeNet()
    for kw in ({"loss": "dlr"}, {"n_queries": 0}, {"p_init": 2.0}, {"windows": "x"}):
        with pytest.raises(InputError):
            Square(m, eps=0.1, **kw)


def test_square_lowers_accuracy(fm) -> None:
    model, x, y = fm
    x, y = x[:100], y[:100]
    res = Square(model, eps=0.1, n_queries=100).run(x, y)
    clean = float(robust_acc(model, x, y).float().mean())
    assert float((~res.success).float().mean()) < clean - 0.2
    assert torch.equal(res.success, ~robust_acc(model, res.x_adv, y))
    r2 = Square([model, model], eps=0.1, n_queries=20, combine="loss").run(x[:10], y[:10])
    assert r2.info["combine"] == "loss"


def _oracle(fm, n: int, nq: int, norm: str) -> None:
    ta = pytest.importorskip("torchattacks")
    model, x, y = fm
    x, y = x[:n], y[:n]
    eps = 0.1 if norm == "linf" else 1.5
    tn = "Linf" if norm == "linf" else "L2"
    ours = Square(model, eps=eps, norm=norm, n_queries=nq, seed=0, windows="shared").run(x, y)
    theirs = ta.Square(model, norm=tn, eps=eps, n_queries=nq, seed=0)(x, y)
    succ_t = ~robust_acc(model, theirs, y)
    assert abs(float(ours.success.float().mean()) - float(succ_t.float().mean())) <= 0.005
    assert float((ours.success == succ_t).float().mean()) >= 0.98
    both = ours.success & succ_t  # torchattacks returns the clean image where it fails
    assert float((ours.x_adv[both] - theirs[both]).abs().max()) <= 1e-6


def test_oracle_torchattacks_linf(fm) -> None:
    _oracle(fm, 100, 100, "linf")


def test_oracle_torchattacks_l2(fm) -> None:
    _oracle(fm, 100, 100, "l2")


@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_oracle_torchattacks_l2_rgb(eps: float) -> None:
    """Three channels: the window gathers are channels-last, and sums over them must still add
    in torchattacks' order (every query equal, not only the results)."""
    ta = pytest.importorskip("torchattacks")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    x = torch.rand(32, 3, 16, 16)
    with torch.no_grad():
        y = net(x).argmax(1)
    rec_o, rec_t = Recorder(net), Recorder(net)
    res = Square(rec_o, eps=eps, norm="l2", n_queries=60, seed=0, windows="shared").run(x, y)
    adv = ta.Square(rec_t, norm="L2", eps=eps, n_queries=60, seed=0)(x, y)
    # ours: label check, clean logits, start, proposals, final check; theirs: clean logits,
    # start, proposals, final check
    a, b = rec_o.inputs[2:-1], rec_t.inputs[1:-1]
    assert len(a) == len(b) > 50
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    with torch.no_grad():
        succ_t = net(adv).argmax(1) != y
    assert torch.equal(res.success, succ_t)


@pytest.mark.slow
# 1,000 images x 1,000 queries (about a minute): L-inf and L2 robust accuracy 10.9% / 24.6% for
# both libraries, 100% per-sample agreement (every query equal).
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_oracle_torchattacks_full(fm, norm: str) -> None:
    _oracle(fm, 1000, 1000, norm)
