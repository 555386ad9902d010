"""Per-sample attack losses: cross-entropy, the Carlini-Wagner hinge, and the MMC loss.

Every function returns one value per sample (``[B]``), never a batch mean, so each sample's
gradient is independent of the rest of the batch (docs/attacks-and-testing.md, point 6).

* CW hinge (Carlini & Wagner 2017, objective f6), untargeted:
  ``f(x) = max(Z_y - max_{j != y} Z_j, -kappa)``; targeted at ``t``:
  ``f(x) = max(max_{j != t} Z_j - Z_t, -kappa)``. The attack *minimizes* ``f``. The maximum over
  the other classes masks ``Z_y`` with ``-inf`` (never ``(1 - onehot) * Z``, which returns 0 instead
  of the true maximum when every logit is negative).
* MMC loss (Pang et al., ICLR 2020, docs/methods.md section 4): ``L = 0.5 * ||z - mu_y||^2`` on the
  penultimate features ``z`` and the fixed Max-Mahalanobis centres ``mu``. A Max-Mahalanobis
  head is any module with a tensor attribute ``mm_centers`` (:mod:`robens.models.convention`);
  :func:`mmc_plan` decides once, at an attack's construction, how the loss is read: from the
  members' outputs when each declares ``output_convention = "mm_scores"`` (``L = -h_y``), else
  from the features entering each head, captured by :class:`MMCFeatures`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robens.errors import InputError
from robens.models.convention import MM_SCORES, output_convention

LOSSES = ("ce", "cw", "mmc")


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy ``-log softmax(Z)_y`` per sample, ``[B]``."""
    return F.cross_entropy(logits, y, reduction="none")


def other_max(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max_{j != y} Z_j`` per sample (``Z_y`` masked by -inf; right for negative logits)."""
    mask = F.one_hot(y, logits.shape[-1]).bool()
    return logits.masked_fill(mask, float("-inf")).amax(-1)


def cw_margin(logits: torch.Tensor, y: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """The unclamped CW margin: ``Z_y - max_{j!=y} Z_j`` (or ``max_{j!=t} Z_j - Z_t`` targeted).

    Negative means the attack has succeeded (misclassified, or classified as the target).
    """
    zy = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    zo = other_max(logits, y)
    return zo - zy if targeted else zy - zo


def cw_hinge(
    logits: torch.Tensor, y: torch.Tensor, kappa: float = 0.0, targeted: bool = False
) -> torch.Tensor:
    """CW objective f6 (Carlini & Wagner 2017, Sec. V.A): ``max(margin, -kappa)`` per sample.

    Untargeted: ``max(Z_y - max_{j != y} Z_j, -kappa)``; targeted at ``y``:
    ``max(max_{j != y} Z_j - Z_y, -kappa)``. ``kappa = inf`` gives the plain margin.
    """
    margin = cw_margin(logits, y, targeted)
    if math.isinf(kappa):
        return margin
    return margin.clamp_min(-float(kappa))


def mmc_loss(z: torch.Tensor, centers: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MMC loss ``0.5 * ||z - mu_y||_2^2`` per sample (Pang et al. 2020, Eq. 6), ``[B]``."""
    mu = centers.to(z.dtype)[y]
    return 0.5 * (z.flatten(1) - mu.flatten(1)).pow(2).sum(-1)


def check_loss(loss: object) -> str:
    """Validate a loss name (``ce``, ``cw`` or ``mmc``)."""
    if loss not in LOSSES:
        raise InputError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    return str(loss)


def attack_objective(
    logits: torch.Tensor,
    y: torch.Tensor,
    loss: str = "ce",
    targeted: bool = False,
    kappa: float = 0.0,
) -> torch.Tensor:
    """The per-sample value an attack *maximizes*, from logits.

    ``ce``: ``CE(Z, y)`` untargeted, ``-CE(Z, t)`` targeted. ``cw``: ``-cw_hinge`` (minimizing the
    hinge), in its untargeted or targeted form.
    """
    if loss == "ce":
        value = ce_loss(logits, y)
        return -value if targeted else value
    if loss == "cw":
        return -cw_hinge(logits, y, kappa, targeted)
    raise InputError(f"loss {loss!r} is not computed from logits (use 'ce' or 'cw')")


# ---------------------------------------------------------------------------- MMC heads
_KIND_ATTRS = ("kind", "head_kind", "mm_kind")


def head_kind(head: nn.Module) -> str:
    """``"mmc"`` or ``"mmlda"`` for a Max-Mahalanobis head (attribute ``kind`` if present)."""
    for attr in _KIND_ATTRS:
        value = getattr(head, attr, None)
        if isinstance(value, str):
            return value.lower()
    return "mmc"


def mm_heads(model: object, kind: str | None = "mmc") -> list[nn.Module]:
    """Modules of ``model`` carrying Max-Mahalanobis centres (a tensor attribute ``mm_centers``).

    Duck-typed, so it finds robens' ``MMHead`` and any user head that
    follows the same convention. ``kind="mmc"`` keeps MMC heads only (MMLDA heads are trained
    with softmax cross-entropy, so CE is already their adaptive loss); ``None`` keeps both.
    """
    mods: list[nn.Module] = []
    if isinstance(model, nn.Module):
        candidates = list(model.modules())
    elif isinstance(model, (list, tuple)):
        candidates = [
            m for member in model if isinstance(member, nn.Module) for m in member.modules()
        ]
    else:
        candidates = []
    for m in candidates:
        if isinstance(getattr(m, "mm_centers", None), torch.Tensor):
            if kind is None or head_kind(m) == kind:
                mods.append(m)
    return mods


class MMCFeatures:
    """Capture the penultimate features ``z`` entering each MMC head during a forward pass.

    A forward hook on every head records its input (or, for a module that carries the
    centres itself and has ``features(x)``, the features of its input).
    """

    def __init__(self, heads: list[nn.Module]) -> None:
        self.heads = heads
        self.z: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> MMCFeatures:
        def hook(mod: nn.Module, inp: tuple, _out: object) -> None:
            x = inp[0]
            feats = getattr(mod, "features", None)
            self.z[id(mod)] = feats(x) if callable(feats) else x

        self._handles = [h.register_forward_hook(hook) for h in self.heads]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def losses(self, y: torch.Tensor) -> list[torch.Tensor]:
        """One ``[B]`` MMC loss per head, in the order of ``heads``."""
        out = []
        for h in self.heads:
            if id(h) not in self.z:
                raise InputError("an MMC head was not called during the forward pass")
            out.append(mmc_loss(self.z[id(h)], h.mm_centers, y))
        return out


@dataclass(frozen=True)
class MMCPlan:
    """How an attack reads the MMC loss: the heads, their convex weights (the weight of the
    member holding each head) and whether the members' outputs are the heads' scores."""

    heads: list[nn.Module]
    weights: list[float]
    from_scores: bool


def mmc_plan(
    model: object, members: Sequence[object], weights: torch.Tensor | None
) -> MMCPlan | None:
    """The :class:`MMCPlan` of ``model`` (its ``members``; ``[model]`` for a single model), or
    ``None`` when it has no MMC head."""
    heads = mm_heads(model, kind="mmc")
    if not heads:
        return None
    per_head = []
    for h in heads:
        w = 1.0
        for i, member in enumerate(members):
            if isinstance(member, nn.Module) and any(h is m for m in member.modules()):
                w = float(weights[i]) if weights is not None else 1.0
                break
        per_head.append(w)
    total = sum(per_head)
    from_scores = len(heads) == len(members) and all(
        isinstance(m, nn.Module)
        and output_convention(m) == MM_SCORES
        and len(own := mm_heads(m, kind="mmc")) == 1
        and output_convention(own[0]) == MM_SCORES
        for m in members
    )
    return MMCPlan(heads, [w / total for w in per_head], from_scores)
