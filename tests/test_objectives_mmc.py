"""Max-Mahalanobis centres (Algorithm 1), MM heads and the MMC loss (Pang et al.)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robens.ensemble import Ensemble
from robens.errors import ConfigError
from robens.factory import build_member
from robens.models import build_model
from robens.models.heads import MMHead, attach_mm_head, mm_centers, mm_head_of
from robens.objectives import parse_objective


@pytest.mark.parametrize(("num_classes", "dim"), [(2, 1), (3, 2), (10, 9), (10, 64), (100, 128)])
def test_algorithm1_oracles(num_classes, dim):
    u = mm_centers(num_classes, dim, scale=1.0).double()
    gram = u @ u.T
    off = ~torch.eye(num_classes, dtype=torch.bool)
    assert torch.allclose(u.norm(dim=1), torch.ones(num_classes, dtype=u.dtype), atol=1e-6)
    assert torch.allclose(gram[off], torch.full_like(gram[off], -1 / (num_classes - 1)), atol=1e-6)
    assert u.sum(0).abs().max() < 1e-5
    d2 = torch.cdist(u, u).square()[off]
    assert torch.allclose(d2, torch.full_like(d2, 2 * num_classes / (num_classes - 1)), atol=1e-5)


def test_scaled_centres_inner_products():
    c = 10.0
    mu = mm_centers(10, 1024, scale=c).double()
    gram = mu @ mu.T
    off = ~torch.eye(10, dtype=torch.bool)
    assert torch.allclose(mu.norm(dim=1), torch.full((10,), c, dtype=mu.dtype), atol=1e-4)
    assert torch.allclose(gram[off], torch.full_like(gram[off], -(c**2) / 9), atol=1e-4)


def test_fallback_for_small_dimension():
    u = mm_centers(10, 3, scale=1.0, steps=150, seed=0).double()
    assert torch.allclose(u.norm(dim=1), torch.ones(10, dtype=u.dtype), atol=1e-6)
    gram = u @ u.T
    worst = gram[~torch.eye(10, dtype=torch.bool)].max().item()
    start = mm_centers(10, 3, scale=1.0, steps=0, seed=0).double()
    worst0 = (start @ start.T)[~torch.eye(10, dtype=torch.bool)].max().item()
    assert worst < min(0.7, worst0)  # spread out (the Tammes optimum for 10 points is 0.43)
    assert torch.equal(u, mm_centers(10, 3, scale=1.0, steps=150, seed=0).double())


def test_head_scores_and_nearest_centre():
    head = MMHead(6, 4, kind="mmc", scale=3.0)
    z = torch.randn(20, 6)
    scores = head(z)
    ref = -0.5 * torch.cdist(z, head.mm_centers).square()
    assert torch.allclose(scores, ref, atol=1e-4)
    assert torch.equal(scores.argmax(-1), torch.cdist(z, head.mm_centers).argmin(-1))
    assert "mm_centers" in dict(head.named_buffers())
    assert not list(head.parameters())  # the centres are fixed


def test_mmlda_softmax_equals_softmax_of_inner_products():
    """Equal-norm centres: softmax(-1/2||z - mu_l||^2) = softmax(z . mu_l)."""
    head = MMHead(9, 10, kind="mmlda", scale=10.0)
    z = torch.randn(7, 9, dtype=torch.float64)
    mu = head.mm_centers.double()
    assert torch.allclose(torch.softmax(head(z), -1), torch.softmax(z @ mu.T, -1), atol=1e-6)


def test_attach_head_keeps_classifier_name_and_features():
    model = build_model("lenet", activation="leaky_relu", seed=0)
    attach_mm_head(model, kind="mmc", scale=10.0)
    assert isinstance(model.classifier, MMHead) and mm_head_of(model) is model.classifier
    x = torch.rand(3, 1, 28, 28)
    z = model.features(x)
    assert z.shape == (3, model.feature_dim)
    assert torch.allclose(model(x), model.classifier(z))
    with pytest.raises(ConfigError):
        attach_mm_head(nn.Linear(3, 3))


def test_member_from_config_spec_round_trip():
    spec = {"name": "lenet", "in_shape": [1, 28, 28], "num_classes": 10,
            "activation": "leaky_relu", "leaky_slope": 0.1, "head": "mmlda", "mm_scale": 5.0}
    m = build_member(spec)
    assert m.classifier.kind == "mmlda" and m.classifier.scale == 5.0
    assert "classifier.mm_centers" in m.state_dict()


class Feat(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.feature_dim = 9
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 9), nn.LeakyReLU(0.1))
        self.classifier = nn.Linear(9, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def test_mmc_term_equals_half_squared_distance_to_true_centre():
    ens = Ensemble([attach_mm_head(Feat(s), "mmc", 10.0) for s in range(3)])
    x, y = torch.rand(5, 1, 4, 4), torch.randint(0, 10, (5,))
    obj = parse_objective("mmc")
    total, _ = obj(obj.batch(ens, x, y))
    ref = torch.stack(
        [0.5 * (m.features(x) - m.classifier.mm_centers[y]).square().sum(-1) for m in ens.members]
    ).mean()
    assert total.item() == pytest.approx(ref.item(), rel=1e-5)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in ens.parameters())


def test_mmc_gradient_terms_use_the_mmc_loss():
    ens = Ensemble([attach_mm_head(Feat(s), "mmc", 10.0) for s in range(2)])
    x, y = torch.rand(4, 1, 4, 4), torch.randint(0, 10, (4,))
    obj = parse_objective("mmc + 0.5*gal")
    batch = obj.batch(ens, x, y)
    obj(batch)
    xx = x.clone().requires_grad_(True)
    m0 = ens.members[0]
    loss = 0.5 * (m0.features(xx) - m0.classifier.mm_centers[y]).square().sum()
    (ref,) = torch.autograd.grad(loss, xx)
    assert torch.allclose(batch.member_input_grads[0], ref, atol=1e-4)
    assert batch.backward_passes == 1


def test_mmc_term_needs_mm_heads():
    ens = Ensemble([Feat(0), Feat(1)])
    obj = parse_objective("mmc")
    with pytest.raises(ConfigError, match="model.head: mmc"):
        obj(obj.batch(ens, torch.rand(2, 1, 4, 4), torch.tensor([0, 1])))


def test_mmc_loss_is_zero_at_the_centre():
    head = MMHead(4, 5, scale=2.0)
    y = torch.tensor([3])
    scores = head(head.mm_centers[y])
    assert -scores[0, 3].item() == pytest.approx(0.0, abs=1e-6)
    assert scores.argmax().item() == 3
    # distance between two centres: ||u_i - u_j||^2 = 2L/(L-1), times scale^2
    assert -scores[0, 0].item() == pytest.approx(0.5 * 4.0 * 2 * 5 / 4, rel=1e-5)
    assert math.isfinite(float(scores.sum()))
