"""ADP (Pang et al. 2019): entropy, log-det diversity oracles, Theorem 2, the term."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.optimize import brentq
from torch import nn

from robens.ensemble import Ensemble
from robens.errors import ConfigError
from robens.objectives import (
    adp_per_sample,
    ensemble_entropy,
    log_det_diversity,
    parse_objective,
)
from robens.objectives.base import Batch


def test_entropy_of_uniform_is_log_l():
    for num_classes in (2, 10, 100):
        p = torch.full((3, 4, num_classes), 1.0 / num_classes)
        assert torch.allclose(ensemble_entropy(p), torch.full((4,), math.log(num_classes)))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_identical_members_log_det(k):
    p = torch.softmax(torch.randn(1, 6, 10), -1).expand(k, 6, 10)
    y = torch.randint(0, 10, (6,))
    expected = (k - 1) * math.log(1e-6) + math.log(k + 1e-6)
    assert torch.allclose(log_det_diversity(p, y), torch.full((6,), expected), atol=1e-4)
    if k == 3:
        assert expected == pytest.approx(-26.5324, abs=1e-4)


def test_orthonormal_non_maximal_columns():
    # K=3 members with disjoint supports on the non-true classes of y = 0
    num_classes, k = 10, 3
    p = torch.full((k, 1, num_classes), 1e-30)
    for i in range(k):
        p[i, 0, 0] = 0.5
        p[i, 0, 1 + 3 * i : 4 + 3 * i] = 0.5 / 3
    led = log_det_diversity(p, torch.tensor([0]))
    assert float(led) == pytest.approx(k * math.log(1 + 1e-6), abs=1e-8)
    assert float(led) == pytest.approx(3e-6, abs=1e-7)


def test_log_det_bounded_by_hadamard_and_label_removed():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, 50, 10, generator=gen) * 3
    y = torch.randint(0, 10, (50,), generator=gen)
    led = log_det_diversity(torch.softmax(z, -1), y)
    assert (led <= 3 * math.log(1 + 1e-6) + 1e-6).all()
    # from logits (exact normalization of the non-maximal part) == from probabilities
    led_logits = log_det_diversity(torch.softmax(z, -1), y, member_logits=z)
    assert torch.allclose(led, led_logits, atol=1e-3)
    # only the non-true classes matter: changing the true-class logit leaves log ED unchanged
    z2 = z.clone()
    z2[:, torch.arange(50), y] += 5.0
    assert torch.allclose(log_det_diversity(None, y, member_logits=z2), led_logits, atol=1e-5)


def test_k_larger_than_l_minus_one_is_a_clear_error():
    p = torch.softmax(torch.randn(4, 2, 4), -1)
    with pytest.raises(ConfigError, match="K <= L - 1"):
        log_det_diversity(p, torch.tensor([0, 1]))


def test_saturated_members_are_finite():
    z = torch.zeros(3, 2, 10)
    z[:, :, 0] = 1e4  # float32 softmax puts exactly 0 on the other classes
    z.requires_grad_(True)
    y = torch.tensor([0, 3])
    led = log_det_diversity(torch.softmax(z, -1), y, member_logits=z)
    assert torch.isfinite(led).all()
    led.sum().backward()
    assert torch.isfinite(z.grad).all()


class FreeLogits(nn.Module):
    """K members whose logits for one fixed input are free parameters."""

    def __init__(self, k: int, num_classes: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.z = nn.Parameter(torch.randn(k, 1, num_classes, generator=g, dtype=torch.float64))

    @property
    def num_members(self) -> int:
        return self.z.shape[0]

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.z.expand(-1, x.shape[0], -1)

    def combine_logits(self, ml: torch.Tensor) -> torch.Tensor:
        return ml.mean(0)


def theorem2_fy(k: int, num_classes: int, alpha: float) -> float:
    """Solve 1/F_y = (alpha/K) log(F_y (L-1) / (1 - F_y)) (ADP Theorem 2)."""
    lo = 1.0 / num_classes + 1e-12

    def f(fy: float) -> float:
        return 1 / fy - alpha / k * math.log(fy * (num_classes - 1) / (1 - fy))

    return brentq(f, lo, 1 - 1e-12)


@pytest.mark.parametrize(
    ("k", "num_classes", "expected"), [(3, 10, 0.58777), (3, 100, 0.36942), (5, 10, 0.75383)]
)
def test_theorem2_fixed_point_values(k, num_classes, expected):
    assert theorem2_fy(k, num_classes, 2.0) == pytest.approx(expected, abs=1e-5)


def test_theorem2_by_minimizing_the_adp_loss():
    """beta=0: the minimizer of sum_k CE_k - alpha H(F) has F^k_y = F_y from Theorem 2."""
    k, num_classes = 3, 10
    model = FreeLogits(k, num_classes)
    x, y = torch.zeros(1, 1, 2, 2, dtype=torch.float64), torch.tensor([4])
    obj = parse_objective("ce + adp", {"ce": {"reduction": "sum"}, "adp": {"beta": 0.0}})
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss, _ = obj(Batch(model, x, y))
        loss.backward()
        return loss

    opt.step(closure)
    p = torch.softmax(model.z.detach(), -1)[:, 0]
    fy = theorem2_fy(k, num_classes, 2.0)
    assert torch.allclose(p[:, 4], torch.full((k,), fy, dtype=p.dtype), atol=2e-3)
    others = torch.cat([p[:, :4], p[:, 5:]], 1)
    assert torch.allclose(others.mean(0), torch.full((9,), (1 - fy) / 9, dtype=p.dtype), atol=2e-3)


def test_adp_term_value_and_sign():
    torch.manual_seed(0)
    members = [nn.Sequential(nn.Flatten(), nn.Linear(4, 10)) for _ in range(3)]
    ens = Ensemble(members)
    x, y = torch.rand(6, 1, 2, 2), torch.randint(0, 10, (6,))
    params = {"ce": {"reduction": "sum"}, "adp": {"alpha": 2, "beta": 0.5}}
    obj = parse_objective("ce + adp", params)
    batch = obj.batch(ens, x, y)
    total, parts = obj(batch)
    total, parts = total.detach(), {k: v.detach() for k, v in parts.items()}
    value, h, led = adp_per_sample(batch, 2.0, 0.5)
    assert parts["adp"].item() == pytest.approx(-(2 * h + 0.5 * led).mean().item(), rel=1e-6)
    with torch.no_grad():
        ce_sum = sum(nn.functional.cross_entropy(m(x), y) for m in members)
    assert parts["ce"].item() == pytest.approx(float(ce_sum), rel=1e-5)
    assert total.item() == pytest.approx(float(ce_sum) + parts["adp"].item(), rel=1e-5)
    assert batch.backward_passes == 0  # ADP needs no input gradients
    with pytest.raises(ConfigError):
        parse_objective("adp", {"adp": {"alpha": -1}})
