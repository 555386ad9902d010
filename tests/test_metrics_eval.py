"""Metrics against hand-computed values: transfer matrix, GAAS and regular Hadamard matrices,
weighted accuracy, Jacobian norms and Theorem 3.1, disagreement, noise and rotation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robens.ensemble import Ensemble
from robens.errors import InputError
from robens.metrics import (
    disagreement_rate,
    gaas_directions,
    gaas_success,
    gradient_statistics,
    histogram,
    jacobian_statistics,
    member_jacobians,
    noise_accuracy,
    regular_hadamard,
    rotate,
    rotation_accuracy,
    summarize,
    theorem31,
    transfer_matrix,
    transfer_summary,
    weighted_accuracy,
)


class Threshold(nn.Module):
    """Two logits on a [B, 1, 1, D] image: class 1 iff x[pixel] > 0.5 (a linear model)."""

    def __init__(self, pixel: int, scale: float = 10.0) -> None:
        super().__init__()
        self.pixel = pixel
        self.scale = nn.Parameter(torch.tensor(scale), requires_grad=False)

    def forward(self, x):
        v = x.flatten(1)[:, self.pixel : self.pixel + 1]
        return torch.cat([torch.zeros_like(v), self.scale * (v - 0.5)], 1)


class Linear(nn.Module):
    def __init__(self, w: torch.Tensor, b: torch.Tensor | None = None) -> None:
        super().__init__()
        self.lin = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.lin.weight.copy_(w)
            self.lin.bias.copy_(b if b is not None else torch.zeros(w.shape[0]))

    def forward(self, x):
        return self.lin(x.flatten(1))


# ---------------------------------------------------------------------------- transfer
def test_transfer_matrix_toy_ensemble_hand_computed():
    """Member A looks at pixel 0, member B at pixel 1; FGSM (eps 0.2) on one member moves
    only its own pixel (the other's gradient is exactly zero there).

    x1 = (0.6, 0.6): FGSM on A -> (0.4, 0.6): A wrong, B right; on B -> (0.6, 0.4).
    x2 = (0.8, 0.6): FGSM on A -> (0.6, 0.6): both right; on B -> (0.8, 0.4): B wrong.
    Rows = source, columns = evaluated member: [[1/2, 1], [1, 0]].
    """
    ens = Ensemble([Threshold(0), Threshold(1)], in_shape=(1, 1, 2))
    x = torch.tensor([[0.6, 0.6], [0.8, 0.6]]).view(2, 1, 1, 2)
    y = torch.tensor([1, 1])
    mat = transfer_matrix(ens, "fgsm", [(x, y)], eps=0.2)
    torch.testing.assert_close(mat, torch.tensor([[0.5, 1.0], [1.0, 0.0]], dtype=torch.float64))
    s = transfer_summary(mat)
    assert s == pytest.approx({"white_box": 0.25, "transfer": 1.0, "gap": 0.75})


def test_transfer_summary_single_member_and_shape_check():
    assert math.isnan(transfer_summary(torch.tensor([[0.3]]))["transfer"])
    with pytest.raises(InputError):
        transfer_summary(torch.zeros(2, 3))


# ---------------------------------------------------------------------------- GAAS
@pytest.mark.parametrize("k", [4, 16, 36, 64])
def test_regular_hadamard(k):
    h = regular_hadamard(k)
    assert set(h.unique().tolist()) == {-1, 1}
    assert torch.equal(h @ h.T, k * torch.eye(k, dtype=h.dtype))
    assert set(h.sum(1).tolist()) == {math.isqrt(k)}


def test_regular_hadamard_impossible_orders():
    for k in (2, 8, 12, 25, 100):  # 100 = 4 * 25 exists in theory but is not built here
        with pytest.raises(InputError):
            regular_hadamard(k)


@pytest.mark.parametrize("k,d", [(4, 784), (16, 784), (36, 784), (64, 3072), (36, 37)])
def test_gaas_directions_orthogonal_with_linf_eps(k, d):
    g = torch.randn(3, d, dtype=torch.float64)
    g[0, :5] = 0.0  # zero gradient entries keep sign +1, so orthogonality holds exactly
    r = gaas_directions(g, 0.03, k)
    assert r.shape == (3, k, d)
    gram = torch.einsum("bkd,bld->bkl", r, r)
    off = gram - torch.diag_embed(torch.diagonal(gram, dim1=1, dim2=2))
    assert off.abs().max().item() < 1e-12
    torch.testing.assert_close(r.abs().amax(-1), torch.full((3, k), 0.03, dtype=torch.float64))
    # aligned with the gradient: <r_i, sign(g)> = eps * (d // k) * sqrt(k) (row sums sqrt(k))
    s = torch.where(g == 0, torch.ones_like(g), g.sign())
    align = torch.einsum("bkd,bd->bk", r, s)
    torch.testing.assert_close(
        align, torch.full((3, k), 0.03 * (d // k) * math.isqrt(k), dtype=torch.float64)
    )


def test_gaas_success_hand_computed():
    """Linear model: class 1 iff sum(x) > 2.5, on 4 pixels at 0.5 (label 0). Each H_4 row
    has three +1 and one -1, so every direction adds 2 * eps to the sum: eps 0.2 -> 2.4 (no
    direction fools it), eps 0.3 -> 2.6 (all four do)."""
    w = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    model = Linear(w, torch.tensor([0.0, -2.5]))
    x = torch.full((1, 1, 2, 2), 0.5)
    y = torch.tensor([0])
    low = gaas_success(model, [(x, y)], 0.2, ks=[4])
    high = gaas_success(model, [(x, y)], 0.3, ks=[4])
    assert low[4]["mean_fraction"] == 0.0 and low[4]["any"] == 0.0
    assert high[4]["mean_fraction"] == 1.0 and high[4]["n"] == 1
    assert gaas_success(model, [(x, y)], 0.0, ks=[4])[4]["mean_fraction"] == 0.0


# ---------------------------------------------------------------------------- weighted acc
def test_weighted_accuracy_published_oracle():
    assert weighted_accuracy(97.8, [82.8]) == pytest.approx(90.3)
    from robens.report.published import JE_TABLE1

    row = JE_TABLE1["rows"][0]
    assert weighted_accuracy(row["clean"], [row["avg_uap"]]) == pytest.approx(row["weighted"])


# ---------------------------------------------------------------------------- Jacobian
def test_member_and_ensemble_jacobians_of_linear_members():
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(3, 4, generator=g) for _ in range(3)]
    ens = Ensemble([Linear(w) for w in ws], weights=[0.5, 0.3, 0.2], in_shape=(1, 2, 2))
    x = torch.rand(5, 1, 2, 2, generator=g)
    jac = member_jacobians(ens, x)
    assert jac.shape == (3, 5, 3, 4)
    for i, w in enumerate(ws):
        torch.testing.assert_close(jac[i, 0], w)
    st = jacobian_statistics(ens, [(x, None)])
    wf = sum(c * w for c, w in zip([0.5, 0.3, 0.2], ws, strict=True))
    assert st["ensemble_frob_sq"] == pytest.approx(float(wf.square().sum()), rel=1e-5)
    assert st["member_frob_sq"] == pytest.approx([float(w.square().sum()) for w in ws], rel=1e-5)
    assert st["lower"] <= st["predicted"] <= st["upper"]
    # the Jacobian of the probs-combined ensemble goes through autograd instead
    ens.combine = "probs"
    st2 = jacobian_statistics(ens, [(x, None)])
    assert st2["ensemble_frob_sq"] > 0


def test_theorem31_bounds_and_monte_carlo():
    t = theorem31(10, 20, 0.3, 1.44, [0.2] * 5)
    assert t["expected"] == pytest.approx(t["lower"])  # tight at uniform weights
    assert t["expected"] == pytest.approx(200 * (1.44 / 5 + 0.09))
    # Monte Carlo: iid N(mu, s^2) member Jacobians, Dirichlet weights
    rng = np.random.default_rng(0)
    c = rng.dirichlet(np.ones(5))
    j = rng.normal(0.3, 1.2, size=(20000, 5, 10, 20))
    f = np.einsum("m,nmcd->ncd", c, j)
    sq = (f**2).sum((1, 2))
    pred = theorem31(10, 20, 0.3, 1.44, c)
    assert sq.mean() == pytest.approx(pred["expected"], rel=0.01)
    assert sq.var() == pytest.approx(pred["variance"], rel=0.05)
    assert pred["lower"] <= pred["expected"] < pred["upper"]


# ---------------------------------------------------------------------------- robustness
def test_disagreement_hand_computed():
    ens = Ensemble([Threshold(0), Threshold(1), Threshold(0)], in_shape=(1, 1, 2))
    x = torch.tensor([[0.6, 0.6], [0.6, 0.4], [0.4, 0.4], [0.4, 0.6]]).view(4, 1, 1, 2)
    # votes: (1,1,1), (1,0,1), (0,0,0), (0,1,0): pairwise disagreements 0, 2/3, 0, 2/3
    d = disagreement_rate(ens, [(x, torch.zeros(4, dtype=torch.long))])
    assert d["pairwise"] == pytest.approx(1 / 3)
    assert d["any"] == pytest.approx(0.5)
    assert d["n"] == 4


def test_rotation_matches_rot90_and_identity():
    x = torch.rand(3, 2, 6, 6)
    torch.testing.assert_close(rotate(x, 0.0), x)
    torch.testing.assert_close(rotate(x, 90.0), torch.rot90(x, 1, (2, 3)), atol=1e-6, rtol=0)
    torch.testing.assert_close(rotate(x, -90.0), torch.rot90(x, -1, (2, 3)), atol=1e-6, rtol=0)
    torch.testing.assert_close(rotate(x, 180.0), torch.rot90(x, 2, (2, 3)), atol=1e-6, rtol=0)
    # counter-clockwise on screen: a dot right of the centre moves up (non-square image)
    img = torch.zeros(1, 1, 6, 8)
    img[0, 0, 2, 5] = 1.0
    assert rotate(img, 90.0)[0, 0].nonzero().tolist() == [[1, 3]]


def test_noise_and_rotation_accuracy():
    model = Threshold(0)
    x = torch.tensor([[0.9, 0.0], [0.1, 0.0]]).view(2, 1, 1, 2)
    y = torch.tensor([1, 0])
    acc = noise_accuracy(model, [(x, y)], [0.0, 0.01], seed=0)
    assert acc == {0.0: 1.0, 0.01: 1.0}
    assert noise_accuracy(model, [(x, y)], [0.3], seed=1) == noise_accuracy(
        model, [(x, y)], [0.3], seed=1
    )
    assert rotation_accuracy(model, [(x, y)], [0.0]) == {0.0: 1.0}


# ---------------------------------------------------------------------------- gradients
def test_gradient_statistics_identical_members_oracles():
    w = torch.randn(3, 4)
    ens = Ensemble([Linear(w), Linear(w)], in_shape=(1, 2, 2))
    x = torch.rand(6, 1, 2, 2)
    y = torch.randint(0, 3, (6,))
    st = gradient_statistics(ens, [(x, y)])
    np.testing.assert_allclose(st["coherence"], 1.0, atol=1e-5)
    np.testing.assert_allclose(st["cosine"], 1.0, atol=1e-5)
    np.testing.assert_allclose(st["gal"], 1.0, atol=1e-5)  # N = 2: GAL = CS
    np.testing.assert_allclose(st["gdr"], 0.5, atol=1e-5)
    with pytest.raises(InputError):
        gradient_statistics(Ensemble([Linear(w)], in_shape=(1, 2, 2)), [(x, y)])


def test_summarize_and_histogram():
    s = summarize([0.0, 1.0, 2.0, 3.0])
    assert s["mean"] == 1.5 and s["n"] == 4 and s["min"] == 0.0 and s["max"] == 3.0
    h = histogram([-2.0, -0.5, 0.5, 0.6, 2.0], bins=2)
    assert h["edges"] == [-1.0, 0.0, 1.0] and h["counts"] == [2, 3]
