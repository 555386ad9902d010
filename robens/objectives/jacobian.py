"""Jacobian regularization (Hoffman, Roberts & Yaida 2019; Co et al., Jacobian Ensembles).

``L_joint = L_CE + lambda_JR * R`` with ``R = 1/2 * (1/B) sum_b ||J(x_b)||_F^2`` and ``J`` the
input-logit Jacobian (Hoffman et al. Eq. 1 / Co et al. Eq. 1). ``objective: "ce + 0.1*jr"``
means lambda_JR = 0.1.

* exact (``n_proj=-1``): ``||J||_F^2 = sum_c ||e_c^T J||^2``, one backward pass per class;
* random projections (``n_proj >= 1``, Hoffman's estimator, ``facebookresearch/jacobian_
  regularizer``): ``||J||_F^2 ~= (C / n_proj) sum_mu ||v_mu^T J||^2`` with ``v_mu`` uniform on
  the unit sphere ``S^{C-1}`` (``E[v v^T] = I / C``, so the estimate is unbiased).

The term applies to every member (its own Jacobian at its own input copy) and averages over
members. It reuses the Batch's forward graph but needs its own backward passes: ``n_proj`` of
them (``C`` when exact), each counted in ``batch.backward_passes``; gradient-similarity terms
(GAL, cosine, GDR) share one further pass for the loss input-gradients.
"""

from __future__ import annotations

import torch
from torch import nn

from robens.errors import ConfigError, InputError
from robens.objectives.base import Batch, Term, register_term


def random_unit_vectors(
    shape: tuple[int, ...], generator: torch.Generator | None = None, device=None, dtype=None
) -> torch.Tensor:
    """Vectors uniform on the unit sphere along the last dimension of ``shape``."""
    v = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _jr_sq_norms(batch: Batch, n_proj: int, generator: torch.Generator | None) -> torch.Tensor:
    """Estimates of ``||J_{m,b}||_F^2``, ``[M, B]``."""
    logits = batch.member_logits
    m, b, c = logits.shape
    total = logits.new_zeros(m, b)
    if n_proj == -1:
        for k in range(c):
            v = torch.zeros_like(logits)
            v[..., k] = 1.0
            total = total + batch.member_vjp(v).square().sum(-1)
        return total
    for _ in range(n_proj):
        v = random_unit_vectors((m, b, c), generator, device=logits.device, dtype=logits.dtype)
        total = total + batch.member_vjp(v).square().sum(-1)
    return total * (c / n_proj)


@register_term("jr")
class JacobianReg(Term):
    """``R = 1/2 mean_b ||J_b||_F^2``, averaged over members (Hoffman et al. Eq. 1).

    Args:
        n_proj: random projections per step (default 1), or -1 for the exact norm.
        seed: seed of the projection directions; ``None`` draws them from the global RNG
            (which the trainer seeds per epoch).
    """

    name = "jr"
    needs_input_grads = True

    def __init__(self, n_proj: int = 1, seed: int | None = None) -> None:
        if isinstance(n_proj, bool) or not isinstance(n_proj, int) or (n_proj < 1 and n_proj != -1):
            raise ConfigError(f"jr.n_proj must be an integer >= 1, or -1 (exact); got {n_proj!r}")
        self.n_proj = n_proj
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _gen(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(int(self.seed))
        return self._generator

    def __call__(self, batch: Batch) -> torch.Tensor:
        gen = self._gen(batch.member_logits.device)
        return 0.5 * _jr_sq_norms(batch, self.n_proj, gen).mean()


def jacobian_frobenius_sq(
    model: nn.Module,
    x: torch.Tensor,
    exact: bool = True,
    n_proj: int = 1,
    create_graph: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``||J(x_b)||_F^2`` of the input-logit Jacobian of ``model`` for every sample, ``[B]``.

    ``exact=True`` takes one backward pass per class; otherwise Hoffman's random-projection
    estimate with ``n_proj`` directions. ``model`` is any module returning logits ``[B, C]``
    (an Ensemble gives the Jacobian of its combined output).
    """
    if x.dim() != 4:
        raise InputError(f"x must be [B, C, H, W], got {list(x.shape)}")
    with torch.enable_grad():
        xx = x.detach().clone().requires_grad_(True)
        z = model(xx)
        b, c = z.shape
        total = z.new_zeros(b)
        if exact:
            vs = [torch.zeros_like(z).index_fill_(1, torch.tensor([k], device=z.device), 1.0)
                  for k in range(c)]
            scale = 1.0
        else:
            vs = [random_unit_vectors((b, c), generator, z.device, z.dtype) for _ in range(n_proj)]
            scale = c / n_proj
        for i, v in enumerate(vs):
            keep = create_graph or i < len(vs) - 1
            (g,) = torch.autograd.grad(z, xx, v, retain_graph=keep, create_graph=create_graph)
            total = total + g.reshape(b, -1).square().sum(-1)
    out = total * scale
    return out if create_graph else out.detach()
