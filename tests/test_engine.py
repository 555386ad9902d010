"""The robust-accuracy engine: one definition of robust accuracy, adaptive aggregation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robens.attacks import build_attack
from robens.ensemble import Ensemble
from robens.errors import InputError
from robens.evaluate.engine import Precomputed, evaluate_adaptive, evaluate_attack


def _member(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3)).double()


@pytest.fixture
def setup():
    torch.manual_seed(0)
    ens = Ensemble([_member(s) for s in range(3)]).double().eval()
    x = torch.rand(60, 1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        y = ens(x).argmax(-1)
    y[:10] = (y[:10] + 1) % 3  # ten clean errors
    return ens, [(x[:32], y[:32]), (x[32:], y[32:])]


def test_robust_accuracy_is_correct_both_clean_and_attacked(setup):
    ens, batches = setup
    atk = build_attack("fgsm", ens, eps=0.3)
    out = evaluate_attack(ens, atk, batches)
    robust = clean = 0
    for x, y in batches:
        ok = ens(x).argmax(-1) == y
        ok_adv = ens(atk(x, y)).argmax(-1) == y
        robust += int((ok & ok_adv).sum())
        clean += int(ok.sum())
    assert out.n == 60 and out.robust_accuracy == robust / 60 and out.clean_accuracy == clean / 60
    assert out.success_rate == (clean - robust) / clean
    again = evaluate_attack(ens, None, batches, precomputed=Precomputed(
        torch.cat([atk(x, y) for x, y in batches]), out.norm))
    assert torch.equal(again.robust, out.robust)


def test_hooks_see_every_batch(setup):
    ens, batches = setup
    seen: list[int] = []
    tracked: list[int] = []

    def track(items):
        for it in items:
            tracked.append(1)
            yield it

    evaluate_attack(ens, build_attack("fgsm", ens, eps=0.1), batches,
                    on_batch=lambda i, x, y, r: seen.append(i), track=track)
    assert seen == [0, 1] and len(tracked) == 2


def test_adaptive_is_the_per_sample_worst_case_over_aggregations(setup):
    ens, batches = setup
    aggs = ("logits", "probs", "loss")
    single = {a: evaluate_attack(ens, build_attack("fgsm", ens, eps=0.15, combine=a), batches)
              for a in aggs}
    out = evaluate_adaptive(ens, lambda a: build_attack("fgsm", ens, eps=0.15, combine=a),
                            batches, aggregations=aggs)
    for a in aggs:  # robust under the cascade => robust under each aggregation
        assert not (out.robust & ~single[a].robust).any()
    union = single["logits"].robust & single["probs"].robust & single["loss"].robust
    assert torch.equal(out.robust, union)
    counts = out.info["broken_counts"]
    assert sum(counts.values()) == int(out.clean_ok.sum()) - int(out.robust.sum())
    by = out.info["broken_by"]
    assert torch.equal(by >= 0, out.clean_ok & ~out.robust)
    x_all = torch.cat([x for x, _ in batches])
    assert ((out.norm - 0.15) <= 1e-12).all() and x_all.shape[0] == out.n


def test_bad_input_is_named():
    with pytest.raises(InputError, match="run"):
        evaluate_attack(nn.Identity(), object(), [])
    with pytest.raises(InputError, match="unknown aggregation"):
        evaluate_adaptive(nn.Identity(), lambda a: None, [], aggregations=("mean",))


def test_early_exit_keeps_unbroken_samples_on_their_path_and_never_raises_accuracy(setup):
    ens, batches = setup
    for name in ("pgd", "ifgsm", "mifgsm"):
        atk = build_attack(name, ens, eps=0.12, steps=8, seed=0)
        full = evaluate_attack(ens, atk, batches, keep_adv=True)
        fast = evaluate_attack(ens, atk, batches, keep_adv=True, early_exit=True)
        assert atk.early_exit is False  # restored
        assert not (fast.robust & ~full.robust).any()
        both = fast.robust & full.robust  # never broken: the same steps, the same result
        assert torch.allclose(fast.x_adv[both], full.x_adv[both], atol=1e-12)
        broken = ~fast.adv_ok
        assert (broken | fast.robust | ~fast.clean_ok).all()
        assert fast.robust_accuracy <= full.robust_accuracy
