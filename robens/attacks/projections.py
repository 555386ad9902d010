"""Per-sample norms, steepest-ascent steps and projections onto norm balls and the [0, 1] box."""

from __future__ import annotations

import torch

from robens.errors import InputError


def per_sample_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """``||delta_b||_p`` for each sample ``b``: ``linf``, ``l2``, ``l1`` or ``l0`` (count)."""
    flat = delta.detach().flatten(1)
    if flat.shape[1] == 0:
        return flat.new_zeros(flat.shape[0])
    if norm == "linf":
        return flat.abs().amax(1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "l1":
        return flat.abs().sum(1)
    if norm == "l0":
        return (flat != 0).sum(1).to(flat.dtype)
    raise InputError(f"norm must be linf, l2, l1 or l0, got {norm!r}")


def batch_view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample values ``[B]`` viewed as ``[B, 1, ...]`` to broadcast against ``like``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def normalize_step(g: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit ``norm``: ``sign(g)`` (linf) or ``g / ||g||_2`` (l2)."""
    if norm == "linf":
        return g.sign()
    if norm == "l2":
        n = g.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
        return g / batch_view(n, g)
    raise InputError(f"norm must be linf or l2 for gradient steps, got {norm!r}")


def project_l1(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean projection of each sample onto the L1 ball of radius eps (Duchi et al. 2008)."""
    flat = delta.flatten(1)
    absd = flat.abs()
    inside = absd.sum(1) <= eps
    if bool(inside.all()):
        return delta
    srt = absd.sort(dim=1, descending=True).values
    cssv = srt.cumsum(1) - eps
    ind = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
    cond = srt - cssv / ind > 0
    rho = cond.to(flat.dtype).mul(ind).amax(1).clamp_min(1).long()
    theta = cssv.gather(1, (rho - 1).unsqueeze(1)) / rho.unsqueeze(1).to(flat.dtype)
    proj = flat.sign() * (absd - theta).clamp_min(0)
    return torch.where(inside.unsqueeze(1), flat, proj).view_as(delta)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project ``x_adv`` onto the ``norm`` ball of radius ``eps`` around ``x``, then onto [0, 1].

    ``linf`` is the element-wise ``min(max(x_adv, x - eps), x + eps)`` (no rounding for points
    already inside the ball); ``l2`` rescales ``delta`` by ``min(1, eps / ||delta||_2)``
    (torchattacks ``PGDL2``); ``l1`` is the exact Euclidean projection. Shrinking ``delta``
    towards 0 keeps ``x + delta`` in the box, so the final clamp only trims the box.
    """
    if norm == "linf":
        out = torch.minimum(torch.maximum(x_adv, x - eps), x + eps)
    elif norm == "l2":
        delta = x_adv - x
        n = delta.flatten(1).norm(p=2, dim=1)
        factor = torch.where(n > eps, eps / n.clamp_min(1e-30), torch.ones_like(n))
        out = x + delta * batch_view(factor, delta)
    elif norm == "l1":
        out = x + project_l1(x_adv - x, eps)
    else:
        raise InputError(f"cannot project onto a {norm!r} ball")
    return out.clamp(0.0, 1.0)
