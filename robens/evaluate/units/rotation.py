"""The rotation unit: accuracy on test images rotated by each angle."""

from __future__ import annotations

from pydantic import Field

from robens.evaluate.units.base import FloatList, Records, Strict, UnitContext, register_unit
from robens.metrics.robustness import rotation_accuracy


class RotationSpec(Strict):
    degrees: FloatList = Field(default_factory=lambda: [5.0, 10.0, 15.0])
    samples: int | None = Field(None, ge=1)


@register_unit("rotation", RotationSpec)
def rotation_unit(ctx: UnitContext, spec: RotationSpec) -> Records:
    """``rotation_accuracy`` per angle (degrees)."""
    batches = ctx.batches(spec.samples)
    acc = rotation_accuracy(ctx.model, batches, spec.degrees)
    n = sum(int(y.numel()) for _, y in batches)
    ctx.echo("rotation: " + ", ".join(f"{d:g} deg {100 * a:.2f}%" for d, a in acc.items()))
    return [ctx.rec(metric="rotation_accuracy", value=a, attack="rotation", degrees=d, n=n,
                    threat_model="rotation") for d, a in acc.items()]
