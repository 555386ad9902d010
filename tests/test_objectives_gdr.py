"""GDR (Adam & Speciel 2020): closed forms vs Monte Carlo and Genz, oracles, the regularizer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robens.ensemble import Ensemble
from robens.errors import InputError
from robens.objectives import gdr, gdr_mean, parse_objective
from robens.objectives.gdr import GDRRegularizer


def coplanar_120():
    ang = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=torch.float64)
    return torch.stack([ang.cos(), ang.sin(), torch.zeros(3, dtype=torch.float64)], -1)[:, None]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_orthogonal_gradients_give_two_to_minus_n(n):
    g = torch.eye(n, 7, dtype=torch.float64)[:, None, :] * torch.arange(1, n + 1)[:, None, None]
    r, se = gdr(g, method="auto", n_samples=200_000, seed=1, return_se=True)
    assert abs(float(r) - 2.0**-n) <= max(4 * float(se), 1e-12)
    if n >= 2:
        assert abs(float(gdr(g, method="genz", seed=0)) - 2.0**-n) < 2e-3


def test_identical_gradients_give_one_half():
    g = torch.randn(1, 3, 12).expand(5, 3, 12)
    for n in (2, 3):
        assert torch.allclose(gdr(g[:n]), torch.full((3,), 0.5, dtype=torch.float64))
    r, se = gdr(g, method="mc", n_samples=50_000, return_se=True)
    assert (abs(r - 0.5) <= 4 * se + 1e-3).all()


def test_opposite_pair_and_coplanar_triple_give_zero():
    g = torch.randn(1, 2, 8, dtype=torch.float64)
    assert torch.allclose(gdr(torch.cat([g, -g])), torch.zeros(2, dtype=torch.float64))
    assert float(gdr(coplanar_120())) == pytest.approx(0.0, abs=1e-12)
    assert float(gdr(coplanar_120(), method="mc", n_samples=20_000)) == 0.0


@pytest.mark.parametrize("n", [2, 3])
def test_closed_forms_match_monte_carlo_and_genz(n):
    g = torch.randn(n, 6, 10, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    exact = gdr(g, method="exact")
    mc, se = gdr(g, method="mc", n_samples=100_000, seed=3, return_se=True)
    genz = gdr(g, method="genz", seed=0)
    assert (abs(mc - exact) <= 4 * se + 1e-4).all()
    assert (abs(mc - exact) < 1e-2).all()
    assert (abs(genz - exact) < 1e-3).all()


def test_properties_invariances_and_monotone_in_members():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(4, 5, 9, generator=gen, dtype=torch.float64)
    r3 = gdr(g[:3])
    assert ((r3 >= 0) & (r3 <= 0.5)).all()
    scaled = g[:3] * (torch.rand(3, 5, 1, generator=gen, dtype=torch.float64) + 0.1)
    assert torch.allclose(gdr(scaled), r3)
    assert torch.allclose(gdr(g[[2, 0, 1]]), r3)
    r2 = gdr(g[:2])
    assert (r3 <= r2 + 1e-12).all()  # adding a member never increases R
    r4, se4 = gdr(g, method="mc", n_samples=100_000, return_se=True)
    assert (r4 <= r3 + 4 * se4 + 1e-4).all()
    assert gdr_mean(g[:3]) == pytest.approx(float(r3.mean()))


def test_zero_gradients_are_left_out():
    g = torch.randn(3, 2, 6, dtype=torch.float64)
    g[2, 0] = 0.0
    r = gdr(g)
    assert float(r[0]) == pytest.approx(float(gdr(g[:2, :1])))
    assert torch.allclose(gdr(torch.zeros(3, 4, 6)), torch.full((4,), 0.5, dtype=torch.float64))
    assert torch.isfinite(gdr(torch.zeros(5, 2, 3), method="mc", n_samples=1000)).all()


def test_bad_method_and_exact_limit():
    g = torch.randn(4, 2, 5)
    with pytest.raises(InputError):
        gdr(g, method="nope")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="closed form"):
        gdr(g, method="exact")


# ------------------------------------------------------------------ the regularizer
def reg(g: torch.Tensor, **kw) -> torch.Tensor:
    return GDRRegularizer(**kw).per_sample(g).mean()


def test_regularizer_forms_are_monotone_maps_of_r():
    gen = torch.Generator().manual_seed(5)
    g2 = torch.randn(2, 50, 8, generator=gen, dtype=torch.float64)
    cos = torch.nn.functional.cosine_similarity(g2[0], g2[1], dim=-1)
    assert float(reg(g2)) == pytest.approx(float(cos.mean()), abs=1e-9)
    g3 = torch.randn(3, 1, 8, generator=gen, dtype=torch.float64)
    r3 = float(gdr(g3))
    # N=3: sum of arcsin = 4 pi (R - 1/8)
    assert float(reg(g3)) == pytest.approx(4 * math.pi * (r3 - 0.125), abs=1e-4)


def test_soft_monte_carlo_tracks_gdr_for_four_members():
    gen = torch.Generator().manual_seed(7)
    g = torch.randn(4, 1, 30, generator=gen, dtype=torch.float64)
    orth = torch.eye(4, 30, dtype=torch.float64)[:, None]
    same = g[:1].expand(4, 1, 30)
    vals = [float(reg(t, n_samples=4096)) for t in (orth, g, same)]
    assert vals[0] == pytest.approx(1 / 16, abs=0.02)  # E[sigmoid(t/tau)]^4 = 2^-4
    # identical members: E_t[sigmoid(t/tau)^4], t ~ N(0, 1), a soft version of 1/2
    t = np.linspace(-8, 8, 200_001)
    density = np.exp(-t * t / 2) / np.sqrt(2 * np.pi)
    soft_same = np.trapezoid(density / (1 + np.exp(-t / 0.1)) ** 4, t)
    assert vals[2] == pytest.approx(soft_same, abs=0.02)
    assert float(reg(same, n_samples=4096, tau=0.005)) == pytest.approx(0.5, abs=0.02)
    assert float(reg(g, n_samples=4096)) == pytest.approx(float(gdr(g, method="genz")), abs=0.03)


class Constant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.randn(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], 10) + 0 * x.flatten(1)[:, :1]


def small(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.LeakyReLU(0.1), nn.Linear(8, 10))


@pytest.mark.parametrize("members", ["distinct", "identical", "zero"])
def test_regularizer_four_members_finite(members):
    if members == "zero":
        ens = Ensemble([Constant() for _ in range(4)])
    else:
        ens = Ensemble([small(s if members == "distinct" else 1) for s in range(4)])
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(5)
    obj = parse_objective("ce + 0.5*gdr")
    batch = obj.batch(ens, x, y)
    total, parts = obj(batch)
    assert torch.isfinite(total) and 0.0 <= parts["gdr"].item() <= 1.0
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in ens.parameters())
    assert batch.backward_passes == 1
    np.testing.assert_array_less(gdr(batch).numpy(), 0.5 + 1e-12)
