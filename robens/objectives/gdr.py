"""GDR, the Gradient Diversity Rating (Adam & Speciel 2020, arXiv:2005.05750).

``R(E, x) = Vol_{n-1}(Delta E_x) / Vol_{n-1}(S^{n-1})``: the fraction of directions in the span
of the members' loss input-gradients ``g_i`` that raise every member's loss at once; lower is
better. With ``C_ij = cos(g_i, g_j)``, ``R = P_{z ~ N(0, I)}[<g_i, z> > 0 for all i]``, the
Gaussian orthant probability ``Phi_n(0; 0, C)`` (docs/methods.md Sec. 1, derived):

* n = 1: 1/2;  n = 2: ``1/4 + arcsin(c)/(2 pi)``;
* n = 3: ``1/8 + (arcsin c12 + arcsin c13 + arcsin c23) / (4 pi)``;
* n >= 4: Monte Carlo (``R_hat = mean_k 1[min_i <h_i, z_k> > 0]``, standard error
  ``sqrt(R(1-R)/K)``) or Genz's QMC (``scipy.stats.multivariate_normal(cov=C).cdf(0)``).

Members with a zero gradient give no direction and are left out of their sample's rating; a
sample with no non-zero gradient gets R = 1/2.

The ``gdr`` regularizer (derived, the paper's own N > 2 form was not recovered):
N = 2: the cosine (an increasing map of R); N = 3: ``sum_{i<j} arcsin(clamp(c_ij, -1+1e-6,
1-1e-6))`` (affine in R); N >= 4: soft Monte Carlo ``mean_k prod_i sigmoid(<h_i, z_k> / tau)``
with ``tau = 0.1``, ``K = 256`` fixed ``z_k ~ N(0, I_N)`` in the span coordinates ``h_i`` of the
unit gradients (the Cholesky factor of ``C + 1e-5 I``, i.e. the Gram-Schmidt/QR basis).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from robens.errors import ConfigError, InputError
from robens.objectives.base import Batch, Term, register_term
from robens.objectives.cosine import _as_grads, pair_values, pairwise_cosine

Method = Literal["auto", "exact", "mc", "genz"]
ZERO_NORM = 1e-12
ARCSIN_CLAMP = 1e-6


def _orthant_exact(c: np.ndarray) -> np.ndarray:
    """Exact orthant probabilities for cosine matrices ``[S, n, n]`` with n <= 3."""
    n = c.shape[-1]
    if n <= 1:
        return np.full(c.shape[0], 0.5)
    iu = np.triu_indices(n, 1)
    asin = np.arcsin(np.clip(c[:, iu[0], iu[1]], -1.0, 1.0))
    if n == 2:
        return 0.25 + asin[:, 0] / (2 * math.pi)
    if n == 3:
        return 0.125 + asin.sum(-1) / (4 * math.pi)
    raise InputError(f"no closed form for n={n} members; use method='mc' or 'genz'")


def _span_factor(c: np.ndarray) -> np.ndarray:
    """``H [S, n, n]`` with ``H H^T = C`` (rows = gradient coordinates in a basis of the span)."""
    w, v = np.linalg.eigh(c)
    return v * np.sqrt(np.clip(w, 0.0, None))[:, None, :]


def _orthant_mc(c: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
    """Monte Carlo orthant probabilities with shared seeded draws ``z_k ~ N(0, I_n)``."""
    n = c.shape[-1]
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, n_samples))
    h = _span_factor(c)
    out = np.empty(c.shape[0])
    chunk = max(1, int(2e7 // (n * n_samples)))
    for s in range(0, c.shape[0], chunk):
        proj = h[s : s + chunk] @ z  # [S, n, K]
        out[s : s + chunk] = (proj.min(axis=1) > 0).mean(-1)
    return out


def _orthant_genz(c: np.ndarray, seed: int) -> np.ndarray:
    """Genz QMC orthant probabilities (``scipy.stats.multivariate_normal.cdf``)."""
    from scipy.stats import multivariate_normal

    n = c.shape[-1]
    out = np.empty(c.shape[0])
    for s in range(c.shape[0]):
        dist = multivariate_normal(mean=np.zeros(n), cov=c[s], allow_singular=True, seed=seed)
        out[s] = float(dist.cdf(np.zeros(n)))
    return out


def gdr(
    grads_or_batch: torch.Tensor | Batch,
    method: Method = "auto",
    n_samples: int = 100_000,
    seed: int = 0,
    return_se: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Per-sample Gradient Diversity Rating ``R`` (float64 ``[B]``) of member gradients.

    Args:
        grads_or_batch: member loss input-gradients ``[M, B, ...]`` or a :class:`Batch`.
        method: ``"auto"`` (exact for <= 3 non-zero gradients, else Monte Carlo), ``"exact"``
            (error beyond 3), ``"mc"`` or ``"genz"`` (for every sample with >= 2 gradients).
        n_samples: Monte Carlo draws K.  seed: seed of the draws (MC and Genz).
        return_se: also return the standard error ``sqrt(R(1-R)/K)`` (0 where exact).
    """
    if method not in ("auto", "exact", "mc", "genz"):
        raise InputError(f"method must be 'auto', 'exact', 'mc' or 'genz', got {method!r}")
    if n_samples < 1:
        raise InputError(f"n_samples must be >= 1, got {n_samples}")
    g = _as_grads(grads_or_batch).detach().to(torch.float64)
    valid = (g.norm(dim=-1) > ZERO_NORM).T.cpu().numpy()  # [B, M]
    cos = pairwise_cosine(g).cpu().numpy()  # [B, M, M]
    b = cos.shape[0]
    r = np.full(b, 0.5)
    se = np.zeros(b)
    patterns, inverse = np.unique(valid, axis=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        rows = np.nonzero(inverse.reshape(-1) == p)[0]
        idx = np.nonzero(pattern)[0]
        n = len(idx)
        if n <= 1:
            continue
        c = cos[rows][:, idx][:, :, idx]
        c = np.clip(c, -1.0, 1.0)
        c[:, np.arange(n), np.arange(n)] = 1.0
        use_exact = method == "exact" or (method == "auto" and n <= 3)
        if use_exact:
            r[rows] = _orthant_exact(c)
        elif method == "genz":
            r[rows] = _orthant_genz(c, seed)
        else:
            vals = _orthant_mc(c, n_samples, seed)
            r[rows] = vals
            se[rows] = np.sqrt(vals * (1 - vals) / n_samples)
    out = torch.from_numpy(np.clip(r, 0.0, 0.5))
    return (out, torch.from_numpy(se)) if return_se else out


def gdr_mean(grads_or_batch: torch.Tensor | Batch, **kw) -> float:
    """``GDR(E) = (1/|S|) sum_x R(E, x)`` over the samples given."""
    r = gdr(grads_or_batch, **kw)
    assert isinstance(r, torch.Tensor)
    return float(r.mean())


@register_term("gdr")
class GDRRegularizer(Term):
    """Differentiable surrogate of the GDR for N members (see the module docstring)."""

    name = "gdr"
    needs_input_grads = True

    def __init__(self, tau: float = 0.1, n_samples: int = 256, seed: int = 0) -> None:
        if not (isinstance(tau, (int, float)) and tau > 0):
            raise ConfigError(f"gdr.tau must be > 0, got {tau!r}")
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ConfigError(f"gdr.n_samples must be an integer >= 1, got {n_samples!r}")
        self.tau = float(tau)
        self.n_samples = n_samples
        self.seed = int(seed)
        self._z: dict[tuple[int, str], torch.Tensor] = {}

    def _fixed_z(self, n: int, like: torch.Tensor) -> torch.Tensor:
        key = (n, str(like.device))
        if key not in self._z:
            gen = torch.Generator().manual_seed(self.seed)
            self._z[key] = torch.randn(n, self.n_samples, generator=gen, dtype=torch.float64)
        return self._z[key].to(like.device)

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.per_sample(_as_grads(batch)).mean()

    def per_sample(self, g: torch.Tensor) -> torch.Tensor:
        """The surrogate for each sample, ``[B]``, from member gradients ``[M, B, D]``."""
        n = g.shape[0]
        if n < 2:
            raise ConfigError(f"gdr compares members and needs M >= 2, got M={n}")
        cos = pairwise_cosine(g)
        if n == 2:
            return cos[:, 0, 1]
        if n == 3:
            lim = 1.0 - ARCSIN_CLAMP
            return torch.asin(pair_values(cos).clamp(-lim, lim)).sum(-1)
        # soft Monte Carlo in the span coordinates: C + jitter = H H^T (Cholesky = QR basis)
        c = cos.double()
        eye = torch.eye(n, dtype=c.dtype, device=c.device)
        h, _ = torch.linalg.cholesky_ex(c + 1e-5 * eye)  # rows h_i, [B, n, n]
        proj = h @ self._fixed_z(n, c)  # [B, n, K]
        soft = torch.sigmoid(proj / self.tau).prod(dim=1).mean(-1)  # [B]
        return soft.to(g.dtype)
