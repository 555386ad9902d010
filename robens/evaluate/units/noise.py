"""The noise unit: accuracy under additive Gaussian noise of each sigma (seeded)."""

from __future__ import annotations

from pydantic import Field

from robens.evaluate.units.base import FloatList, Records, Strict, UnitContext, register_unit
from robens.metrics.robustness import noise_accuracy


class NoiseSpec(Strict):
    sigmas: FloatList = Field(default_factory=lambda: [0.05, 0.1, 0.2])
    samples: int | None = Field(None, ge=1)


@register_unit("noise", NoiseSpec)
def noise_unit(ctx: UnitContext, spec: NoiseSpec) -> Records:
    """``noise_accuracy`` per sigma."""
    batches = ctx.batches(spec.samples)
    acc = noise_accuracy(ctx.model, batches, spec.sigmas, seed=ctx.suite.seed)
    n = sum(int(y.numel()) for _, y in batches)
    ctx.echo("Gaussian noise: " + ", ".join(f"sigma={s:g} {100 * a:.2f}%"
                                            for s, a in acc.items()))
    return [ctx.rec(metric="noise_accuracy", value=a, attack="gaussian_noise", sigma=s, n=n,
                    threat_model="noise") for s, a in acc.items()]
