"""Strength on a small trained model: attacks lower accuracy well below clean, and more
iterations are never weaker (PGD-20 <= I-FGSM-10 <= FGSM at the same eps, on average).

The model is a small CNN trained for a few seconds on 3000 real Fashion-MNIST images (the Debian
package; skipped when absent) and cached for the module. The full acceptance measurement on a
3-member LeNet ensemble is ``benchmarks/acceptance_attacks.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robens.attacks import (
    CW,
    EAD,
    FGSM,
    IFGSM,
    JSMA,
    MIFGSM,
    PGD,
    RFGSM,
    SPSA,
    build_attack,
)
from robens.ensemble import Ensemble
from robens.errors import DatasetError

EPS = 0.1
TOL = 0.02  # accuracy tolerance for the ordering of attacks (averaged over 200 images)


pytestmark = pytest.mark.usefixtures("one_thread_module")


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 49, 10),
    )


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int = 3):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@pytest.fixture(scope="module")
def fmnist():
    from robens.data import load_dataset

    try:
        train_set = load_dataset("fashion-mnist", "train", size=3000, seed=0)
        test_set = load_dataset("fashion-mnist", "test", size=200, seed=0)
    except DatasetError:
        pytest.skip("Fashion-MNIST is not installed")
    x, y = train_set.tensors()
    torch.manual_seed(0)
    model = train(small_cnn(), x, y, seed=0)
    xt, yt = test_set.tensors()
    return model, xt, yt, (x, y)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def test_iterative_attacks_never_weaker_and_far_below_clean(fmnist):
    model, x, y, _ = fmnist
    clean = accuracy(model, x, y)
    assert clean > 0.7
    fgsm = accuracy(model, FGSM(model, EPS)(x, y), y)
    ifgsm = accuracy(model, IFGSM(model, EPS, steps=10)(x, y), y)
    pgd = accuracy(model, PGD(model, EPS, steps=20, seed=0)(x, y), y)
    assert pgd <= ifgsm + TOL and ifgsm <= fgsm + TOL, (clean, fgsm, ifgsm, pgd)
    assert pgd < clean - 0.3 and fgsm < clean - 0.2


def test_other_attacks_lower_accuracy(fmnist):
    model, x, y, _ = fmnist
    x, y = x[:100], y[:100]
    clean = accuracy(model, x, y)
    for atk in (
        RFGSM(model, EPS, seed=0),
        MIFGSM(model, EPS),
        build_attack("pgd_cw", model, eps=EPS, steps=10, seed=0),
        PGD(model, 2.0, steps=10, norm="l2", seed=0),
    ):
        acc = accuracy(model, atk(x, y), y)
        assert acc < clean - 0.2, (atk, clean, acc)


def test_minimum_norm_and_black_box_attacks_succeed(fmnist):
    model, x, y, _ = fmnist
    x, y = x[:16], y[:16]
    ok = model(x).argmax(-1) == y
    cw = CW(model, steps=30, binary_search_steps=3, lr=0.05).run(x, y)
    assert cw.success[ok].float().mean() > 0.9 and cw.norm[cw.success].mean() < 3.0
    ead = EAD(model, steps=30, binary_search_steps=3).run(x, y)
    assert ead.success[ok].float().mean() > 0.9
    jsma = JSMA(model, gamma=0.1).run(x[:8], y[:8])
    assert jsma.success[ok[:8]].float().mean() >= 0.5
    spsa = SPSA(model, EPS, steps=10, lr=0.03, nb_samples=32, seed=0).run(x, y)
    assert spsa.success[ok].float().mean() > 0.3
    assert (spsa.queries > 0).all() and (spsa.queries <= 10 * (2 * 32 + 1)).all()


def test_ensemble_attacks_under_every_combination(fmnist):
    model, x, y, (tx, ty) = fmnist
    torch.manual_seed(1)
    other = train(small_cnn(), tx[:1500], ty[:1500], seed=1, epochs=2)
    ens = Ensemble([model, other], in_shape=(1, 28, 28)).eval()
    x, y = x[:100], y[:100]
    clean = accuracy(ens, x, y)
    for combine in (None, "logits", "probs", "loss"):
        acc = accuracy(ens, PGD(ens, EPS, steps=10, combine=combine, seed=0)(x, y), y)
        assert acc < clean - 0.3, (combine, clean, acc)
    acc_list = accuracy(ens, PGD([model, other], EPS, steps=10, combine="loss", seed=0)(x, y), y)
    assert acc_list < clean - 0.3
