"""GAL, the Gradient Alignment Loss of Diversity Training (Kariyappa & Qureshi 2019).

``GAL = log sum_{1<=a<b<=N} exp(CS(grad_x J_a, grad_x J_b))`` (Eq. 8), computed per sample with
``torch.logsumexp`` and averaged over the batch; ``J_a`` is member a's cross-entropy. The full
loss ``(1/N) sum_i J_i + lambda * GAL`` (Eq. 9) is ``objective: "ce + 0.5*gal"`` (lambda 0.5 is
the paper's default, given as the config weight). ``coherence = max_{a != b} CS`` (Eq. 7).

Oracles: N = 2 gives GAL = CS; N identical gradients give ``1 + log(N(N-1)/2)``;
``max CS <= GAL <= max CS + log C(N, 2)``.
"""

from __future__ import annotations

import torch

from robens.objectives.base import Batch, Term, register_term
from robens.objectives.cosine import _as_grads, _check_pairs, pair_values, pairwise_cosine


def gal_per_sample(grads_or_batch: torch.Tensor | Batch) -> torch.Tensor:
    """GAL (Eq. 8) of every sample, ``[B]``, from member gradients ``[M, B, D]`` or a Batch."""
    g = _as_grads(grads_or_batch)
    _check_pairs(g.shape[0], "gal")
    return torch.logsumexp(pair_values(pairwise_cosine(g)), dim=-1)


def coherence(grads_or_batch: torch.Tensor | Batch) -> torch.Tensor:
    """Gradient coherence (Eq. 7): per-sample max over pairs of CS, ``[B]``."""
    g = _as_grads(grads_or_batch)
    _check_pairs(g.shape[0], "coherence")
    return pair_values(pairwise_cosine(g)).amax(-1)


@register_term("gal")
class GAL(Term):
    """Gradient Alignment Loss (Eq. 8), batch mean; weight it with lambda in the objective."""

    name = "gal"
    needs_input_grads = True

    def __call__(self, batch: Batch) -> torch.Tensor:
        return gal_per_sample(batch).mean()
