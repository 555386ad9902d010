"""Target labels for targeted attacks: random, least-likely and next-class targets.

torchattacks equivalents: ``set_mode_targeted_random`` / ``set_mode_targeted_least_likely``;
ART and cleverhans take the targets as ``y`` with ``targeted=True``, as robens does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from robens.errors import InputError
from robens.utils import eval_mode
from robens.validation import check_labels


def random_targets(
    y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A target drawn uniformly from the ``num_classes - 1`` classes other than ``y``."""
    if num_classes < 2:
        raise InputError(f"num_classes must be >= 2 for targets, got {num_classes}")
    check_labels(y, num_classes)
    shift = torch.randint(1, num_classes, y.shape, generator=generator, device="cpu").to(y.device)
    return (y + shift) % num_classes


def next_class_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(y + 1) mod C`` (torchattacks' JSMA default target)."""
    check_labels(y, num_classes)
    return (y + 1) % num_classes


@torch.no_grad()
def least_likely_targets(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, k: int = 1
) -> torch.Tensor:
    """The class with the ``k``-th smallest logit (``k = 1``: least likely; Kurakin et al. 2017).

    The model is evaluated in eval mode; its train/eval mode is restored afterwards.
    """
    with eval_mode(model):
        logits = model(x)
    if not 1 <= k <= logits.shape[-1]:
        raise InputError(f"k must lie in [1, {logits.shape[-1]}], got {k}")
    return logits.topk(k, dim=-1, largest=False).indices[:, k - 1]
