"""Clean, robust and weighted accuracy.

Weighted accuracy (Jacobian Ensembles, Table 1): ``w * clean + (1 - w) * mean_eps UAP``,
with ``w = 1/2`` in the paper (97.8 and 82.8 give 90.3).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from robens.errors import InputError


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device=None
) -> dict[str, object]:
    """Accuracy of the ensemble and of each member over ``(x, y)`` batches.

    Returns ``{"ensemble": acc, "members": [acc_i], "n": count}`` (fractions in [0, 1]);
    ``members`` is empty for a single model.
    """
    was_training = model.training
    model.eval()
    correct = 0
    member_correct: torch.Tensor | None = None
    n = 0
    try:
        for x, y in batches:
            if device is not None:
                x, y = x.to(device), y.to(device)
            if hasattr(model, "member_logits"):
                ml = model.member_logits(x)
                logits = model.combine_logits(ml)
                mc = (ml.argmax(-1) == y).sum(-1).cpu()
                member_correct = mc if member_correct is None else member_correct + mc
            else:
                logits = model(x)
            correct += int((logits.argmax(-1) == y).sum())
            n += y.numel()
    finally:
        model.train(was_training)
    if n == 0:
        raise InputError("evaluate_accuracy got no samples")
    members = [] if member_correct is None else (member_correct.double() / n).tolist()
    return {"ensemble": correct / n, "members": members, "n": n}


def weighted_accuracy(clean: float, uap_accuracies: Sequence[float], weight: float = 0.5) -> float:
    """``weight * clean + (1 - weight) * mean(uap_accuracies)`` (Jacobian Ensembles Table 1)."""
    if not uap_accuracies:
        raise InputError("weighted_accuracy needs at least one UAP accuracy")
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"weight must lie in [0, 1], got {weight}")
    return weight * clean + (1 - weight) * sum(uap_accuracies) / len(uap_accuracies)
