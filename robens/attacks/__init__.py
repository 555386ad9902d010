"""Adversarial attacks on models and ensembles (torchattacks-style API, per-sample results).

>>> from robens.attacks import PGD, build_attack
>>> atk = PGD(model, eps=0.1, alpha=0.01, steps=20)        # doctest: +SKIP
>>> x_adv = atk(x, y)                                      # doctest: +SKIP
>>> result = build_attack("fgsm", model, eps=0.1).run(x, y)  # doctest: +SKIP
>>> result.success.float().mean(), result.to_record_fields()  # doctest: +SKIP

Attacks take any logits callable, an :class:`~robens.ensemble.Ensemble` or a list of models;
``combine`` = ``"logits" | "probs" | "loss"`` says how members form the objective. Attacks are
registered in :data:`ATTACKS` (``@register_attack()`` on the class; see
:mod:`robens.attacks.registry`). Transfer evaluation (surrogate -> target, member x member)
lives in :mod:`robens.metrics.transfer`, on the evaluation engine.
"""

from __future__ import annotations

# the gradient attacks register first, so error messages list fgsm, rfgsm, ... pgd_cw first
import robens.attacks.gradient  # noqa: F401
from robens.attacks.adaptive import adaptive_attack, detect_defenses
from robens.attacks.apgd import APGD, APGDT
from robens.attacks.autoattack import AutoAttack
from robens.attacks.base import Attack, AttackResult, eval_mode
from robens.attacks.cw import CW, EAD
from robens.attacks.gradient import BIM, FGSM, IFGSM, MIFGSM, PGD, PGDCW, RFGSM
from robens.attacks.jsma import JSMA
from robens.attacks.losses import ce_loss, cw_hinge, cw_margin, mmc_loss
from robens.attacks.masking import gradient_masking_checks, gradient_stats
from robens.attacks.projections import per_sample_norm, project
from robens.attacks.registry import (
    ATTACKS,
    attack_parameters,
    build_attack,
    canonical_attack_name,
    register_attack,
)
from robens.attacks.spsa import SPSA
from robens.attacks.square import Square
from robens.attacks.targets import least_likely_targets, next_class_targets, random_targets
from robens.attacks.uap import SGDUAP, uap_metrics

__all__ = [
    "APGD",
    "APGDT",
    "ATTACKS",
    "AutoAttack",
    "BIM",
    "CW",
    "EAD",
    "FGSM",
    "IFGSM",
    "JSMA",
    "MIFGSM",
    "PGD",
    "PGDCW",
    "RFGSM",
    "SGDUAP",
    "SPSA",
    "Square",
    "Attack",
    "AttackResult",
    "adaptive_attack",
    "attack_parameters",
    "build_attack",
    "canonical_attack_name",
    "ce_loss",
    "cw_hinge",
    "cw_margin",
    "detect_defenses",
    "eval_mode",
    "gradient_masking_checks",
    "gradient_stats",
    "least_likely_targets",
    "mmc_loss",
    "next_class_targets",
    "per_sample_norm",
    "project",
    "random_targets",
    "register_attack",
    "uap_metrics",
]
