"""The GAAS unit: gradient-aligned adversarial subspace success (Tramer et al. 2017, Sec. 3),
crafted on the model itself or on a surrogate (``source``) and checked on the target."""

from __future__ import annotations

from pydantic import Field, field_validator

from robens.errors import InputError
from robens.evaluate.units.base import (
    FloatList,
    IntList,
    Records,
    Strict,
    UnitContext,
    register_unit,
)
from robens.metrics.gaas import gaas_success, regular_hadamard


class GAASSpec(Strict):
    eps: FloatList = Field(default_factory=lambda: [0.1])
    k: IntList = Field(default_factory=lambda: [4, 16, 36, 64])
    samples: int = Field(200, ge=1)
    source: str | None = None

    @field_validator("k")
    @classmethod
    def _k(cls, v: list[int]) -> list[int]:
        for k in v:
            try:
                regular_hadamard(k)
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return v


@register_unit("gaas", GAASSpec, surrogate_field="source")
def gaas_unit(ctx: UnitContext, spec: GAASSpec) -> Records:
    """``gaas_success`` per eps and subspace dimension k."""
    source, extra = (ctx.model, {"source": "self"})
    if spec.source:
        source, info = ctx.surrogates.get(spec.source)
        extra = {"source": spec.source, **info}
    batches = ctx.batches(spec.samples)
    recs = []
    for eps in spec.eps:
        res = gaas_success(
            source, ctx.track(batches, f"gaas eps={eps:g}"), eps, spec.k, target=ctx.model,
            device=ctx.device,
        )
        for k, r in res.items():
            recs.append(ctx.rec(
                metric="gaas_success", value=r["mean_fraction"], attack="gaas", eps=eps, k=k,
                any_success=r["any"], n=r["n"], threat_model="gaas", **extra,
            ))
        line = ", ".join(f"k={k}: {100 * r['mean_fraction']:.1f}%" for k, r in res.items())
        ctx.echo(f"GAAS eps={eps:g}: {line}")
    return recs
