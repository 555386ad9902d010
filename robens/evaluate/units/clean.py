"""The clean unit: ensemble and member accuracy on the suite's test subset (runs first)."""

from __future__ import annotations

from robens.evaluate.units.base import Records, Strict, UnitContext, register_unit
from robens.metrics.accuracy import evaluate_accuracy


class CleanSpec(Strict):
    """No options: the clean unit always runs on the suite's test subset."""


@register_unit("clean", CleanSpec, kind="clean")
def clean_unit(ctx: UnitContext, spec: CleanSpec) -> Records:
    """``clean_accuracy`` of the ensemble and ``member_clean_accuracy`` of each member."""
    data, _ = ctx.test_data(None)
    batches = list(data.batches(ctx.suite.batch_size))
    acc = evaluate_accuracy(ctx.model, ctx.track(batches, "clean"), device=ctx.device)
    recs = [ctx.rec(metric="clean_accuracy", value=acc["ensemble"], n=acc["n"],
                    threat_model="none")]
    for i, a in enumerate(acc["members"]):
        recs.append(ctx.rec(metric="member_clean_accuracy", value=a, member=i, n=acc["n"],
                            threat_model="none"))
    ctx.echo(f"clean accuracy {100 * acc['ensemble']:.2f}% on {acc['n']} test images")
    return recs
