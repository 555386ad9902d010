"""Jacobian regularization (Hoffman et al. 2019) and Theorem 3.1 of Jacobian Ensembles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robens.ensemble import Ensemble
from robens.errors import ConfigError
from robens.objectives import jacobian_frobenius_sq, parse_objective
from robens.objectives.base import Batch
from robens.objectives.jacobian import JacobianReg, random_unit_vectors


def linear(seed: int = 0, d: int = 12, c: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, c)).double()


def x_batch(b: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, 3, 4, generator=torch.Generator().manual_seed(seed)).double()


def test_linear_model_exact_is_half_frobenius_norm():
    model = linear()
    w = model[1].weight
    x, y = x_batch(), torch.zeros(4, dtype=torch.long)
    term = JacobianReg(n_proj=-1)
    batch = Batch(model, x, y, input_grads=True)
    r = term(batch)
    assert r.item() == pytest.approx(0.5 * w.square().sum().item(), rel=1e-12)
    assert batch.backward_passes == 5  # one per class
    sq = jacobian_frobenius_sq(model, x, exact=True)
    assert torch.allclose(sq, w.square().sum().expand(4))


def test_projection_estimator_is_unbiased():
    model = linear(1)
    truth = model[1].weight.square().sum().item()
    n = 4000
    x = x_batch(1).expand(n, 1, 3, 4)  # each row draws its own direction: n iid estimates
    gen = torch.Generator().manual_seed(0)
    est = jacobian_frobenius_sq(model, x, exact=False, n_proj=1, generator=gen)
    se = est.std().item() / n**0.5
    assert abs(est.mean().item() - truth) < 4 * se
    assert est.std().item() > 0  # it is a genuine random estimate
    est4 = jacobian_frobenius_sq(model, x, exact=False, n_proj=4, generator=gen)
    assert est4.std() < est.std()  # more projections, lower variance


def test_unit_vectors_are_uniform_on_sphere():
    v = random_unit_vectors((20000, 5), torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(v.norm(dim=-1), torch.ones(20000, dtype=torch.float64))
    cov = v.T @ v / 20000
    assert torch.allclose(cov, torch.eye(5, dtype=torch.float64) / 5, atol=5e-3)


def test_term_on_ensemble_is_mean_over_members_and_trains():
    members = [linear(s) for s in range(3)]
    ens = Ensemble(members)
    x, y = x_batch(), torch.arange(4)
    obj = parse_objective("ce + 0.1*jr", {"jr": {"n_proj": -1}})
    batch = obj.batch(ens, x, y)
    total, parts = obj(batch)
    expected = np.mean([0.5 * m[1].weight.square().sum().item() for m in members])
    assert parts["jr"].item() == pytest.approx(expected, rel=1e-10)
    total.backward()  # create_graph: the penalty reaches the weights
    for m in members:
        w = m[1].weight
        ce_only = torch.autograd.grad(
            nn.functional.cross_entropy(m(x), y) / 3, w, retain_graph=False
        )[0]
        assert torch.allclose(w.grad, ce_only + 0.1 * w.detach() / 3, atol=1e-10)


def test_seeded_projections_reproduce():
    model = linear()
    x, y = x_batch(), torch.zeros(4, dtype=torch.long)
    a = JacobianReg(n_proj=2, seed=5)(Batch(model, x, y, input_grads=True))
    b = JacobianReg(n_proj=2, seed=5)(Batch(model, x, y, input_grads=True))
    assert a.item() == b.item()


def test_bad_n_proj():
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigError):
            JacobianReg(n_proj=bad)  # type: ignore[arg-type]


def test_exact_metric_matches_jacrev_on_nonlinear_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 4)).double()
    x = x_batch(3)
    jac = torch.autograd.functional.jacobian
    ref = torch.stack([jac(lambda v: model(v[None])[0], xi).square().sum() for xi in x])
    assert torch.allclose(jacobian_frobenius_sq(model, x), ref)


def test_theorem_3_1_moments_by_monte_carlo():
    """E and Var of ||sum_i c_i J_i||_F^2 for iid N(mu, sigma^2) Jacobian entries (Thm 3.1)."""
    rng = np.random.default_rng(0)
    c_dim, d_dim, m, mu, sigma = 10, 20, 5, 0.3, 1.2
    c = rng.dirichlet(np.ones(m))
    draws = 20000
    s2 = sigma**2 * np.sum(c**2)
    # sum_i c_i J_i has iid N(mu, s^2) entries (sum c_i = 1); draw the J_i explicitly
    vals = np.empty(draws)
    for start in range(0, draws, 2000):
        j = rng.normal(mu, sigma, size=(2000, m, c_dim, d_dim))
        comb = np.einsum("i,nicd->ncd", c, j)
        vals[start : start + 2000] = np.square(comb).sum((1, 2))
    cd = c_dim * d_dim
    e_pred = cd * (s2 + mu**2)
    var_pred = cd * (4 * mu**2 * s2 + 2 * s2**2)
    se_mean = np.sqrt(var_pred / draws)
    assert abs(vals.mean() - e_pred) < 4 * se_mean
    assert vals.var() == pytest.approx(var_pred, rel=0.06)
    # the bounds, tight at uniform weights
    assert cd * (sigma**2 / m + mu**2) <= e_pred < cd * (sigma**2 + mu**2)
    assert var_pred >= cd * (4 * mu**2 * sigma**2 / m + 2 * sigma**4 / m**2) - 1e-9
    u = np.full(m, 1 / m)
    su = sigma**2 * np.sum(u**2)
    assert cd * (su + mu**2) == pytest.approx(cd * (sigma**2 / m + mu**2))
