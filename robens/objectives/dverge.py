"""DVERGE building blocks (Yang et al., NeurIPS 2020, arXiv:2009.14720; docs/methods.md s. 8).

* Feature distillation (Eq. 2): ``x'_{f_j^l}(x, x_t) = argmin_{||z - x||_inf <= eps}
  ||f_j^l(z) - f_j^l(x_t)||_2^2``, solved as the official code does: start at ``x`` (no random
  start by default), ``steps`` steps on the MSE of the layer features (target features fixed),
  the gradient L1-normalised per sample and accumulated with momentum ``mu``, ``z <- z - alpha
  sign(g)``, projected onto the eps-ball around ``x`` and onto [0, 1].
* Cross-training (Eq. 5): member i minimises ``sum_{j != i} CE(f_i(x'_{f_j^l}(x_s, x_t)), y_s)``
  (the source label on the images distilled to look like the target to the *other* members);
  ``plus_adv``: ``coeff * (that) + CE(f_i(PGD_i(x_s)), y_s)``.
* The layer: :func:`draw_layer` once per epoch from a seed, or fixed.

Every member's loss depends only on that member's parameters, so ``losses.sum().backward()``
gives each member exactly the gradient of its own loss (the reference's round-robin of
per-member optimizer steps on the same distilled batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch
from torch import nn

from robens.errors import ConfigError, InputError
from robens.models.features import frozen_parameters, member_features
from robens.objectives.base import LossFn, per_sample_ce

T = TypeVar("T")
L1_EPS = 1e-12


@dataclass(frozen=True)
class DistillSettings:
    """Feature-distillation PGD; defaults are DVERGE's CIFAR-10 ones (eps 0.07, alpha 0.007,
    10 steps, momentum 1, no random start); :data:`MNIST_SCALE` is the TRS port's."""

    eps: float = 0.07
    alpha: float = 0.007
    steps: int = 10
    mu: float = 1.0
    rand_start: bool = False

    def __post_init__(self) -> None:
        if not (self.eps >= 0 and self.alpha >= 0 and self.mu >= 0):
            raise ConfigError(f"distillation eps, alpha and mu must be >= 0, got {self}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ConfigError(f"distillation steps must be an int >= 0, got {self.steps!r}")


MNIST_SCALE = DistillSettings(eps=0.35, alpha=0.035, steps=10)


def draw_layer(seed: int, epoch: int, layers: Sequence[T]) -> T:
    """The distillation layer of ``epoch``: uniform over ``layers``, reproducible from
    ``(seed, epoch)`` alone (numpy ``SeedSequence([seed, epoch])``), fresh every epoch."""
    if len(layers) == 0:
        raise ConfigError("draw_layer needs at least one candidate layer")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch)])
    return layers[int(rng.integers(len(layers)))]


def as_members(model: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    """Members of an :class:`~robens.ensemble.Ensemble`, a sequence, or ``[model]``."""
    if isinstance(model, nn.Module):
        members = getattr(model, "members", None)
        return list(members) if members is not None and hasattr(model, "member_logits") else [model]
    return list(model)


def _signature(m: nn.Module) -> tuple:
    return (type(m),) + tuple(
        (n, tuple(t.shape), t.dtype) for n, t in (*m.named_parameters(), *m.named_buffers())
    )


def couples_samples(members: Sequence[nn.Module]) -> bool:
    """True when a member has a BatchNorm in training mode (its output on a sample then depends
    on the rest of the batch, so batches must be forwarded exactly as the reference does)."""
    return any(
        isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.training
        for m in members for mod in m.modules()
    )


def can_vmap(members: Sequence[nn.Module]) -> bool:
    """Members of one architecture and no training-mode BatchNorm: one ``vmap`` computes all."""
    return (
        len(members) > 1
        and all(_signature(m) == _signature(members[0]) for m in members)
        and not couples_samples(members)
    )


def _uniform(shape: Sequence[int], eps: float, like: torch.Tensor,
             generator: torch.Generator | None) -> torch.Tensor:
    """Uniform noise in [-eps, eps] drawn from ``generator`` (on its device), as ``like``."""
    dev = generator.device if generator is not None else like.device
    u = torch.rand(tuple(shape), generator=generator, device=dev, dtype=like.dtype)
    return ((2 * u - 1) * eps).to(like.device)


def _distill_stacked(
    members: Sequence[nn.Module], layer: str, x: torch.Tensor, x_t: torch.Tensor,
    s: DistillSettings, noise: torch.Tensor | None, vectorize: bool,
) -> torch.Tensor:
    """The distillation PGD of all ``members`` at once on per-member copies ``[M, B, ...]``."""
    with frozen_parameters(members):  # only input-gradients: no graph to the weights
        return _distill_pgd(members, layer, x, x_t, s, noise, vectorize)


def _distill_pgd(
    members: Sequence[nn.Module], layer: str, x: torch.Tensor, x_t: torch.Tensor,
    s: DistillSettings, noise: torch.Tensor | None, vectorize: bool,
) -> torch.Tensor:
    m = len(members)
    x = x.detach()
    xs = x.unsqueeze(0).expand(m, *x.shape)
    with torch.no_grad():
        target = member_features(members, layer, x_t.detach().unsqueeze(0).expand_as(xs),
                                 vectorize).detach()
    z = xs.clone() if noise is None else (xs + noise).clamp(0.0, 1.0)
    g = torch.zeros_like(z)
    view = (m, x.shape[0]) + (1,) * (x.dim() - 1)
    for _ in range(s.steps):
        z.requires_grad_(True)
        with torch.enable_grad():
            f = member_features(members, layer, z, vectorize)
            # sum over members of each member's MSE (mean over its batch and features)
            loss = (f - target).pow(2).flatten(1).mean(1).sum()
            (grad,) = torch.autograd.grad(loss, z)
        with torch.no_grad():
            l1 = grad.abs().flatten(2).sum(-1).clamp_min(L1_EPS)
            g = s.mu * g + grad / l1.view(view)
            z = z.detach() - s.alpha * g.sign()
            z = torch.max(torch.min(z, xs + s.eps), xs - s.eps).clamp(0.0, 1.0)
    return z.detach()


def distill(
    model: nn.Module, layer: str, x: torch.Tensor, x_t: torch.Tensor,
    settings: DistillSettings = DistillSettings(), generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Distilled images ``[B, C, H, W]`` of one model (Eq. 2): within eps of ``x`` (L-inf) and
    in [0, 1], with layer-``layer`` features close to those of ``x_t``."""
    return distill_members([model], layer, x, x_t, settings, generator, vectorize=False)[0]


def distill_members(
    model: nn.Module | Sequence[nn.Module], layer: str, x: torch.Tensor, x_t: torch.Tensor,
    settings: DistillSettings = DistillSettings(), generator: torch.Generator | None = None,
    vectorize: bool | Literal["auto"] = "auto",
) -> torch.Tensor:
    """Distilled images of every member, ``[M, B, C, H, W]`` (member j's row is ``x'_j``).

    ``vectorize=False`` is the member-by-member reference form; ``True``/``"auto"`` run all
    members in one PGD (one backward per step), with one ``vmap`` forward over stacked
    parameters where :func:`can_vmap` allows (``"auto"``: on CUDA only, where it pays). The
    results are equal. Models run in their current train/eval mode and get no ``.grad``.
    """
    members = as_members(model)
    if x.shape != x_t.shape or x.dim() != 4:
        raise InputError(f"x and x_t must both be [B, C, H, W], got {list(x.shape)}, "
                         f"{list(x_t.shape)}")
    noise = None
    if settings.rand_start:
        noise = _uniform((len(members), *x.shape), settings.eps, x, generator)
    if vectorize is False:
        return torch.stack([
            _distill_stacked([mm], layer, x, x_t, settings,
                             None if noise is None else noise[i : i + 1], False)[0]
            for i, mm in enumerate(members)
        ])
    use_vmap = can_vmap(members) and (vectorize is True or x.device.type != "cpu")
    return _distill_stacked(members, layer, x, x_t, settings, noise, use_vmap)


def _forward_members(model: nn.Module | Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Logits ``[M, N, K]`` of every member on its own inputs ``x [M, N, C, H, W]``."""
    if isinstance(model, nn.Module) and hasattr(model, "member_logits"):
        return model.member_logits(x)
    return torch.stack([m(xi) for m, xi in zip(as_members(model), x, strict=True)])


def cross_training_loss(
    model: nn.Module | Sequence[nn.Module], distilled: torch.Tensor, y: torch.Tensor, *,
    adv: torch.Tensor | None = None, coeff: float = 1.0, member_loss: LossFn = per_sample_ce,
) -> torch.Tensor:
    """Per-member DVERGE losses ``[M]`` (Eq. 5) on ``distilled [M, B, ...]`` (from
    :func:`distill_members`) with source labels ``y [B]``:
    ``L_i = sum_{j != i} mean_b CE(f_i(x'_j), y)``, and with ``adv [M, B, ...]`` (member i's own
    PGD images of the source batch, ``plus_adv``) ``coeff * L_i + mean_b CE(f_i(adv_i), y)``.

    All members run in one forward on concatenated inputs (``M`` forwards in all instead of
    ``M (M-1)``), or chunk by chunk when BatchNorm in training mode couples the samples.
    """
    members = as_members(model)
    m, b = len(members), y.shape[0]
    if m < 2:
        raise ConfigError(f"DVERGE cross-training needs an ensemble of M >= 2, got M={m}")
    if distilled.dim() != 5 or distilled.shape[:2] != (m, b):
        raise InputError(f"distilled must be [M={m}, B={b}, C, H, W], got {list(distilled.shape)}")
    others = torch.tensor([[j for j in range(m) if j != i] for i in range(m)],
                          device=distilled.device)
    inputs = distilled.detach()[others]  # [M, M-1, B, C, H, W]: row i holds x'_j, j != i
    if adv is not None:
        if adv.shape != distilled.shape:
            raise InputError(f"adv must be shaped like distilled, got {list(adv.shape)}")
        inputs = torch.cat([inputs, adv.detach().unsqueeze(1)], dim=1)
    k = inputs.shape[1]
    if couples_samples(members):
        per = torch.stack([
            member_loss(_forward_members(model, inputs[:, c]), y).mean(-1) for c in range(k)
        ], dim=1)
    else:
        logits = _forward_members(model, inputs.flatten(1, 2))  # [M, K*B, classes]
        per = member_loss(logits, y.repeat(k)).view(m, k, b).mean(-1)  # [M, K]
    cross = per[:, : m - 1].sum(-1)
    return coeff * cross + per[:, m - 1] if adv is not None else cross


def dverge_losses(
    model: nn.Module | Sequence[nn.Module], layer: str, x_s: torch.Tensor, y_s: torch.Tensor,
    x_t: torch.Tensor, settings: DistillSettings = DistillSettings(), *,
    adv: torch.Tensor | None = None, coeff: float = 1.0,
    generator: torch.Generator | None = None, vectorize: bool | Literal["auto"] = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DVERGE step's losses: ``(per-member losses [M], distilled images [M, B, ...])`` for
    source ``(x_s, y_s)`` and target ``x_t`` batches. Backward ``losses.sum()`` and step."""
    distilled = distill_members(model, layer, x_s, x_t, settings, generator, vectorize)
    return cross_training_loss(model, distilled, y_s, adv=adv, coeff=coeff), distilled
