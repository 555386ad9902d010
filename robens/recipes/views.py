"""What a recipe summary reads: one trial's records with its stage, sub-grid and config
(:class:`TrialView`), and the few facts of the plan it needs (:class:`PlanInfo`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from robens.config import ExperimentConfig
from robens.objectives.base import objective_weights
from robens.records import RecordSelection


class RecipeInfo(Protocol):
    """The parts of a :class:`~robens.recipes.schema.Recipe` a summary reads."""

    @property
    def vars(self) -> dict[str, Any]: ...

    @property
    def datasets(self) -> Mapping[str, Any]: ...


class PlanInfo(Protocol):
    """The parts of a :class:`~robens.recipes.planning.RecipePlan` a summary reads."""

    @property
    def recipe(self) -> RecipeInfo: ...

    @property
    def scale(self) -> str: ...

    @property
    def dataset(self) -> str: ...


@dataclass
class TrialView(RecordSelection):
    """One trial's records with its stage, sub-grid and config (what summaries read)."""

    stage: str
    grid: str
    id: str
    overrides: dict[str, Any]
    config: ExperimentConfig
    run_dir: Path
    records: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def members(self) -> int:
        return self.config.model.members

    @property
    def terms(self) -> dict[str, float]:
        return objective_weights(self.config.objective)

    def reg_lambda(self, term: str) -> float:
        return self.terms.get(term, 0.0)

    def clean(self) -> float | None:
        """Clean accuracy on the suite's test subset (the sweep's clean evaluation otherwise)."""
        suite = [r for r in self.records if r.get("metric") == "clean_accuracy"
                 and str(r.get("unit", "")).startswith("clean-")]
        if suite:
            return float(suite[0]["value"])
        return self.value("clean_accuracy")


__all__ = ["PlanInfo", "RecipeInfo", "TrialView"]
