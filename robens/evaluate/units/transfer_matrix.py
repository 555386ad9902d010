"""The transfer-matrix unit: attacks crafted on member i, accuracy of member j (Kariyappa &
Qureshi 2019, Fig. 4): the diagonal is white-box, the off-diagonal cross-member transfer."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from robens.evaluate.units.base import Records, Strict, UnitContext, register_unit
from robens.metrics.transfer import transfer_matrix, transfer_summary


class TransferMatrixSpec(Strict):
    attack: str = "fgsm"
    eps: float = Field(0.1, ge=0.0)
    params: dict[str, Any] = Field(default_factory=dict)
    samples: int = Field(500, ge=1)


@register_unit("transfer_matrix", TransferMatrixSpec)
def transfer_matrix_unit(ctx: UnitContext, spec: TransferMatrixSpec) -> Records:
    """Member x member accuracies plus their diagonal and off-diagonal means."""
    if ctx.members < 2:
        ctx.echo("transfer matrix skipped: the model has one member")
        return []
    batches = [(x.to(ctx.device), y.to(ctx.device)) for x, y in ctx.batches(spec.samples)]
    params = dict(spec.params)
    mat = transfer_matrix(ctx.model, spec.attack, batches, eps=spec.eps, **params)
    n = sum(int(y.numel()) for _, y in batches)
    summ = transfer_summary(mat)
    common = dict(attack=spec.attack, eps=spec.eps, threat_model="member_transfer", n=n,
                  params=params)
    recs = [
        ctx.rec(metric="transfer_matrix_accuracy", value=float(mat[i, j]), source=i, target=j,
                **common)
        for i in range(mat.shape[0]) for j in range(mat.shape[1])
    ]
    recs.append(ctx.rec(metric="transfer_offdiag_accuracy", value=summ["transfer"], **common))
    recs.append(ctx.rec(metric="transfer_diag_accuracy", value=summ["white_box"], **common))
    ctx.echo(
        f"transfer matrix ({spec.attack} eps={spec.eps:g}): member white-box"
        f" {100 * summ['white_box']:.2f}%, cross-member {100 * summ['transfer']:.2f}%"
    )
    return recs
