"""TRS, the Transferability-Reduced Smooth ensemble (Yang et al., NeurIPS 2021, arXiv:2104.00671).

The full loss (Sec. 5, Alg. 1; docs/methods.md s. 8) is
``sum_i CE_i + scale * (coeff * L_cos + lamda * L_smooth)``: ``objective: "ce + trs"`` with
``ce: {reduction: sum}``; the ``trs`` term is ``scale * (coeff * L_cos + lamda * L_smooth)``.

* ``L_cos = mean_{a<b} mean_x |CS(grad_x l_a, grad_x l_b)|`` on the clean batch (Eq. 6's
  gradient-similarity loss), from the batch's shared member input-gradients (the reference
  hard-codes M = 3; this is the mean over all M(M-1)/2 pairs).
* ``L_smooth = mean_i Mag(grad_x l_i(x~))`` with the reference's ``Mag(g) = 2 mean_x ||g||^2``
  (the model-smoothness loss). ``x~`` is the clean first half of the batch and, for the second
  half, the PGD point that *maximises* ``mean_i Mag`` (``steps`` sign steps of ``eps / 3``,
  uniform random start, L-inf ball, [0, 1]); eps ramps linearly from ``init_eps`` at
  ``progress = 0`` to ``adv_eps`` at ``progress = 1`` (the reference: ``progress = epoch /
  epochs``). ``plus_adv=False`` ("cos-l2") takes ``L_smooth`` at the clean inputs.

``pgd_direction="step"`` (the default; every robens figure uses it) steps along the sign of each
step's own gradient, PGD as usually defined. The released code (``train/Empirical/trainer.py``,
``PGD``) makes ``adv`` a leaf once and calls ``grad_loss.backward()`` every step without
clearing ``adv.grad``, so its step k follows ``sign(sum_{t<=k} grad_t)``;
``pgd_direction="sum"`` reproduces that.

``smooth_grad="batch_mean"`` (the reference) differentiates each member's *batch-mean* loss,
so the smoothness gradients are the per-sample ones divided by B (the published weights are
tuned with this scaling); ``"per_sample"`` uses the per-sample gradients.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from robens.errors import ConfigError
from robens.models.features import frozen_parameters
from robens.objectives.base import Batch, LossFn, Term, register_term
from robens.objectives.cosine import _check_pairs, pair_values, pairwise_cosine

SMOOTH_GRADS = ("batch_mean", "per_sample")
PGD_DIRECTIONS = ("step", "sum")


def abs_cosine_loss(grads: torch.Tensor) -> torch.Tensor:
    """``L_cos``: mean over pairs a < b and samples of ``|CS(g_a, g_b)|``, grads ``[M, B, D]``."""
    _check_pairs(grads.shape[0], "trs")
    return pair_values(pairwise_cosine(grads)).abs().mean()


def magnitude(grads: torch.Tensor) -> torch.Tensor:
    """The reference's ``Magnitude`` of every member: ``2 mean_b ||g_{i,b}||^2``, ``[M]``."""
    return 2 * grads.flatten(2).pow(2).sum(-1).mean(-1)


def _member_logits(model: nn.Module, xm: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "member_logits"):
        return model.member_logits(xm)
    return model(xm[0]).unsqueeze(0)


def smoothness_pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 6, *,
    member_loss: LossFn, generator: torch.Generator | None = None,
    direction: Literal["step", "sum"] = "step",
) -> torch.Tensor:
    """The point of the eps-ball around ``x`` (and [0, 1]) that maximises ``mean_i Mag(grad_x
    l_i)``: ``steps`` signed steps of ``eps / 3`` from a uniform random start (TRS's ``PGD``),
    along the sign of the step's gradient (``direction="step"``) or of the running sum of the
    steps' gradients (``"sum"``, the released code's accumulating ``adv.grad``).

    All members in one forward and one double backward per step (the sign ignores the
    positive 1/B of the reference's batch-mean loss). The graph is not kept.
    """
    if direction not in PGD_DIRECTIONS:
        raise ConfigError(f"trs PGD direction must be one of {PGD_DIRECTIONS}, got {direction!r}")
    with frozen_parameters([model]):  # only input-gradients: no graph to the weights
        return _smoothness_pgd(model, x, y, eps, steps, member_loss, generator, direction)


def _smoothness_pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
    member_loss: LossFn, generator: torch.Generator | None, direction: str,
) -> torch.Tensor:
    x = x.detach()
    m = model.num_members if hasattr(model, "member_logits") else 1
    dev = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)
    adv = (x + (2 * u - 1) * eps).clamp(0.0, 1.0)
    alpha = eps / 3.0
    total: torch.Tensor | None = None
    for _ in range(steps):
        adv.requires_grad_(True)
        with torch.enable_grad():
            xm = adv.unsqueeze(0).expand(m, *adv.shape)
            losses = member_loss(_member_logits(model, xm), y)
            (g,) = torch.autograd.grad(losses.sum(), xm, create_graph=True)
            (step,) = torch.autograd.grad(magnitude(g).mean(), adv)
        if direction == "sum":
            total = step if total is None else total + step
            step = total
        with torch.no_grad():
            adv = adv.detach() + alpha * step.sign()
            adv = torch.max(torch.min(adv, x + eps), x - eps).clamp(0.0, 1.0)
    return adv.detach()


def _couples(model: nn.Module) -> bool:
    return any(
        isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.training for mod in model.modules()
    )


@register_term("trs")
class TRS(Term):
    """``scale * (coeff * L_cos + lamda * L_smooth)`` (see the module docstring); defaults are
    the reference's MNIST-scale ones (scale 5, coeff 2, lamda 2, eps 0.1 -> 0.2, 6 steps)."""

    name = "trs"
    needs_input_grads = True

    def __init__(
        self,
        scale: float = 5.0,
        coeff: float = 2.0,
        lamda: float = 2.0,
        init_eps: float = 0.1,
        adv_eps: float = 0.2,
        plus_adv: bool = True,
        steps: int = 6,
        smooth_grad: Literal["batch_mean", "per_sample"] = "batch_mean",
        pgd_direction: Literal["step", "sum"] = "step",
    ) -> None:
        for key, v in (("scale", scale), ("coeff", coeff), ("lamda", lamda),
                       ("init_eps", init_eps), ("adv_eps", adv_eps)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"trs.{key} must be a number >= 0, got {v!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ConfigError(f"trs.steps must be an int >= 0, got {steps!r}")
        if smooth_grad not in SMOOTH_GRADS:
            raise ConfigError(f"trs.smooth_grad must be one of {SMOOTH_GRADS}, got {smooth_grad!r}")
        if pgd_direction not in PGD_DIRECTIONS:
            raise ConfigError(
                f"trs.pgd_direction must be one of {PGD_DIRECTIONS}, got {pgd_direction!r}")
        if not isinstance(plus_adv, bool):
            raise ConfigError(f"trs.plus_adv must be true or false, got {plus_adv!r}")
        self.scale, self.coeff, self.lamda = float(scale), float(coeff), float(lamda)
        self.init_eps, self.adv_eps = float(init_eps), float(adv_eps)
        self.plus_adv, self.steps, self.smooth_grad = plus_adv, steps, smooth_grad
        self.pgd_direction = pgd_direction

    @property
    def uses_progress(self) -> bool:
        """Whether the loss follows ``batch.progress`` (the trainer refuses to change epochs)."""
        return self.plus_adv and self.init_eps != self.adv_eps

    def eps_at(self, progress: float | None) -> float:
        """The smoothness PGD radius: linear from ``init_eps`` (progress 0) to ``adv_eps``."""
        p = 0.0 if progress is None else float(progress)
        return (self.adv_eps - self.init_eps) * p + self.init_eps

    def smooth_grads(self, batch: Batch) -> torch.Tensor:
        """Member input-gradients ``[M, B, ...]`` at ``x~`` (graph kept), unscaled."""
        clean = batch.member_input_grads
        if not self.plus_adv:
            return clean
        x, y = batch.x, batch.y
        n = x.shape[0] // 2
        adv = smoothness_pgd(batch.model, x[n:], y[n:], self.eps_at(batch.progress), self.steps,
                             member_loss=batch.member_loss, generator=batch.generator,
                             direction=self.pgd_direction)
        if _couples(batch.model):  # training-mode BatchNorm: forward x~ whole, as the reference
            x_tilde = torch.cat([x[:n].detach(), adv])
            return self._grads_at(batch, x_tilde, y)
        # the clean half's gradients are the batch's own (samples are independent)
        return torch.cat([clean[:, :n], self._grads_at(batch, adv, y[n:])], dim=1)

    @staticmethod
    def _grads_at(batch: Batch, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        sub = Batch(batch.model, x, y, input_grads=True, create_graph=batch.create_graph,
                    member_loss=batch.member_loss)
        return sub.member_input_grads

    def __call__(self, batch: Batch) -> torch.Tensor:
        batch.require_shared_inputs("trs")
        l_cos = abs_cosine_loss(batch.member_input_grads_flat)
        g = self.smooth_grads(batch)
        if self.smooth_grad == "batch_mean":
            g = g / batch.x.shape[0]
        l_smooth = magnitude(g).mean()
        return self.scale * (self.coeff * l_cos + self.lamda * l_smooth)
