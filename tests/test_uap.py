"""SGD-UAP: the reference update rule, streaming data, worst case over seeds, both fooling rates."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robens.attacks import SGDUAP, uap_metrics
from robens.data import ImageDataset
from robens.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    images = torch.tensor(d.images / 16.0 * 255).round().to(torch.uint8).unsqueeze(1)
    labels = torch.tensor(d.target, dtype=torch.int64)
    train = ImageDataset(images[:1400], labels[:1400], 10, "digits", "train")
    test = ImageDataset(images[1400:], labels[1400:], 10, "digits", "test")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 16, 10),
    )
    x, y = train.tensors()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), train, test


def reference_sgd_uap(model, batches, eps, iterations, beta=12.0, step_decay=0.8):
    """Direct transcription of kenny-co/sgd-uap-torch ``uap_sgd`` (one batch per update)."""
    delta = None
    done = 0
    while done < iterations:
        for x, y in batches:
            if done >= iterations:
                break
            if delta is None:
                delta = torch.zeros_like(x[0])
            batch_delta = delta.unsqueeze(0).repeat(x.shape[0], 1, 1, 1).requires_grad_(True)
            out = model(torch.clamp(x + batch_delta, 0, 1))
            loss = torch.mean(
                torch.min(nn.CrossEntropyLoss(reduction="none")(out, y), torch.tensor([beta]))
            )
            loss.backward()
            grad_sign = batch_delta.grad.mean(dim=0).sign()
            delta = torch.clamp(delta + grad_sign * eps * step_decay, -eps, eps)
            done += 1
    return delta


def test_matches_reference_update_rule(digits):
    model, train, _ = digits
    batches = list(train.batches(200))
    ours = SGDUAP(model, 0.1, iterations=9).fit(batches)  # 7 batches: cycles into a 2nd epoch
    ref = reference_sgd_uap(model, batches, 0.1, 9)
    assert torch.allclose(ours, ref, atol=1e-6, rtol=0)  # eps * 0.8 rounds differently
    assert ours.shape == (1, 8, 8) and ours.abs().max() <= 0.1 + 1e-7


def test_uap_lowers_accuracy_and_reports_both_fooling_rates(digits):
    model, train, test = digits
    atk = SGDUAP(model, 0.2, iterations=30, seed=0)
    delta = atk.fit(train)
    m = uap_metrics(model, delta, test)
    assert m["clean_accuracy"] > 0.85
    assert m["accuracy"] < m["clean_accuracy"] - 0.15, m
    assert m["n"] == len(test)
    assert math.isclose(m["fooling_rate_misclassified"], 1 - m["accuracy"])
    assert 0 < m["fooling_rate_changed"] <= 1
    # atk(x) applies the fitted perturbation
    x, y = test.tensors()
    assert torch.equal(atk(x), (x + delta).clamp(0, 1))
    with torch.no_grad():
        assert math.isclose(
            (model(atk(x)).argmax(-1) == y).float().mean().item(), m["accuracy"], abs_tol=1e-6
        )


def test_uap_metrics_closed_form():
    class MeanThreshold(nn.Module):  # class 1 iff mean pixel > 0.5
        def forward(self, x):
            m = x.flatten(1).mean(1)
            return torch.stack([0.5 - m, m - 0.5], 1)

    x = torch.tensor([0.1, 0.3, 0.45, 0.6, 0.9]).view(5, 1, 1, 1).expand(5, 1, 2, 2).contiguous()
    y = torch.tensor([0, 0, 1, 1, 1])  # clean predictions: 0 0 0 1 1 -> 4/5 correct
    delta = torch.full((1, 2, 2), 0.1)  # predictions become 0 0 1 1 1
    m = uap_metrics(MeanThreshold(), delta, [(x, y)])
    assert m == {
        "accuracy": 1.0,
        "clean_accuracy": 0.8,
        "fooling_rate_changed": 0.2,
        "fooling_rate_misclassified": 0.0,
        "n": 5,
    }


def test_seeds_keep_the_worst_case_and_reproduce(digits):
    model, train, test = digits
    atk = SGDUAP(model, 0.1, iterations=8, seeds=3, seed=4)
    delta = atk.fit(train, select_on=test)
    rates = [h["fooling_rate_misclassified"] for h in atk.history]
    assert len(rates) == 3 and len(set(rates)) > 1  # different batch orders
    chosen = uap_metrics(model, delta, test)["fooling_rate_misclassified"]
    assert math.isclose(chosen, max(rates))
    again = SGDUAP(model, 0.1, iterations=8, seeds=3, seed=4).fit(train, select_on=test)
    assert torch.equal(again, delta)


class CountingStream:
    """A re-iterable stream of batches generated lazily (never held in memory at once)."""

    def __init__(self, dataset: ImageDataset, batch_size: int) -> None:
        self.dataset, self.batch_size, self.served = dataset, batch_size, 0

    def __iter__(self):
        for x, y in self.dataset.batches(self.batch_size):
            self.served += 1
            yield x, y


def test_streams_and_one_shot_iterators(digits):
    model, train, _ = digits
    stream = CountingStream(train, 100)
    delta = SGDUAP(model, 0.1, iterations=5, seeds=2, seed=0).fit(stream)
    assert delta.shape == (1, 8, 8)
    assert stream.served > 5
    one_shot = iter(list(train.batches(100)))
    SGDUAP(model, 0.1, iterations=3).fit(one_shot)
    with pytest.raises(InputError, match="iterated again"):
        SGDUAP(model, 0.1, iterations=3, seeds=2).fit(iter(list(train.batches(100))))
    with pytest.raises(InputError, match="no batches"):
        SGDUAP(model, 0.1, iterations=3).fit([])


def test_targeted_uap_raises_the_target_rate(digits):
    model, train, test = digits
    delta = SGDUAP(model, 0.2, iterations=30, targeted=True, target=3, seed=0).fit(train)
    base = uap_metrics(model, torch.zeros_like(delta), test, target=3)["target_rate"]
    hit = uap_metrics(model, delta, test, target=3)["target_rate"]
    assert hit > base + 0.2, (base, hit)


def test_float64_model_and_mode_restored(digits):
    model, train, _ = digits
    m64 = nn.Sequential(nn.Dropout(0.5), *[layer for layer in model]).double()
    import copy

    m64 = copy.deepcopy(m64).train()
    delta = SGDUAP(m64, 0.1, iterations=3).fit(train)
    assert delta.dtype == torch.float64 and m64.training and m64[0].training
