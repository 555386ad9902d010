"""ADP, Adaptive Diversity Promoting regularizer (Pang et al., ICML 2019, arXiv:1901.08846).

* ensemble entropy ``H(F) = -sum_j F_j log(F_j + 1e-20)`` of the mean prediction
  ``F = (1/K) sum_k F^k`` (Sec. 3.1);
* ensemble diversity ``log ED = logdet(M~^T M~ + 1e-6 I_K)``, where the columns of
  ``M~ in R^{(L-1) x K}`` are the members' non-maximal predictions (true label ``y`` removed)
  normalized to unit L2 norm (Sec. 3.2; the offset as in the official ``utils.py``);
* ``ADP_{alpha,beta} = alpha * H + beta * log ED`` and ``L_ADP = sum_k CE_k - ADP`` (Eq. 6).

The ``adp`` term returns ``-(alpha * H + beta * log ED)`` averaged over the batch. The official
code SUMS the member cross-entropies, so the ADP recipe is ``objective: "ce + adp"`` with
``terms: {ce: {reduction: sum}, adp: {alpha: 2, beta: 0.5}}``. Needs ``K <= L - 1``.

Numerics: a member's non-maximal probabilities normalized to unit norm equal the softmax over
its non-``y`` logits normalized the same way (the normalization is scale-free), so they are
computed from the logits and never underflow to zero, even for saturated members. The
log-determinant is taken in float64 (``torch.linalg.slogdet`` of a positive-definite matrix).
"""

from __future__ import annotations

import math

import torch

from robens.errors import ConfigError, InputError
from robens.objectives.base import Batch, Term, register_term

LOGDET_OFFSET = 1e-6
LOG_EPS = 1e-20


def ensemble_entropy(member_probs: torch.Tensor) -> torch.Tensor:
    """``H(mean_k F^k)`` per sample, ``[B]``, for member probabilities ``[K, B, L]``."""
    f = member_probs.mean(0)
    return -(f * torch.log(f + LOG_EPS)).sum(-1)


def _non_true_index(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[B, L-1]`` class indices different from ``y``, in increasing order."""
    ar = torch.arange(num_classes - 1, device=y.device).unsqueeze(0)
    return ar + (ar >= y.unsqueeze(1)).long()


def _normalized_non_maximal(
    logits: torch.Tensor | None, probs: torch.Tensor | None, y: torch.Tensor
) -> torch.Tensor:
    """Unit-norm non-maximal predictions ``[K, B, L-1]``, float64 (from logits if given)."""
    src = logits if logits is not None else probs
    assert src is not None
    k, b, num_classes = src.shape
    idx = _non_true_index(y, num_classes).unsqueeze(0).expand(k, b, num_classes - 1)
    if logits is not None:
        q = torch.softmax(torch.gather(logits.double(), -1, idx), -1)
    else:
        q = torch.gather(probs.double(), -1, idx)
    norm = q.square().sum(-1, keepdim=True).clamp_min(1e-24).sqrt()
    return q / norm


def _check_members(k: int, num_classes: int) -> None:
    if k > num_classes - 1:
        raise ConfigError(
            f"ADP's ensemble diversity needs K <= L - 1 members (the determinant of K unit"
            f" vectors in R^(L-1)); got K={k} members for L={num_classes} classes"
        )


def log_det_diversity(
    member_probs: torch.Tensor,
    y: torch.Tensor,
    *,
    member_logits: torch.Tensor | None = None,
    offset: float = LOGDET_OFFSET,
) -> torch.Tensor:
    """``log ED = logdet(M~^T M~ + offset I)`` per sample, ``[B]`` (ADP Sec. 3.2).

    ``member_probs`` is ``[K, B, L]`` (``member_logits`` of the same shape, when given, are used
    instead for precision). At most ``K log(1 + offset)`` (~3e-6 for K=3); identical members give
    ``(K-1) ln(offset) + ln(K + offset)`` (-26.5324 for K=3).
    """
    src = member_logits if member_logits is not None else member_probs
    if src is None or src.dim() != 3:
        raise InputError("member predictions must be [K, B, L]")
    if y.dim() != 1 or y.shape[0] != src.shape[1]:
        raise InputError(f"y must be [B={src.shape[1]}] labels, got {list(y.shape)}")
    k, _, num_classes = src.shape
    _check_members(k, num_classes)
    m = _normalized_non_maximal(member_logits, member_probs, y)  # [K, B, L-1], float64
    gram = torch.einsum("kbl,jbl->bkj", m, m)
    eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
    _, logdet = torch.linalg.slogdet(gram + offset * eye)
    return logdet.to(src.dtype)


def adp_per_sample(
    batch: Batch, alpha: float = 2.0, beta: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ADP, H, log ED)`` per sample for a shared-input batch."""
    batch.require_shared_inputs("adp")
    h = ensemble_entropy(batch.member_probs)
    if beta != 0:
        led = log_det_diversity(batch.member_probs, batch.y, member_logits=batch.member_logits)
    else:
        _check_members(batch.num_members, batch.member_logits.shape[-1])
        led = torch.zeros_like(h)
    return alpha * h + beta * led, h, led


@register_term("adp")
class ADP(Term):
    """``-(alpha * H(F) + beta * log ED)``, batch mean (ADP Eq. 6 without the CE part)."""

    name = "adp"

    def __init__(self, alpha: float = 2.0, beta: float = 0.5) -> None:
        for key, v in (("alpha", alpha), ("beta", beta)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ConfigError(f"adp.{key} must be a finite number, got {v!r}")
            if v < 0:
                raise ConfigError(f"adp.{key} must be >= 0, got {v!r}")
        self.alpha = float(alpha)
        self.beta = float(beta)

    def __call__(self, batch: Batch) -> torch.Tensor:
        value, _, _ = adp_per_sample(batch, self.alpha, self.beta)
        return -value.mean()
