"""The universal unit: an SGD-UAP fitted on training (or test) images, evaluated by the engine.

One perturbation for every image (Co et al., "Universal adversarial robustness of texture and
shape-biased CNNs"; Mummadi et al. 2019); robust accuracy here is the fraction of test images
classified correctly with the perturbation added (ART's convention, as in the paper tables).
"""

from __future__ import annotations

from robens.evaluate.engine import evaluate_attack
from robens.evaluate.units.attack import (
    AttackEntry,
    _save_samples,
    member_records,
    save_examples,
    settings_of,
)
from robens.evaluate.units.base import Records, UnitContext, register_unit


@register_unit("universal", AttackEntry, kind="attack")
def universal_unit(ctx: UnitContext, entry: AttackEntry, eps: float) -> Records:
    """Accuracy and fooling rates of a universal perturbation of budget ``eps``."""
    fit = ctx.train_data(entry.fit_size) if entry.fit_split == "train" else ctx.test_data(
        entry.fit_size)[0]
    atk = ctx.build_attack("uap", ctx.model, eps, entry.combine, entry.params)
    ctx.echo(f"fitting SGD-UAP eps={eps:g} on {len(fit)} {entry.fit_split} images")
    fitting = ctx.progress.task(f"{entry.label} fitting", atk.iterations * atk.seeds)
    atk.on_step = fitting.advance  # a bar over the SGD steps
    delta = atk.fit(fit)
    fitting.close()
    data, idx = ctx.test_data(entry.test_size)
    batches = list(data.batches(entry.batch_size or ctx.suite.batch_size))
    out = evaluate_attack(ctx.model, atk, batches, device=ctx.device, keep_adv=True,
                          track=lambda items: ctx.track(items, f"{entry.label} eps={eps:g}"))
    n = out.n
    correct = int(out.adv_ok.sum())
    accuracy = correct / n
    changed = int((out.adv_pred != out.clean_pred).sum()) / n
    delta_path = ctx.store.save_arrays(f"{ctx.uid}-delta", delta=delta.detach().cpu().numpy())
    if entry.per_sample if entry.per_sample is not None else ctx.suite.per_sample:
        _save_samples(ctx, idx, out, False)  # per-image outcomes for paired tests
    common = dict(
        attack="uap", eps=eps, threat_model="universal", n=n, params=entry.params,
        clean_accuracy=int(out.clean_ok.sum()) / n, fooling_rate_changed=changed,
        fooling_rate_misclassified=1 - correct / n, fit_split=entry.fit_split,
        fit_size=len(fit), seeds_history=[h.get("fooling_rate_misclassified")
                                          for h in atk.history],
        delta_file=str(delta_path.relative_to(ctx.store.out)),
        examples_file=save_examples(ctx, batches, out), **settings_of(atk),
    )
    ctx.echo(
        f"universal uap eps={eps:g}: accuracy {100 * accuracy:.2f}%, fooling rate"
        f" {100 * changed:.2f}% (changed) on {n} images"
    )
    return [
        ctx.rec(metric="robust_accuracy", value=accuracy, **common),
        ctx.rec(metric="uap_fooling_rate", value=changed, **common),
        *(ctx.rec(metric="member_robust_accuracy", **{**common, **m})
          for m in member_records(ctx, batches, out, require_clean=False)),
    ]
