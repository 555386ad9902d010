"""Jacobian-based Saliency Map Attack (Papernot et al., EuroS&P 2016, Eq. 8-9, Algorithm 3).

At each iteration the pair of input features ``(p, q)`` maximizing the saliency
``alpha * |beta|`` subject to ``alpha > 0, beta < 0`` (``theta > 0``; signs flipped for
``theta < 0``) is changed by ``theta``, where ``alpha = dZ_t/dx_p + dZ_t/dx_q`` and
``beta = sum_{j != t} (dZ_j/dx_p + dZ_j/dx_q)``. A feature is changed at most once; the attack
stops per sample when it succeeds or after ``floor(D * gamma / 2)`` iterations (a distortion of
at most a fraction ``gamma`` of the ``D`` features; L0 threat model).

Untargeted mode targets, per sample, the runner-up class at the clean input (torchattacks uses
``(y + 1) mod C``; :func:`robens.attacks.targets.next_class_targets` gives those).

Equivalents: torchattacks ``JSMA(model, theta, gamma)``, cleverhans
``SaliencyMapMethod(theta, gamma)``, ART ``SaliencyMapMethod(theta, gamma)``.
"""

from __future__ import annotations

import math

import torch

from robens.attacks.base import Attack, Gen, ModelLike
from robens.attacks.registry import register_attack
from robens.errors import InputError

_PAIR_BUDGET = 16_000_000  # entries of the [B, D, D] saliency table built at once


@register_attack()
class JSMA(Attack):
    """JSMA with the torchattacks parameters ``theta`` (change per feature) and ``gamma``
    (maximum fraction of features changed)."""

    name = "jsma"
    supported_norms = ("l0",)
    supported_losses = ("ce", "cw")

    def __init__(
        self,
        model: ModelLike,
        theta: float = 1.0,
        gamma: float = 0.1,
        targeted: bool = False,
        combine: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(model, None, "l0", "ce", targeted, combine, seed)
        try:
            self.theta = float(theta)
        except (TypeError, ValueError):
            raise InputError(f"theta must be a number, got {theta!r}") from None
        if not math.isfinite(self.theta) or self.theta == 0 or abs(self.theta) > 1:
            raise InputError(f"theta must be a non-zero number in [-1, 1], got {theta!r}")
        self.gamma = self._check_positive(gamma, "gamma", allow_zero=True)
        if self.gamma > 1:
            raise InputError(f"gamma must lie in [0, 1], got {gamma!r}")
        self.params = {"theta": self.theta, "gamma": self.gamma}

    def max_iterations(self, num_features: int) -> int:
        """``floor(D * gamma / 2)`` (two features per iteration)."""
        return int(math.floor(num_features * self.gamma / 2))

    def _target_grads(
        self, x: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            xa = x.detach().requires_grad_(True)
            logits = self.logits(xa)
            zt = logits.gather(-1, t.unsqueeze(-1)).squeeze(-1)
            (gt,) = torch.autograd.grad(zt.sum(), xa, retain_graph=True)
            (gall,) = torch.autograd.grad(logits.sum(), xa)
        return gt.flatten(1), (gall - gt).flatten(1), logits.detach()

    def _attack_chunk(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        d = x[0].numel()
        flat = x.flatten(1).clone()
        domain = flat < 1 if self.theta > 0 else flat > 0
        active = torch.ones(b, dtype=torch.bool, device=x.device)
        sign = 1.0 if self.theta > 0 else -1.0
        for _ in range(self.max_iterations(d)):
            idx = active.nonzero().flatten()
            if idx.numel() == 0:
                break
            gt, go, logits = self._target_grads(flat[idx].view(-1, *x.shape[1:]), t[idx])
            keep = ~self.is_success(logits, y[idx]) & (domain[idx].sum(1) >= 2)
            active[idx[~keep]] = False
            idx, gt, go = idx[keep], gt[keep], go[keep]
            if idx.numel() == 0:
                break
            # saliency alpha * |beta| where alpha > 0 > beta (theta > 0; mirrored for theta < 0):
            # relu(sign * alpha) * relu(-sign * beta) is that product, and 0 when the signs fail
            gt, go = sign * gt, sign * go
            scores = (gt.unsqueeze(2) + gt.unsqueeze(1)).clamp_min_(0)
            scores.mul_((go.unsqueeze(2) + go.unsqueeze(1)).neg_().clamp_min_(0))
            # exclude pairs outside the search domain and the diagonal (p == q)
            outside = (~domain[idx]).to(scores.dtype) * -1e30
            scores.add_(outside.unsqueeze(2)).add_(outside.unsqueeze(1))
            scores.diagonal(dim1=1, dim2=2).fill_(-1e30)
            best = scores.flatten(1).argmax(1)
            p, q = best // d, best % d
            flat[idx, p] = (flat[idx, p] + self.theta).clamp(0.0, 1.0)
            flat[idx, q] = (flat[idx, q] + self.theta).clamp(0.0, 1.0)
            domain[idx, p] = False
            domain[idx, q] = False
        return flat.view_as(x)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        if self.targeted:
            t = y
        else:
            with torch.no_grad():
                logits = self.logits(x)
            masked = logits.clone()
            masked.scatter_(1, y.unsqueeze(1), float("-inf"))
            t = masked.argmax(-1)
        d = x[0].numel()
        chunk = max(1, _PAIR_BUDGET // max(1, d * d))
        out = [
            self._attack_chunk(x[i : i + chunk], y[i : i + chunk], t[i : i + chunk])
            for i in range(0, x.shape[0], chunk)
        ]
        return torch.cat(out)
