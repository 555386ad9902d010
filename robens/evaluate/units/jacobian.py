"""The Jacobian unit: member and ensemble ||J||_F^2 against the bounds of Theorem 3.1
(the ensemble Jacobian of averaged members, see robens.metrics.jacobian)."""

from __future__ import annotations

from pydantic import Field

from robens.evaluate.units.base import Records, Strict, UnitContext, register_unit
from robens.metrics.jacobian import jacobian_statistics


class JacobianSpec(Strict):
    samples: int = Field(100, ge=1)


@register_unit("jacobian", JacobianSpec)
def jacobian_unit(ctx: UnitContext, spec: JacobianSpec) -> Records:
    """Per-member and ensemble squared Frobenius norms, the theorem's expectation and bounds."""
    batches = ctx.batches(spec.samples, min(ctx.suite.batch_size, 50))
    st = jacobian_statistics(ctx.model, ctx.track(batches, "jacobian"),
                             max_samples=spec.samples, device=ctx.device)
    common = dict(n=st["n"], entry_mean=st["entry_mean"], entry_var=st["entry_var"],
                  C=st["C"], D=st["D"], threat_model="none")
    recs = [ctx.rec(metric="member_jacobian_frob_sq", value=v, member=i, **common)
            for i, v in enumerate(st["member_frob_sq"])]
    recs += [
        ctx.rec(metric="ensemble_jacobian_frob_sq", value=st["ensemble_frob_sq"],
                ratio_to_theorem=st["ratio"], **common),
        ctx.rec(metric="jacobian_theorem31_expected", value=st["predicted"], **common),
        ctx.rec(metric="jacobian_theorem31_lower", value=st["lower"], **common),
        ctx.rec(metric="jacobian_theorem31_upper", value=st["upper"], **common),
    ]
    ctx.echo(
        f"Jacobian ||J||_F^2: members {[round(v, 3) for v in st['member_frob_sq']]},"
        f" ensemble {st['ensemble_frob_sq']:.3f} (Theorem 3.1: {st['predicted']:.3f} in"
        f" [{st['lower']:.3f}, {st['upper']:.3f}])"
    )
    return recs
