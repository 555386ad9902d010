"""GAAS, the Gradient-Aligned Adversarial Subspace (Tramer et al. 2017, "The Space of
Transferable Adversarial Examples", arXiv:1704.03453, Sec. 3.2; docs/methods.md Sec. 2).

``k`` orthogonal L-inf perturbations aligned with the loss gradient ``g``: with ``H`` a
*regular* Hadamard matrix of order ``k`` (entries +-1, ``H H^T = k I``, every row sums to
``sqrt(k)``), the input coordinates are split into ``k`` equal contiguous blocks and

    ``r_i[j] = eps * sign(g[j]) * H[i, block(j)]``        (``sign(0) := +1``).

Then ``<r_i, r_l> = eps^2 (d/k) <H_i, H_l> = 0`` for ``i != l`` and ``||r_i||_inf = eps``. When
``d`` is not a multiple of ``k`` the last ``d mod k`` coordinates stay unperturbed (instead of
padding and truncating), which keeps the directions exactly orthogonal.

Regular Hadamard matrices exist only for orders ``4 u^2`` (1, 4, 16, 36, 64, ...; the seed's
``k = 25`` is impossible). Built here: ``H_4 = J - 2I``; ``H_36 = J - 2A`` with ``A`` the
adjacency matrix of the Latin-square graph ``L_3(6)`` of the cyclic Latin square of order 6
(a strongly regular graph srg(36, 15, 6, 6), so ``A^2 = 9I + 6J`` and ``H H^T = 36 I``, row sums
``36 - 30 = 6``); and Kronecker products of these (``H_16 = H_4 (x) H_4``, ``H_64``, ``H_144``...),
which stay regular.

Metric: for each input, the fraction of the ``k`` directions ``x + r_i`` (clipped to [0, 1])
that the target model misclassifies; reported against ``k`` for several ``eps``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from robens.errors import InputError
from robens.utils import eval_mode


def _h4() -> torch.Tensor:
    return torch.ones(4, 4, dtype=torch.int64) - 2 * torch.eye(4, dtype=torch.int64)


def _h36() -> torch.Tensor:
    """``J - 2A`` for the Latin-square graph L_3(6) of the cyclic square ``L[r, c] = r + c``."""
    n = 6
    cells = [(r, c) for r in range(n) for c in range(n)]
    a = torch.zeros(36, 36, dtype=torch.int64)
    for i, (r1, c1) in enumerate(cells):
        for j, (r2, c2) in enumerate(cells):
            if i != j and (r1 == r2 or c1 == c2 or (r1 + c1) % n == (r2 + c2) % n):
                a[i, j] = 1
    return torch.ones(36, 36, dtype=torch.int64) - 2 * a


@functools.lru_cache(maxsize=32)
def _regular_hadamard(k: int) -> torch.Tensor | None:
    if k == 1:
        return torch.ones(1, 1, dtype=torch.int64)
    if k == 4:
        return _h4()
    if k == 36:
        return _h36()
    for base in (36, 4):
        if k % base == 0 and k > base:
            rest = _regular_hadamard(k // base)
            if rest is not None:
                return torch.kron(_regular_hadamard(base), rest)
    return None


def regular_hadamard(k: int) -> torch.Tensor:
    """A regular Hadamard matrix of order ``k`` (int64 ``[k, k]``, rows summing to ``sqrt(k)``).

    Supported orders: ``4^a * 36^b`` (1, 4, 16, 36, 64, 144, 256, ...). Raises
    :class:`InputError` for orders that are not ``4 u^2`` or not constructed here.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    u2 = k / 4
    if k != 1 and (k % 4 or math.isqrt(k // 4) ** 2 != k // 4):
        raise InputError(
            f"no regular Hadamard matrix of order {k} exists: orders are 4u^2 (4, 16, 36, 64,"
            f" ...); the GAAS seed's k=25 is a typo for 16 (u^2 = {u2:g})"
        )
    h = _regular_hadamard(k)
    if h is None:
        raise InputError(
            f"no construction of a regular Hadamard matrix of order {k} is built in; supported"
            " orders are products of 4 and 36 (4, 16, 36, 64, 144, 256, ...)"
        )
    return h.clone()


def gaas_directions(grad: torch.Tensor, eps: float, k: int) -> torch.Tensor:
    """The ``k`` GAAS directions of each sample: ``[B, k, *shape]`` from gradients ``[B, *shape]``.

    Orthogonal within a sample, each of L-inf norm ``eps`` (when ``d >= k``).
    """
    if eps < 0 or not math.isfinite(eps):
        raise InputError(f"eps must be a finite number >= 0, got {eps!r}")
    b = grad.shape[0]
    d = grad[0].numel()
    if k > d:
        raise InputError(f"k = {k} directions need at least k input coordinates, got d = {d}")
    h = regular_hadamard(k).to(device=grad.device, dtype=grad.dtype)
    size = d // k
    block = torch.full((d,), -1, dtype=torch.int64, device=grad.device)
    block[: size * k] = torch.arange(k, device=grad.device).repeat_interleave(size)
    pattern = torch.zeros(k, d, dtype=grad.dtype, device=grad.device)
    used = block >= 0
    pattern[:, used] = h[:, block[used]]
    s = grad.reshape(b, d).sign()
    s = torch.where(s == 0, torch.ones_like(s), s)
    r = eps * s.unsqueeze(1) * pattern.unsqueeze(0)  # [B, k, d]
    return r.reshape(b, k, *grad.shape[1:])


def _loss_grad(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    with torch.enable_grad():
        xx = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(xx), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, xx)
    return g.detach()


def gaas_success(
    model: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    eps: float,
    ks: Sequence[int] = (4, 16, 36, 64),
    target: Callable[[torch.Tensor], torch.Tensor] | None = None,
    only_correct: bool = True,
    device: torch.device | str | None = None,
) -> dict[int, dict[str, Any]]:
    """Success of the GAAS directions for each ``k`` in ``ks``.

    The gradient of the cross-entropy of ``model`` (the source) spans the directions; the
    ``target`` (default: ``model``) judges them. With ``only_correct`` the samples the target
    misclassifies clean are left out (they are not "attacked").

    Returns ``{k: {"mean_fraction": E[fraction of the k directions that fool the target],
    "any": P(at least one fools it), "n": samples}}``.
    """
    target = target if target is not None else model
    sums: dict[int, list[float]] = {k: [0.0, 0.0] for k in ks}
    n = 0
    with eval_mode(model), eval_mode(target):
        for x, y in batches:
            if device is not None:
                x, y = x.to(device), y.to(device)
            if only_correct:
                with torch.no_grad():
                    ok = target(x).argmax(-1) == y
                x, y = x[ok], y[ok]
            if x.shape[0] == 0:
                continue
            g = _loss_grad(model, x, y)
            n += x.shape[0]
            for k in ks:
                r = gaas_directions(g, eps, k)  # [B, k, ...]
                xa = (x.unsqueeze(1) + r).clamp(0.0, 1.0).flatten(0, 1)
                with torch.no_grad():
                    pred = torch.cat([target(c).argmax(-1) for c in xa.split(1024)])
                fooled = (pred.view(x.shape[0], k) != y.unsqueeze(1)).double()
                sums[k][0] += float(fooled.mean(1).sum())
                sums[k][1] += float((fooled.amax(1)).sum())
    if n == 0:
        raise InputError("gaas_success got no (correctly classified) samples")
    return {k: {"mean_fraction": s[0] / n, "any": s[1] / n, "n": n} for k, s in sums.items()}
