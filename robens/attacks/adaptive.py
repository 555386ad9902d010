"""Adaptive attacks on defences whose output is not a plain softmax classifier.

The defence is read from what the model declares (:mod:`robens.models.convention`), never from
class names:

* MMC heads (Pang et al., ICLR 2020, docs/methods.md section 4): predictions are
  ``argmin_l ||z - mu_l||`` and there is no softmax in training, so cross-entropy on whatever
  scores the head returns is not the right objective. The adaptive attack maximizes the MMC
  loss ``0.5 * ||z - mu_y||^2`` (the paper's "maximize -sum_l y_l logits_l") for the
  gradient attacks and SPSA; CW/EAD/JSMA already work on the head's scores (margins). A
  Max-Mahalanobis head is any module with a tensor ``mm_centers``; ``kind == "mmlda"`` heads
  are trained with softmax CE, so CE stays.
* RCE models (Pang et al., NeurIPS 2018, section 5): inference negates the logits,
  ``F(x) = softmax(-Z(x))``. A module declaring ``output_convention = "rce_negated"`` (robens'
  ``RCEModel``) returns the negated logits from ``forward``, so attacking the model's output
  applies the inference convention; attacking the raw logits would attack the wrong classifier.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from robens.attacks.base import Attack, ModelLike
from robens.attacks.losses import mm_heads
from robens.attacks.registry import ATTACKS, build_attack, canonical_attack_name
from robens.models.convention import RCE_NEGATED, output_convention


def _modules(model: object) -> list[nn.Module]:
    if isinstance(model, nn.Module):
        return list(model.modules())
    if isinstance(model, (list, tuple)):
        return [m for member in model if isinstance(member, nn.Module) for m in member.modules()]
    return []


def detect_defenses(model: ModelLike) -> dict[str, bool]:
    """Which adaptive conventions ``model`` needs: ``{"mmc", "mmlda", "rce"}``."""
    return {
        "mmc": bool(mm_heads(model, kind="mmc")),
        "mmlda": bool(mm_heads(model, kind="mmlda")),
        "rce": any(output_convention(m) == RCE_NEGATED for m in _modules(model)),
    }


def adaptive_attack(model: ModelLike, name: str, **params: Any) -> Attack:
    """Build attack ``name`` on ``model`` with the objective its defence calls for.

    MMC heads: ``loss="mmc"`` instead of cross-entropy for attacks that take a loss (an explicit
    ``loss`` other than ``"ce"`` is kept). RCE: the model's forward (negated logits) is attacked.
    The choices are recorded in ``attack.adaptive`` and in the result records.
    """
    key = canonical_attack_name(name)
    cls = ATTACKS[key]
    found = detect_defenses(model)
    notes: list[str] = []
    takes_loss = "loss" in inspect.signature(cls).parameters
    supports_mmc = "mmc" in getattr(cls, "supported_losses", ())
    if found["mmc"]:
        if takes_loss and supports_mmc and params.get("loss", "ce") == "ce":
            params["loss"] = "mmc"
            notes.append("MMC head: attacking the MMC loss 0.5*||z - mu_y||^2 instead of CE")
        elif takes_loss and supports_mmc:
            notes.append(f"MMC head: explicit loss {params['loss']!r} kept")
        else:
            notes.append("MMC head: attack works on the head's scores (margins); unchanged")
    if found["mmlda"]:
        notes.append("MMLDA head: softmax cross-entropy over -0.5*||z - mu_l||^2 (unchanged)")
    if found["rce"]:
        notes.append("RCE model: attacking the inference output softmax(-Z) (negated logits)")
    atk = build_attack(key, model, **params)
    atk.adaptive = {
        "mmc_loss": atk.loss == "mmc",
        "mmlda": found["mmlda"],
        "rce_negated_logits": found["rce"],
        "loss": atk.loss,
        "notes": notes,
    }
    return atk
