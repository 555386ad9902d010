"""The recipe schema (pydantic): a recipe, its stages and sub-grids, scales and datasets.

The format is described in :mod:`robens.recipes`; unknown keys are errors everywhere, and
``summary`` must name an entry of :data:`robens.recipes.summaries.SUMMARIES`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from robens.config import Strict
from robens.recipes.summaries import SUMMARIES
from robens.sweeps.grid import TrialResources

REQUIRED_SCALES = ("quick", "paper")
NAME_PATTERN = r"^[A-Za-z0-9][\w.+-]*$"


class GridSpec(Strict):
    """One sub-grid of a stage: extra base keys, axes and zipped axes (see :mod:`robens.sweep`)."""

    base: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[list[str]] = Field(default_factory=list)


class StageSpec(Strict):
    """A stage: one sweep over the union of its sub-grids, all sharing one suite."""

    title: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    grids: dict[str, GridSpec | None] = Field(default_factory=lambda: {"main": GridSpec()})
    suite: dict[str, Any] | list[Any] | None | Literal["inherit"] = "inherit"
    resources: TrialResources | None = None

    @field_validator("grids")
    @classmethod
    def _grid_names(cls, v: dict[str, GridSpec | None]) -> dict[str, GridSpec | None]:
        for name in v:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"grid name {name!r} must match {NAME_PATTERN}")
        return v


class ScaleSpec(Strict):
    """A scale: what it changes (``set``, deep-merged over the recipe) and why (``notes``)."""

    notes: list[str] = Field(default_factory=list)
    set: dict[str, Any] = Field(default_factory=dict)


class DatasetSpec(Strict):
    """Per-dataset overrides: for every scale (``set``) and for one scale (``scales``)."""

    notes: list[str] = Field(default_factory=list)
    set: dict[str, Any] = Field(default_factory=dict)
    scales: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Recipe(Strict):
    """A reproduction recipe (see :mod:`robens.recipes`); unknown keys are errors."""

    name: str = Field(pattern=NAME_PATTERN)
    title: str = ""
    description: str = ""
    summary: str = Field(description="how the summary is computed (a name in SUMMARIES)")
    published: list[str] = Field(default_factory=list)
    datasets: dict[str, DatasetSpec | None]
    vars: dict[str, Any] = Field(default_factory=dict)
    base: dict[str, Any] = Field(default_factory=dict)
    suite: dict[str, Any] | list[Any] | None = None
    resources: TrialResources = TrialResources()
    stages: dict[str, StageSpec]
    scales: dict[str, ScaleSpec]

    @field_validator("summary")
    @classmethod
    def _summary(cls, v: str) -> str:
        if v not in SUMMARIES:
            raise ValueError(f"unknown recipe summary {v!r}; choose one of: {SUMMARIES.choices()}")
        return v

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v: dict[str, DatasetSpec | None]) -> dict[str, DatasetSpec | None]:
        from robens.data.datasets import KNOWN_DATASETS, canonical_name

        if not v:
            raise ValueError("list at least one dataset")
        for name in v:
            if canonical_name(name) not in KNOWN_DATASETS or canonical_name(name) != name:
                raise ValueError(f"dataset {name!r} is not a canonical dataset name")
        return v

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: dict[str, StageSpec]) -> dict[str, StageSpec]:
        if not v:
            raise ValueError("a recipe needs at least one stage")
        for name in v:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"stage name {name!r} must match {NAME_PATTERN}")
        return v

    @field_validator("published")
    @classmethod
    def _published(cls, v: list[str]) -> list[str]:
        from robens.report.reproduce import published_table

        for key in v:
            published_table(key)  # raises on an unknown key
        return v

    @model_validator(mode="after")
    def _scales(self) -> Recipe:
        missing = [s for s in REQUIRED_SCALES if s not in self.scales]
        if missing:
            raise ValueError(f"scales {', '.join(missing)} are required")
        for d, spec in self.datasets.items():
            for s in (spec.scales if spec else {}):
                if s not in self.scales:
                    raise ValueError(f"datasets.{d}.scales names an unknown scale {s!r}")
        return self


__all__ = [
    "NAME_PATTERN",
    "REQUIRED_SCALES",
    "DatasetSpec",
    "GridSpec",
    "Recipe",
    "ScaleSpec",
    "StageSpec",
]
