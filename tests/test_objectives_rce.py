"""Reverse cross-entropy (Pang et al. 2018): loss, the inference convention, Theorem 2."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robens.ensemble import Ensemble
from robens.errors import ConfigError
from robens.factory import build_member
from robens.objectives import RCEModel, parse_objective, rce_per_sample, reverse_labels


class Feat(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.feature_dim = 8
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.LeakyReLU(0.1))
        self.classifier = nn.Linear(8, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def test_loss_at_uniform_softmax_is_log_l():
    for num_classes in (2, 10, 37):
        z = torch.full((4, num_classes), 3.0)
        y = torch.arange(4) % num_classes
        assert torch.allclose(rce_per_sample(z, y), torch.full((4,), math.log(num_classes)))


def test_loss_matches_reverse_label_definition():
    z = torch.randn(6, 10, dtype=torch.float64)
    y = torch.randint(0, 10, (6,))
    ref = -(reverse_labels(y, 10).double() * torch.log_softmax(z, -1)).sum(-1)
    assert torch.allclose(rce_per_sample(z, y), ref)
    # the RCE minimizer puts mass on the reverse label: S(Z) = R_y
    zr = torch.log(reverse_labels(y, 10).double() + 1e-300)
    assert (rce_per_sample(zr, y) <= rce_per_sample(z, y) + 1e-9).all()


def test_wrapper_always_returns_inference_logits():
    inner = Feat()
    model = RCEModel(inner)
    x = torch.rand(3, 1, 4, 4)
    for mode in (True, False):
        model.train(mode)
        assert torch.allclose(model(x), -inner(x))
        assert torch.allclose(model.raw_logits(x), inner(x))
    assert torch.allclose(model.features(x), inner.features(x))
    assert model.classifier is inner.classifier
    assert torch.equal(RCEModel.to_raw(model(x)), inner(x))


def test_term_trains_on_raw_logits_and_predicts_with_negated_ones():
    ens = Ensemble([RCEModel(Feat(s)) for s in range(2)])
    x, y = torch.rand(32, 1, 4, 4), torch.randint(0, 10, (32,))
    obj = parse_objective("rce")
    total, _ = obj(obj.batch(ens, x, y))
    raw = torch.stack([m.raw_logits(x) for m in ens.members])
    assert total.item() == pytest.approx(rce_per_sample(raw, y).mean().item(), rel=1e-6)
    opt = torch.optim.Adam(ens.parameters(), lr=0.05)
    for _ in range(60):
        loss, _ = obj(obj.batch(ens, x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (ens(x).argmax(-1) == y).float().mean().item()  # inference phase
        raw_acc = (ens.members[0].raw_logits(x).argmin(-1) == y).float().mean().item()
    assert acc > 0.5 and raw_acc > 0.5  # chance is 0.1


def test_term_refuses_plain_models():
    ens = Ensemble([Feat(0), Feat(1)])
    obj = parse_objective("rce")
    with pytest.raises(ConfigError, match="model.rce: true"):
        obj(obj.batch(ens, torch.rand(2, 1, 4, 4), torch.tensor([0, 1])))


def test_factory_wraps_members():
    spec = {"name": "lenet", "in_shape": [1, 28, 28], "num_classes": 10,
            "activation": "relu", "leaky_slope": 0.1, "head": "linear", "rce": True}
    m = build_member(spec)
    assert isinstance(m, RCEModel) and m.feature_dim == 1024
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(m(x), -m.raw_logits(x))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(3, 20),
    st.floats(1e-4, 1.0),
    st.integers(0, 2**31 - 1),
)
def test_theorem2_bounds(num_classes, frac, seed):
    """||S(Z) - R_y||_inf <= alpha << 1/L  =>  ||S(-Z) - 1_y||_inf <= alpha (L-1)^2 and the
    non-maximal entries of S(-Z) differ by at most 2 alpha^2 (L-1)^2 (Pang et al. Thm 2)."""
    g = torch.Generator().manual_seed(seed)
    L = num_classes
    alpha = frac * 0.1 / L  # alpha << 1/L
    y = int(torch.randint(0, L, (1,), generator=g))
    r = torch.full((L,), 1.0 / (L - 1), dtype=torch.float64)
    r[y] = 0.0
    # a softmax output within alpha of R_y (positive, summing to one)
    delta = (torch.rand(L, generator=g, dtype=torch.float64) * 2 - 1) * alpha
    p = r + delta
    p[y] = alpha * float(torch.rand(1, generator=g, dtype=torch.float64)) + 1e-300
    p = p.clamp_min(1e-300)
    p = p / p.sum()
    dev = (p - r).abs().max().item()
    z = torch.log(p) + 0.37
    q = torch.softmax(-z, -1)
    onehot = torch.zeros(L, dtype=torch.float64)
    onehot[y] = 1.0
    assert (q - onehot).abs().max().item() <= dev * (L - 1) ** 2 + 1e-12
    others = torch.cat([q[:y], q[y + 1 :]])
    assert (others.max() - others.min()).item() <= 2 * dev**2 * (L - 1) ** 2 + 1e-12


def test_negated_logits_limit():
    """Z = a 1 - T 1_y: softmax(-Z)_y -> 1 as T grows."""
    a, y = 0.7, 2
    prev = 0.0
    for t in (1.0, 5.0, 20.0, 60.0):
        z = torch.full((10,), a, dtype=torch.float64)
        z[y] -= t
        val = torch.softmax(-z, -1)[y].item()
        assert val > prev
        prev = val
    assert prev == pytest.approx(1.0, abs=1e-20)
