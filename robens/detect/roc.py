"""ROC curves and ROC-AUC for detection scores, written from scratch (no scikit-learn).

Convention (Pang et al. 2018, NeurIPS, Sec. 4.2; docs/methods.md Sec. 5): every detection
score is *higher for normal inputs*; the clean examples are the positive class, so
``AUC = P(s_clean > s_adv) + 1/2 P(s_clean = s_adv)`` (the Mann-Whitney U statistic over all
clean/adversarial pairs, ties counted one half). This equals
``sklearn.metrics.roc_auc_score(labels=[1]*clean + [0]*adv, scores)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from robens.errors import InputError

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]


def _as_array(values: ArrayLike, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise InputError(f"{name} is empty: a ROC curve needs clean and adversarial scores")
    if np.isnan(arr).any():
        raise InputError(f"{name} contains NaN scores")
    return arr


def roc_auc(scores_clean: ArrayLike, scores_adv: ArrayLike) -> float:
    """Area under the ROC curve of ``scores_clean`` (positives) against ``scores_adv``.

    Computed by ranks (average ranks for ties): ``AUC = (R_clean - n_c (n_c + 1) / 2) /
    (n_c n_a)``, with ``R_clean`` the sum of the clean scores' ranks in the pooled sample.
    1 means every clean score exceeds every adversarial one; 0.5 is chance.
    """
    c = _as_array(scores_clean, "scores_clean")
    a = _as_array(scores_adv, "scores_adv")
    pooled = np.concatenate([c, a])
    order = np.argsort(pooled, kind="mergesort")
    sorted_vals = pooled[order]
    ranks = np.empty(pooled.size, dtype=np.float64)
    # average ranks over runs of equal values (1-based ranks)
    start = 0
    n = pooled.size
    while start < n:
        stop = start + 1
        while stop < n and sorted_vals[stop] == sorted_vals[start]:
            stop += 1
        ranks[order[start:stop]] = 0.5 * (start + 1 + stop)
        start = stop
    nc, na = c.size, a.size
    r_clean = ranks[:nc].sum()
    return float((r_clean - nc * (nc + 1) / 2.0) / (nc * na))


def roc_curve(
    scores_clean: ArrayLike, scores_adv: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``: flag an input as clean when its score is ``>= threshold``.

    ``tpr`` is the fraction of clean inputs kept, ``fpr`` the fraction of adversarial inputs
    wrongly kept; the curve starts at (0, 0) (threshold ``+inf``) and ends at (1, 1). The
    trapezoidal area under it equals :func:`roc_auc`.
    """
    c = _as_array(scores_clean, "scores_clean")
    a = _as_array(scores_adv, "scores_adv")
    thresholds = np.unique(np.concatenate([c, a]))[::-1]
    cs = np.sort(c)
    as_ = np.sort(a)
    # count of scores >= t for each threshold t
    tp = c.size - np.searchsorted(cs, thresholds, side="left")
    fp = a.size - np.searchsorted(as_, thresholds, side="left")
    tpr = np.concatenate([[0.0], tp / c.size])
    fpr = np.concatenate([[0.0], fp / a.size])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


def downsample_curve(
    fpr: np.ndarray, tpr: np.ndarray, points: int = 101
) -> tuple[list[float], list[float]]:
    """At most ``points`` points of a ROC curve (for records): tpr read at evenly spaced fpr.

    The curve is a step/ramp function of fpr; the maximum tpr at each fpr grid value is kept,
    so the downsampled curve stays on or below the original and ends at (1, 1).
    """
    grid = np.linspace(0.0, 1.0, points)
    idx = np.searchsorted(fpr, grid, side="right") - 1
    idx = np.clip(idx, 0, len(tpr) - 1)
    return grid.round(6).tolist(), np.asarray(tpr)[idx].round(6).tolist()
