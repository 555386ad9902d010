"""Cross-entropy terms.

``MemberCE`` is ``(1/M) sum_i CE(f_i(x), y)`` (GAL paper Eq. 9's first part) or the sum over
members (``reduction="sum"``, as the official ADP code does). ``EnsembleCE`` is the
cross-entropy of the combined ensemble output.
"""

from __future__ import annotations

from typing import Literal

import torch

from robens.errors import ConfigError
from robens.objectives.base import Batch, Term, per_sample_ce, register_term


@register_term("ce")
class MemberCE(Term):
    """Mean (or sum) over members of each member's batch-mean cross-entropy."""

    name = "ce"

    def __init__(self, reduction: Literal["mean", "sum"] = "mean") -> None:
        if reduction not in ("mean", "sum"):
            raise ConfigError(f"ce.reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def __call__(self, batch: Batch) -> torch.Tensor:
        per_member = per_sample_ce(batch.member_logits, batch.y).mean(-1)
        return per_member.sum() if self.reduction == "sum" else per_member.mean()


@register_term("ensemble_ce")
class EnsembleCE(Term):
    """Cross-entropy of the ensemble's combined output."""

    name = "ensemble_ce"

    def __call__(self, batch: Batch) -> torch.Tensor:
        return per_sample_ce(batch.logits, batch.y).mean()
