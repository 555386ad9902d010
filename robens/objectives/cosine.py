"""Pairwise cosine similarity of member input-gradients.

``CS(a, b) = <a, b> / max(||a|| ||b||, 1e-12)`` (Kariyappa & Qureshi 2019, Eq. 6). The
``cosine`` term is the mean over member pairs a < b, per sample, averaged over the batch (the
two-model loss of Adam & Speciel 2020 for N = 2, any N here). The Gram-matrix form keeps zero
gradients finite: the clamp makes the denominator a constant there, so neither the value nor
its gradient can be NaN.
"""

from __future__ import annotations

import torch

from robens.errors import ConfigError, InputError
from robens.objectives.base import Batch, Term, register_term

DENOM_EPS = 1e-12


def _as_grads(grads_or_batch: torch.Tensor | Batch) -> torch.Tensor:
    """``[M, B, D]`` member gradients from a tensor (``[M, B, ...]``) or a :class:`Batch`."""
    if isinstance(grads_or_batch, Batch):
        grads_or_batch.require_shared_inputs("gradient similarity")
        return grads_or_batch.member_input_grads_flat
    g = grads_or_batch
    if not isinstance(g, torch.Tensor) or g.dim() < 2:
        raise InputError("member gradients must be a tensor [M, B, ...] (members first)")
    return g.reshape(g.shape[0], g.shape[1], -1) if g.dim() != 3 else g


def pairwise_cosine(grads: torch.Tensor, eps: float = DENOM_EPS) -> torch.Tensor:
    """Cosine matrix ``[B, M, M]`` of member gradients ``[M, B, D]`` (Eq. 6).

    The diagonal is 1 for non-zero gradients and 0 for zero ones.
    """
    g = _as_grads(grads)
    gram = torch.einsum("mbd,nbd->bmn", g, g)
    sq = torch.diagonal(gram, dim1=-2, dim2=-1)  # [B, M] squared norms
    denom = (sq.unsqueeze(-1) * sq.unsqueeze(-2)).clamp_min(eps * eps).sqrt()
    return gram / denom


def pair_values(cos: torch.Tensor) -> torch.Tensor:
    """The upper-triangle entries (pairs a < b) of ``[B, M, M]`` as ``[B, M(M-1)/2]``."""
    m = cos.shape[-1]
    iu = torch.triu_indices(m, m, offset=1, device=cos.device)
    return cos[:, iu[0], iu[1]]


def _check_pairs(m: int, what: str) -> None:
    if m < 2:
        raise ConfigError(f"{what} compares members and needs an ensemble of M >= 2, got M={m}")


def mean_pairwise_cosine(grads_or_batch: torch.Tensor | Batch) -> torch.Tensor:
    """Per-sample mean over pairs a < b of CS(grad_a, grad_b): ``[B]`` (average it yourself)."""
    g = _as_grads(grads_or_batch)
    _check_pairs(g.shape[0], "mean_pairwise_cosine")
    return pair_values(pairwise_cosine(g)).mean(-1)


@register_term("cosine")
class PairwiseCosine(Term):
    """``mean_b mean_{a<b} CS(grad_x J_a, grad_x J_b)`` over member pairs (any M >= 2)."""

    name = "cosine"
    needs_input_grads = True

    def __call__(self, batch: Batch) -> torch.Tensor:
        return mean_pairwise_cosine(batch).mean()
