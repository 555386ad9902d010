"""AutoAttack: the cascade's invariants, per-stage log, progress, versions and ensembles."""

from __future__ import annotations

import pytest
import torch
from test_attacks_apgd import FMNIST, ModeNet, fmnist_test, robust_acc, trained_fmnist

from robens.attacks.apgd import APGD
from robens.attacks.autoattack import AutoAttack
from robens.attacks.gradient import FGSM, IFGSM
from robens.attacks.square import Square
from robens.errors import InputError
from robens.progress import Progress

pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def fm():
    import os

    if not os.path.exists(FMNIST):
        pytest.skip("Fashion-MNIST Debian package not installed")
    model = trained_fmnist()
    x, y = fmnist_test(1000)
    return model, x[:100], y[:100]


def test_robust_under_autoattack_is_robust_under_each_stage(fm) -> None:
    model, x, y = fm
    stages = [FGSM(model, eps=0.05), IFGSM(model, eps=0.05, steps=5)]
    aa = AutoAttack(model, eps=0.05, version="custom", attacks=stages)
    res = aa.run(x, y)
    robust = ~res.success
    for atk in stages:  # deterministic, per-sample attacks: exact set inclusion
        alone = robust_acc(model, atk(x, y), y)
        assert not bool((robust & ~alone).any())
        assert float(robust.float().mean()) <= float(alone.float().mean())


def test_standard_cascade_log_and_bounds(fm) -> None:
    model, x, y = fm
    seen: list[dict] = []
    aa = AutoAttack(model, eps=0.05, steps=10, n_target_classes=2, n_queries=50,
                    progress=seen.append)
    res = aa.run(x, y)
    log = aa.last_log
    assert [r["stage"] for r in log] == ["clean", "apgd-ce", "apgd-t", "square"]
    assert [r["stage"] for r in seen] == ["apgd-ce", "apgd-t", "square"]
    accs = [r["robust_accuracy"] for r in log]
    assert all(a >= b for a, b in zip(accs, accs[1:], strict=False))
    assert accs[-1] == pytest.approx(float((~res.success).float().mean()))
    assert all(r["seconds"] >= 0 for r in log)
    assert res.info["stages"] == log and res.info["param_omitted"] == "fab-t"
    # APGD-CE alone (same draws as the first stage) is never stronger than the cascade
    alone = APGD(model, eps=0.05, steps=10).run(x, y)
    assert accs[-1] <= float((~alone.success).float().mean())
    assert not bool((alone.success & ~res.success).any())
    assert float(res.norm.max()) <= 0.05 + 1e-6
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1
    text = aa.format_log()
    assert "apgd-t" in text and "%" in text


def test_versions_progress_and_properties() -> None:
    model = ModeNet()
    model.train()
    modes = [m.training for m in model.modules()]
    x = torch.rand(4, 1, 28, 28)
    x0 = x.clone()
    with Progress(False) as prog:
        aa = AutoAttack(model, eps=0.1, version="rand", steps=3, eot_iter=2, progress=prog)
        res = aa.run(x)
    assert [r["stage"] for r in aa.last_log] == ["clean", "apgd-ce", "apgd-dlr"]
    assert aa.describe()["param_eot_iter"] == 2
    assert torch.equal(x, x0) and [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert float(res.norm.max()) <= 0.1 + 1e-6
    again = AutoAttack(model, eps=0.1, version="rand", steps=3, eot_iter=2).run(x)
    assert torch.equal(again.x_adv, res.x_adv)
    custom = AutoAttack(model, eps=1.0, norm="l2", version="custom",
                        attacks=["apgd-dlr", Square(model, eps=1.0, norm="l2", n_queries=5)])
    assert float(custom.run(x).norm.max()) <= 1.0 + 1e-5
    assert torch.equal(AutoAttack(model, eps=0.0, steps=2, n_queries=2)(x), x)
    for kw in ({"version": "x"}, {"version": "custom"}, {"attacks": ["apgd-ce"]},
               {"version": "custom", "attacks": ["fab-t"]}):
        with pytest.raises(InputError):
            AutoAttack(model, eps=0.1, **kw)


def test_ensemble_and_probability_warning(fm) -> None:
    model, x, y = fm
    x, y = x[:10], y[:10]
    res = AutoAttack([model, model], eps=0.05, steps=5, n_target_classes=2, n_queries=10,
                     combine="probs").run(x, y)
    assert res.info["combine"] == "probs"
    probs = torch.nn.Sequential(model, torch.nn.Softmax(-1))
    with pytest.warns(UserWarning, match="probabilities"):
        AutoAttack(probs, eps=0.05, version="custom", attacks=["apgd-dlr"], steps=3).run(x, y)


def test_early_exit_reaches_the_stages_and_keeps_robust_accuracy(fm) -> None:
    model, x, y = fm
    kw = dict(eps=0.05, steps=10, n_target_classes=2, n_queries=30)
    full = AutoAttack(model, **kw).run(x, y)
    aa = AutoAttack(model, **kw)
    aa.early_exit = True
    assert all(atk.early_exit for _, atk in aa.stages if hasattr(atk, "early_exit"))
    early = aa.run(x, y)
    assert torch.equal(early.success, full.success)
    aa.early_exit = False
    assert not any(getattr(atk, "early_exit", False) for _, atk in aa.stages)
