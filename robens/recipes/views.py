"""What a recipe summary reads: one trial's records with its stage, sub-grid and config
(:class:`TrialView`), and the few facts of the plan it needs (:class:`PlanInfo`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from robens.config import ExperimentConfig
from robens.objectives.base import objective_weights
from robens.records import RecordSelection, clean_record
from robens.samples import sample_outcomes


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

    @property
    def num_classes(self) -> int:
        from robens.data import DATASETS

        return DATASETS.get(self.config.data.dataset).num_classes

    def record(self, metric: str, **filters: Any) -> dict[str, Any] | None:
        """The matching record :meth:`value` reads (the most samples; ``None`` if absent)."""
        recs = self.select(metric, **filters)
        return max(recs, key=lambda r: r.get("n") or 0) if recs else None

    def clean_record(self) -> dict[str, Any] | None:
        """The one record every printed clean accuracy of this trial comes from: the suite's
        clean unit (the images the attacks run on), else the sweep's clean evaluation."""
        return clean_record(self.records)

    def clean(self) -> float | None:
        """Clean accuracy of :meth:`clean_record`."""
        r = self.clean_record()
        return None if r is None else float(r["value"])

    def clean_count(self) -> tuple[int, int] | None:
        """``(correct, n)`` of :meth:`clean_record` (``None`` when it has no ``n``)."""
        r = self.clean_record()
        if r is None or not r.get("n"):
            return None
        n = int(r["n"])
        return round(float(r["value"]) * n), n

    def outcomes(
        self, record: dict[str, Any] | None, clean: bool = False
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``(dataset index, correct)`` per image of an attack record, from the per-sample
        arrays its unit stored (``suite/samples/<unit>.npz``; ``None`` when there are none).
        Correct = classified correctly attacked and, except for universal perturbations
        (whose accuracy counts every image), also clean, as the record's value does;
        ``clean=True``: correct on the clean images."""
        return sample_outcomes(self.run_dir, record, clean)


__all__ = ["PlanInfo", "RecipeInfo", "TrialView"]
