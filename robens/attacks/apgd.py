"""Auto-PGD: APGD (CE or DLR) and APGD-T (targeted DLR), Croce & Hein, ICML 2020, Alg. 1.

One run from a random start ``x0`` (on the sphere of radius ``eps``: ``eps * t / ||t||`` with
``t ~ U(-1, 1)^D`` for ``linf``, ``t ~ N(0, I)`` for ``l2``, then clipped to [0, 1]):

* step size ``eta = 2 eps``; ``x1 = P(x0 + eta * s(grad f(x0)))`` with ``s`` = sign (``linf``) or
  ``g / ||g||_2`` (``l2``);
* ``z = P(x_k + eta * s(grad f(x_k)))``,
  ``x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))``, ``a = 0.75``;
* checkpoints ``w_j = ceil(p_j N)``, ``p_0 = 0``, ``p_1 = 0.22``,
  ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``; at ``w_j`` the step size halves and the
  iterate restarts from the best point if fewer than ``rho`` of the steps since ``w_{j-1}``
  increased the loss, or if neither the step size nor the best loss changed since ``w_{j-1}``.

Per sample the attack returns a misclassified iterate if one was found, otherwise the point of
highest loss. Restarts (and, for APGD-T, the target classes: the ``n_target_classes`` most likely
classes other than ``y`` on the clean input) run only on the points still robust. Random starts
are drawn on the CPU from a generator seeded with ``seed`` (the same numbers on every device,
and torchattacks' draws under the same seed). ``eot_iter > 1`` averages the gradient over that
many forward passes (EOT, for randomized defenses).

Equivalents: torchattacks ``APGD(model, norm, eps, steps, n_restarts, seed, loss, eot_iter,
rho)`` and ``APGDT(..., n_classes)``; ART ``AutoProjectedGradientDescent``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from robens.attacks.base import Attack, Gen, ModelLike, normalize_step, project
from robens.attacks.dlr import (
    as_log_probs,
    dlr_loss,
    dlr_loss_targeted,
    looks_like_probs,
    top_other_classes,
)
from robens.attacks.losses import ce_loss
from robens.attacks.registry import register_attack
from robens.errors import InputError

MOMENTUM = 0.75


def checkpoints(steps: int) -> list[int]:
    """APGD's checkpoints ``w_j = ceil(p_j N)`` in ``1..N`` (Croce & Hein 2020, Sec. 3.2)."""
    p = [0.0, 0.22]
    while p[-1] <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(round(q * steps, 9)) for q in p if 0 < q <= 1.0})


def _norm_name(norm: str) -> str:
    return norm.lower() if isinstance(norm, str) else norm


@register_attack("apgd_ce")
class APGD(Attack):
    """APGD with the CE or DLR loss (Croce & Hein 2020), untargeted (or targeted CE).

    Args:
        model: logits callable, Ensemble or list of models (see :class:`Attack`).
        eps: budget in ``norm`` (pixels in [0, 1]).
        norm: ``"linf"`` or ``"l2"`` (torchattacks' ``"Linf"``/``"L2"`` accepted).
        steps: iterations per run (the paper and AutoAttack use 100; torchattacks defaults to 10).
        n_restarts: random restarts, each run only on the points still robust.
        seed: seed of the starting points (``None``: the global CPU RNG).
        loss: ``"ce"`` or ``"dlr"``.
        rho: the checkpoint threshold (0.75).
        eot_iter: gradient samples averaged per step (EOT).
        targeted: ``y`` holds targets; ``loss="ce"`` only (targeted DLR is :class:`APGDT`).
        combine: how ensemble members form the objective (``logits``, ``probs``, ``loss``).
    """

    name = "apgd"
    deterministic = False
    supported_norms = ("linf", "l2")
    supported_losses = ("ce", "dlr")
    #: leave a run at the first fooling iterate (set by the evaluation engine; see single_run)
    early_exit: bool = False

    def __init__(
        self,
        model: ModelLike,
        eps: float = 8 / 255,
        norm: str = "linf",
        steps: int = 100,
        n_restarts: int = 1,
        seed: int | None = 0,
        loss: str = "ce",
        rho: float = 0.75,
        eot_iter: int = 1,
        targeted: bool = False,
        combine: str | None = None,
    ) -> None:
        if loss not in self.supported_losses:
            raise InputError(f"loss must be one of ce, dlr for {self.name}, got {loss!r}")
        super().__init__(model, eps, _norm_name(norm), "ce", targeted, combine, seed)
        self.loss = loss
        if targeted and loss == "dlr":
            raise InputError("targeted DLR needs the true label: use APGDT (apgd_t)")
        self.steps = self._check_int(steps, "steps")
        self.n_restarts = self._check_int(n_restarts, "n_restarts")
        self.eot_iter = self._check_int(eot_iter, "eot_iter")
        self.rho = self._check_positive(rho, "rho")
        if self.rho > 1:
            raise InputError(f"rho must lie in (0, 1], got {rho}")
        self._target: torch.Tensor | None = None
        self._probs_out = False
        self.params: dict[str, Any] = {
            "steps": self.steps,
            "n_restarts": self.n_restarts,
            "rho": self.rho,
            "eot_iter": self.eot_iter,
        }

    # ------------------------------------------------------------------ objective
    def _objective_from_logits(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = as_log_probs(logits) if self._probs_out else logits
        if self.loss == "ce":
            value = ce_loss(z, y)
            return -value if self.targeted else value
        if self._target is not None:
            return dlr_loss_targeted(z, y, self._target)
        return dlr_loss(z, y)

    def generator(self, device: torch.device) -> torch.Generator | None:
        """Random starts are drawn on the CPU (device-independent, torchattacks' stream)."""
        return super().generator(torch.device("cpu"))

    # ------------------------------------------------------------------ one run
    def _start(self, x: torch.Tensor, gen: Gen) -> torch.Tensor:
        # drawn and scaled in float32 on the CPU, like torchattacks, then moved to x
        shape = tuple(x.shape)
        if self.norm == "linf":
            t = 2 * torch.rand(shape, generator=gen) - 1
            scale = t.flatten(1).abs().amax(1).clamp_min(1e-30)
        else:
            t = torch.randn(shape, generator=gen)
            scale = t.flatten(1).norm(p=2, dim=1) + 1e-12
        delta = self.eps * t / scale.view(-1, *([1] * (x.dim() - 1)))
        return (x + delta.to(x.device, x.dtype)).clamp(0.0, 1.0)

    def _grad(
        self, x_adv: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        grad, obj, logits = self.gradient(x_adv, y)
        for _ in range(self.eot_iter - 1):
            g, obj, logits = self.gradient(x_adv, y)
            grad = grad + g
        if self.eot_iter > 1:
            grad = grad / self.eot_iter
        return grad, obj, logits

    def _step(self, x_adv: torch.Tensor, x: torch.Tensor, eta: torch.Tensor, grad: torch.Tensor):
        return project(x_adv + eta * normalize_step(grad, self.norm), x, self.eps, self.norm)

    def single_run(
        self, x: torch.Tensor, y: torch.Tensor, gen: Gen, x_init: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One APGD run: ``(x_best, loss_best, fooled, x_fooled)`` per sample.

        ``x_init`` replaces the random start (for tests and warm starts). With ``early_exit``
        a sample leaves the run at the first iterate that fools the model (its ``x_fooled``);
        every per-sample quantity of APGD (step size, checkpoints, best point) is the sample's
        own, so the samples that stay take exactly the steps they would take without it.
        """
        view = (-1, *([1] * (x.dim() - 1)))
        x_adv = self._start(x, gen) if x_init is None else x_init.detach().clone()
        grad, loss, logits = self._grad(x_adv, y)
        fooled = self.is_success(logits, y)
        x_fooled = x_adv.clone()
        x_best, loss_best, grad_best = x_adv.clone(), loss.clone(), grad.clone()
        # full-batch results (early exit writes into them; copies, never aliases of the state)
        out_best, out_loss = x_best.clone(), loss_best.clone()
        act = torch.arange(x.shape[0], device=x.device)  # batch positions still in the run
        eta = torch.full((x.shape[0],), 2.0 * self.eps, dtype=x.dtype, device=x.device)
        x_prev = x_adv
        marks = set(checkpoints(self.steps))
        n_incr = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        loss_prev = loss
        best_at_check = loss_best.clone()
        reduced_at_check = torch.ones_like(fooled)
        last_mark = 0
        target = self._target
        xa, ya = x, y
        for k in range(self.steps + 1):
            if self.early_exit:
                stay = ~fooled[act]
                if not bool(stay.all()):
                    out_best[act] = x_best
                    out_loss[act] = loss_best
                    act = act[stay]
                    xa, ya = x[act], y[act]
                    x_adv, x_prev, grad, loss = x_adv[stay], x_prev[stay], grad[stay], loss[stay]
                    x_best, loss_best = x_best[stay].clone(), loss_best[stay].clone()
                    grad_best, eta, n_incr = grad_best[stay], eta[stay], n_incr[stay]
                    loss_prev, best_at_check = loss_prev[stay], best_at_check[stay]
                    reduced_at_check = reduced_at_check[stay]
                    if target is not None:
                        self._target = target[act]
                if act.numel() == 0:
                    break
            if k == self.steps:
                break
            a = 1.0 if k == 0 else MOMENTUM
            z = self._step(x_adv, xa, eta.view(view), grad)
            x_new = project(
                x_adv + a * (z - x_adv) + (1 - a) * (x_adv - x_prev), xa, self.eps, self.norm
            )
            x_prev, x_adv = x_adv, x_new
            grad, loss, logits = self._grad(x_adv, ya)
            succ = self.is_success(logits, ya)
            if self.early_exit:
                fooled[act] |= succ
                x_fooled[act[succ]] = x_adv[succ]
            else:
                fooled |= succ
                x_fooled = torch.where(succ.view(view), x_adv, x_fooled)
            n_incr += (loss > loss_prev).long()
            loss_prev = loss
            better = loss > loss_best
            x_best = torch.where(better.view(view), x_adv, x_best)
            grad_best = torch.where(better.view(view), grad, grad_best)
            loss_best = torch.where(better, loss, loss_best)
            if k + 1 in marks:
                few = n_incr.to(x.dtype) < self.rho * (k + 1 - last_mark)
                stuck = ~reduced_at_check & (loss_best <= best_at_check)
                reduce = few | stuck
                eta = torch.where(reduce, eta / 2, eta)
                x_adv = torch.where(reduce.view(view), x_best, x_adv)
                grad = torch.where(reduce.view(view), grad_best, grad)
                reduced_at_check = reduce
                best_at_check = loss_best.clone()
                n_incr.zero_()
                last_mark = k + 1
        self._target = target
        if not self.early_exit:
            return x_best, loss_best, fooled, x_fooled
        out_best[act] = x_best
        out_loss[act] = loss_best
        return out_best, out_loss, fooled, x_fooled

    # ------------------------------------------------------------------ driver
    def _targets(self, logits: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor | None]:
        return [None]

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        with torch.no_grad():
            logits0 = self.logits(x)
        self._probs_out = looks_like_probs(logits0)
        robust = ~self.is_success(logits0, y)
        x_out = x.clone()
        best_obj = torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)
        try:
            for target in self._targets(logits0, y):
                for _ in range(self.n_restarts):
                    idx = robust.nonzero().flatten()
                    if idx.numel() == 0:
                        break
                    self._target = None if target is None else target[idx]
                    xb, _, fooled, xf = self.single_run(x[idx], y[idx], gen)
                    self._target = None
                    with torch.no_grad():
                        obj = self.objective(xb, y[idx])
                    keep = ~fooled & (obj > best_obj[idx])
                    x_out[idx[keep]] = xb[keep]
                    best_obj[idx[keep]] = obj[keep]
                    x_out[idx[fooled]] = xf[fooled]
                    robust[idx[fooled]] = False
        finally:
            self._target = None
        return x_out


@register_attack("apgdt")
class APGDT(APGD):
    """APGD-T: APGD on the targeted DLR loss towards each of the ``n_target_classes`` most likely
    other classes in turn (Croce & Hein 2020, Sec. 4); success is any misclassification.

    ``n_classes`` (torchattacks' argument) only sets the default ``n_target_classes =
    n_classes - 1``; the count is clipped to ``C - 1`` for a ``C``-class model. The final
    ``loss`` of a result is the untargeted DLR. AutoAttack uses 9 targets, 100 steps, 1 restart.
    """

    name = "apgd_t"

    def __init__(
        self,
        model: ModelLike,
        eps: float = 8 / 255,
        norm: str = "linf",
        steps: int = 100,
        n_restarts: int = 1,
        seed: int | None = 0,
        n_target_classes: int | None = 9,
        n_classes: int | None = None,
        rho: float = 0.75,
        eot_iter: int = 1,
        combine: str | None = None,
    ) -> None:
        super().__init__(
            model, eps, norm, steps, n_restarts, seed, "dlr", rho, eot_iter, False, combine
        )
        if n_classes is not None:
            self._check_int(n_classes, "n_classes", minimum=4)
        if n_target_classes is None:
            n_target_classes = (n_classes - 1) if n_classes is not None else 9
        self.n_target_classes = self._check_int(n_target_classes, "n_target_classes")
        self.params["n_target_classes"] = self.n_target_classes

    def _targets(self, logits: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor | None]:
        k = min(self.n_target_classes, logits.shape[-1] - 1)
        top = top_other_classes(logits, y, k)
        return [top[:, j] for j in range(k)]
