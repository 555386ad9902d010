"""Difference of Logits Ratio losses (Croce & Hein, ICML 2020, Sec. 4, Eq. 6 and 7).

With ``pi`` sorting the logits ``z`` in descending order,

* DLR: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)``;
* targeted DLR: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)``.

Both are invariant to shifting and (positively) scaling the logits, so saturated softmax outputs
cannot mask them. ``max_{i != y}`` masks ``z_y`` with ``-inf`` (right for negative logits and for
ties: a tie of ``z_y`` with another class gives 0). The attack *maximizes* these values; a
positive DLR means the sample is misclassified. Models that output probabilities should be
attacked on their log-probabilities (:func:`as_log_probs`).
"""

from __future__ import annotations

import torch

from robens.attacks.losses import other_max
from robens.errors import InputError

DLR_EPS = 1e-12


def _check(logits: torch.Tensor, need: int, what: str) -> None:
    if logits.dim() != 2 or logits.shape[-1] < need:
        raise InputError(
            f"{what} needs logits [B, C] with C >= {need}, got {list(logits.shape)}"
        )


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Untargeted DLR per sample, ``[B]`` (needs at least 3 classes)."""
    _check(logits, 3, "DLR")
    srt = logits.sort(dim=-1, descending=True).values
    zy = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return -(zy - other_max(logits, y)) / (srt[:, 0] - srt[:, 2] + DLR_EPS)


def dlr_loss_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR per sample towards ``target``, ``[B]`` (needs at least 4 classes)."""
    _check(logits, 4, "targeted DLR")
    srt = logits.sort(dim=-1, descending=True).values
    zy = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    zt = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return -(zy - zt) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + DLR_EPS)


def looks_like_probs(scores: torch.Tensor, atol: float = 1e-4) -> bool:
    """Whether ``scores [B, C]`` are probabilities (non-negative rows summing to 1)."""
    if scores.dim() != 2 or scores.numel() == 0:
        return False
    s = scores.detach()
    return bool((s >= 0).all() and (s <= 1).all() and ((s.sum(-1) - 1).abs() <= atol).all())


def as_log_probs(probs: torch.Tensor) -> torch.Tensor:
    """``log(p)`` clamped away from ``-inf`` (DLR of a probability-output model)."""
    return probs.clamp_min(1e-30).log()


def top_other_classes(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` most likely classes other than ``y``, most likely first, ``[B, k]``."""
    mask = torch.nn.functional.one_hot(y, logits.shape[-1]).bool()
    return logits.masked_fill(mask, float("-inf")).topk(k, dim=-1).indices
