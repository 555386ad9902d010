"""Max-Mahalanobis heads with fixed class centres (Pang et al. ICML 2018; ICLR 2020).

Algorithm 1 (MMLDA paper; ``kernel_paras/craft_MMcenters.m``) places L unit vectors ``u_l`` in
R^d (d >= L - 1) with ``<u_i, u_j> = -1/(L-1)`` for i != j and ``sum_l u_l = 0``; the centres are
``mu_l = C_MM * u_l`` (ICLR'20 convention, ``||mu_l|| = C_MM``, MMC-10 by default; the ICML'18
paper scales by sqrt(C) so that ``||mu||^2 = C``). For d < L - 1 the centres come from
``craft_MMLDA_means_whenDlessthanL.py``: Adam (lr 1e-4, 10k steps) on unit vectors minimizing
``max_{i != j} <u_i, u_j>``, seeded.

:class:`MMHead` replaces a model's ``classifier``: its scores are ``h_l = -1/2 ||z - mu_l||^2``
(so argmax = nearest centre). MMLDA trains them with softmax cross-entropy (the official code
uses ``-||z - mu_l||^2``, i.e. these scores times two: a softmax temperature of 1/2); MMC
trains with ``1/2 ||z - mu_y||^2 = -h_y`` (objective term ``mmc``; the code drops the 1/2).
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
from torch import nn

from robens.errors import ConfigError
from robens.models.convention import MM_SCORES

MMKind = Literal["mmc", "mmlda"]


def _algorithm1(num_classes: int, dim: int) -> torch.Tensor:
    """Unit centres of Algorithm 1 in float64, ``[L, d]`` (d >= L - 1)."""
    L = num_classes
    u = torch.zeros(L, dim, dtype=torch.float64)
    u[0, 0] = 1.0
    for k in range(1, L):
        for j in range(k):
            u[k, j] = -(1.0 / (L - 1) + torch.dot(u[k], u[j])) / u[j, j]
        rest = math.sqrt(abs(1.0 - float(u[k].square().sum())))
        if k < dim:
            u[k, k] = rest
        elif rest > 1e-6:  # pragma: no cover - impossible for d >= L - 1
            raise ConfigError(f"Algorithm 1 failed for L={L}, d={dim}")
    return u


def _optimized_centres(num_classes: int, dim: int, steps: int, seed: int) -> torch.Tensor:
    """Unit centres minimizing the largest pairwise inner product (d < L - 1), ``[L, d]``."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(num_classes, dim, generator=gen, dtype=torch.float64).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=1e-4 if steps >= 10_000 else 1e-2)
    off = ~torch.eye(num_classes, dtype=torch.bool)
    with torch.enable_grad():
        for _ in range(steps):
            u = w / w.norm(dim=1, keepdim=True)
            loss = (u @ u.T)[off].max()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return w / w.norm(dim=1, keepdim=True)


def mm_centers(
    num_classes: int, dim: int, scale: float = 10.0, steps: int = 10_000, seed: int = 0
) -> torch.Tensor:
    """Max-Mahalanobis centres ``[L, d]`` (float32) with norm ``scale`` (MMLDA Algorithm 1).

    For ``d >= L - 1``: exact, ``<mu_i, mu_j> = -scale^2/(L-1)``, ``sum_l mu_l = 0``. For
    ``d < L - 1``: the optimizer fallback (``steps`` Adam steps, ``seed``).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"feature dimension must be an integer >= 1, got {dim!r}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ConfigError(f"mm_scale must be a finite number > 0, got {scale!r}")
    return _cached_centres(num_classes, dim, float(scale), steps, seed).clone()


@functools.lru_cache(maxsize=32)
def _cached_centres(
    num_classes: int, dim: int, scale: float, steps: int, seed: int
) -> torch.Tensor:
    if dim >= num_classes - 1:
        u = _algorithm1(num_classes, dim)
    else:
        u = _optimized_centres(num_classes, dim, steps, seed)
    return (u * scale).float()


class MMHead(nn.Module):
    """Fixed Max-Mahalanobis centres as a head: ``forward(z) = -1/2 ||z - mu_l||^2``, ``[B, L]``.

    The centres are the persistent buffer ``mm_centers`` (saved in checkpoints, never trained).
    ``kind`` records the training loss: ``"mmlda"`` (softmax CE on the scores) or ``"mmc"``
    (the ``mmc`` term, ``-h_y``). Prediction = nearest centre for both.
    """

    mm_centers: torch.Tensor
    output_convention = MM_SCORES

    def __init__(
        self, feature_dim: int, num_classes: int, kind: MMKind = "mmc", scale: float = 10.0
    ) -> None:
        super().__init__()
        if kind not in ("mmc", "mmlda"):
            raise ConfigError(f"MM head kind must be 'mmc' or 'mmlda', got {kind!r}")
        self.kind = kind
        self.scale = float(scale)
        self.in_features = int(feature_dim)
        self.out_features = int(num_classes)
        self.register_buffer("mm_centers", mm_centers(num_classes, feature_dim, scale))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        diff = z.unsqueeze(-2) - self.mm_centers.to(z.dtype)
        return -0.5 * diff.square().sum(-1)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, feature_dim={self.in_features}, classes={self.out_features}," \
            f" scale={self.scale:g}"


def attach_mm_head(model: nn.Module, kind: MMKind = "mmc", scale: float = 10.0) -> nn.Module:
    """Replace ``model.classifier`` by an :class:`MMHead` on ``model.features`` (in place).

    ``model`` must expose ``features(x) -> [B, feature_dim]``, ``feature_dim`` and a
    ``classifier`` whose ``out_features`` is the class count; returns ``model``.
    """
    clf = getattr(model, "classifier", None)
    dim = getattr(model, "feature_dim", None)
    if clf is None or dim is None or not hasattr(model, "features"):
        raise ConfigError(
            f"{type(model).__name__} has no features/feature_dim/classifier: cannot attach a"
            " Max-Mahalanobis head"
        )
    num_classes = getattr(clf, "out_features", None) or getattr(model, "num_classes", None)
    if num_classes is None:
        raise ConfigError("cannot tell the number of classes of the model's classifier")
    model.classifier = MMHead(int(dim), int(num_classes), kind=kind, scale=scale)
    return model


def mm_head_of(model: nn.Module) -> MMHead | None:
    """The :class:`MMHead` of ``model`` (looking through wrappers with ``.model``), or None."""
    seen = 0
    while model is not None and seen < 4:
        clf = getattr(model, "classifier", None)
        if isinstance(clf, MMHead):
            return clf
        model = getattr(model, "model", None)
        seen += 1
    return None
