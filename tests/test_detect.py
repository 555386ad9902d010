"""Detection scores, ROC-AUC (against scikit-learn) and the RCE-paper protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robens.detect import (
    KernelDensity,
    confidence,
    detection_protocol,
    detection_scores,
    downsample_curve,
    log_kernel_density,
    member_agreement,
    non_me,
    roc_auc,
    roc_curve,
)
from robens.ensemble import Ensemble
from robens.errors import InputError


# ---------------------------------------------------------------------------- ROC-AUC
def test_auc_separable_scores_is_one_and_reversed_is_zero():
    assert roc_auc([0.9, 0.8, 0.7], [0.1, 0.2, 0.3]) == 1.0
    assert roc_auc([0.1, 0.2], [0.8, 0.9]) == 0.0
    assert roc_auc([0.5, 0.5], [0.5]) == 0.5  # all ties: chance


def test_auc_hand_computed_with_ties():
    # pairs: (3 vs 1) > , (3 vs 3) tie, (2 vs 1) >, (2 vs 3) <  -> (1 + .5 + 1 + 0) / 4
    assert roc_auc([3.0, 2.0], [1.0, 3.0]) == pytest.approx(0.625)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn(seed):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    clean = np.round(rng.normal(0.5, 1, 300), 1)  # rounding makes ties
    adv = np.round(rng.normal(0, 1, 200), 1)
    labels = np.r_[np.ones(300), np.zeros(200)]
    expected = sk.roc_auc_score(labels, np.r_[clean, adv])
    assert roc_auc(clean, adv) == pytest.approx(expected, abs=1e-12)
    fpr, tpr, _ = roc_curve(clean, adv)
    assert np.trapezoid(tpr, fpr) == pytest.approx(expected, abs=1e-12)
    sk_fpr, sk_tpr, _ = sk.roc_curve(labels, np.r_[clean, adv], drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_auc_rejects_empty_and_nan():
    with pytest.raises(InputError):
        roc_auc([], [1.0])
    with pytest.raises(InputError):
        roc_auc([float("nan")], [1.0])


def test_downsampled_curve_ends_at_one():
    fpr, tpr, _ = roc_curve([0.9, 0.4], [0.5, 0.1])
    xs, ys = downsample_curve(fpr, tpr, 11)
    assert len(xs) == 11 and xs[0] == 0.0 and xs[-1] == 1.0 and ys[-1] == 1.0
    assert all(b >= a for a, b in zip(ys, ys[1:], strict=False))


# ---------------------------------------------------------------------------- scores
def test_non_me_oracles():
    # uniform non-maximal predictions: log(L - 1), the maximum
    p = torch.tensor([[0.55] + [0.05] * 9])
    assert non_me(p).item() == pytest.approx(math.log(9))
    # all non-maximal mass on one class: 0
    q = torch.tensor([[0.7, 0.3, 0.0, 0.0]])
    assert non_me(q).item() == pytest.approx(0.0, abs=1e-12)
    # Pang's code form: sum_{i != y} (-log F_i) F_i / S + log S
    r = torch.softmax(torch.randn(5, 10, dtype=torch.float64), -1)
    top = r.argmax(-1)
    s = r.sum(-1) - r.max(-1).values
    mask = torch.ones_like(r, dtype=torch.bool)
    mask[torch.arange(5), top] = False
    code = torch.where(mask, -torch.log(r) * r, torch.zeros_like(r)).sum(-1) / s + torch.log(s)
    torch.testing.assert_close(non_me(r), code)


def test_confidence_and_agreement():
    p = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    torch.testing.assert_close(confidence(p), torch.tensor([0.8, 0.6]))
    member = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]], [[0.0, 2.0]]])  # votes 1, 0, 1
    ens = torch.tensor([[0.0, 1.0]])
    assert member_agreement(member, ens).item() == pytest.approx(2 / 3)


def test_log_kernel_density_hand_computed():
    feats = torch.tensor([[0.0, 0.0]])
    ref = torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 1])
    h = 1.5
    expected = math.log((math.exp(-1 / (2 * h**2)) + math.exp(-4 / (2 * h**2))) / 2)
    got = log_kernel_density(feats, torch.tensor([0]), ref, labels, h)
    assert got.item() == pytest.approx(expected)
    # a class without references scores -inf
    assert log_kernel_density(feats, torch.tensor([2]), ref, labels, h).item() == -math.inf


class _FeatNet(nn.Module):
    """Linear features + linear classifier on 1x2x2 images (tiny, exact)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.body = nn.Linear(4, 3)
        self.classifier = nn.Linear(3, 2)
        with torch.no_grad():
            self.body.weight.copy_(torch.randn(3, 4, generator=g))
            self.classifier.weight.copy_(torch.randn(2, 3, generator=g))

    def features(self, x):
        return self.body(x.flatten(1))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_kernel_density_ensemble_is_mean_of_member_log_densities():
    ens = Ensemble([_FeatNet(0), _FeatNet(1)], in_shape=(1, 2, 2))
    g = torch.Generator().manual_seed(3)
    x = torch.rand(40, 1, 2, 2, generator=g)
    y = torch.randint(0, 2, (40,), generator=g)
    kd = KernelDensity(ens, bandwidth=0.7, per_class=1000).fit([(x, y)])
    xt = torch.rand(5, 1, 2, 2, generator=g)
    pred = ens(xt).argmax(-1)
    want = torch.stack([
        log_kernel_density(m.features(xt), pred, m.features(x), y, 0.7) for m in ens.members
    ]).mean(0)
    torch.testing.assert_close(kd.score(xt), want.detach())
    scores = detection_scores(ens, xt, ["confidence", "non_me", "kernel_density",
                                        "disagreement"], kd)
    assert set(scores) == {"confidence", "non_me", "kernel_density", "disagreement"}
    with pytest.raises(InputError):
        KernelDensity(nn.Linear(4, 2)).fit([(x.flatten(1), y)])


def test_protocol_keeps_only_correct_and_successful_pairs():
    """A 1-D threshold model; the 'attack' flips some inputs. Hand-checked pair selection."""

    class Threshold(nn.Module):
        def forward(self, x):
            v = x.flatten(1).mean(1, keepdim=True)
            return torch.cat([10 * (0.5 - v), 10 * (v - 0.5)], 1)  # class 1 iff v > 0.5

    model = Threshold()
    x = torch.tensor([0.1, 0.2, 0.9, 0.8, 0.3]).view(5, 1, 1, 1)
    y = torch.tensor([0, 0, 1, 1, 1])  # the last is misclassified clean

    def attack(xx, yy):  # pushes samples 0 and 2 across the threshold, 1 and 3 stay
        out = xx.clone()
        out[0] = 0.7
        out[2] = 0.45
        out[4] = 0.9  # would "fix" a wrong sample: not a pair
        return out

    res = detection_protocol(model, attack, [(x, y)], ["confidence"])
    assert res.n_pairs == 2 and res.n_total == 5
    # clean confidences of samples 0 and 2 are higher than at 0.7 / 0.45 (closer to 0.5)
    assert res.auc["confidence"] == 1.0
    fpr, tpr = res.curve("confidence")
    assert fpr[0] == 0.0 and tpr[-1] == 1.0
