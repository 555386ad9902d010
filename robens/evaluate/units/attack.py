"""The attack unit: one ``attacks:`` entry at one eps, white-box or transfer, via the engine.

White-box examples are crafted on the target. On an ensemble the attack runs, by default,
under every aggregation of the members an attacker may choose (averaged logits, log of
averaged probabilities, averaged losses) and a sample is robust only if it survives all of
them (``adaptive``; :func:`robens.evaluate.engine.evaluate_adaptive`); samples already broken
leave iterative attacks early (``early_exit``). The first batch feeds the gradient-masking
checks of :func:`robens.attacks.gradient_masking_checks` (AutoAttack-style, Croce & Hein 2020)
and a Square check (queries only, Andriushchenko et al. 2020): a sample that Square breaks
but the gradient attack does not points at masked gradients.
Transfer examples are crafted on a surrogate and, with ``transfer_cache``, read from / stored
in :mod:`robens.evaluate.transfer_cache` so every target of one surrogate shares them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from robens.attacks import attack_parameters, canonical_attack_name, gradient_masking_checks
from robens.attacks.masking import NO_REPEAT
from robens.errors import InputError
from robens.evaluate.engine import (
    Outcome,
    Precomputed,
    evaluate_adaptive,
    evaluate_attack,
    merge_stage_logs,
)
from robens.evaluate.transfer_cache import TransferCache, cache_key, data_digest
from robens.evaluate.units.base import FloatList, Records, Strict, UnitContext, register_unit


class AttackEntry(Strict):
    """One attack x eps list x threat model."""

    attack: str
    eps: FloatList
    threat: Literal["white_box", "transfer", "universal"] = "white_box"
    params: dict[str, Any] = Field(default_factory=dict)
    combine: Literal["logits", "probs", "loss"] | None = None
    surrogate: str | None = None
    name: str | None = None
    test_size: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    masking_checks: bool = True
    masking_samples: int = Field(100, ge=1)
    masking_surrogate: bool = False
    spsa_check: bool = False
    fit_split: Literal["train", "test"] = "train"
    fit_size: int = Field(2000, ge=1)
    per_sample: bool | None = None
    # white-box only: worst case over the attacker's ensemble aggregations (None: on for an
    # ensemble of 2+ members when no combine is given); early exit of broken samples
    adaptive: bool | None = None
    early_exit: bool = True
    square_check: bool = True
    square_queries: int = Field(1000, ge=1)

    @field_validator("eps")
    @classmethod
    def _eps(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("give at least one eps")
        if any(not math.isfinite(e) or e < 0 for e in v):
            raise ValueError(f"eps must be finite numbers >= 0, got {v}")
        return v

    @model_validator(mode="after")
    def _check(self) -> AttackEntry:
        try:
            key = canonical_attack_name(self.attack)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        self.attack = key
        if self.threat == "universal" and key != "uap":
            raise ValueError(f"threat 'universal' needs attack 'uap', got {key!r}")
        if key == "uap" and self.threat != "universal":
            raise ValueError("attack 'uap' is a universal attack: set threat: universal")
        if self.threat == "transfer" and not self.surrogate:
            raise ValueError("threat 'transfer' needs a 'surrogate' (a name or checkpoint path)")
        accepted = set(attack_parameters(key)) - {"eps", "combine", "seed"}
        unknown = sorted(set(self.params) - accepted)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)} for attack {key!r}; it accepts:"
                f" {', '.join(sorted(accepted))}"
            )
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.threat.replace('_', '-')}-{self.attack}"


def _transfer_cache(
    ctx: UnitContext, entry: AttackEntry, eps: float, combine: str | None, batches: list
) -> tuple[TransferCache | None, str, dict[str, Any]]:
    """``(cache or None, key, key fields)`` of a transfer unit (see transfer_cache.py)."""
    setting = ctx.suite.transfer_cache
    if entry.threat != "transfer" or setting is None:
        return None, "", {}
    path, digest = ctx.surrogates.file(entry.surrogate)  # type: ignore[arg-type]
    if not digest:
        return None, "", {}
    fields = {
        "surrogate_sha256": digest, "attack": entry.attack, "params": entry.params,
        "combine": combine, "eps": eps, "seed": ctx.suite.seed,
        "dataset": ctx.full_test.name, "data": data_digest(batches),
        "device": ctx.device.type, "torch": torch.__version__,
    }
    folder = path if path.is_dir() else path.parent
    root = folder / "transfer-cache" if setting == "auto" else Path(setting)
    return TransferCache(root), cache_key(fields), fields


@contextmanager
def _claimed(
    ctx: UnitContext, cache: TransferCache | None, key: str, n: int, desc: str
) -> Iterator[dict[str, torch.Tensor] | None]:
    """The cached examples of ``key``, or None: then, with a cache, this unit crafts them
    holding the key's claim, so a concurrent suite of the same surrogate waits for them
    instead of crafting them again (it reads them once the claim is released). With
    ``ctx.defer_busy`` a claimed key raises :class:`~robens.filelock.LockBusy` instead: the
    suite runs the unit again after its others (:meth:`robens.evaluate.runner.SuiteRunner.run`).
    """
    if cache is None:
        yield None
        return
    cached = cache.load(key, n)
    if cached is None:
        def on_wait(holder: str) -> None:
            ctx.echo(f"{desc}: {holder} is crafting these transfer examples; waiting for them")

        with cache.claim(key, on_wait=on_wait, wait=not ctx.defer_busy):
            cached = cache.load(key, n)
            if cached is None:
                yield None
                return
    ctx.echo(f"{desc}: transfer examples read from {cache.path(key)}")
    yield cached


def _masking(ctx: UnitContext, x, y, result, eps: float, entry: AttackEntry) -> list[str]:
    try:
        return gradient_masking_checks(
            ctx.model, x, y, result,
            surrogate=ctx.surrogates.first() if entry.masking_surrogate else None,
            spsa_eps=eps if entry.spsa_check else None,
            repeat=canonical_attack_name(entry.attack) not in NO_REPEAT,
        )
    except InputError as exc:  # a check that does not apply to this attack
        return [f"gradient-masking checks not run: {exc}"]


def _save_samples(ctx: UnitContext, idx: torch.Tensor, out: Outcome, keep_x: bool) -> None:
    arrays = {
        "index": idx.numpy(),
        "label": out.y.numpy(),
        "pred_clean": out.clean_pred.numpy(),
        "pred_adv": out.adv_pred.numpy(),
        "norm": out.norm.numpy(),
    }
    if keep_x and out.x_adv is not None:
        arrays["x_adv"] = out.x_adv.numpy()
    ctx.store.save_arrays(ctx.uid, **arrays)


#: images per attack unit kept for the report's example figure
EXAMPLES = 8


def member_records(
    ctx: UnitContext, batches: list, out: Outcome, require_clean: bool = True
) -> list[dict[str, Any]]:
    """Each member's accuracy on the examples of ``out`` (one forward of the members on the
    clean and one on the adversarial images): per member, the fraction of images it classifies
    correctly both clean and attacked, as the engine counts the ensemble (attacked only when
    ``require_clean`` is false: the universal unit's convention)."""
    if ctx.members < 2 or out.x_adv is None or not hasattr(ctx.model, "member_logits"):
        return []
    ok: list[torch.Tensor] = []
    start = 0
    with torch.no_grad():
        for x, y in batches:
            stop = start + y.shape[0]
            y = y.to(ctx.device)
            clean = ctx.model.member_logits(x.to(ctx.device)).argmax(-1) == y
            adv = ctx.model.member_logits(out.x_adv[start:stop].to(ctx.device)).argmax(-1) == y
            ok.append((clean & adv if require_clean else adv).cpu())
            start = stop
    robust = torch.cat(ok, dim=1)
    return [{"member": i, "value": float(robust[i].double().mean()), "n": int(robust.shape[1])}
            for i in range(robust.shape[0])]


def save_examples(ctx: UnitContext, batches: list, out: Outcome, name: str = "examples") -> str:
    """Store the first :data:`EXAMPLES` clean and adversarial images with labels and the
    target's predictions as ``suite/samples/<name>-<uid>.npz`` (so a unit's own per-sample
    file ``<uid>-*.npz`` never matches it); returns its path relative to
    the suite's output folder ('' when no examples were kept)."""
    if out.x_adv is None:
        return ""
    x = torch.cat([b[0] for b in batches])[:EXAMPLES]
    k = x.shape[0]
    path = ctx.store.save_arrays(
        f"{name}-{ctx.uid}", x=x.numpy(), x_adv=out.x_adv[:k].numpy(), label=out.y[:k].numpy(),
        pred_clean=out.clean_pred[:k].numpy(), pred_adv=out.adv_pred[:k].numpy(),
    )
    return str(path.relative_to(ctx.store.out))


def settings_of(atk: Any) -> dict[str, Any]:
    """The attack's resolved settings (defaults included) as flat record fields, as
    ``robens attack`` records them: ``norm``, ``loss``, ``targeted``, ``param_*`` ..."""
    describe = getattr(atk, "describe", None)
    if not callable(describe):
        return {}
    desc = describe()
    out = {k: v for k, v in desc.items()
           if k not in ("attack", "eps", "seed", "combine", "adaptive") and v is not None}
    out["attack_seed"] = desc.get("seed")
    return out


def square_check(
    ctx: UnitContext, entry: AttackEntry, eps: float, batches: list, out: Outcome,
    extra: dict[str, Any],
) -> list[str]:
    """Square (queries only) at the same eps on the images of the first ``masking_samples``
    that the gradient attack left robust: how many of them it breaks
    (``extra["square_check"]``). The images the gradient attack broke cannot be flagged, so
    they are not queried (Square's cost is its queries: a forward of every image per query)."""
    norm = entry.params.get("norm", "linf")
    if "eps" not in attack_parameters(entry.attack) or norm not in ("linf", "l2") or eps <= 0:
        return []
    x, y = batches[0]
    k = min(entry.masking_samples, y.shape[0])
    keep = out.robust[:k].cpu()
    x, y = x[:k][keep].to(ctx.device), y[:k][keep].to(ctx.device)
    only_square = 0
    if y.numel():
        square = ctx.build_attack("square", ctx.model, eps, None,
                                  {"norm": norm, "n_queries": entry.square_queries})
        with torch.no_grad():
            only_square = int((ctx.model(square(x, y)).argmax(-1) != y).sum())
    extra["square_check"] = {"n": k, "queries": entry.square_queries,
                             "attacked": int(y.numel()), "square_only": only_square}
    if only_square:
        return [f"Square ({entry.square_queries} queries, no gradients) breaks {only_square} of"
                f" {k} images that {entry.attack} left robust at eps={eps:g}: the gradients"
                " may be masked"]
    return []


@register_unit("white_box", AttackEntry, kind="attack")
@register_unit("transfer", AttackEntry, kind="attack")
def attack_unit(ctx: UnitContext, entry: AttackEntry, eps: float) -> Records:
    """Robust accuracy and success rate of ``entry`` at ``eps`` (white-box or transfer)."""
    data, idx = ctx.test_data(entry.test_size)
    batches = list(data.batches(entry.batch_size or ctx.suite.batch_size))
    extra: dict[str, Any] = {}
    if entry.threat == "transfer":
        source, extra = ctx.surrogates.get(entry.surrogate)  # type: ignore[arg-type]
        combine = entry.combine or "loss"
    else:
        source, combine = ctx.model, entry.combine

    built: list[Any] = []

    def build(aggregation: str | None) -> Any:
        built.append(ctx.build_attack(entry.attack, source, eps, aggregation, entry.params))
        return built[-1]

    warnings: list[str] = []
    stage_logs: list[tuple[int, list[dict[str, Any]]]] = []

    def first_batch_checks(i: int, x: torch.Tensor, y: torch.Tensor, result: Any) -> None:
        nonlocal warnings
        if not adaptive and result.info.get("stages"):  # a cascade's per-stage log
            stage_logs.append((int(y.shape[0]), result.info["stages"]))
        if i == 0 and entry.threat == "white_box" and entry.masking_checks:
            k = min(entry.masking_samples, x.shape[0])
            warnings = _masking(ctx, x[:k], y[:k], result.select(slice(0, k)), eps, entry)

    desc = f"{entry.label} eps={eps:g}"
    white = entry.threat == "white_box"
    adaptive = white and (entry.adaptive if entry.adaptive is not None
                          else ctx.members >= 2 and entry.combine is None)
    early = white and entry.early_exit
    cache, key, fields = _transfer_cache(ctx, entry, eps, combine, batches)
    with _claimed(ctx, cache, key, len(idx), desc) as cached:
        if adaptive:
            combine = "adaptive"
            out = evaluate_adaptive(
                ctx.model, build, batches, device=ctx.device, keep_adv=True,
                on_batch=first_batch_checks, track=lambda items: ctx.track(items, desc),
                early_exit=early,
            )
            extra["broken_by"] = out.info["broken_counts"]
            if out.info.get("stages_by_aggregation"):
                extra["stages_by_aggregation"] = out.info["stages_by_aggregation"]
        else:
            out = evaluate_attack(
                ctx.model, build(combine), batches, device=ctx.device,
                keep_adv=True,  # the members' accuracy and the report's examples read them
                precomputed=None if cached is None else Precomputed(cached["x_adv"],
                                                                    cached["norm"]),
                on_batch=first_batch_checks, track=lambda items: ctx.track(items, desc),
                early_exit=early,
            )
        if cache is not None and cached is None:  # crafted here: store them for the others
            cache.save(key, out.x_adv, out.norm, fields)  # type: ignore[arg-type]
    if stage_logs:
        extra["stages"] = merge_stage_logs(stage_logs)
    if white and entry.square_check and entry.masking_checks:
        warnings += square_check(ctx, entry, eps, batches, out, extra)
    robust, clean = out.robust_accuracy, out.clean_accuracy
    common = dict(
        attack=entry.attack, eps=eps, threat_model=entry.threat, n=out.n, combine_attack=combine,
        early_exit=early,
        params=entry.params, clean_accuracy=clean, mean_norm=out.mean_norm,
        max_norm=out.max_norm, warnings=warnings, **settings_of(built[0] if built else None),
        examples_file=save_examples(ctx, batches, out), **extra,
    )
    if entry.per_sample if entry.per_sample is not None else ctx.suite.per_sample:
        _save_samples(ctx, idx, out, ctx.suite.save_adversarial)
    recs = [
        ctx.rec(metric="robust_accuracy", value=robust, **common),
        ctx.rec(metric="attack_success_rate", value=out.success_rate, **common),
    ]
    recs += [ctx.rec(metric="member_robust_accuracy", **{**common, **m})
             for m in member_records(ctx, batches, out)]
    tag = f" [{len(warnings)} masking warning(s)]" if warnings else ""
    ctx.echo(
        f"{entry.threat} {entry.attack} eps={eps:g}: robust {100 * robust:.2f}% (clean"
        f" {100 * clean:.2f}%) on {out.n} images{tag}"
    )
    for w in warnings:
        ctx.echo(f"warning: {w}")
    return recs
