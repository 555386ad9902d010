"""Distributions of gradient-diversity statistics over a dataset.

Per sample, from the members' loss input-gradients ``g_i = grad_x CE(f_i(x), y)``
(:func:`robens.objectives.input_gradients`):

* ``coherence``: ``max_{a != b} CS(g_a, g_b)`` (Kariyappa & Qureshi 2019, Eq. 7);
* ``cosine``: the mean pairwise cosine ``mean_{a < b} CS(g_a, g_b)`` (Eq. 6);
* ``gal``: ``log sum_{a<b} exp(CS)`` (Eq. 8);
* ``gdr``: the Gradient Diversity Rating ``R(E, x)`` (Adam & Speciel 2020; a Gaussian orthant
  probability, docs/methods.md Sec. 1). The ensemble's GDR is the mean over samples.

GAL's Fig. 2 shows the coherence histogram of a baseline ensemble near 1 and of a
diversity-trained one spread lower; :func:`histogram` gives the counts behind such a figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from robens.errors import InputError
from robens.utils import eval_mode

STATISTICS = ("coherence", "cosine", "gal", "gdr")


def gradient_statistics(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    statistics: Sequence[str] = STATISTICS,
    max_samples: int | None = None,
    gdr_samples: int = 20_000,
    device: torch.device | str | None = None,
) -> dict[str, np.ndarray]:
    """Per-sample values of each statistic over ``batches`` (float64 arrays of equal length).

    ``model`` must have ``M >= 2`` members. ``gdr_samples`` is the Monte Carlo sample count used
    for ``M >= 4`` (exact closed forms for ``M <= 3``).
    """
    from robens.objectives import (
        coherence,
        gal_per_sample,
        gdr,
        input_gradients,
        mean_pairwise_cosine,
    )

    unknown = sorted(set(statistics) - set(STATISTICS))
    if unknown:
        raise InputError(f"unknown statistic(s) {unknown}; available: {', '.join(STATISTICS)}")
    m = getattr(model, "num_members", 1)
    if m < 2:
        raise InputError(f"gradient statistics compare members and need M >= 2, got M={m}")
    out: dict[str, list[np.ndarray]] = {s: [] for s in statistics}
    n = 0
    with eval_mode(model):
        for x, y in batches:
            if max_samples is not None and n >= max_samples:
                break
            if max_samples is not None:
                x, y = x[: max_samples - n], y[: max_samples - n]
            if device is not None:
                x, y = x.to(device), y.to(device)
            g = input_gradients(model, x, y)  # [M, B, D]
            n += x.shape[0]
            if "coherence" in out:
                out["coherence"].append(coherence(g).double().cpu().numpy())
            if "cosine" in out:
                out["cosine"].append(mean_pairwise_cosine(g).double().cpu().numpy())
            if "gal" in out:
                out["gal"].append(gal_per_sample(g).double().cpu().numpy())
            if "gdr" in out:
                r = gdr(g, n_samples=gdr_samples)
                out["gdr"].append(torch.as_tensor(r).double().cpu().numpy())
    if n == 0:
        raise InputError("gradient_statistics got no samples")
    return {k: np.concatenate(v) for k, v in out.items()}


def summarize(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """``{mean, std, median, q05, q95, min, max, n}`` of a 1-D sample."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise InputError("summarize got no values")
    q05, med, q95 = np.quantile(v, [0.05, 0.5, 0.95])
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "median": float(med),
        "q05": float(q05),
        "q95": float(q95),
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }


def histogram(
    values: Sequence[float] | np.ndarray,
    bins: int = 40,
    limits: tuple[float, float] | None = (-1.0, 1.0),
) -> dict[str, Any]:
    """``{"edges": [bins + 1], "counts": [bins]}`` (JSON-able lists; values outside the range
    of ``limits`` are clipped into the end bins so no sample is lost)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if limits is not None:
        v = np.clip(v, *limits)
    counts, edges = np.histogram(v, bins=bins, range=limits)
    return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}
