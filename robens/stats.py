"""Statistics for claims about accuracies: intervals, paired tests and check verdicts.

- Wilson score interval for a binomial proportion (Wilson 1927; Agresti & Coull 1998, eq. 2).
- McNemar's exact test on paired correct/incorrect outcomes: under H0 the discordant pairs
  split 50/50, so ``p = P(|Binom(n01 + n10, 1/2) - m/2| >= |n01 - m/2|)`` (two-sided).
- Paired bootstrap interval of an accuracy difference (Efron & Tibshirani 1993, percentile
  method), resampling images.
- Paired bootstrap p-value of a mean difference of real per-image scores (two-sided: twice the
  smaller tail fraction of the resampled differences around 0, with the +1 correction of
  Davison & Hinkley 1997, eq. 4.11).
- Spearman's rank correlation with a permutation p-value (exact over all n! orderings for
  n <= 8, else seeded Monte Carlo), valid at small n where the t approximation is not.
- Unpaired comparison of two ROC-AUCs by their Hanley & McNeil (1982) standard errors,
  ``SE^2 = (A(1-A) + (n1-1)(Q1-A^2) + (n2-1)(Q2-A^2)) / (n1 n2)``, Q1 = A/(2-A),
  Q2 = 2A^2/(1+A); z = (A1 - A2) / sqrt(SE1^2 + SE2^2).
- A check verdict: PASS / FAIL / INCONCLUSIVE, where PASS needs every model involved clearly
  above chance on clean data and a significant paired difference in the claimed direction
  (:func:`claim_verdict`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Literal

import torch
from scipy.stats import binomtest, norm

ALPHA = 0.05


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% (by default) Wilson score interval of the proportion k/n; (0, 1) when n == 0."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval: k={k} is not in [0, n={n}]")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the bounds are exactly 0 at k = 0 and 1 at k = n; rounding leaves them a few ulps inside
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


def mcnemar_exact(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int, float]:
    """(only_a, only_b, two-sided exact p) for paired boolean outcomes a, b over the same items."""
    a, b = _paired(a, b)
    only_a = int((a & ~b).sum())
    only_b = int((~a & b).sum())
    m = only_a + only_b
    p = 1.0 if m == 0 else float(binomtest(only_a, m, 0.5).pvalue)
    return only_a, only_b, p


def paired_bootstrap(
    a: torch.Tensor, b: torch.Tensor, boot: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile 95% interval of mean(a) - mean(b), resampling the paired items."""
    a, b = _paired(a, b)
    n = a.numel()
    if n == 0:
        return (0.0, 0.0)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (boot, n), generator=g)
    d = (a.double()[idx] - b.double()[idx]).mean(1).sort().values
    return float(d[int(0.025 * boot)]), float(d[max(int(0.975 * boot) - 1, 0)])


@dataclass(frozen=True)
class PairedComparison:
    """A paired comparison of two models' per-image outcomes (1 = correct/robust)."""

    n: int
    acc_a: float
    acc_b: float
    diff: float
    ci95: tuple[float, float]
    only_a: int
    only_b: int
    p: float
    test: str = "McNemar exact (two-sided)"

    @property
    def significant(self) -> bool:
        return self.p < ALPHA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_comparison(
    a: torch.Tensor, b: torch.Tensor, boot: int = 2000, seed: int = 0
) -> PairedComparison:
    """McNemar exact test and a bootstrap interval of acc(a) - acc(b) on the same images."""
    a, b = _paired(a, b)
    only_a, only_b, p = mcnemar_exact(a, b)
    n = a.numel()
    acc_a = float(a.double().mean()) if n else float("nan")
    acc_b = float(b.double().mean()) if n else float("nan")
    return PairedComparison(n, acc_a, acc_b, acc_a - acc_b, paired_bootstrap(a, b, boot, seed),
                            only_a, only_b, p)


def above_chance(correct: int, n: int, num_classes: int, alpha: float = ALPHA) -> bool:
    """True when clean accuracy correct/n is significantly above 1/num_classes (one-sided)."""
    if n <= 0 or num_classes < 2:
        return False
    return float(binomtest(correct, n, 1 / num_classes, alternative="greater").pvalue) < alpha


def bootstrap_difference(
    a: torch.Tensor, b: torch.Tensor, boot: int = 2000, seed: int = 0
) -> PairedComparison:
    """Paired bootstrap of mean(a) - mean(b) for real per-image scores on the same images:
    the percentile 95% interval and a two-sided p-value (``only_a``/``only_b`` count the images
    where a's score is above/below b's)."""
    a = torch.as_tensor(a, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(b, dtype=torch.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired scores differ in length: {a.numel()} vs {b.numel()}")
    n = a.numel()
    if n == 0:
        return PairedComparison(0, math.nan, math.nan, math.nan, (0.0, 0.0), 0, 0, 1.0,
                                "paired bootstrap (two-sided)")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (boot, n), generator=g)
    d = (a[idx] - b[idx]).mean(1).sort().values
    lo_tail = int((d <= 0).sum()) + 1
    hi_tail = int((d >= 0).sum()) + 1
    p = min(1.0, 2 * min(lo_tail, hi_tail) / (boot + 1))
    if bool((a == b).all()):
        p = 1.0
    acc_a, acc_b = float(a.mean()), float(b.mean())
    return PairedComparison(n, acc_a, acc_b, acc_a - acc_b,
                            (float(d[int(0.025 * boot)]), float(d[max(int(0.975 * boot) - 1, 0)])),
                            int((a > b).sum()), int((a < b).sum()), p,
                            "paired bootstrap (two-sided)")


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share their mean rank) of a 1-D tensor."""
    v = v.double()
    order = v.argsort()
    ranks = torch.empty_like(v)
    ranks[order] = torch.arange(1, v.numel() + 1, dtype=torch.float64)
    for val in v.unique():
        tie = v == val
        if int(tie.sum()) > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def spearman_permutation(
    x: Sequence[float], y: Sequence[float], perms: int = 10000, seed: int = 0
) -> tuple[float, float]:
    """Spearman's rho and its two-sided permutation p-value, ``P(|rho_perm| >= |rho|)``: exact
    over every ordering of y for n <= 8, else ``perms`` seeded random orderings (+1 corrected).
    ``(nan, nan)`` when n < 3 or either side is constant."""
    xt, yt = torch.as_tensor(list(x)), torch.as_tensor(list(y))
    n = xt.numel()
    if n != yt.numel():
        raise ValueError(f"spearman_permutation: {n} x values vs {yt.numel()} y values")
    if n < 3 or bool((xt == xt[0]).all()) or bool((yt == yt[0]).all()):
        return math.nan, math.nan
    rx, ry = _ranks(xt), _ranks(yt)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    scale = float(rx.norm() * ry.norm())
    rho = float(rx @ ry) / scale
    if n <= 8:
        orders = torch.tensor(list(itertools.permutations(range(n))))
        extreme = int(((ry[orders] @ rx).abs() / scale >= abs(rho) - 1e-12).sum())
        return rho, extreme / orders.shape[0]
    return rho, _sampled_p(rx, ry, scale, rho, perms, seed)


def _sampled_p(rx: torch.Tensor, ry: torch.Tensor, scale: float, rho: float, perms: int,
               seed: int) -> float:
    """``P(|rho_perm| >= |rho|)`` over ``perms`` seeded random orderings of the centred ranks
    ``ry`` against ``rx`` (+1 corrected)."""
    g = torch.Generator().manual_seed(seed)
    orders = torch.stack([torch.randperm(rx.numel(), generator=g) for _ in range(perms)])
    extreme = int(((ry[orders] @ rx).abs() / scale >= abs(rho) - 1e-12).sum())
    return (extreme + 1) / (perms + 1)


def spearman_untied_p(rho: float, n: int, perms: int = 10000, seed: int = 0) -> float:
    """The two-sided permutation p-value of a Spearman ``rho`` over ``n`` untied pairs, from
    ``rho`` and ``n`` alone (without ties the null distribution depends on ``n`` only): what
    :func:`spearman_permutation` returns for data with that ``rho``, for ``n > 8``."""
    r = torch.arange(n, dtype=torch.float64)
    r = r - r.mean()
    return _sampled_p(r, r, float(r @ r), rho, perms, seed)


def auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of a ROC-AUC from n_pos and n_neg scores."""
    if n_pos < 1 or n_neg < 1:
        return math.inf
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc)
           + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def auc_difference(auc_a: float, n_a: tuple[int, int], auc_b: float,
                   n_b: tuple[int, int]) -> tuple[float, float]:
    """(z, two-sided p) of AUC_a - AUC_b for two independent sets of (n_pos, n_neg) scores."""
    se = math.hypot(auc_se(auc_a, *n_a), auc_se(auc_b, *n_b))
    if not math.isfinite(se):
        return math.nan, 1.0
    if se == 0:
        return (0.0, 1.0) if auc_a == auc_b else (math.copysign(math.inf, auc_a - auc_b), 0.0)
    z = (auc_a - auc_b) / se
    return z, float(2 * norm.sf(abs(z)))


@dataclass(frozen=True)
class Finding:
    """One tested cell of a claim: ``effect`` > 0 supports the claim; ``p`` from ``test``."""

    label: str
    effect: float
    p: float
    test: str
    detail: str = ""

    @property
    def win(self) -> bool:
        return self.p < ALPHA and self.effect > 0

    @property
    def loss(self) -> bool:
        return self.p < ALPHA and self.effect < 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Claim = Literal["every", "most"]


def claim_verdict(
    findings: Sequence[Finding], claim: Claim = "every", gate: str | None = None
) -> tuple[Verdict, float | None, str]:
    """``(verdict, p, reason)`` of a claim over cells.

    ``every``: PASS when every cell is a significant win (intersection-union test: p is the
    largest cell p); FAIL when some cell is a significant loss after Bonferroni's correction
    over the cells (p < ALPHA / cells: one of many cells losing by chance refutes nothing).
    ``most``: PASS when more than
    half the cells are significant wins (p: the m-th smallest p among supporting cells, m the
    majority); FAIL when the claim cannot hold even counting every non-significant cell as a
    win. Otherwise, and whenever ``gate`` names a reason (e.g. a model at chance), INCONCLUSIVE.
    """
    n = len(findings)
    if n == 0:
        return Verdict.INCONCLUSIVE, None, "nothing to compare"
    wins = sum(f.win for f in findings)
    losses = sum(f.loss for f in findings)
    need = n if claim == "every" else n // 2 + 1
    if claim == "every":
        losses = sum(f.effect < 0 and f.p < ALPHA / n for f in findings)
    support = sorted(f.p if f.effect > 0 else 1.0 for f in findings)
    p = support[need - 1]
    corrected = " (Bonferroni)" if claim == "every" and n > 1 else ""
    count = f"{wins}/{n} significant wins, {losses} significant losses{corrected}"
    if gate:
        return Verdict.INCONCLUSIVE, p, f"{gate}; {count}"
    if wins >= need:
        return Verdict.PASS, p, count
    if n - losses < need:
        return Verdict.FAIL, p, count
    return Verdict.INCONCLUSIVE, p, f"{count} (needs {need})"


def verdict_of(check: dict[str, Any]) -> str:
    """A check's verdict (``PASS``, ``FAIL``, ``INCONCLUSIVE``), also of older summaries that
    only hold ``passed`` (``True`` / ``False`` / ``None``)."""
    if check.get("verdict"):
        return str(check["verdict"])
    return {True: "PASS", False: "FAIL"}.get(check.get("passed"), "INCONCLUSIVE")


def _paired(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.as_tensor(a).reshape(-1).bool()
    b = torch.as_tensor(b).reshape(-1).bool()
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes differ in length: {a.numel()} vs {b.numel()}")
    return a, b
