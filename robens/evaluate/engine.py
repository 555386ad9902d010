"""The one robust-accuracy engine: white-box, transfer and universal attacks on a target.

``evaluate_attack(target, attack, batches)`` crafts with ``attack`` (built on the target for
white-box results, on a surrogate for transfer results, a fitted universal perturbation for
universal ones), classifies the clean and the adversarial inputs with ``target`` and returns
an :class:`Outcome` with the per-sample results. ``robens attack``, the suite's attack units,
the transfer helpers and the recipes all call it, so robust accuracy has one definition:

    robust accuracy = (1/n) * #{i : f(x_i) = y_i and f(x_adv_i) = y_i}

(a sample counts only when the target classifies it correctly both clean and attacked;
Carlini et al. 2019, "On evaluating adversarial robustness", Sec. 4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from robens.errors import InputError
from robens.utils import eval_mode

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
#: ``on_batch(index, x, y, result)``: called after each crafted batch (masking checks read it)
BatchHook = Callable[[int, torch.Tensor, torch.Tensor, Any], None]


def device_of(model: object, default: torch.device | str = "cpu") -> torch.device:
    """The device of ``model``'s first parameter (``default`` for parameter-free callables)."""
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device(default)


def as_batches(batches: Any, batch_size: int = 250) -> Batches:
    """``batches`` as an iterable of ``(x, y)``: an :class:`ImageDataset` is batched."""
    make = getattr(batches, "batches", None)
    return make(batch_size) if callable(make) else batches


def _mean(t: torch.Tensor) -> float:
    return float(t.double().mean())


@dataclass
class Outcome:
    """Per-sample results of one attack on one target (CPU tensors, one entry per sample).

    ``clean_pred`` / ``adv_pred`` are the target's predictions, ``norm`` the perturbation
    norms reported by the attack, ``attack_success`` the attack's own success flags (on the
    model it crafted on: the surrogate for transfer attacks), ``x_adv`` the examples when kept.
    """

    y: torch.Tensor
    clean_pred: torch.Tensor
    adv_pred: torch.Tensor
    norm: torch.Tensor
    attack_success: torch.Tensor
    x_adv: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.y.numel())

    @property
    def clean_ok(self) -> torch.Tensor:
        return self.clean_pred == self.y

    @property
    def adv_ok(self) -> torch.Tensor:
        return self.adv_pred == self.y

    @property
    def robust(self) -> torch.Tensor:
        """Per sample: correct both clean and attacked."""
        return self.clean_ok & self.adv_ok

    #: accuracy on the clean inputs, robust accuracy, mean and max perturbation norm
    clean_accuracy = property(lambda self: _mean(self.clean_ok))
    robust_accuracy = property(lambda self: _mean(self.robust))
    mean_norm = property(lambda self: _mean(self.norm))
    max_norm = property(lambda self: float(self.norm.double().max()))

    @property
    def success_rate(self) -> float:
        """Fraction of the target's correctly classified samples that the attack fools."""
        clean_ok = self.clean_ok
        return float((clean_ok & ~self.adv_ok).sum()) / max(1, int(clean_ok.sum()))


#: attacks with an early exit: the iterative gradient attacks (I-FGSM/BIM, MI-FGSM, PGD,
#: PGD-CW) return, for a sample that leaves, the first iterate that fools the attacked model
#: instead of the last one, so robust accuracy can only stay equal or fall (it is equal unless
#: a later step would have made a fooled sample correct again; benchmarks/bench_attacks.py
#: counts such samples against torchattacks). APGD, APGD-T and AutoAttack (through its APGD
#: stages) already keep a fooling iterate once found, so for them robust accuracy is
#: identical with and without. Square already queries only the unbroken samples; single-step
#: and minimum-norm attacks have no early exit.
EARLY_EXIT_ATTACKS = (
    "ifgsm", "bim", "mifgsm", "pgd", "pgd_cw", "apgd", "apgd_t", "autoattack",
)


@dataclass
class Precomputed:
    """Adversarial examples crafted earlier (e.g. the transfer cache), in batch order."""

    x_adv: torch.Tensor
    norm: torch.Tensor
    success: torch.Tensor | None = None


def _items(batches: Batches, track: Callable[[Any], Iterable] | None) -> Iterable:
    items = as_batches(batches)
    return track(items) if track is not None else items


def _predict(target: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return target(x).argmax(-1)


def evaluate_attack(
    target: Callable[[torch.Tensor], torch.Tensor],
    attack: Any,
    batches: Batches,
    *,
    device: torch.device | str | None = None,
    keep_adv: bool = False,
    precomputed: Precomputed | None = None,
    on_batch: BatchHook | None = None,
    track: Callable[[Any], Iterable] | None = None,
    early_exit: bool = False,
) -> Outcome:
    """Run ``attack`` on ``batches`` and classify clean and adversarial inputs with ``target``.

    Args:
        target: the model evaluated (any callable returning logits; modules are put in eval
            mode for the evaluation and restored after).
        attack: anything with ``run(x, y) -> AttackResult`` (robens attacks, a fitted SGD-UAP);
            ignored when ``precomputed`` is given.
        batches: ``(x, y)`` pairs (or an ``ImageDataset``); labels are the true labels.
        device: where inputs go (default: the target's device).
        keep_adv: keep the adversarial examples in ``Outcome.x_adv`` (CPU).
        precomputed: examples crafted earlier, read in order instead of running ``attack``.
        on_batch: ``hook(index, x, y, result)`` after each crafted batch.
        track: wraps the batch iterable (a progress bar's ``track``).
        early_exit: for a white-box evaluation (the attack crafts on ``target``): samples the
            attack has already broken leave the batch (:data:`EARLY_EXIT_ATTACKS` say how);
            an attack without the option runs as it is. ``False`` restores the full loop.
    """
    if precomputed is None and not callable(getattr(attack, "run", None)):
        raise InputError(f"attack must have a run(x, y) method, got {type(attack).__name__}")
    if early_exit and hasattr(attack, "early_exit"):
        saved = attack.early_exit
        attack.early_exit = True
        try:
            return evaluate_attack(target, attack, batches, device=device, keep_adv=keep_adv,
                                   precomputed=precomputed, on_batch=on_batch, track=track)
        finally:
            attack.early_exit = saved
    dev = torch.device(device) if device is not None else device_of(target)
    per: dict[str, list[torch.Tensor]] = {k: [] for k in ("y", "clean", "adv", "norm", "succ")}
    advs: list[torch.Tensor] = []
    start = 0
    with eval_mode(target):
        for bi, (x, y) in enumerate(_items(batches, track)):
            x, y = x.to(dev), y.to(dev)
            if precomputed is not None:
                stop = start + y.shape[0]
                x_adv = precomputed.x_adv[start:stop].to(dev)
                norm = precomputed.norm[start:stop].double().cpu()
                succ = (precomputed.success[start:stop] if precomputed.success is not None
                        else torch.zeros(y.shape[0], dtype=torch.bool))
                start = stop
                result = None
            else:
                result = attack.run(x, y)
                x_adv, norm = result.x_adv, result.norm.double().cpu()
                succ = result.success.detach().cpu()
            per["y"].append(y.cpu())
            per["clean"].append(_predict(target, x).cpu())
            per["adv"].append(_predict(target, x_adv.to(dev)).cpu())
            per["norm"].append(norm)
            per["succ"].append(succ.bool())
            if keep_adv:
                advs.append(x_adv.detach().cpu())
            if on_batch is not None and result is not None:
                on_batch(bi, x, y, result)
    if not per["y"]:
        raise InputError("the attack got no samples")
    return Outcome(
        y=torch.cat(per["y"]),
        clean_pred=torch.cat(per["clean"]),
        adv_pred=torch.cat(per["adv"]),
        norm=torch.cat(per["norm"]),
        attack_success=torch.cat(per["succ"]),
        x_adv=torch.cat(advs) if keep_adv else None,
    )


#: how an attacker may aggregate an ensemble's members (robens.attacks ``combine``): averaged
#: logits, the log of averaged probabilities (how ADP and DVERGE predict), averaged losses
AGGREGATIONS = ("logits", "probs", "loss")


def evaluate_adaptive(
    target: Callable[[torch.Tensor], torch.Tensor],
    build: Callable[[str], Any],
    batches: Batches,
    *,
    aggregations: tuple[str, ...] = AGGREGATIONS,
    device: torch.device | str | None = None,
    keep_adv: bool = False,
    on_batch: BatchHook | None = None,
    track: Callable[[Any], Iterable] | None = None,
    early_exit: bool = False,
) -> Outcome:
    """Per-sample worst case over the attacker's aggregations of an ensemble.

    ``build(aggregation)`` returns the attack crafted with that ``combine``. The aggregations
    run in order as a cascade: each only on the samples that every earlier one left correctly
    classified (a sample the target already gets wrong, clean or attacked, cannot become
    robust again), so a sample counts as robust only when it survives all of them.
    ``Outcome.info["broken_by"]`` is the per-sample index into ``aggregations`` of the
    aggregation that broke it (-1: clean error or unbroken) and ``info["broken_counts"]``
    the count per aggregation. ``on_batch`` sees the first aggregation's full-batch result;
    ``early_exit`` as in :func:`evaluate_attack`.
    """
    if not aggregations:
        raise InputError("give at least one aggregation")
    unknown = [a for a in aggregations if a not in AGGREGATIONS]
    if unknown:
        raise InputError(f"unknown aggregation(s) {unknown}; choose from {list(AGGREGATIONS)}")
    dev = torch.device(device) if device is not None else device_of(target)
    attacks = [build(a) for a in aggregations]
    for atk in attacks:
        if early_exit and hasattr(atk, "early_exit"):
            atk.early_exit = True
    per: dict[str, list[torch.Tensor]] = {k: [] for k in ("y", "clean", "adv", "norm", "by")}
    advs: list[torch.Tensor] = []
    stage_logs: dict[str, list[tuple[int, list[dict[str, Any]]]]] = {a: [] for a in aggregations}
    with eval_mode(target):
        for bi, (x, y) in enumerate(_items(batches, track)):
            x, y = x.to(dev), y.to(dev)
            clean = _predict(target, x)
            alive = clean == y
            x_adv = x.clone()
            norm = torch.zeros(y.shape[0], dtype=torch.float64)
            by = torch.full((y.shape[0],), -1, dtype=torch.long)
            for ai, atk in enumerate(attacks):
                idx = alive.nonzero().flatten() if ai else torch.arange(y.shape[0], device=dev)
                if idx.numel() == 0:
                    break
                result = atk.run(x[idx], y[idx])
                if ai == 0 and on_batch is not None:
                    on_batch(bi, x, y, result)
                if result.info.get("stages"):
                    stage_logs[aggregations[ai]].append((int(idx.numel()), result.info["stages"]))
                broken = _predict(target, result.x_adv.to(dev)) != y[idx]
                # the first aggregation fills every sample; later ones replace what they break
                src = torch.ones_like(broken) if ai == 0 else broken
                x_adv[idx[src]] = result.x_adv.to(dev)[src].detach()
                norm[idx[src].cpu()] = result.norm.double().cpu()[src.cpu()]
                newly = idx[broken & alive[idx]]
                by[newly.cpu()] = ai
                alive[newly] = False
            per["y"].append(y.cpu())
            per["clean"].append(clean.cpu())
            per["adv"].append(_predict(target, x_adv).cpu())
            per["norm"].append(norm)
            per["by"].append(by)
            if keep_adv:
                advs.append(x_adv.detach().cpu())
    if not per["y"]:
        raise InputError("the attack got no samples")
    by_all = torch.cat(per["by"])
    out = Outcome(
        y=torch.cat(per["y"]), clean_pred=torch.cat(per["clean"]),
        adv_pred=torch.cat(per["adv"]), norm=torch.cat(per["norm"]),
        attack_success=by_all >= 0, x_adv=torch.cat(advs) if keep_adv else None,
    )
    out.info["aggregations"] = list(aggregations)
    out.info["broken_by"] = by_all
    out.info["broken_counts"] = {a: int((by_all == i).sum()) for i, a in enumerate(aggregations)}
    logs = {a: merge_stage_logs(v) for a, v in stage_logs.items() if v}
    if logs:  # a cascade (AutoAttack) per aggregation, over the images that aggregation attacked
        out.info["stages_by_aggregation"] = logs
    return out


def merge_stage_logs(logs: list[tuple[int, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Per-batch stage logs ``[(batch size, log)]`` of a cascade as one log over all images."""
    n = sum(b for b, _ in logs)
    out = []
    for i, first in enumerate(logs[0][1]):
        out.append({
            "stage": first["stage"],
            "robust_accuracy": sum(b * log[i]["robust_accuracy"] for b, log in logs) / max(n, 1),
            "n_attacked": sum(log[i]["n_attacked"] for _, log in logs),
            "n_broken": sum(log[i]["n_broken"] for _, log in logs),
            "seconds": round(sum(log[i]["seconds"] for _, log in logs), 3),
        })
    return out
