"""Max-Mahalanobis Center loss (Pang et al., ICLR 2020, arXiv:1905.10626).

``L_MMC(z, y) = 1/2 ||z - mu*_y||^2`` with fixed centres ``mu*`` (Sec. 3.2; the official code
drops the 1/2). The members carry an :class:`~robens.models.heads.MMHead` (config
``model.head: mmc``) whose scores are ``h_l = -1/2 ||z - mu_l||^2``, so the loss is ``-h_y`` and
is read from the member logits the Batch already has: the members run once per step.
"""

from __future__ import annotations

import torch

from robens.errors import ConfigError
from robens.objectives.base import Batch, Term, register_term


def mmc_per_sample(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1/2 ||z - mu_y||^2 = -h_y`` from MM-head scores ``[..., B, L]`` -> ``[..., B]``."""
    yy = y.expand(scores.shape[:-1])
    return -torch.gather(scores, -1, yy.unsqueeze(-1)).squeeze(-1)


def check_mm_members(batch: Batch, term: str = "mmc") -> None:
    """Every member must score with a Max-Mahalanobis head (and not be RCE-negated)."""
    from robens.models.heads import mm_head_of
    from robens.models.rce import RCEModel

    for i, member in enumerate(batch.members):
        if isinstance(member, RCEModel) or mm_head_of(member) is None:
            raise ConfigError(
                f"objective term {term!r} needs members with a Max-Mahalanobis head (config"
                f" model.head: mmc, model.rce: false); member {i} is {type(member).__name__}"
                " without one"
            )


@register_term("mmc")
class MMCLoss(Term):
    """Mean over members and samples of ``1/2 ||z - mu_y||^2`` (MMC, Eq. 8 of the ICLR paper)."""

    name = "mmc"
    member_loss = staticmethod(mmc_per_sample)

    def __call__(self, batch: Batch) -> torch.Tensor:
        check_mm_members(batch)
        return mmc_per_sample(batch.member_logits, batch.y).mean()
