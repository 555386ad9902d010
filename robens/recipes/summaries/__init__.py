"""Recipe summaries, one file per paper, each registered by name in :data:`SUMMARIES`.

A recipe's ``summary:`` key picks one. Adding a paper: a module here with a function
``(plan, views) -> {"tables", "checks", "data"}`` decorated ``@SUMMARIES.register("name")``
(see :mod:`robens.recipes.summaries.base` for the helpers), and its import below.
"""

from robens.recipes.summaries import adp, gal, gdr, jacobian, mmc, peers, rce
from robens.recipes.summaries.base import SUMMARIES, Summary
from robens.recipes.summaries.gdr import spearman
from robens.recipes.summaries.jacobian import JE_FAMILIES, je_family

__all__ = [
    "JE_FAMILIES",
    "SUMMARIES",
    "Summary",
    "adp",
    "gal",
    "gdr",
    "jacobian",
    "je_family",
    "mmc",
    "peers",
    "rce",
    "spearman",
]
