"""Minimum-norm optimization attacks: Carlini-Wagner L2 and EAD (elastic-net, L1).

Both search the trade-off constant ``c`` per sample by binary search (Carlini & Wagner 2017,
Sec. VI): after each round, a sample that was attacked successfully lowers its upper bound to
``c`` and tries the midpoint; one that failed raises its lower bound and multiplies ``c`` by 10
until an upper bound exists. The smallest successful perturbation over all rounds is returned
(the original input where none succeeded). An optional ``eps`` bounds the result: the best
perturbation is projected onto the ``eps``-ball of the attack's norm, so robust accuracy at
``eps`` can be measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from robens.attacks.base import Attack, Gen, ModelLike
from robens.attacks.losses import cw_margin
from robens.attacks.projections import batch_view, project
from robens.attacks.registry import register_attack
from robens.errors import InputError

_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
_UPPER = 1e10


class _BinarySearchAttack(Attack):
    """Shared binary search over ``c`` and the success test with confidence ``kappa``.

    ``on_step`` (set by a caller that shows progress) is called once per optimizer step of
    every binary-search step: ``binary_search_steps * steps`` calls per batch.
    """

    on_step: Callable[[], None] | None = None

    def _tick(self) -> None:
        if self.on_step is not None:
            self.on_step()

    def _setup_search(
        self, c: float, steps: int, lr: float, binary_search_steps: int
    ) -> dict[str, Any]:
        """Validate and store the search arguments; returns them as record parameters."""
        self.c = self._check_positive(c, "c")
        self.steps = self._check_int(steps, "steps")
        self.lr = self._check_positive(lr, "lr")
        self.binary_search_steps = self._check_int(binary_search_steps, "binary_search_steps")
        return {
            "c": self.c,
            "steps": self.steps,
            "lr": self.lr,
            "binary_search_steps": self.binary_search_steps,
        }

    def _search_state(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Initial ``(c, lower, upper, best_distance, best)`` of the binary search."""
        b = x.shape[0]
        opts = {"dtype": x.dtype, "device": x.device}
        return (
            torch.full((b,), self.c, **opts),
            torch.zeros(b, **opts),
            torch.full((b,), _UPPER, **opts),
            torch.full((b,), math.inf, **opts),
            x.clone(),
        )

    def cw_success(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial with confidence ``kappa``: margin ``< -kappa`` (Carlini's ``compare``)."""
        margin = cw_margin(logits, y, self.targeted)
        return (margin < 0) & (margin <= -self.kappa)

    @staticmethod
    def _update_c(
        c: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, found: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        upper = torch.where(found, torch.minimum(upper, c), upper)
        lower = torch.where(found, lower, torch.maximum(lower, c))
        mid = (lower + upper) / 2
        c = torch.where(found | (upper < _UPPER), mid, c * 10)
        return c, lower, upper


@register_attack("cw_l2", "cwl2")
class CW(_BinarySearchAttack):
    """Carlini & Wagner L2 attack (S&P 2017, Eq. for ``f_6`` and the tanh change of variables).

    Minimizes ``||x' - x||_2^2 + c * f(x')`` over ``w`` with ``x' = (tanh(w) + 1) / 2``, where
    ``f`` is the CW hinge ``max(Z_y - max_{j!=y} Z_j, -kappa)`` (or its targeted form), by
    ``steps`` Adam steps of learning rate ``lr`` for each of ``binary_search_steps`` values of
    ``c`` (starting at ``c``). ``eps`` (optional) is an L2 budget applied to the result.

    Equivalents: torchattacks ``CW(model, c, kappa, steps, lr)`` (no binary search), cleverhans
    ``CarliniWagnerL2(initial_const, confidence, max_iterations, learning_rate,
    binary_search_steps)``, ART ``CarliniL2Method(confidence, learning_rate,
    binary_search_steps, max_iter, initial_const)``.
    """

    name = "cw"
    supported_norms = ("l2",)
    supported_losses = ("cw",)

    def __init__(
        self,
        model: ModelLike,
        c: float = 1.0,
        kappa: float = 0.0,
        steps: int = 100,
        lr: float = 0.01,
        binary_search_steps: int = 9,
        eps: float | None = None,
        targeted: bool = False,
        combine: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(model, eps, "l2", "cw", targeted, combine, seed, kappa=kappa)
        self.params = self._setup_search(c, steps, lr, binary_search_steps)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        b = x.shape[0]
        w0 = torch.atanh((x * 2 - 1) * (1 - 1e-6))
        c, lower, upper, best_l2, best = self._search_state(x)
        for _ in range(self.binary_search_steps):
            w = w0.clone()
            m = torch.zeros_like(w)
            v = torch.zeros_like(w)
            found = torch.zeros(b, dtype=torch.bool, device=x.device)
            for t in range(1, self.steps + 1):
                self._tick()
                with torch.enable_grad():
                    w.requires_grad_(True)
                    xp = (torch.tanh(w) + 1) / 2
                    logits, obj = self.scores(xp, y)
                    l2 = (xp - x).flatten(1).pow(2).sum(1)
                    total = l2 + c * (-obj)  # obj = -f
                    (grad,) = torch.autograd.grad(total.sum(), w)
                w = w.detach()
                with torch.no_grad():
                    succ = self.cw_success(logits.detach(), y)
                    l2 = l2.detach()
                    improved = succ & (l2 < best_l2)
                    best_l2 = torch.where(improved, l2, best_l2)
                    best = torch.where(batch_view(improved, x), xp.detach(), best)
                    found |= succ
                    m = _BETA1 * m + (1 - _BETA1) * grad
                    v = _BETA2 * v + (1 - _BETA2) * grad * grad
                    m_hat = m / (1 - _BETA1**t)
                    v_hat = v / (1 - _BETA2**t)
                    w = w - self.lr * m_hat / (v_hat.sqrt() + _ADAM_EPS)
            c, lower, upper = self._update_c(c, lower, upper, found)
        if self.eps is not None:
            best = project(best, x, self.eps, "l2")
        return best


@register_attack()
class EAD(_BinarySearchAttack):
    """Elastic-net attack EAD (Chen et al., AAAI 2018, Eq. 7-8, Algorithm 1).

    Minimizes ``c * f(x') + ||x' - x||_2^2 + beta * ||x' - x||_1`` by FISTA: a gradient step on
    the smooth part at the slack point ``y_k`` with learning rate ``lr * sqrt(1 - k / steps)``,
    the projected shrinkage ``S_beta`` (soft-thresholding by ``beta`` into [0, 1]) and the
    momentum ``y_{k+1} = x_{k+1} + k / (k + 3) * (x_{k+1} - x_k)`` (clipped to [0, 1], since the
    model is only evaluated on valid images). ``decision_rule`` picks the best successful
    example by elastic-net distance (``"EN"``) or L1 (``"L1"``). ``eps`` (optional) is an L1
    budget applied to the result.

    Equivalents: torchattacks ``EADL1``/``EADEN(model, kappa, lr, binary_search_steps,
    max_iterations, initial_const, beta)``, cleverhans/ART ``ElasticNet(confidence,
    learning_rate, binary_search_steps, max_iter, beta, initial_const, decision_rule)``.
    """

    name = "ead"
    supported_norms = ("l1",)
    supported_losses = ("cw",)

    def __init__(
        self,
        model: ModelLike,
        beta: float = 0.01,
        c: float = 1.0,
        kappa: float = 0.0,
        steps: int = 100,
        lr: float = 0.01,
        binary_search_steps: int = 9,
        decision_rule: str = "EN",
        eps: float | None = None,
        targeted: bool = False,
        combine: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(model, eps, "l1", "cw", targeted, combine, seed, kappa=kappa)
        search = self._setup_search(c, steps, lr, binary_search_steps)
        self.beta = self._check_positive(beta, "beta", allow_zero=True)
        if decision_rule not in ("EN", "L1"):
            raise InputError(f"decision_rule must be 'EN' or 'L1', got {decision_rule!r}")
        self.decision_rule = decision_rule
        self.params = {"beta": self.beta, **search, "decision_rule": decision_rule}

    def _shrink(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        d = z - x
        return (x + d.sign() * (d.abs() - self.beta).clamp_min(0)).clamp(0.0, 1.0)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        b = x.shape[0]
        c, lower, upper, best_dist, best = self._search_state(x)
        for _ in range(self.binary_search_steps):
            xk = x.clone()
            yk = x.clone()
            found = torch.zeros(b, dtype=torch.bool, device=x.device)
            for k in range(self.steps):
                self._tick()
                lr = self.lr * (1 - k / self.steps) ** 0.5
                with torch.enable_grad():
                    ya = yk.detach().requires_grad_(True)
                    _, obj = self.scores(ya, y)
                    smooth = c * (-obj) + (ya - x).flatten(1).pow(2).sum(1)
                    (grad,) = torch.autograd.grad(smooth.sum(), ya)
                with torch.no_grad():
                    x_next = self._shrink(yk - lr * grad, x)
                    yk = (x_next + (k / (k + 3)) * (x_next - xk)).clamp(0.0, 1.0)
                    xk = x_next
                    logits = self.logits(xk)
                    succ = self.cw_success(logits, y)
                    d = (xk - x).flatten(1)
                    l1 = d.abs().sum(1)
                    dist = l1 if self.decision_rule == "L1" else d.pow(2).sum(1) + self.beta * l1
                    improved = succ & (dist < best_dist)
                    best_dist = torch.where(improved, dist, best_dist)
                    best = torch.where(batch_view(improved, x), xk, best)
                    found |= succ
            c, lower, upper = self._update_c(c, lower, upper, found)
        if self.eps is not None:
            best = project(best, x, self.eps, "l1")
        return best
