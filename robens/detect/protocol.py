"""The detection protocol of the RCE paper (Pang et al. 2018, NeurIPS, Sec. 4.2).

For each test input: attack it; keep the pair only when the clean input is classified
correctly AND the attack succeeds (the adversarial input is misclassified). Score the clean
and the adversarial member of every kept pair with each detector (higher = normal) and report
the ROC-AUC of clean (positive) against adversarial (docs/methods.md Sec. 5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from robens.detect.roc import downsample_curve, roc_auc, roc_curve
from robens.detect.scores import KernelDensity, detection_scores
from robens.errors import InputError
from robens.utils import eval_mode


@dataclass
class DetectionResult:
    """AUCs and the scores behind them (one entry per kept pair)."""

    auc: dict[str, float]
    scores_clean: dict[str, np.ndarray]
    scores_adv: dict[str, np.ndarray]
    n_pairs: int
    n_total: int
    info: dict[str, Any] = field(default_factory=dict)

    def curve(self, detector: str, points: int = 101) -> tuple[list[float], list[float]]:
        """A downsampled ROC curve ``(fpr, tpr)`` of ``detector`` (for records and figures)."""
        fpr, tpr, _ = roc_curve(self.scores_clean[detector], self.scores_adv[detector])
        return downsample_curve(fpr, tpr, points)


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def detection_protocol(
    model: nn.Module,
    attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    detectors: Sequence[str] = ("confidence", "non_me"),
    kd: KernelDensity | None = None,
) -> DetectionResult:
    """Run the RCE-paper protocol: attack, keep (clean correct, attack successful) pairs, AUC.

    Args:
        model: the defended model (predictions and scores come from it).
        attack: ``attack(x, y) -> x_adv`` (a robens Attack on ``model``, or any callable).
        batches: ``(x, y)`` test batches.
        detectors: names from :data:`robens.detect.scores.DETECTORS`.
        kd: a fitted :class:`KernelDensity` when ``"kernel_density"`` is requested.

    A detector whose kept pairs are fewer than one gets ``nan`` AUC.
    """
    dev = _device(model)
    clean_s: dict[str, list[torch.Tensor]] = {d: [] for d in detectors}
    adv_s: dict[str, list[torch.Tensor]] = {d: [] for d in detectors}
    kept = total = 0
    for x, y in batches:
        x, y = x.to(dev), y.to(dev)
        total += y.numel()
        x_adv = attack(x, y)
        with eval_mode(model), torch.no_grad():
            ok = model(x).argmax(-1) == y
            fooled = model(x_adv).argmax(-1) != y
        keep = ok & fooled
        if not bool(keep.any()):
            continue
        kept += int(keep.sum())
        sc = detection_scores(model, x[keep], detectors, kd)
        sa = detection_scores(model, x_adv[keep], detectors, kd)
        for d in detectors:
            clean_s[d].append(sc[d])
            adv_s[d].append(sa[d])
    if total == 0:
        raise InputError("detection_protocol got no samples")
    sc_np = {d: torch.cat(v).double().numpy() if v else np.zeros(0) for d, v in clean_s.items()}
    sa_np = {d: torch.cat(v).double().numpy() if v else np.zeros(0) for d, v in adv_s.items()}
    auc = {
        d: roc_auc(sc_np[d], sa_np[d]) if kept else float("nan") for d in detectors
    }
    return DetectionResult(auc, sc_np, sa_np, kept, total)
