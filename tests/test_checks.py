"""Recipe checks cannot pass by chance: the verdict of a check on hand-made per-image outcomes
(PASS when significant and above chance, FAIL when significant the other way, INCONCLUSIVE at
chance, on too few discordant images, or on different images), and (slow) every recipe's tiny
scale prints INCONCLUSIVE for every check (mmc and diversity-training run in
tests/test_reproduce.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robens.config import validate_config
from robens.recipes.summaries.base import chance_gate, paired_findings, verdict_check
from robens.reproduce import TrialView, deep_merge, plan_recipe, run_recipe, summarize

N = 200


def _view(root: Path, name: str, clean: int, robust: dict[float, np.ndarray],
          index: np.ndarray | None = None) -> TrialView:
    """An MMC-recipe trial with ``clean`` of N images correct and the given per-image robust
    outcomes per eps (stored as the suite's per-sample arrays)."""
    cfg = validate_config(deep_merge({"output_dir": "x"}, {"name": name}))
    run_dir = root / name
    samples = run_dir / "suite" / "samples"
    samples.mkdir(parents=True)
    idx = np.arange(N) if index is None else index
    records = [{"metric": "clean_accuracy", "value": clean / N, "n": N, "unit": "clean-x"}]
    for e, ok in robust.items():
        unit = f"pgd-{e:g}"
        label = np.zeros(N, np.int64)
        np.savez(samples / f"{unit}.npz", index=idx, label=label, pred_clean=label,
                 pred_adv=np.where(ok, 0, 1))
        for steps in (10, 50):
            records.append({"metric": "robust_accuracy", "threat_model": "white_box",
                            "attack": "pgd", "eps": e, "n": N, "value": float(ok.mean()),
                            "unit": unit, "params": {"steps": steps, "loss": "ce"}})
    return TrialView("s", "g", name, {}, cfg, run_dir, records)


def _ok(k: int, shift: int = 0) -> np.ndarray:
    """Correct on images shift..shift+k-1."""
    out = np.zeros(N, bool)
    out[shift:shift + k] = True
    return out


def _mmc_check(tmp_path: Path, sce: TrialView, mmc: TrialView) -> dict:
    plan = plan_recipe("mmc", "quick", output_dir=tmp_path / "plan")
    return summarize(plan, [sce, mmc])["checks"][0]


def test_pass_when_significant_and_above_chance(tmp_path):
    sce = _view(tmp_path, "sce", 180, {0.1: _ok(20), 0.2: _ok(10)})
    mmc = _view(tmp_path, "mmc", 170, {0.1: _ok(50), 0.2: _ok(30)})
    check = _mmc_check(tmp_path, sce, mmc)
    assert check["verdict"] == "PASS" and check["passed"] is True
    assert check["test"] == "McNemar exact (two-sided)"
    assert check["p"] == pytest.approx(2 * 0.5**20)  # the weakest cell: 20 discordant, all MMC
    assert {c["label"] for c in check["cells"]} == {"pgd10-un@0.1", "pgd50-un@0.1",
                                                    "pgd10-un@0.2", "pgd50-un@0.2"}
    json.dumps(check)  # plain data for summary.json


def test_fail_when_significant_the_other_way(tmp_path):
    sce = _view(tmp_path, "sce", 180, {0.1: _ok(60), 0.2: _ok(40)})
    mmc = _view(tmp_path, "mmc", 170, {0.1: _ok(50), 0.2: _ok(10)})
    check = _mmc_check(tmp_path, sce, mmc)
    assert check["verdict"] == "FAIL" and "4 significant losses" in check["detail"]


def test_inconclusive_at_chance_even_when_significant(tmp_path):
    # 12% and 14% clean (chance 10%) on 200 images; a large robust gap does not count
    sce = _view(tmp_path, "sce", 24, {0.1: _ok(0), 0.2: _ok(0)})
    mmc = _view(tmp_path, "mmc", 28, {0.1: _ok(25), 0.2: _ok(25)})
    check = _mmc_check(tmp_path, sce, mmc)
    assert check["verdict"] == "INCONCLUSIVE" and check["passed"] is None
    assert "not clearly above chance (10%)" in check["detail"] and "SCE 12.0% of 200" in \
        check["detail"]


def test_inconclusive_on_few_discordant_images(tmp_path):
    # 5 images more robust out of 200: McNemar p = 2 * 0.5**5 = 0.0625
    sce = _view(tmp_path, "sce", 180, {0.1: _ok(20), 0.2: _ok(20)})
    mmc = _view(tmp_path, "mmc", 180, {0.1: _ok(25), 0.2: _ok(25)})
    check = _mmc_check(tmp_path, sce, mmc)
    assert check["verdict"] == "INCONCLUSIVE" and check["p"] == pytest.approx(0.0625)


def test_same_accuracy_different_images_is_not_a_tie(tmp_path):
    # equal accuracy, but MMC is right where SCE is wrong and vice versa: still no difference
    sce = _view(tmp_path, "sce", 180, {0.1: _ok(40), 0.2: _ok(40)})
    mmc = _view(tmp_path, "mmc", 180, {0.1: _ok(40, 40), 0.2: _ok(40, 40)})
    check = _mmc_check(tmp_path, sce, mmc)
    assert check["verdict"] == "INCONCLUSIVE" and all(c["p"] == 1.0 for c in check["cells"])


def test_models_attacked_on_other_images_are_not_compared(tmp_path):
    sce = _view(tmp_path, "sce", 180, {0.1: _ok(20), 0.2: _ok(20)})
    mmc = _view(tmp_path, "mmc", 180, {0.1: _ok(90), 0.2: _ok(90)}, index=np.arange(N) + N)
    check = _mmc_check(tmp_path, sce, mmc)
    assert check["verdict"] == "INCONCLUSIVE"
    assert "not evaluated on the same images" in check["detail"]


def test_missing_per_sample_outcomes_are_named(tmp_path):
    sce = _view(tmp_path, "sce", 180, {0.1: _ok(20)})
    mmc = _view(tmp_path, "mmc", 180, {0.1: _ok(90)})
    for p in (mmc.run_dir / "suite" / "samples").glob("*.npz"):
        p.unlink()
    found, missing = paired_findings(mmc, sce, {"c": (mmc.records[1], sce.records[1])})
    assert found == [] and missing == ["c: per-sample outcomes not stored"]
    check = verdict_check("x", found, "every", chance_gate({"a": sce, "b": mmc}), missing)
    assert check["verdict"] == "INCONCLUSIVE" and "untested" in check["detail"]


# ---------------------------------------------------------------------------- tiny scales
def assert_all_inconclusive(summary: dict) -> None:
    """Every check of a tiny-scale summary is INCONCLUSIVE, with a test where it compares."""
    assert summary["checks"], "no checks"
    for c in summary["checks"]:
        assert c["verdict"] == "INCONCLUSIVE", (c["name"], c["detail"])
        assert c["passed"] is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adp", "gdr", "jacobian-ensembles", "rce-detection"])
def test_tiny_scale_prints_inconclusive(name, tmp_path, capsys):
    over = {"training.threads": 1}
    result = run_recipe(name, "tiny", "synthetic", output_dir=tmp_path, overrides=over,
                        backend="serial", progress=False, report=False)
    assert result.summary["trials_complete"] == result.summary["trials_total"]
    assert_all_inconclusive(result.summary)
    printed = capsys.readouterr().out
    assert "[INCONCLUSIVE]" in printed and "[PASS]" not in printed
