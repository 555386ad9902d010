"""Gradient-masking checks in the spirit of AutoAttack (Croce & Hein 2020, Sec. 5) and of
Athalye et al. 2018 ("Obfuscated gradients give a false sense of security"), Sec. 3.1.

A white-box result is suspect when:

* input gradients are zero or NaN on a large fraction of samples (shattered or vanishing
  gradients; saturated softmax);
* a black-box attack (SPSA) or a transfer attack from a surrogate succeeds more often than the
  white-box attack (the gradient is not pointing where the loss increases);
* identical seeded runs give different results (randomized model or attack: use EOT).

A diversity-regularized ensemble (GAL, ADP, GDR) can mask gradients, so every evaluation of
one should report these warnings with its numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from robens.attacks.base import Attack, AttackResult, ModelLike
from robens.attacks.gradient import FGSM, PGD
from robens.attacks.spsa import SPSA
from robens.errors import InputError
from robens.utils import eval_mode


def _probe(model: ModelLike, attack: Attack | None) -> FGSM:
    loss = "mmc" if attack is not None and attack.loss == "mmc" else "ce"
    combine = attack.combine if attack is not None and attack._kind != "single" else None
    targeted = attack.targeted if attack is not None else False
    return FGSM(model, 0.0, loss=loss, combine=combine, targeted=targeted)


def gradient_stats(
    model: ModelLike, x: torch.Tensor, y: torch.Tensor, probe: FGSM | None = None
) -> dict[str, float]:
    """Fractions of samples whose input gradient is all zero, or has a NaN/Inf entry."""
    probe = probe or _probe(model, None)
    with eval_mode(model):
        grad, _, _ = probe.gradient(x, y.to(x.device))
    flat = grad.flatten(1)
    nonfinite = ~torch.isfinite(flat).all(1)
    zero = (flat == 0).all(1) & ~nonfinite
    n = max(1, flat.shape[0])
    return {"zero": float(zero.sum()) / n, "nonfinite": float(nonfinite.sum()) / n}


def _rate(success: torch.Tensor) -> float:
    return float(success.float().mean()) if success.numel() else 0.0


#: attacks whose masking checks skip the "run it again" check: randomized searches and
#: cascades, whose rerun costs as much as the attack and says nothing a gradient attack's does
#: not (the suite and ``robens attack`` alike)
NO_REPEAT = ("uap", "apgd", "apgd_t", "square", "autoattack")


def gradient_masking_checks(
    model: ModelLike,
    x: torch.Tensor,
    y: torch.Tensor,
    white_box_result: AttackResult,
    *,
    spsa_eps: float | None = None,
    surrogate: Callable[[torch.Tensor], torch.Tensor] | None = None,
    repeat: bool = True,
    zero_grad_fraction: float = 0.1,
    margin: float = 0.01,
    spsa_params: dict[str, Any] | None = None,
) -> list[str]:
    """Warnings (empty when nothing looks masked) about a white-box ``white_box_result``.

    Args:
        model: the attacked model. ``x``, ``y``: the attacked inputs and labels (targets when
            the attack was targeted). ``white_box_result``: the white-box attack's result on them.
        spsa_eps: run SPSA at this L-inf budget and warn if it beats the white-box attack.
        surrogate: craft PGD (20 steps, same eps) on this model and warn if it transfers better.
        repeat: rerun the white-box attack twice under the same seed; warn if results differ.
        zero_grad_fraction: warn when more than this fraction of gradients is zero.
        margin: a black-box or transfer success rate must exceed the white-box one by more
            than this to warn.
    """
    if len(white_box_result) != x.shape[0]:
        raise InputError(
            f"white_box_result has {len(white_box_result)} samples for {x.shape[0]} inputs"
        )
    atk = white_box_result.attack
    probe = _probe(model, atk)
    warnings: list[str] = []
    stats = gradient_stats(model, x, y, probe)
    if stats["nonfinite"] > 0:
        warnings.append(
            f"input gradients are NaN/Inf on {100 * stats['nonfinite']:.1f}% of samples"
        )
    if stats["zero"] > zero_grad_fraction:
        warnings.append(
            f"input gradients are exactly zero on {100 * stats['zero']:.1f}% of samples"
            " (vanishing or masked gradients; try loss='cw' or a black-box attack)"
        )
    wb = _rate(white_box_result.success)
    if spsa_eps is not None:
        spsa = SPSA(
            model,
            spsa_eps,
            combine=probe.combine,
            targeted=probe.targeted,
            seed=0,
            **(spsa_params or {}),
        )
        r = spsa.run(x, y)
        rate = _rate(r.success)
        if rate > wb + margin:
            warnings.append(
                f"black-box SPSA (eps={spsa_eps}) succeeds on {100 * rate:.1f}% vs white-box"
                f" {100 * wb:.1f}%: the white-box gradients are unreliable (gradient masking)"
            )
    if surrogate is not None:
        eps = atk.eps if atk is not None and atk.eps is not None else spsa_eps
        norm = atk.norm if atk is not None and atk.norm in ("linf", "l2") else "linf"
        if eps is None:
            raise InputError("a surrogate check needs the white-box attack's eps (or spsa_eps)")
        transfer = PGD(surrogate, eps, steps=20, norm=norm, targeted=probe.targeted, seed=0)
        x_tr = transfer(x, y)
        with eval_mode(model), torch.no_grad():
            success = probe.is_success(probe.logits(x_tr), y.to(x_tr.device))
        rate = _rate(success)
        if rate > wb + margin:
            warnings.append(
                f"a transfer attack from the surrogate succeeds on {100 * rate:.1f}% vs"
                f" white-box {100 * wb:.1f}%: the white-box gradients are unreliable"
            )
    if repeat:
        with eval_mode(model), torch.no_grad():
            a, b = probe.logits(x), probe.logits(x)
        if not torch.equal(a, b):
            warnings.append(
                "the model's outputs change between identical calls (randomized"
                " model): evaluate with expectation over transformation (EOT)"
            )
        if atk is not None:
            runs = []
            devices = [x.device.index or 0] if x.is_cuda else []
            for _ in range(2):
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(20240607)
                    runs.append(atk.run(x, y))
            if not torch.equal(runs[0].x_adv, runs[1].x_adv) or not torch.equal(
                runs[0].success, runs[1].success
            ):
                warnings.append(
                    f"{atk.name} results change between identical seeded runs (success"
                    f" {100 * _rate(runs[0].success):.1f}% vs {100 * _rate(runs[1].success):.1f}%)"
                )
    return warnings
