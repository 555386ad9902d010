"""Reproduction recipes (``robens reproduce``): the public names of :mod:`robens.recipes`,
kept importable from here. See :mod:`robens.recipes` for the recipe format."""

from __future__ import annotations

from typing import Any

from robens import recipes
from robens.objectives.base import objective_weights
from robens.utils import deep_merge

__all__ = [*recipes.__all__, "deep_merge", "objective_weights"]


def __getattr__(name: str) -> Any:
    if name in recipes.__all__:
        return getattr(recipes, name)
    raise AttributeError(f"module 'robens.reproduce' has no attribute {name!r}")
