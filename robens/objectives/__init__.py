"""Objective terms. Importing this package registers the built-in terms.

Terms: ``ce``, ``ensemble_ce``, ``gal``, ``cosine``, ``gdr``, ``adp``, ``jr``, ``mmc``, ``rce``,
``trs``.
DVERGE building blocks (not a term: a training strategy) live in ``robens.objectives.dverge``.
"""

from robens.objectives.adp import ADP, adp_per_sample, ensemble_entropy, log_det_diversity
from robens.objectives.base import (
    Batch,
    Objective,
    Term,
    build_term,
    input_gradients,
    list_terms,
    parse_objective,
    per_sample_ce,
    register_term,
)
from robens.objectives.ce import EnsembleCE, MemberCE
from robens.objectives.cosine import PairwiseCosine, mean_pairwise_cosine, pairwise_cosine
from robens.objectives.gal import GAL, coherence, gal_per_sample
from robens.objectives.gdr import GDRRegularizer, gdr, gdr_mean
from robens.objectives.jacobian import JacobianReg, jacobian_frobenius_sq
from robens.objectives.mmc import MMCLoss, mmc_per_sample
from robens.objectives.rce import RCELoss, RCEModel, rce_per_sample, reverse_labels
from robens.objectives.trs import TRS, abs_cosine_loss, magnitude, smoothness_pgd

__all__ = [
    "ADP",
    "GAL",
    "Batch",
    "GDRRegularizer",
    "MMCLoss",
    "RCELoss",
    "RCEModel",
    "TRS",
    "EnsembleCE",
    "JacobianReg",
    "MemberCE",
    "Objective",
    "PairwiseCosine",
    "Term",
    "abs_cosine_loss",
    "adp_per_sample",
    "build_term",
    "coherence",
    "ensemble_entropy",
    "gal_per_sample",
    "gdr",
    "gdr_mean",
    "input_gradients",
    "jacobian_frobenius_sq",
    "list_terms",
    "log_det_diversity",
    "magnitude",
    "mean_pairwise_cosine",
    "mmc_per_sample",
    "pairwise_cosine",
    "parse_objective",
    "per_sample_ce",
    "rce_per_sample",
    "register_term",
    "reverse_labels",
    "smoothness_pgd",
]
