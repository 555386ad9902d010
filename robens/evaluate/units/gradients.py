"""The gradient-diversity unit: coherence, pairwise cosine, GAL and GDR of member gradients
(Kariyappa & Qureshi 2019; Dabouei et al. 2020), as means, summaries and histograms."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from robens.evaluate.units.base import Records, Strict, UnitContext, register_unit
from robens.metrics.gradients import gradient_statistics, histogram, summarize

_NAMES = {"cosine": "mean_pairwise_cosine"}


class GradientsSpec(Strict):
    samples: int = Field(500, ge=1)
    statistics: list[Literal["coherence", "cosine", "gal", "gdr"]] = Field(
        default_factory=lambda: ["coherence", "cosine", "gal", "gdr"]
    )
    bins: int = Field(40, ge=2)
    gdr_samples: int = Field(20000, ge=100)


@register_unit("gradients", GradientsSpec)
def gradients_unit(ctx: UnitContext, spec: GradientsSpec) -> Records:
    """One record per statistic (its mean; summary and histogram as extra fields)."""
    m = ctx.members
    if m < 2:
        ctx.echo("gradient statistics skipped: the model has one member")
        return []
    batches = ctx.batches(spec.samples)
    stats = gradient_statistics(
        ctx.model, ctx.track(batches, "gradients"), spec.statistics,
        gdr_samples=spec.gdr_samples, device=ctx.device,
    )
    limits = {
        "coherence": (-1.0, 1.0),
        "cosine": (-1.0, 1.0),
        "gal": (-1.0, 1.0 + math.log(m * (m - 1) / 2)),
        "gdr": (0.0, 0.5),
    }
    recs = []
    for stat, values in stats.items():
        s = summarize(values)
        h = histogram(values, spec.bins, limits[stat])
        recs.append(ctx.rec(
            metric=_NAMES.get(stat, stat), value=s["mean"], n=s["n"], statistic="mean",
            summary=s, hist_edges=h["edges"], hist_counts=h["counts"], threat_model="none",
        ))
    line = ", ".join(f"{_NAMES.get(k, k)} {float(np.mean(v)):.3f}" for k, v in stats.items())
    ctx.echo(f"gradient diversity: {line}")
    return recs
