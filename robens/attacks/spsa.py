"""SPSA, a gradient-free (black-box, score-based) attack (Uesato et al., ICML 2018, Alg. 1).

The gradient of the objective is estimated from ``nb_samples`` Rademacher directions ``v``:
``g ~ mean_v (L(x + delta v) - L(x - delta v)) / (2 delta) * v`` (``1 / v = v`` for
``v in {-1, 1}^D``), and the perturbation follows Adam (learning rate ``lr``) and is projected
onto the ``eps``-ball and [0, 1] after every step. Directions are drawn independently for every
sample (torchattacks shares one direction across the batch). The objective is the CW margin
``max_{j!=y} Z_j - Z_y`` by default (``loss="cw"``, ``kappa=inf``; cleverhans' margin loss).
Samples that already succeed stop early; ``queries`` counts model evaluations per sample.
Probe points ``x +- delta v`` are clipped to [0, 1] so the model only sees valid images.

Equivalents: torchattacks ``SPSA(model, eps, delta, lr, nb_iter, nb_sample)``, cleverhans
``SPSA(eps, nb_iter, spsa_samples, spsa_iters, learning_rate, delta)``.
"""

from __future__ import annotations

import math

import torch

from robens.attacks.base import Attack, Gen, ModelLike
from robens.attacks.projections import project
from robens.attacks.registry import register_attack

_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8


@register_attack()
class SPSA(Attack):
    """SPSA with Adam, ``steps`` iterations of ``nb_samples`` direction pairs each."""

    name = "spsa"
    deterministic = False
    white_box = False
    supported_norms = ("linf",)

    def __init__(
        self,
        model: ModelLike,
        eps: float,
        steps: int = 20,
        lr: float = 0.01,
        delta: float = 0.01,
        nb_samples: int = 128,
        loss: str = "cw",
        kappa: float = math.inf,
        targeted: bool = False,
        combine: str | None = None,
        seed: int | None = None,
        max_batch_size: int = 4096,
        early_stop: bool = True,
    ) -> None:
        super().__init__(model, eps, "linf", loss, targeted, combine, seed, kappa=kappa)
        self.steps = self._check_int(steps, "steps")
        self.lr = self._check_positive(lr, "lr")
        self.delta = self._check_positive(delta, "delta")
        self.nb_samples = self._check_int(nb_samples, "nb_samples")
        self.max_batch_size = self._check_int(max_batch_size, "max_batch_size")
        self.early_stop = bool(early_stop)
        self.params = {
            "steps": self.steps,
            "lr": self.lr,
            "delta": self.delta,
            "nb_samples": self.nb_samples,
        }

    @torch.no_grad()
    def estimate_gradient(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator | None
    ) -> torch.Tensor:
        """SPSA estimate of the objective's gradient at ``x`` (``2 * nb_samples`` queries)."""
        b = x.shape[0]
        grad = torch.zeros_like(x)
        per_chunk = max(1, self.max_batch_size // (2 * b))
        done = 0
        while done < self.nb_samples:
            k = min(per_chunk, self.nb_samples - done)
            v = torch.randint(0, 2, (k, *x.shape), generator=gen, device=x.device).to(x.dtype)
            v = v.mul_(2).sub_(1)
            xs = x.unsqueeze(0)
            probes = torch.cat(
                [(xs + self.delta * v).clamp(0, 1), (xs - self.delta * v).clamp(0, 1)]
            )
            yy = y.repeat(2 * k)
            f = self.objective(probes.flatten(0, 1), yy).view(2, k, b)
            df = (f[0] - f[1]) / (2 * self.delta)
            grad += (df.view(k, b, *([1] * (x.dim() - 1))) * v).sum(0)
            done += k
        return grad / self.nb_samples

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        b = x.shape[0]
        dx = torch.zeros_like(x)
        m = torch.zeros_like(x)
        v = torch.zeros_like(x)
        queries = torch.zeros(b, dtype=torch.int64, device=x.device)
        active = torch.ones(b, dtype=torch.bool, device=x.device)
        for t in range(1, self.steps + 1):
            if self.early_stop:
                with torch.no_grad():
                    logits = self.logits(x[active] + dx[active])
                queries[active] += 1
                idx = active.nonzero().flatten()
                active[idx[self.is_success(logits, y[active])]] = False
                if not bool(active.any()):
                    break
            idx = active.nonzero().flatten()
            xa = (x[idx] + dx[idx]).clamp(0, 1)
            g = self.estimate_gradient(xa, y[idx], gen)
            queries[idx] += 2 * self.nb_samples
            m[idx] = _BETA1 * m[idx] + (1 - _BETA1) * g
            v[idx] = _BETA2 * v[idx] + (1 - _BETA2) * g * g
            step = (
                self.lr
                * (m[idx] / (1 - _BETA1**t))
                / ((v[idx] / (1 - _BETA2**t)).sqrt() + _ADAM_EPS)
            )
            new = project(x[idx] + dx[idx] + step, x[idx], self.eps, "linf")
            dx[idx] = new - x[idx]
        self._queries = queries
        return project(x + dx, x, self.eps, "linf")
