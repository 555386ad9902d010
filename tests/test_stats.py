"""robens.stats: closed forms of the intervals and tests, and the verdict rules of checks."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats as sps

from robens.stats import (
    Finding,
    Verdict,
    above_chance,
    auc_difference,
    auc_se,
    bootstrap_difference,
    claim_verdict,
    mcnemar_exact,
    paired_bootstrap,
    paired_comparison,
    spearman_permutation,
    verdict_of,
    wilson_interval,
)


def test_wilson_interval_closed_form():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for n in (50, 100, 500, 2000, 10_000):  # exact endpoints, not a few ulps inside
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0
    with pytest.raises(ValueError, match="not in"):
        wilson_interval(11, 10)


def test_mcnemar_counts_only_discordant_pairs():
    a = torch.tensor([1] * 8 + [0] * 2 + [1] * 90, dtype=torch.bool)
    b = torch.tensor([0] * 8 + [0] * 2 + [1] * 90, dtype=torch.bool)
    only_a, only_b, p = mcnemar_exact(a, b)
    assert (only_a, only_b) == (8, 0) and p == pytest.approx(2 * 0.5**8)
    assert mcnemar_exact(a, a)[2] == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar_exact(a, b[:-1])


def test_paired_comparison_and_bootstrap_interval():
    g = torch.Generator().manual_seed(1)
    b = torch.rand(400, generator=g) < 0.3
    a = b | (torch.rand(400, generator=g) < 0.2)  # a is b plus ~14% more correct
    c = paired_comparison(a, b)
    assert c.diff == pytest.approx(float(a.float().mean() - b.float().mean()))
    assert c.only_b == 0 and c.significant and c.ci95[0] <= c.diff <= c.ci95[1]
    assert paired_bootstrap(a, b) == c.ci95


def test_bootstrap_difference_p_value():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(300, generator=g)
    same = bootstrap_difference(x, x)
    assert same.p == 1.0 and same.diff == 0.0
    shifted = bootstrap_difference(x + 0.2, x)
    assert shifted.p < 0.01 and shifted.diff == pytest.approx(0.2)
    noise = bootstrap_difference(x, x[torch.randperm(300, generator=g)])
    assert noise.p > 0.05


def test_spearman_permutation_exact_and_monte_carlo():
    rho, p = spearman_permutation([1, 2, 3, 4], [10, 20, 30, 40])
    assert rho == pytest.approx(1.0) and p == pytest.approx(2 / 24)  # never < 0.05 at n = 4
    rho, p = spearman_permutation(range(8), [2 * i for i in range(8)])
    assert p == pytest.approx(2 / math.factorial(8))
    assert math.isnan(spearman_permutation([1, 1, 1], [1, 2, 3])[0])
    g = torch.Generator().manual_seed(3)
    x = torch.rand(30, generator=g)
    y = x + 0.5 * torch.rand(30, generator=g)
    rho, p = spearman_permutation(x.tolist(), y.tolist())
    ref = sps.spearmanr(x.numpy(), y.numpy())
    assert rho == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, abs=2e-3)


def test_auc_standard_error_and_difference():
    # Hanley & McNeil (1982) eq. 2 by hand: A = 0.8, Q1 = 0.8/1.2, Q2 = 1.28/1.8, 50 and 50
    var = (0.16 + 49 * (0.8 / 1.2 - 0.64) + 49 * (1.28 / 1.8 - 0.64)) / 2500
    assert auc_se(0.8, 50, 50) == pytest.approx(math.sqrt(var)) == pytest.approx(0.0445, abs=1e-4)
    assert auc_se(0.8, 500, 500) < auc_se(0.8, 50, 50)
    z, p = auc_difference(0.9, (200, 200), 0.7, (200, 200))
    assert z > 0 and p < 1e-4
    z2, p2 = auc_difference(0.7, (200, 200), 0.9, (200, 200))
    assert z2 == pytest.approx(-z) and p2 == pytest.approx(p)
    assert auc_difference(0.9, (0, 5), 0.5, (5, 5))[1] == 1.0


def test_above_chance():
    assert not above_chance(6, 50, 10)   # 12% of 50: chance is 10%
    assert above_chance(12, 50, 10)
    assert not above_chance(0, 0, 10)


def _f(effect: float, p: float) -> Finding:
    return Finding("c", effect, p, "McNemar exact (two-sided)")


def test_claim_verdict_rules():
    every = [_f(0.1, 0.001), _f(0.2, 0.01)]
    assert claim_verdict(every, "every")[:2] == (Verdict.PASS, 0.01)
    assert claim_verdict([*every, _f(0.1, 0.2)], "every")[0] is Verdict.INCONCLUSIVE
    assert claim_verdict([*every, _f(-0.1, 0.01)], "every")[0] is Verdict.FAIL
    # one of five cells losing at p = 0.03 is no refutation after Bonferroni (0.05 / 5)
    five = [_f(0.1, 0.2)] * 4
    assert claim_verdict([*five, _f(-0.1, 0.03)], "every")[0] is Verdict.INCONCLUSIVE
    assert claim_verdict([*five, _f(-0.1, 0.005)], "every")[0] is Verdict.FAIL
    gate = "not clearly above chance"
    v, _, reason = claim_verdict(every, "every", gate)
    assert v is Verdict.INCONCLUSIVE and gate in reason
    most = [_f(0.1, 0.01), _f(0.1, 0.02), _f(-0.1, 0.5), _f(0.01, 0.9)]
    assert claim_verdict(most, "most")[0] is Verdict.INCONCLUSIVE  # 2 of 4 is not most
    assert claim_verdict([*most, _f(0.1, 0.04)], "most")[:2] == (Verdict.PASS, 0.04)
    losing = [_f(-0.1, 0.01), _f(-0.1, 0.01), _f(0.1, 0.5)]
    assert claim_verdict(losing, "most")[0] is Verdict.FAIL
    assert claim_verdict([], "most")[0] is Verdict.INCONCLUSIVE


def test_verdict_of_older_checks():
    assert verdict_of({"passed": True}) == "PASS" and verdict_of({"passed": None}) == \
        "INCONCLUSIVE"
    assert verdict_of({"verdict": "FAIL", "passed": False}) == "FAIL"
