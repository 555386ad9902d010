"""The disagreement unit: how often members disagree on clean test images."""

from __future__ import annotations

from pydantic import Field

from robens.evaluate.units.base import Records, Strict, UnitContext, register_unit
from robens.metrics.robustness import disagreement_rate


class DisagreementSpec(Strict):
    samples: int | None = Field(None, ge=1)


@register_unit("disagreement", DisagreementSpec)
def disagreement_unit(ctx: UnitContext, spec: DisagreementSpec) -> Records:
    """Pairwise disagreement and the fraction of images the members do not agree on."""
    if ctx.members < 2:
        return []
    d = disagreement_rate(ctx.model, ctx.batches(spec.samples))
    ctx.echo(f"member disagreement: pairwise {100 * d['pairwise']:.2f}%,"
             f" not unanimous {100 * d['any']:.2f}%")
    return [
        ctx.rec(metric="disagreement_pairwise", value=d["pairwise"], n=d["n"],
                threat_model="none"),
        ctx.rec(metric="disagreement_any", value=d["any"], n=d["n"], threat_model="none"),
    ]
