"""The registries' names for the CLI's help texts and errors (one source for every list).

Each function imports its registry lazily, so ``robens --help`` lists exactly what is
registered (plug-ins included) and nothing is hard-coded in the CLI.
"""

from __future__ import annotations


def _join(names: list[str]) -> str:
    return " | ".join(names)


def attacks() -> str:
    from robens.attacks import ATTACKS

    return _join(ATTACKS.in_order())


def models() -> str:
    from robens.models import list_models

    return _join(list_models())


def terms() -> str:
    from robens.objectives import list_terms

    return ", ".join(list_terms())


def datasets() -> str:
    from robens.data.datasets import list_datasets

    return _join(list_datasets())


def strategies() -> str:
    from robens.training.strategies.base import STRATEGIES

    return _join(STRATEGIES.names())


def recipes() -> str:
    from robens.recipes import list_recipes

    return _join(list_recipes())
