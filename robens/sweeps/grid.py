"""Sweep grids: the schema, the expansion into trials and the validated plan (nothing runs).

See :mod:`robens.sweep` for the grid format and the layout of a sweep's output folder.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from robens.config import (
    ExperimentConfig,
    Strict,
    apply_overrides,
    load_yaml,
    validate_config,
    validate_schema,
)
from robens.errors import ConfigError
from robens.utils import config_hash


# ---------------------------------------------------------------------------- schema
class TrialResources(Strict):
    """What one trial asks of a Ray worker."""

    cpus: float = Field(1.0, gt=0.0, description="Ray CPUs reserved per trial")
    gpus: float = Field(0.0, ge=0.0, description="Ray GPUs reserved per trial")
    threads: int = Field(
        1, ge=1, description="torch threads in a Ray worker (training.threads, if set, wins)"
    )


class SweepGrid(Strict):
    """A sweep grid; unknown keys are errors."""

    name: str = Field("sweep", pattern=r"^[A-Za-z0-9][\w.+-]*$")
    base: str | dict[str, Any] = Field(
        default_factory=dict, description="experiment YAML (relative to the grid) or a mapping"
    )
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[list[str]] = Field(default_factory=list, description="axes varying together")
    suite: str | dict[str, Any] | None = None
    output_dir: str | None = Field(None, description="default runs/sweeps/<name>")
    resources: TrialResources = TrialResources()

    @field_validator("axes")
    @classmethod
    def _check_axes(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if not key or any(not part for part in key.split(".")):
                raise ValueError(f"axis {key!r} is not a dotted config key")
            if key == "output_dir":
                raise ValueError("output_dir cannot be an axis: the sweep sets each trial's")
            if not values:
                raise ValueError(f"axis {key} has no values")
            seen: list[str] = []
            for v in values:
                blob = json.dumps(v, sort_keys=True, default=str)
                if blob in seen:
                    raise ValueError(f"axis {key} repeats the value {v!r}")
                seen.append(blob)
        keys = sorted(axes)
        for a, b in itertools.pairwise(keys):
            if b.startswith(a + "."):
                raise ValueError(f"axes {a} and {b} overlap")
        return axes

    @model_validator(mode="after")
    def _check_zip(self) -> SweepGrid:
        grouped: set[str] = set()
        for group in self.zip:
            if not group:
                raise ValueError("a zip group is empty")
            for key in group:
                if key not in self.axes:
                    raise ValueError(f"zip names {key!r}, which is not an axis")
                if key in grouped:
                    raise ValueError(f"axis {key} is in more than one zip group")
                grouped.add(key)
            lengths = {k: len(self.axes[k]) for k in group}
            if len(set(lengths.values())) > 1:
                sizes = ", ".join(f"{k}: {n}" for k, n in lengths.items())
                raise ValueError(f"zipped axes need equal lengths ({sizes})")
        return self


@dataclass(frozen=True)
class Trial:
    """One point of the grid: its overrides of the base config and its run directory."""

    index: int
    id: str
    name: str
    overrides: dict[str, Any]
    config: ExperimentConfig
    run_dir: Path  # absolute

    @property
    def config_hash(self) -> str:
        return config_hash(self.config.to_dict())


@dataclass
class SweepPlan:
    """An expanded grid: validated trials, output folder and the resolved suite."""

    grid: SweepGrid
    source: str
    output_dir: Path
    trials: list[Trial]
    suite: str | dict[str, Any] | None  # absolute path or inline mapping


# ---------------------------------------------------------------------------- planning
def load_grid(source: str | os.PathLike | Mapping[str, Any] | SweepGrid) -> SweepGrid:
    """Validate a grid file or mapping; errors name the offending key."""
    if isinstance(source, SweepGrid):
        return source
    label = "(mapping)"
    if not isinstance(source, Mapping):
        label = str(source)
        source = load_yaml(source)
    return validate_schema(SweepGrid, source, label, kind="sweep grid")


def expand(grid: SweepGrid) -> list[dict[str, Any]]:
    """The overrides of every trial: cartesian product over axes, zipped axes together."""
    group_of = {key: group for group in grid.zip for key in group}
    factors: list[list[dict[str, Any]]] = []
    placed: set[str] = set()
    for key, values in grid.axes.items():
        if key in placed:
            continue
        group = group_of.get(key, [key])
        placed.update(group)
        factors.append([{k: grid.axes[k][i] for k in group} for i in range(len(values))])
    out = []
    for combo in itertools.product(*factors):
        overrides: dict[str, Any] = {}
        for part in combo:
            overrides.update(part)
        out.append({k: overrides[k] for k in grid.axes})  # axis order
    return out


def trial_id(overrides: Mapping[str, Any]) -> str:
    """Stable short id of a trial: a hash of its overrides (key order does not matter)."""
    return config_hash(dict(overrides))[:12]


def trial_name(overrides: Mapping[str, Any]) -> str:
    """A readable label: ``name=gal, model.members=3, seed=1`` (``base`` when empty)."""
    def fmt(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, default=str)

    return ", ".join(f"{k}={fmt(v)}" for k, v in overrides.items()) or "base"


def plan_sweep(
    source: str | os.PathLike | Mapping[str, Any] | SweepGrid,
    output_dir: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
) -> SweepPlan:
    """Expand a grid into validated trials; fails before running anything on a bad trial.

    Relative ``base`` and ``suite`` paths are resolved against the grid file's folder (or
    ``root``, default the working directory, for a mapping).
    """
    grid = load_grid(source)
    is_file = isinstance(source, str | os.PathLike)
    here = Path(root) if root is not None else (Path(source).parent if is_file else Path("."))
    label = str(source) if is_file else grid.name
    if isinstance(grid.base, str):
        base_path = here / grid.base
        base = load_yaml(base_path)
        if base is None:
            base = {}
        if not isinstance(base, dict):
            raise ConfigError(f"base config {base_path} must be a mapping of keys")
    else:
        base = grid.base
    suite: str | dict[str, Any] | None = grid.suite
    if isinstance(suite, str):
        suite_path = here / suite
        if not suite_path.is_file():
            raise ConfigError(f"sweep {label}: suite file not found: {suite_path}")
        suite = str(suite_path.absolute())
    if output_dir is None:
        output_dir = grid.output_dir or f"runs/sweeps/{grid.name}"
    out = str(output_dir)

    from robens.objectives import parse_objective

    trials: list[Trial] = []
    seen: dict[str, int] = {}
    for index, overrides in enumerate(expand(grid)):
        tid = trial_id(overrides)
        name = trial_name(overrides)
        if tid in seen:  # pragma: no cover - distinct overrides, 48-bit hash
            raise ConfigError(f"trials {seen[tid]} and {index} share the id {tid}")
        seen[tid] = index
        data = apply_overrides(base, overrides)
        data["output_dir"] = str(Path(out) / "trials" / tid)
        cfg = validate_config(data, source=f"for trial {index} [{name}] (id {tid})")
        try:
            parse_objective(cfg.objective, cfg.terms)
        except ConfigError as exc:
            raise ConfigError(f"trial {index} [{name}] (id {tid}): objective: {exc}") from None
        trials.append(Trial(index, tid, name, overrides, cfg, Path(cfg.output_dir).absolute()))
    return SweepPlan(grid, label, Path(out).absolute(), trials, suite)


__all__ = [
    "SweepGrid",
    "SweepPlan",
    "Trial",
    "TrialResources",
    "expand",
    "load_grid",
    "plan_sweep",
    "trial_id",
    "trial_name",
]
