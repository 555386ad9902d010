"""Reverse cross-entropy training (Pang et al., NeurIPS 2018, arXiv:1706.00633).

Reverse label ``R_y = (1 - 1_y) / (L - 1)``; ``L_RCE = -R_y . log softmax(Z(x))`` (Eq. 3). In the
inference phase the logits are negated, ``F(x) = softmax(-Z(x))`` (Sec. 3.2).

:class:`~robens.models.rce.RCEModel` (defined in ``robens.models``, re-exported here) ``forward``
always returns the inference logits ``-Z``; the ``rce`` term converts back with
:meth:`RCEModel.to_raw` (``Z = -output``) and refuses members that are not RCE models.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from robens.errors import ConfigError
from robens.models.rce import RCEModel
from robens.objectives.base import Batch, Term, register_term


def rce_per_sample(raw_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``-R_y . log softmax(Z)`` for raw logits ``[..., B, L]`` -> ``[..., B]`` (Eq. 3)."""
    num_classes = raw_logits.shape[-1]
    logp = F.log_softmax(raw_logits, -1)
    yy = y.expand(raw_logits.shape[:-1]).unsqueeze(-1)
    log_py = torch.gather(logp, -1, yy).squeeze(-1)
    return (log_py - logp.sum(-1)) / (num_classes - 1)


def rce_member_loss(member_outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """RCE of RCE members from their (inference, ``-Z``) outputs."""
    return rce_per_sample(RCEModel.to_raw(member_outputs), y)


def reverse_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``R_y = (1 - 1_y) / (L - 1)``, ``[B, L]``."""
    return (1.0 - F.one_hot(y, num_classes).float()) / (num_classes - 1)


@register_term("rce")
class RCELoss(Term):
    """Mean over members and samples of the reverse cross-entropy of the raw logits ``Z``."""

    name = "rce"
    member_loss = staticmethod(rce_member_loss)

    def __call__(self, batch: Batch) -> torch.Tensor:
        for i, member in enumerate(batch.members):
            if not isinstance(member, RCEModel):
                raise ConfigError(
                    f"objective term 'rce' needs RCE models (config model.rce: true), whose"
                    f" outputs are the negated inference logits; member {i} is"
                    f" {type(member).__name__}"
                )
        return rce_member_loss(batch.member_logits, batch.y).mean()
