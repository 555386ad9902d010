"""Frobenius norms of input-logit Jacobians of members and ensemble, with Theorem 3.1 of
Co et al. (Jacobian Ensembles) beside them (docs/methods.md Sec. 6).

Theorem 3.1: if the entries of every member Jacobian ``J_i`` (``C x D``) are iid ``N(mu, s^2)``
and ``J_F = sum_i c_i J_i`` (convex weights, logits combined), then with ``s_c^2 = s^2 sum c_i^2``

    ``E ||J_F||_F^2 = C D (s_c^2 + mu^2)``, in ``[C D (s^2 / M + mu^2), C D (s^2 + mu^2))``,
    ``Var ||J_F||_F^2 = C D (4 mu^2 s_c^2 + 2 s_c^4)``,

the lower bound being reached at ``c_i = 1/M``. Here ``mu`` and ``s^2`` are estimated per sample
from the entries of all its member Jacobians and the predictions are averaged over samples.
A measured ``||J_F||^2`` near the lower bound means the members' Jacobians behave like
independent draws (averaging cancels them); near the upper bound, like copies of each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from robens.errors import InputError
from robens.utils import eval_mode


def member_jacobians(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Full input-logit Jacobians of every member, ``[M, B, C, D]`` (``M = 1`` for a plain model).

    One backward pass per class (each member sees its own copy of the input). Computed in eval
    mode whatever the caller's mode (restored after): the Jacobian of the inference function,
    with BatchNorm on its running statistics (never updated here) and Dropout off.
    """
    if x.dim() != 4:
        raise InputError(f"x must be [B, C, H, W], got {list(x.shape)}")
    is_ens = hasattr(model, "member_logits")
    m = model.num_members if is_ens else 1
    with torch.enable_grad(), eval_mode(model):
        xm = x.detach().unsqueeze(0).expand(m, *x.shape).clone().requires_grad_(True)
        z = model.member_logits(xm) if is_ens else model(xm[0]).unsqueeze(0)  # [M, B, C]
        c = z.shape[-1]
        rows = []
        for k in range(c):
            (g,) = torch.autograd.grad(z[..., k].sum(), xm, retain_graph=k < c - 1)
            rows.append(g.reshape(m, x.shape[0], -1))
    return torch.stack(rows, dim=2).detach()  # [M, B, C, D]


def theorem31(
    c: int, d: int, mu: float, sigma2: float, weights: Sequence[float] | torch.Tensor
) -> dict[str, float]:
    """Theorem 3.1's mean, bounds and variance of ``||J_F||_F^2`` for one set of moments."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    m = w.numel()
    s2 = sigma2 * float((w**2).sum())
    cd = c * d
    return {
        "expected": cd * (s2 + mu**2),
        "lower": cd * (sigma2 / m + mu**2),
        "upper": cd * (sigma2 + mu**2),
        "variance": cd * (4 * mu**2 * s2 + 2 * s2**2),
        "variance_lower": cd * (4 * mu**2 * sigma2 / m + 2 * sigma2**2 / m**2),
    }


def _ensemble_jacobian_sq(model: nn.Module, x: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
    """``||J_F(x_b)||_F^2`` ``[B]``: ``sum_i w_i J_i`` for logit ensembles, else autograd."""
    if not hasattr(model, "member_logits"):
        return jac[0].square().sum((-1, -2))
    if getattr(model, "combine", "logits") == "logits":
        w = model.weights.to(jac).view(-1, 1, 1, 1)
        return (w * jac).sum(0).square().sum((-1, -2))
    from robens.objectives import jacobian_frobenius_sq

    return jacobian_frobenius_sq(model, x, exact=True).to(jac)


def jacobian_statistics(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    max_samples: int | None = 200,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Member and ensemble ``||J||_F^2`` over ``batches`` with Theorem 3.1 beside them.

    Returns ``{"member_frob_sq": [M] means, "ensemble_frob_sq": mean, "entry_mean": mean mu,
    "entry_var": mean s^2, "predicted", "lower", "upper": Theorem 3.1 averaged over samples,
    "ratio": measured / predicted, "per_sample": {...arrays}, "n", "C", "D", "M"}``.
    """
    member_sq: list[torch.Tensor] = []
    ens_sq: list[torch.Tensor] = []
    mus: list[torch.Tensor] = []
    vars_: list[torch.Tensor] = []
    n = 0
    c = d = 0
    weights = getattr(model, "weights", torch.ones(1))
    with eval_mode(model):
        for x, _ in batches:
            if max_samples is not None and n >= max_samples:
                break
            if max_samples is not None:
                x = x[: max_samples - n]
            if device is not None:
                x = x.to(device)
            jac = member_jacobians(model, x).double()  # [M, B, C, D]
            m, b, c, d = jac.shape
            member_sq.append(jac.square().sum((-1, -2)).T.cpu())  # [B, M]
            ens_sq.append(_ensemble_jacobian_sq(model, x, jac).double().cpu())
            entries = jac.permute(1, 0, 2, 3).reshape(b, -1)
            mus.append(entries.mean(1).cpu())
            vars_.append(entries.var(1, unbiased=False).cpu())
            n += b
    if n == 0:
        raise InputError("jacobian_statistics got no samples")
    msq = torch.cat(member_sq)
    esq = torch.cat(ens_sq)
    mu = torch.cat(mus)
    var = torch.cat(vars_)
    preds = [theorem31(c, d, float(a), float(v), weights) for a, v in zip(mu, var, strict=True)]
    pred = {k: float(np.mean([p[k] for p in preds])) for k in ("expected", "lower", "upper")}
    return {
        "member_frob_sq": msq.mean(0).tolist(),
        "ensemble_frob_sq": float(esq.mean()),
        "entry_mean": float(mu.mean()),
        "entry_var": float(var.mean()),
        "predicted": pred["expected"],
        "lower": pred["lower"],
        "upper": pred["upper"],
        "ratio": float(esq.mean()) / pred["expected"] if pred["expected"] > 0 else float("nan"),
        "per_sample": {
            "member_frob_sq": msq.numpy(),
            "ensemble_frob_sq": esq.numpy(),
            "predicted": np.array([p["expected"] for p in preds]),
        },
        "n": n,
        "C": c,
        "D": d,
        "M": int(msq.shape[1]),
    }
