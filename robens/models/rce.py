"""The inference wrapper of reverse cross-entropy models (Pang et al., NeurIPS 2018,
arXiv:1706.00633, Sec. 3.2): inference negates the logits, ``F(x) = softmax(-Z(x))``.

Convention, fixed so it cannot be forgotten: :class:`RCEModel` ``forward`` ALWAYS returns the
inference logits ``-Z`` (training and eval mode alike) and declares
``output_convention = "rce_negated"``, so accuracy, attacks, ensembles and detectors see the
inference phase. The ``rce`` objective term converts back with :meth:`RCEModel.to_raw`.
"""

from __future__ import annotations

import torch
from torch import nn

from robens.models.convention import RCE_NEGATED


class RCEModel(nn.Module):
    """Wrap a classifier trained with RCE: ``forward(x) = -Z(x)`` (inference logits).

    ``raw_logits(x) = Z(x)`` (training-phase logits), ``features(x)`` is the wrapped model's
    penultimate representation (for kernel-density detection), ``classifier`` its last layer.
    """

    output_convention = RCE_NEGATED

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
