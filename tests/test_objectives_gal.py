"""GAL, pairwise gradient cosine, the shared Batch (one input-gradient pass) and numerics."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robens.ensemble import Ensemble
from robens.errors import ConfigError
from robens.objectives import (
    Batch,
    coherence,
    gal_per_sample,
    mean_pairwise_cosine,
    pairwise_cosine,
    parse_objective,
    per_sample_ce,
)


class Tiny(nn.Module):
    """A small Leaky-ReLU classifier with ``features``/``classifier`` (fast tests)."""

    def __init__(self, d: int = 16, c: int = 10, hidden: int = 12, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.feature_dim = hidden
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.LeakyReLU(0.1))
        self.classifier = nn.Linear(hidden, c)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def ensemble(m: int = 3, seeds=None) -> Ensemble:
    seeds = seeds or list(range(m))
    return Ensemble([Tiny(seed=s) for s in seeds])


def data(b: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, 4, 4, generator=g), torch.randint(0, 10, (b,), generator=g)


# ------------------------------------------------------------------ closed-form oracles
def test_gal_equal_gradients_n2_is_one():
    g = torch.randn(1, 4, 30)
    assert torch.allclose(gal_per_sample(torch.cat([g, 3 * g])), torch.ones(4), atol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_gal_n_identical_gradients(n):
    g = torch.randn(1, 3, 20).expand(n, 3, 20)
    expected = 1 + math.log(n * (n - 1) / 2)
    assert torch.allclose(gal_per_sample(g), torch.full((3,), expected), atol=1e-5)


def test_gal_antiparallel_pair_and_cosine_metric():
    g = torch.randn(1, 6, 11)
    pair = torch.cat([g, -2 * g])
    assert torch.allclose(gal_per_sample(pair), -torch.ones(6), atol=1e-6)
    assert torch.allclose(mean_pairwise_cosine(pair), -torch.ones(6), atol=1e-6)
    assert torch.allclose(coherence(pair), -torch.ones(6), atol=1e-6)


def test_orthogonal_gradients():
    g = torch.eye(4).unsqueeze(1)  # 4 members, 1 sample, D = 4
    assert torch.allclose(mean_pairwise_cosine(g), torch.zeros(1))
    assert torch.allclose(gal_per_sample(g), torch.tensor([math.log(6.0)]))
    assert torch.allclose(coherence(g), torch.zeros(1))


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.integers(1, 4), st.integers(0, 10_000))
def test_gal_bounds_and_scale_invariance(n, b, seed):
    g = torch.randn(n, b, 9, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    gal = gal_per_sample(g)
    coh = coherence(g)
    assert (coh <= gal + 1e-9).all()
    assert (gal <= coh + math.log(n * (n - 1) / 2) + 1e-9).all()
    scale = torch.rand(n, b, 1, dtype=torch.float64) + 0.1
    assert torch.allclose(gal_per_sample(g * scale), gal, atol=1e-9)
    cos = pairwise_cosine(g)
    assert torch.allclose(cos, cos.transpose(1, 2))
    assert (cos.abs() <= 1 + 1e-9).all()


def test_too_few_members_is_a_clear_error():
    with pytest.raises(ConfigError, match="M >= 2"):
        gal_per_sample(torch.randn(1, 2, 5))


# ------------------------------------------------------------------ Batch sharing
def test_batch_member_gradients_match_separate_autograd():
    ens = ensemble(3)
    x, y = data()
    batch = Batch(ens, x, y, input_grads=True)
    g = batch.member_input_grads
    for i, member in enumerate(ens.members):
        xx = x.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(per_sample_ce(member(xx).unsqueeze(0), y).sum(), xx)
        assert torch.allclose(g[i], ref, atol=1e-6)
    assert batch.backward_passes == 1


def test_gradient_terms_share_one_backward_pass():
    ens = ensemble(3)
    x, y = data()
    obj = parse_objective("ce + 0.5*gal + 0.2*cosine + 0.1*gdr")
    batch = obj.batch(ens, x, y)
    total, parts = obj(batch)
    assert batch.backward_passes == 1
    assert set(parts) == {"ce", "gal", "cosine", "gdr"}
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in ens.parameters())


def test_jr_declares_its_own_passes():
    """JR needs v^T J (not the loss gradient): n_proj passes on the shared forward graph."""
    ens = ensemble(3)
    x, y = data()
    obj = parse_objective("ce + 0.5*gal + 0.1*jr", {"jr": {"n_proj": 2}})
    batch = obj.batch(ens, x, y)
    obj(batch)[0].backward()
    assert batch.backward_passes == 1 + 2
    obj = parse_objective("ce + 0.1*jr")
    batch = obj.batch(ens, x, y)
    obj(batch)
    assert batch.backward_passes == 1


def test_gal_training_signal_reduces_alignment():
    torch.manual_seed(0)
    ens = ensemble(2)
    x, y = data(16)
    obj = parse_objective("1.0*gal")
    opt = torch.optim.Adam(ens.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss, _ = obj(obj.batch(ens, x, y))
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.2


# ------------------------------------------------------------------ numerics
class Constant(nn.Module):
    """Output independent of the input: every input-gradient is exactly zero."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.randn(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], 10) + 0 * x.flatten(1)[:, :1]


@pytest.mark.parametrize("spec", ["ce + gal", "ce + cosine", "ce + gdr", "ce + jr"])
def test_zero_gradients_are_finite(spec):
    ens = Ensemble([Constant(), Constant(), Constant()])
    x, y = data()
    obj = parse_objective(spec)
    total, parts = obj(obj.batch(ens, x, y))
    assert torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in ens.parameters())


@pytest.mark.parametrize("spec", ["ce + gal", "ce + cosine", "ce + gdr", "ce + adp"])
def test_identical_members_are_finite(spec):
    ens = ensemble(3, seeds=[4, 4, 4])
    x, y = data()
    obj = parse_objective(spec)
    total, parts = obj(obj.batch(ens, x, y))
    assert torch.isfinite(total)
    if "gal" in parts:
        assert abs(parts["gal"].item() - (1 + math.log(3))) < 1e-5
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in ens.parameters())


@pytest.mark.parametrize("spec", ["ce + gal + cosine", "ce + gdr", "ce + adp", "ce + jr"])
def test_saturated_softmax_is_finite(spec):
    ens = ensemble(3)
    with torch.no_grad():
        for m in ens.members:
            m.classifier.weight.mul_(1e4)
    x, y = data()
    obj = parse_objective(spec)
    total, _ = obj(obj.batch(ens, x, y))
    assert torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in ens.parameters())


def test_per_member_inputs_refused_by_comparison_terms():
    ens = ensemble(2)
    x, y = data(4)
    xm, ym = torch.stack([x, x.flip(0)]), torch.stack([y, y.flip(0)])
    obj = parse_objective("ce + gal")
    with pytest.raises(ConfigError, match="bagging"):
        obj(obj.batch(ens, xm, ym))
    obj = parse_objective("ce + 0.1*jr")
    total, _ = obj(obj.batch(ens, xm, ym))
    assert torch.isfinite(total)
