"""The detection unit: ROC-AUC of adversarial-example detectors (confidence, non-ME, kernel
density of Feinman et al. 2017, member disagreement) on white-box attacks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from robens.detect import KernelDensity, detection_protocol
from robens.errors import InputError
from robens.evaluate.units.base import Records, Strict, UnitContext, register_unit


class DetectionAttack(Strict):
    attack: str
    eps: float = Field(ge=0.0)
    params: dict[str, Any] = Field(default_factory=dict)


class DetectionSpec(Strict):
    attacks: list[DetectionAttack] = Field(
        default_factory=lambda: [DetectionAttack(attack="fgsm", eps=0.1)]
    )
    detectors: list[Literal["confidence", "non_me", "kernel_density", "disagreement"]] = Field(
        default_factory=lambda: ["confidence", "non_me", "kernel_density", "disagreement"]
    )
    bandwidth: float = Field(1.0, gt=0.0)
    reference_per_class: int = Field(100, ge=1)
    samples: int = Field(500, ge=1)


@register_unit("detection", DetectionSpec)
def detection_unit(ctx: UnitContext, spec: DetectionSpec) -> Records:
    """``detection_auc`` per attack and detector (with the ROC curve)."""
    detectors = list(spec.detectors)
    if ctx.members < 2 and "disagreement" in detectors:
        detectors.remove("disagreement")
    kd = None
    if "kernel_density" in detectors:
        try:
            ncls = ctx.full_test.num_classes
            ref = ctx.train_data(spec.reference_per_class * ncls * 2)
            kd = KernelDensity(ctx.model, spec.bandwidth, spec.reference_per_class,
                               seed=ctx.suite.seed).fit(ref.batches(ctx.suite.batch_size))
        except InputError as exc:
            ctx.echo(f"kernel density skipped: {exc}")
            detectors.remove("kernel_density")
    batches = ctx.batches(spec.samples)
    recs = []
    for a in spec.attacks:
        atk = ctx.build_attack(a.attack, ctx.model, a.eps, None, a.params)
        res = detection_protocol(
            ctx.model, atk, ctx.track(batches, f"detection {a.attack}"), detectors, kd
        )
        for d in detectors:
            fpr, tpr = res.curve(d) if res.n_pairs else ([], [])
            recs.append(ctx.rec(
                metric="detection_auc", value=res.auc[d], detector=d, attack=a.attack,
                eps=a.eps, n=res.n_total, n_pairs=res.n_pairs, fpr=fpr, tpr=tpr,
                bandwidth=spec.bandwidth if d == "kernel_density" else None,
                threat_model="white_box",
            ))
        ctx.echo(
            f"detection ({a.attack} eps={a.eps:g}, {res.n_pairs} pairs): "
            + ", ".join(f"{d} AUC {res.auc[d]:.3f}" for d in detectors)
        )
    return recs
