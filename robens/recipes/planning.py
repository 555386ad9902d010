"""Planning a recipe: its stages expanded into validated sweeps of trials, ``@stage``
references resolved to checkpoint paths, and the waves of stages that may run side by side.
Nothing runs and no data is read."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from robens.config import ExperimentConfig, apply_overrides
from robens.errors import ConfigError
from robens.objectives.base import objective_weights
from robens.recipes.resolution import resolve_recipe
from robens.recipes.schema import Recipe
from robens.sweeps.grid import SweepPlan, Trial, plan_sweep
from robens.sweeps.trials import format_plan
from robens.utils import deep_merge

REF_PATTERN = re.compile(r"^@([A-Za-z0-9][\w.+-]*)(?:/([A-Za-z0-9][\w.+-]*))?$")


@dataclass
class StagePlan:
    """One stage: its sweep plan and which sub-grid each trial came from."""

    name: str
    title: str
    sweep: SweepPlan
    grid_of: dict[str, str]
    explicit_resources: bool = False
    needs: list[str] = field(default_factory=list)  # earlier stages whose checkpoints it reads

    @property
    def trials(self) -> list[Trial]:
        return self.sweep.trials


@dataclass
class RecipePlan:
    """A recipe expanded for one scale and dataset: validated stages of trials."""

    recipe: Recipe
    source: str
    scale: str
    dataset: str
    output_dir: Path
    stages: list[StagePlan]
    notes: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def report_dir(self) -> Path:
        return self.output_dir / "report"

    def trials(self) -> list[tuple[StagePlan, Trial]]:
        return [(s, t) for s in self.stages for t in s.trials]


def default_output_dir(name: str, dataset: str, scale: str) -> Path:
    """``runs/reproduce/<name>/<dataset>-<scale>``."""
    return Path("runs") / "reproduce" / name / f"{dataset}-{scale}"


def resolve_refs(
    node: Any, refs: dict[str, list[str]], where: str, used: set[str] | None = None
) -> Any:
    """Replace ``"@stage[/grid]"`` strings by checkpoint paths (see :mod:`robens.recipes`);
    the stages referred to are added to ``used``."""

    def lookup(s: str) -> list[str] | None:
        m = REF_PATTERN.match(s)
        if not m:
            return None
        key = m.group(1) if m.group(2) is None else f"{m.group(1)}/{m.group(2)}"
        if key not in refs:
            known = ", ".join(sorted(refs)) or "none yet"
            raise ConfigError(f"{where}: {s!r} names no earlier stage or grid (known: {known})")
        if used is not None:
            used.add(m.group(1))
        return refs[key]

    if isinstance(node, str):
        paths = lookup(node)
        if paths is None:
            return node
        if len(paths) != 1:
            raise ConfigError(f"{where}: {node!r} names {len(paths)} checkpoints; use it in a list")
        return paths[0]
    if isinstance(node, list):
        out: list[Any] = []
        for i, v in enumerate(node):
            paths = lookup(v) if isinstance(v, str) else None
            out.extend(paths if paths is not None
                       else [resolve_refs(v, refs, f"{where}[{i}]", used)])
        return out
    if isinstance(node, Mapping):
        return {k: resolve_refs(v, refs, f"{where}.{k}", used) for k, v in node.items()}
    return node


def plan_recipe(
    name: str | os.PathLike | Mapping[str, Any],
    scale: str = "quick",
    dataset: str | None = None,
    output_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RecipePlan:
    """Expand a recipe into validated stages of trials (nothing runs; no data is read).

    Args:
        name: recipe name (``configs/reproduce/<name>.yaml``), YAML path or mapping.
        scale: ``quick``, ``paper`` or another scale the recipe defines (e.g. ``tiny``).
        dataset: one of the recipe's datasets, or ``synthetic`` (default: the recipe's first).
        output_dir: default ``runs/reproduce/<name>/<dataset>-<scale>``.
        overrides: dotted experiment-config keys set in every trial (``training.device``).
    """
    recipe, ds, source, notes = resolve_recipe(name, scale, dataset)
    out = Path(output_dir or default_output_dir(recipe.name, ds, scale)).absolute()
    over = dict(overrides or {})
    refs: dict[str, list[str]] = {}
    stages: list[StagePlan] = []
    for sname, stage in recipe.stages.items():
        stage_base = deep_merge(recipe.base, stage.base)
        suite = recipe.suite if stage.suite == "inherit" else stage.suite
        if stage.suite != "inherit" and isinstance(stage.suite, dict) and isinstance(
            recipe.suite, dict
        ):
            suite = deep_merge(recipe.suite, stage.suite)
        needs: set[str] = set()
        suite = resolve_refs(suite, refs, f"stages.{sname}.suite", needs)
        if isinstance(suite, dict):  # per-image outcomes for the checks' paired tests
            suite = {"per_sample": True, **suite}
        resources = stage.resources or recipe.resources
        trials: list[Trial] = []
        grid_of: dict[str, str] = {}
        first = None
        for gname, grid in stage.grids.items():
            if grid is None:
                continue
            where = f"stages.{sname}.grids.{gname}"
            base = apply_overrides(deep_merge(stage_base, grid.base), over)
            base.setdefault("data", {})["dataset"] = ds
            base.pop("output_dir", None)
            base = resolve_refs(base, refs, f"{where}.base", needs)
            axes = resolve_refs(grid.axes, refs, f"{where}.axes", needs)
            mapping = {
                "name": f"{recipe.name}-{sname}",
                "base": base,
                "axes": axes,
                "zip": grid.zip,
                "suite": suite,
                "output_dir": str(out / sname),
                "resources": resources.model_dump(),
            }
            try:
                sub = plan_sweep(mapping)
            except ConfigError as exc:
                raise ConfigError(f"recipe {recipe.name}, {where}: {exc}") from None
            first = first or sub
            for t in sub.trials:
                if t.id in grid_of:
                    raise ConfigError(
                        f"recipe {recipe.name}, stage {sname}: grids {grid_of[t.id]} and {gname}"
                        f" both define trial {t.id} [{t.name}]"
                    )
                grid_of[t.id] = gname
                trials.append(t)
            refs[f"{sname}/{gname}"] = [str(t.run_dir / "checkpoint.safetensors")
                                        for t in sub.trials]
        if first is None:
            raise ConfigError(f"recipe {recipe.name}: stage {sname} has no grids left")
        refs[sname] = [str(t.run_dir / "checkpoint.safetensors") for t in trials]
        trials.sort(key=lambda t: -estimated_cost(t.config))  # longest first: workers end together
        trials = [replace(t, index=i) for i, t in enumerate(trials)]
        sweep = SweepPlan(first.grid, f"{source}#{sname}", out / sname, trials, first.suite)
        stages.append(StagePlan(sname, stage.title, sweep, grid_of,
                                stage.resources is not None, sorted(needs)))
    return RecipePlan(recipe, source, scale, ds, out, stages, notes, over)


def estimated_cost(cfg: ExperimentConfig) -> float:
    """A rough relative cost of training and evaluating a trial (for ordering only)."""
    double = {"jr", "gal", "gdr", "cosine"} & set(objective_weights(cfg.objective))
    trained = 1 if cfg.training.strategy == "snapshot" else cfg.model.members
    per_image = trained * (2.0 if double else 1.0)
    if cfg.data.augment.noise_eps > 0 and cfg.data.augment.noise_mode == "concat":
        per_image *= 2
    adv = cfg.training.adversarial
    if adv.attack != "none" or adv.sources:
        per_image *= 1 + adv.ratio
    train = per_image * (cfg.data.train_size or 60000) * cfg.training.epochs
    return train + 2000.0 * cfg.model.members  # + evaluation, which grows with the members


def format_recipe_plan(plan: RecipePlan) -> str:
    """A text table of every stage's trials and their status (``--dry-run``)."""
    head = (f"recipe {plan.name} (scale {plan.scale}, dataset {plan.dataset}):"
            f" {sum(len(s.trials) for s in plan.stages)} trial(s) in {len(plan.stages)} stage(s)"
            f" -> {plan.output_dir}")
    parts = [head] + [f"  note: {n}" for n in plan.notes]
    for i, s in enumerate(plan.stages, 1):
        parts.append(f"\nstage {i}/{len(plan.stages)} {s.name}" + (f": {s.title}" if s.title
                                                                   else ""))
        parts.append(format_plan(s.sweep))
    return "\n".join(parts)


def waves(plan: RecipePlan) -> list[list[StagePlan]]:
    """Consecutive stages grouped so that no stage reads the checkpoints of one in its group
    (a stage of a group may start with the first; the runner goes further and starts each
    stage as soon as the stages it reads are done, :mod:`robens.recipes.running`)."""
    out: list[list[StagePlan]] = []
    for stage in plan.stages:
        if out and not set(stage.needs) & {s.name for s in out[-1]}:
            out[-1].append(stage)
        else:
            out.append([stage])
    return out


__all__ = [
    "RecipePlan",
    "StagePlan",
    "default_output_dir",
    "estimated_cost",
    "format_recipe_plan",
    "plan_recipe",
    "resolve_refs",
    "waves",
]
