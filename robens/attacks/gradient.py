"""Gradient-sign attacks: FGSM, R-FGSM, I-FGSM/BIM, MI-FGSM and PGD (CE or CW hinge).

Parameter names follow torchattacks (``eps``, ``alpha``, ``steps``); cleverhans calls them
``eps``/``eps_iter``/``nb_iter`` and ART ``eps``/``eps_step``/``max_iter``. Each step is
``x <- Proj_{B(x0, eps) and [0,1]}(x + alpha * sign(grad))`` (``linf``) or with the
L2-normalized gradient (``l2``), where ``grad`` is the gradient of the per-sample objective
(see :mod:`robens.attacks.base`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from robens.attacks.base import Attack, Gen, ModelLike
from robens.attacks.projections import batch_view, normalize_step, project
from robens.attacks.registry import preset, register_attack
from robens.errors import InputError

#: ``direction(grad, idx)``: the step direction from the gradient rows at batch positions idx
Direction = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


@register_attack()
class FGSM(Attack):
    """Fast Gradient Sign Method (Goodfellow et al. 2015, Eq. 3): ``x' = x + eps * sign(grad)``.

    ``norm="l2"`` steps ``eps * grad / ||grad||_2`` (the fast gradient method).
    Equivalents: torchattacks ``FGSM(model, eps)``, cleverhans ``FastGradientMethod(eps=,
    norm=np.inf)``, ART ``FastGradientMethod(estimator, eps=, norm=np.inf)``.
    """

    name = "fgsm"

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        grad, _, _ = self.gradient(x, y)
        return project(x + self.eps * normalize_step(grad, self.norm), x, self.eps, self.norm)


@register_attack("r_fgsm")
class RFGSM(Attack):
    """R+FGSM, Tramèr et al. 2018 (Ensemble Adversarial Training, Eq. 7), a single step:

    ``x~ = clip(x + alpha * sign(N(0, I)))``, ``x' = x~ + (eps - alpha) * sign(grad J(x~))``, then
    projection onto the ``eps``-ball and [0, 1]; ``alpha = eps / 2`` by default.

    torchattacks ``RFGSM(model, eps, alpha, steps)`` iterates ``steps`` steps of size ``alpha``;
    with ``steps=1`` and ``alpha = eps / 2`` (so ``eps - alpha = alpha``) it is this attack and
    draws the same noise (``torch.randn_like``) from the global RNG. The GAL paper's variant
    (``U(-eps, eps)`` start, then FGSM) is :class:`PGD` with ``steps=1``.
    """

    name = "rfgsm"
    deterministic = False
    supported_norms = ("linf",)

    def __init__(
        self,
        model: ModelLike,
        eps: float,
        alpha: float | None = None,
        loss: str = "ce",
        targeted: bool = False,
        combine: str | None = None,
        seed: int | None = None,
        *,
        kappa: float = 0.0,
    ) -> None:
        super().__init__(model, eps, "linf", loss, targeted, combine, seed, kappa=kappa)
        a = self.eps / 2 if alpha is None else self._check_positive(alpha, "alpha", allow_zero=True)
        if a > self.eps:
            raise InputError(f"alpha must lie in [0, eps = {self.eps}], got {alpha}")
        self.alpha = a
        self.params = {"alpha": a}

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=gen)
        x_tilde = (x + self.alpha * noise.sign()).clamp(0.0, 1.0)
        grad, _, _ = self.gradient(x_tilde, y)
        return project(x_tilde + (self.eps - self.alpha) * grad.sign(), x, self.eps, "linf")


class _Iterative(Attack):
    """Shared ``alpha``/``steps`` arguments and the projected steepest-ascent loop.

    ``early_exit`` (an attribute, off by default; the evaluation engine turns it on for
    white-box evaluations): a sample leaves the batch at the first iterate that already fools
    the attacked model (misclassified, or on target when targeted), and that iterate is its
    result. The gradient pass of each step reveals it, so no forward pass is added; the
    samples still in the batch follow exactly the steps they would take without it.
    """

    early_exit: bool = False

    def _setup_steps(
        self, alpha: float | None, steps: int, default_alpha: Callable[[int], float]
    ) -> None:
        self.steps = self._check_int(steps, "steps")
        self.alpha = (
            default_alpha(self.steps)
            if alpha is None
            else self._check_positive(alpha, "alpha", allow_zero=True)
        )

    def _ascend(
        self,
        x: torch.Tensor,
        x_adv: torch.Tensor,
        y: torch.Tensor,
        direction: Direction | None = None,
    ) -> torch.Tensor:
        """``steps`` steps of ``alpha`` along ``direction(grad, idx)`` (the gradient by default)
        from ``x_adv``, each projected onto the ``eps``-ball around ``x`` and [0, 1]; ``idx``
        holds the batch positions of ``grad``'s rows (``None``: the whole batch)."""
        if self.early_exit:
            return self._ascend_early_exit(x, x_adv, y, direction)
        for _ in range(self.steps):
            grad, _, _ = self.gradient(x_adv, y)
            step = normalize_step(grad if direction is None else direction(grad, None), self.norm)
            x_adv = project(x_adv + self.alpha * step, x, self.eps, self.norm)
        return x_adv

    def _ascend_early_exit(
        self, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, direction: Direction | None
    ) -> torch.Tensor:
        x_adv = x_adv.clone()
        active = torch.arange(x.shape[0], device=x.device)
        for _ in range(self.steps):
            grad, _, logits = self.gradient(x_adv[active], y[active])
            keep = ~self.is_success(logits, y[active])
            if not bool(keep.all()):
                active, grad = active[keep], grad[keep]
            if active.numel() == 0:
                break
            step = normalize_step(grad if direction is None else direction(grad, active),
                                  self.norm)
            x_adv[active] = project(x_adv[active] + self.alpha * step, x[active], self.eps,
                                    self.norm)
        return x_adv


@register_attack("i_fgsm")
class IFGSM(_Iterative):
    """Iterative FGSM / BIM (Kurakin et al. 2017, Eq. 2): ``steps`` steps of ``alpha``, no random
    start, each projected onto the ``eps``-ball and [0, 1]. Defaults ``alpha = eps / 10``,
    ``steps = 10`` (GAL paper's I-FGSM).

    Equivalents: torchattacks ``BIM(model, eps, alpha, steps)``, cleverhans
    ``BasicIterativeMethod(eps, eps_iter, nb_iter)``, ART ``BasicIterativeMethod(estimator, eps,
    eps_step, max_iter)``.
    """

    name = "ifgsm"

    def __init__(
        self,
        model: ModelLike,
        eps: float,
        alpha: float | None = None,
        steps: int = 10,
        norm: str = "linf",
        loss: str = "ce",
        targeted: bool = False,
        combine: str | None = None,
        seed: int | None = None,
        *,
        kappa: float = 0.0,
    ) -> None:
        super().__init__(model, eps, norm, loss, targeted, combine, seed, kappa=kappa)
        self._setup_steps(alpha, steps, lambda _: self.eps / 10)
        self.params = {"alpha": self.alpha, "steps": self.steps}

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        return self._ascend(x, x, y)


BIM = register_attack()(
    preset(IFGSM, "BIM", "bim", "Alias of :class:`IFGSM` (the Basic Iterative Method).")
)


@register_attack("mi_fgsm")
class MIFGSM(IFGSM):
    """Momentum Iterative FGSM (Dong et al. 2018, Eq. 6-7):

    ``g_{t+1} = decay * g_t + grad / ||grad||_1`` (L1 norm **per sample**),
    ``x_{t+1} = Proj(x_t + alpha * sign(g_{t+1}))``. Defaults ``alpha = eps / 10``, ``steps = 10``,
    ``decay = 1.0`` (GAL paper's MI-FGSM).

    Equivalents: torchattacks ``MIFGSM(model, eps, alpha, steps, decay)`` (normalizes by the
    per-sample mean of ``|grad|``, a per-sample constant multiple, so the steps agree), cleverhans
    ``MomentumIterativeMethod(eps, eps_iter, nb_iter, decay_factor)``, ART
    ``MomentumIterativeMethod(estimator, eps, eps_step, decay, max_iter)``.
    """

    name = "mifgsm"

    def __init__(
        self,
        model: ModelLike,
        eps: float,
        alpha: float | None = None,
        steps: int = 10,
        decay: float = 1.0,
        norm: str = "linf",
        loss: str = "ce",
        targeted: bool = False,
        combine: str | None = None,
        seed: int | None = None,
        *,
        kappa: float = 0.0,
    ) -> None:
        super().__init__(model, eps, alpha, steps, norm, loss, targeted, combine, seed, kappa=kappa)
        self.decay = self._check_positive(decay, "decay", allow_zero=True)
        self.params["decay"] = self.decay

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        momentum = torch.zeros_like(x)

        def direction(grad: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
            nonlocal momentum
            l1 = grad.flatten(1).abs().sum(1)
            l1 = batch_view(torch.where(l1 > 0, l1, torch.ones_like(l1)), grad)
            if idx is None:
                momentum = self.decay * momentum + grad / l1
                return momentum
            momentum[idx] = self.decay * momentum[idx] + grad / l1
            return momentum[idx]

        return self._ascend(x, x, y, direction)


@register_attack()
class PGD(_Iterative):
    """Projected Gradient Descent (Madry et al. 2018, Eq. 2) with random start and restarts.

    The random start is ``x + U(-eps, eps)`` drawn as ``torch.empty_like(x).uniform_(-eps, eps)``
    (``linf``; torchattacks ``PGD``) or a Gaussian direction with a ``U(0, 1)`` radius fraction
    (``l2``; torchattacks ``PGDL2``), clipped to [0, 1]. ``restarts > 1`` runs the attack from
    fresh random starts and keeps, per sample, a successful example if any, otherwise the one
    with the highest objective. ``loss="cw"`` uses the CW hinge with margin ``kappa`` (the GAL
    paper's PGD-CW: ``kappa = 50``, 30 steps). ``alpha`` defaults to ``2.5 * eps / steps``.

    Equivalents: torchattacks ``PGD(model, eps, alpha, steps, random_start)``, cleverhans
    ``ProjectedGradientDescent(eps, eps_iter, nb_iter, rand_init)`` / ``MadryEtAl``, ART
    ``ProjectedGradientDescent(estimator, eps, eps_step, max_iter, num_random_init)``.
    """

    name = "pgd"

    def __init__(
        self,
        model: ModelLike,
        eps: float,
        alpha: float | None = None,
        steps: int = 10,
        random_start: bool = True,
        restarts: int = 1,
        loss: str = "ce",
        kappa: float = 0.0,
        norm: str = "linf",
        targeted: bool = False,
        combine: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(model, eps, norm, loss, targeted, combine, seed, kappa=kappa)
        self._setup_steps(alpha, steps, lambda n: 2.5 * self.eps / n)
        self.restarts = self._check_int(restarts, "restarts")
        if not isinstance(random_start, bool):
            raise InputError(f"random_start must be True or False, got {random_start!r}")
        if self.restarts > 1 and not random_start:
            raise InputError("restarts > 1 needs random_start=True (otherwise runs are identical)")
        self.random_start = random_start
        self.deterministic = not random_start  # type: ignore[misc]
        self.params: dict[str, Any] = {
            "alpha": self.alpha,
            "steps": self.steps,
            "random_start": random_start,
            "restarts": self.restarts,
        }

    def _start(self, x: torch.Tensor, gen: Gen) -> torch.Tensor:
        if not self.random_start:
            return x
        eps = self.eps
        if self.norm == "linf":
            delta = torch.empty_like(x).uniform_(-eps, eps, generator=gen)
        else:
            delta = torch.empty_like(x).normal_(generator=gen)
            n = batch_view(delta.flatten(1).norm(p=2, dim=1), x)
            r = torch.zeros_like(n).uniform_(0, 1, generator=gen)
            delta = delta * (r / n.clamp_min(1e-30) * eps)
        return (x + delta).clamp(0.0, 1.0)

    def _one_run(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        return self._ascend(x, self._start(x, gen), y)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        if self.restarts == 1:
            return self._one_run(x, y, gen)
        best = best_obj = best_succ = None
        for _ in range(self.restarts):
            x_adv = self._one_run(x, y, gen)
            with torch.no_grad():
                logits, obj = self.scores(x_adv, y)
            succ = self.is_success(logits, y)
            if best is None:
                best, best_obj, best_succ = x_adv, obj, succ
                continue
            better = (succ & ~best_succ) | ((succ == best_succ) & (obj > best_obj))
            best = torch.where(batch_view(better, x), x_adv, best)
            best_obj = torch.where(better, obj, best_obj)
            best_succ = best_succ | succ
        return best  # type: ignore[return-value]


PGDCW = register_attack("pgdcw")(
    preset(
        PGD,
        "PGDCW",
        "pgd_cw",
        """PGD on the CW hinge ``max(Z_y - max_{j!=y} Z_j, -kappa)`` with the GAL paper's settings:
    ``kappa = 50``, 30 steps, step 0.01 (cleverhans ``MadryEtAl`` default), random start.""",
        alpha=0.01,
        steps=30,
        loss="cw",
        kappa=50.0,
    )
)
