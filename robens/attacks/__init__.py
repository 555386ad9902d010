"""Adversarial attacks on models and ensembles (torchattacks-style API, per-sample results).

>>> from robens.attacks import PGD, build_attack
>>> atk = PGD(model, eps=0.1, alpha=0.01, steps=20)        # doctest: +SKIP
>>> x_adv = atk(x, y)                                      # doctest: +SKIP
>>> result = build_attack("fgsm", model, eps=0.1).run(x, y)  # doctest: +SKIP
>>> result.success.float().mean(), result.to_record_fields()  # doctest: +SKIP

Attacks take any logits callable, an :class:`~robens.ensemble.Ensemble` or a list of models;
``combine`` = ``"logits" | "probs" | "loss"`` says how members form the objective.
"""

from __future__ import annotations

import inspect
from typing import Any

from robens.attacks.adaptive import adaptive_attack, detect_defenses
from robens.attacks.base import (
    Attack,
    AttackResult,
    eval_mode,
    per_sample_norm,
    project,
)
from robens.attacks.cw import CW, EAD
from robens.attacks.gradient import BIM, FGSM, IFGSM, MIFGSM, PGD, PGDCW, RFGSM
from robens.attacks.jsma import JSMA
from robens.attacks.losses import ce_loss, cw_hinge, cw_margin, mmc_loss
from robens.attacks.masking import gradient_masking_checks, gradient_stats
from robens.attacks.spsa import SPSA
from robens.attacks.targets import least_likely_targets, next_class_targets, random_targets
from robens.attacks.transfer import transfer_attack, transferability_matrix
from robens.attacks.uap import SGDUAP, uap_metrics
from robens.errors import InputError

#: name -> attack class; ``build_attack`` looks names up here.
ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "rfgsm": RFGSM,
    "ifgsm": IFGSM,
    "bim": BIM,
    "mifgsm": MIFGSM,
    "pgd": PGD,
    "pgd_cw": PGDCW,
    "cw": CW,
    "ead": EAD,
    "jsma": JSMA,
    "spsa": SPSA,
    "uap": SGDUAP,
}
_ALIASES = {
    "r_fgsm": "rfgsm",
    "i_fgsm": "ifgsm",
    "mi_fgsm": "mifgsm",
    "pgdcw": "pgd_cw",
    "cw_l2": "cw",
    "cwl2": "cw",
    "sgd_uap": "uap",
    "sgduap": "uap",
}


def canonical_attack_name(name: object) -> str:
    """Registry key of ``name`` (case-insensitive; ``-`` and ``_`` interchangeable)."""
    if isinstance(name, str):
        key = name.strip().lower().replace("-", "_").replace("+", "")
        key = _ALIASES.get(key, key)
        if key in ATTACKS:
            return key
    raise InputError(f"unknown attack {name!r}; available attacks: {', '.join(ATTACKS)}")


def attack_parameters(name: str) -> list[str]:
    """Keyword parameters attack ``name`` accepts (besides ``model``)."""
    cls = ATTACKS[canonical_attack_name(name)]
    return [p for p in inspect.signature(cls).parameters if p != "model"]


def build_attack(name: str, model: Any, **params: Any) -> Attack:
    """Build a registered attack by name: ``build_attack("pgd", model, eps=0.1, steps=20)``.

    Unknown names and unknown parameters raise :class:`~robens.errors.InputError` listing the
    valid ones.
    """
    key = canonical_attack_name(name)
    accepted = attack_parameters(key)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InputError(
            f"unknown parameter(s) {', '.join(unknown)} for attack {key!r}; it accepts:"
            f" {', '.join(accepted)}"
        )
    try:
        return ATTACKS[key](model, **params)
    except TypeError as exc:
        raise InputError(f"attack {key!r}: {exc}") from None


__all__ = [
    "ATTACKS",
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
    "transfer_attack",
    "transferability_matrix",
    "uap_metrics",
]
