"""Adversarial training on the fly and ensemble adversarial training (small internal attacks).

* ``training.adversarial.attack: fgsm | pgd`` crafts examples against the model being trained
  (Goodfellow et al. 2015; Madry et al. 2018), with ``eps`` fixed or ``eps ~ U(eps_min, eps)``
  per example (ADP's recipe: ``U(0.01, 0.05)``, 10 steps of ``eps/10``).
* ``training.adversarial.sources`` (checkpoint paths) is ensemble adversarial training
  (Tramer et al. 2018; GAL's T_Ens): each step picks one static pre-trained source at random
  and crafts FGSM examples against it with ``eps_i = |truncated normal(0, eps/2)|`` (cut at
  ``2 sigma = eps``) per example.

``ratio`` adversarial examples per clean example are appended to the batch (``1`` gives
``{D, D_adv}``, the mean of the clean and the adversarial loss). The attacks here take a
per-example eps, which ``robens.attacks`` (fixed eps) does not; they run the model in eval
mode (mode restored), differentiate w.r.t. the input only (parameter ``.grad`` untouched),
and maximize the cross-entropy of the combined output, or the MMC loss for members with MMC
heads (the adaptive objective of Pang et al. 2020).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from robens.config import AdversarialConfig
from robens.data.transforms import truncated_normal
from robens.errors import ConfigError

AttackLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _members(model: nn.Module) -> list[nn.Module]:
    return list(model.members) if hasattr(model, "member_logits") else [model]


def attack_loss_for(model: nn.Module) -> AttackLoss:
    """Per-sample loss ``(model, x, y) -> [B]`` that the training attacks maximize."""
    from robens.models.heads import mm_head_of

    heads = [mm_head_of(m) for m in _members(model)]
    if heads and all(h is not None and h.kind == "mmc" for h in heads):
        from robens.objectives.mmc import mmc_per_sample

        def mmc_loss(mod: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if hasattr(mod, "member_logits"):
                return mmc_per_sample(mod.member_logits(x), y).mean(0)
            return mmc_per_sample(mod(x), y)

        return mmc_loss

    def ce_loss(mod: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(mod(x), y, reduction="none")

    return ce_loss


def _input_grad(
    model: nn.Module, loss: AttackLoss, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    with torch.enable_grad():
        xx = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(model, xx, y).sum(), xx)
    return g


def _view(eps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return eps.to(x).view(-1, *([1] * (x.dim() - 1)))


def fgsm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
    loss: AttackLoss | None = None,
) -> torch.Tensor:
    """``x' = clip(x + eps_b * sign(grad_x loss))`` with a per-example ``eps`` ``[B]``."""
    loss = loss or attack_loss_for(model)
    with _eval_mode(model):
        g = _input_grad(model, loss, x, y)
    return (x + _view(eps, x) * g.sign()).clamp(0.0, 1.0).detach()


def pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, steps: int = 10,
    alpha: torch.Tensor | None = None, random_start: bool = True,
    generator: torch.Generator | None = None, loss: AttackLoss | None = None,
) -> torch.Tensor:
    """L-inf PGD with per-example ``eps``; step ``alpha = eps/steps`` (ADP's 10 x eps/10)."""
    loss = loss or attack_loss_for(model)
    e = _view(eps, x)
    a = e / steps if alpha is None else _view(alpha, x)
    x_adv = x.detach()
    if random_start:
        u = torch.rand(x.shape, generator=generator, device=generator.device if generator else None)
        x_adv = (x + (2 * u.to(x) - 1) * e).clamp(0.0, 1.0)
    with _eval_mode(model):
        for _ in range(steps):
            g = _input_grad(model, loss, x_adv, y)
            x_adv = torch.min(torch.max(x_adv + a * g.sign(), x - e), x + e).clamp(0.0, 1.0)
    return x_adv.detach()


class _eval_mode:
    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> None:
        self.modes = [m.training for m in self.model.modules()]
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        for m, mode in zip(self.model.modules(), self.modes, strict=True):
            m.training = mode


class AdversarialAugmenter:
    """Appends adversarial examples to training batches (see the module docstring)."""

    def __init__(self, cfg: AdversarialConfig, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.sources: list[nn.Module] = []
        if cfg.eps_min is not None and cfg.eps_min > cfg.eps:
            raise ConfigError(
                f"training.adversarial.eps_min ({cfg.eps_min}) must not exceed eps ({cfg.eps})"
            )
        if cfg.sources:
            if cfg.attack == "pgd":
                raise ConfigError(
                    "ensemble adversarial training crafts FGSM examples on its static sources;"
                    " set training.adversarial.attack to 'fgsm' (or 'none') with sources"
                )
            from robens.factory import load_ensemble

            for path in cfg.sources:
                src, _ = load_ensemble(path)
                src.to(device).eval()
                for p in src.parameters():
                    p.requires_grad_(False)
                self.sources.append(src)

    @property
    def enabled(self) -> bool:
        return (self.cfg.attack != "none" or bool(self.sources)) and self.cfg.ratio > 0

    def sample_eps(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Per-example eps: truncated normal for sources, else ``U(eps_min, eps)`` or fixed."""
        c = self.cfg
        if self.sources:
            return truncated_normal((n,), c.eps / 2, gen, cut=2.0).abs()
        if c.eps_min is not None:
            u = torch.rand(n, generator=gen, device=gen.device)
            return (c.eps_min + (c.eps - c.eps_min) * u).cpu()
        return torch.full((n,), float(c.eps))

    def craft(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``round(ratio * B)`` adversarial examples of ``x [B, ...]`` and their labels."""
        b = x.shape[0]
        n = int(round(self.cfg.ratio * b))
        idx = torch.arange(n) % b
        xs, ys = x[idx.to(x.device)], y[idx.to(y.device)]
        eps = self.sample_eps(n, gen)
        if self.sources:
            k = int(torch.randint(len(self.sources), (1,), generator=gen, device=gen.device))
            return fgsm(self.sources[k], xs, ys, eps), ys
        if self.cfg.attack == "fgsm":
            return fgsm(model, xs, ys, eps), ys
        return pgd(model, xs, ys, eps, steps=self.cfg.steps, generator=gen), ys

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch with its adversarial examples appended (per member for ``x [M, B, ...]``)."""
        if not self.enabled:
            return x, y
        if x.dim() == 5:  # bagging: every member attacks (and trains on) its own batch
            members = _members(model)
            outs = [self.craft(m, xi, yi, gen) for m, xi, yi in zip(members, x, y, strict=True)]
            xa = torch.stack([o[0] for o in outs])
            ya = torch.stack([o[1] for o in outs])
            return torch.cat([x, xa], dim=1), torch.cat([y, ya], dim=1)
        xa, ya = self.craft(model, x, y, gen)
        return torch.cat([x, xa]), torch.cat([y, ya])
