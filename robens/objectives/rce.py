"""Reverse cross-entropy training (Pang et al., NeurIPS 2018, arXiv:1706.00633).

Reverse label ``R_y = (1 - 1_y) / (L - 1)``; ``L_RCE = -R_y . log softmax(Z(x))`` (Eq. 3). In the
inference phase the logits are negated, ``F(x) = softmax(-Z(x))`` (Sec. 3.2).

Convention, fixed so it cannot be forgotten: :class:`RCEModel` ``forward`` ALWAYS returns the
inference logits ``-Z`` (training and eval mode alike), so accuracy, attacks, ensembles and
detectors see the inference phase. The ``rce`` term converts back with
:meth:`RCEModel.to_raw` (``Z = -output``) and refuses members that are not RCE models.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from robens.errors import ConfigError
from robens.objectives.base import Batch, Term, register_term


class RCEModel(nn.Module):
    """Wrap a classifier trained with RCE: ``forward(x) = -Z(x)`` (inference logits).

    ``raw_logits(x) = Z(x)`` (training-phase logits), ``features(x)`` is the wrapped model's
    penultimate representation (for kernel-density detection), ``classifier`` its last layer.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        spec = getattr(model, "robens_spec", None)
        if spec is not None:
            self.robens_spec = spec
        for attr in ("feature_dim", "num_classes", "in_shape"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    @staticmethod
    def to_raw(inference_logits: torch.Tensor) -> torch.Tensor:
        """Training-phase logits ``Z`` from this model's outputs ``-Z``."""
        return -inference_logits

    def raw_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``Z(x)``, the logits the RCE loss is computed on."""
        return self.model(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.model(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)

    @property
    def classifier(self) -> nn.Module:
        return self.model.classifier


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
