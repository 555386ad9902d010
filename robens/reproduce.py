"""Reproduction recipes: one YAML per published result, run through the sweep, reported beside
the published numbers (``robens reproduce NAME --scale quick|paper --dataset ...``).

A recipe lives in ``configs/reproduce/<name>.yaml``::

    name: diversity-training
    title: GAL (Kariyappa & Qureshi 2019), Table 2
    summary: gal                   # how the summary is computed from the records (SUMMARIES)
    published: [gal_table2]        # robens.report.published tables the summary reads
    datasets:                      # supported datasets (first = default) and their overrides
      fashion-mnist: {notes: [...], set: {vars: {eps: [0.1, 0.2]}}}
      mnist: {set: {...}, scales: {paper: {...}}}
    vars: {eps: [0.1, 0.3]}        # a string "$eps" anywhere in base/suite/stages -> vars["eps"]
    base: {...}                    # experiment config shared by every stage
    suite: {...}                   # attack suite shared by every stage (see evaluate/suite.py)
    stages:                        # run in order; each stage is one sweep (robens.sweep)
      pretrained:
        suite: null                # clean evaluation only
        grids:                     # named sub-grids (base, axes, zip); the stage = their union
          surrogate: {axes: {name: [surrogate], model.members: [5], seed: [100]}}
          source: {axes: {name: [source], model.members: [1], seed: [200]}}
      targets:
        grids:
          ens:
            base: {training: {adversarial: {attack: fgsm, sources: ["@pretrained/source"]}}}
            axes: {name: [ens], objective: [ce]}
    scales:                        # quick and paper are required; others (tiny) are optional
      quick: {notes: [...], set: {...}}   # deep-merged over the recipe (dicts merge, lists
      paper: {notes: [...], set: {}}      # and scalars replace; a grid set to null is dropped)

Merge order: recipe <- ``datasets[d].set`` <- ``scales[s].set`` <- ``datasets[d].scales[s]``,
then ``$vars`` are substituted, every stage's base gets ``data.dataset = d`` and the ``--set``
overrides. ``"@stage"`` / ``"@stage/grid"`` strings name the checkpoints of an earlier stage's
trials (a list element expands to all of them; a plain value needs exactly one), which is how
ensemble adversarial training points at static sources trained by the same recipe and transfer
attacks at a surrogate trained by it.

Outputs, under ``runs/reproduce/<name>/<dataset>-<scale>/`` by default: ``<stage>/`` (the sweep:
``plan.json``, ``trials/<id>/``, ``records.jsonl``), ``summary.json`` (our numbers, the checks,
wall times) and ``report/`` (``index.html`` and ``summary.md`` with the published numbers beside
ours, ``full/`` the general report of every trial).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from robens.config import (
    ExperimentConfig,
    Strict,
    apply_overrides,
    load_yaml,
    validate_schema,
)
from robens.errors import ConfigError
from robens.records import RecordSelection
from robens.sweep import (
    SweepPlan,
    Trial,
    TrialResources,
    collect_records,
    format_plan,
    plan_sweep,
    run_sweep,
    trial_status,
)
from robens.utils import atomic_write_json

RECIPES_DIR = Path(__file__).resolve().parents[1] / "configs" / "reproduce"
REQUIRED_SCALES = ("quick", "paper")
SUMMARY_KINDS = ("jacobian", "gal", "adp", "gdr", "mmc", "rce")
_NAME = r"^[A-Za-z0-9][\w.+-]*$"
_REF = re.compile(r"^@([A-Za-z0-9][\w.+-]*)(?:/([A-Za-z0-9][\w.+-]*))?$")
_VAR = re.compile(r"^\$([A-Za-z_]\w*)$")

Echo = Callable[[str], None]


# ---------------------------------------------------------------------------- schema
class GridSpec(Strict):
    """One sub-grid of a stage: extra base keys, axes and zipped axes (see robens.sweep)."""

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
            if not re.match(_NAME, name):
                raise ValueError(f"grid name {name!r} must match {_NAME}")
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
    """A reproduction recipe (see the module docstring); unknown keys are errors."""

    name: str = Field(pattern=_NAME)
    title: str = ""
    description: str = ""
    summary: Literal["jacobian", "gal", "adp", "gdr", "mmc", "rce"]
    published: list[str] = Field(default_factory=list)
    datasets: dict[str, DatasetSpec | None]
    vars: dict[str, Any] = Field(default_factory=dict)
    base: dict[str, Any] = Field(default_factory=dict)
    suite: dict[str, Any] | list[Any] | None = None
    resources: TrialResources = TrialResources()
    stages: dict[str, StageSpec]
    scales: dict[str, ScaleSpec]

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
            if not re.match(_NAME, name):
                raise ValueError(f"stage name {name!r} must match {_NAME}")
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


# ---------------------------------------------------------------------------- loading
def list_recipes(folder: str | os.PathLike | None = None) -> list[str]:
    """Names of the recipes in ``configs/reproduce`` (or ``folder``)."""
    d = Path(folder) if folder is not None else RECIPES_DIR
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def recipe_path(name: str | os.PathLike, folder: str | os.PathLike | None = None) -> Path:
    """The YAML of recipe ``name`` (a recipe name or a path to a YAML file)."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    d = Path(folder) if folder is not None else RECIPES_DIR
    candidate = d / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    known = ", ".join(list_recipes(d)) or "none"
    raise ConfigError(f"unknown recipe {str(name)!r}; available recipes: {known}")


def _validate(data: Any, label: str) -> Recipe:
    if data is None:
        raise ConfigError(f"recipe {label} must be a mapping of keys, got nothing")
    return validate_schema(Recipe, data, label, kind="recipe")


def load_recipe(name: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The raw recipe mapping (validated) and its source label."""
    if isinstance(name, Mapping):
        data, label = copy.deepcopy(dict(name)), "(mapping)"
    else:
        path = recipe_path(name)
        data, label = load_yaml(path), str(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"recipe {label} must be a mapping of keys")
    _validate(_with_vars(data, label), label)
    return data, label


def _with_vars(data: Mapping[str, Any], label: str) -> dict[str, Any]:
    """``data`` with its ``$vars`` substituted in base, suite and stages."""
    out = dict(data)
    variables = out.get("vars") or {}
    if not isinstance(variables, Mapping):
        raise ConfigError(f"recipe {label}: vars must be a mapping")
    for key in ("base", "suite", "stages"):
        if key in out:
            out[key] = _substitute(out[key], variables, key)
    return out


def deep_merge(base: Any, over: Any) -> Any:
    """``over`` merged into ``base`` (copies): mappings merge key by key, the rest replaces."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for k, v in over.items():
            out[k] = deep_merge(out[k], v) if k in out else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def _substitute(node: Any, variables: Mapping[str, Any], where: str, depth: int = 0) -> Any:
    """Replace ``"$name"`` strings by ``variables[name]`` (whose own ``$names`` are replaced
    too, up to 8 levels)."""
    if isinstance(node, str):
        m = _VAR.match(node)
        if not m:
            return node
        if m.group(1) not in variables:
            raise ConfigError(f"{where}: unknown variable {node!r} (vars: {sorted(variables)})")
        if depth >= 8:
            raise ConfigError(f"{where}: variables nest too deeply (a cycle?) at {node!r}")
        return _substitute(copy.deepcopy(variables[m.group(1)]), variables, where, depth + 1)
    if isinstance(node, Mapping):
        return {k: _substitute(v, variables, f"{where}.{k}", depth) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, variables, f"{where}[{i}]", depth) for i, v in enumerate(node)]
    return node


def dataset_available(name: str, root: str | None = None) -> bool:
    """Whether the files of dataset ``name`` are on this machine (synthetic always is)."""
    from robens.data.datasets import canonical_name, find_dataset_dir

    name = canonical_name(name)
    return name == "synthetic" or find_dataset_dir(name, root) is not None


def resolve_recipe(
    name: str | os.PathLike | Mapping[str, Any], scale: str = "quick", dataset: str | None = None
) -> tuple[Recipe, str, str, list[str]]:
    """Merge a recipe for ``(scale, dataset)``: ``(recipe, dataset, source, notes)``."""
    from robens.data.datasets import canonical_name

    raw, label = load_recipe(name)
    recipe = _validate(_with_vars(raw, label), label)
    ds = canonical_name(dataset) if dataset else next(iter(recipe.datasets))
    if ds not in recipe.datasets and ds != "synthetic":
        raise ConfigError(
            f"recipe {recipe.name} supports datasets {', '.join(recipe.datasets)} (and synthetic"
            f" for smoke runs), not {dataset!r}"
        )
    if scale not in recipe.scales:
        raise ConfigError(
            f"recipe {recipe.name} has scales {', '.join(recipe.scales)}, not {scale!r}"
        )
    dspec = recipe.datasets.get(ds) or DatasetSpec()
    merged = deep_merge(raw, dspec.set)
    merged = deep_merge(merged, recipe.scales[scale].set)
    merged = deep_merge(merged, dspec.scales.get(scale, {}))
    where = f"{label} (scale {scale}, dataset {ds})"
    merged = _with_vars(merged, where)
    resolved = _validate(merged, where)
    notes = list(recipe.scales[scale].notes) + list(dspec.notes)
    return resolved, ds, label, notes


# ---------------------------------------------------------------------------- planning
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


def _resolve_refs(
    node: Any, refs: dict[str, list[str]], where: str, used: set[str] | None = None
) -> Any:
    """Replace ``"@stage[/grid]"`` strings by checkpoint paths (see the module docstring);
    the stages referred to are added to ``used``."""

    def lookup(s: str) -> list[str] | None:
        m = _REF.match(s)
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
                       else [_resolve_refs(v, refs, f"{where}[{i}]", used)])
        return out
    if isinstance(node, Mapping):
        return {k: _resolve_refs(v, refs, f"{where}.{k}", used) for k, v in node.items()}
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
        suite = _resolve_refs(suite, refs, f"stages.{sname}.suite", needs)
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
            base = _resolve_refs(base, refs, f"{where}.base", needs)
            axes = _resolve_refs(grid.axes, refs, f"{where}.axes", needs)
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


# ---------------------------------------------------------------------------- running
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


def objective_weights(objective: str) -> dict[str, float]:
    """``{"ce": 1.0, "jr": 0.05}`` for ``"ce + 0.05*jr"`` (terms without a factor weigh 1)."""
    out: dict[str, float] = {}
    for piece in str(objective).split("+"):
        m = re.match(r"^\s*(?:([0-9.eE-]+)\s*\*\s*)?([A-Za-z_][\w-]*)\s*$", piece)
        if m:
            out[m.group(2).lower()] = float(m.group(1)) if m.group(1) else 1.0
    return out


def trial_views(plan: RecipePlan) -> list[TrialView]:
    """Every complete trial of the plan with its records (nothing is run)."""
    views = []
    for stage in plan.stages:
        records = collect_records(stage.sweep)
        by_trial: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            by_trial.setdefault(str(r.get("trial")), []).append(r)
        for t in stage.trials:
            if t.id in by_trial:
                views.append(TrialView(stage.name, stage.grid_of[t.id], t.id, t.overrides,
                                       t.config, t.run_dir, by_trial[t.id]))
    return views


@dataclass
class RecipeResult:
    """What :func:`run_recipe` returns: the plan, the summary and where the report is."""

    plan: RecipePlan
    summary: dict[str, Any]
    summary_path: Path
    report: Path | None
    wall_seconds: float


def waves(plan: RecipePlan) -> list[list[StagePlan]]:
    """Consecutive stages grouped so that no stage reads the checkpoints of one in its group."""
    out: list[list[StagePlan]] = []
    for stage in plan.stages:
        if out and not set(stage.needs) & {s.name for s in out[-1]}:
            out[-1].append(stage)
        else:
            out.append([stage])
    return out


def _pending(stage: StagePlan) -> int:
    skey = None
    if stage.sweep.suite is not None:
        from robens.sweep import suite_key

        skey = suite_key(stage.sweep.suite)
    return sum(1 for t in stage.trials if trial_status(t, skey) != "complete")


def _auto_resources(wave: list[StagePlan], backend: str, address: str | None,
                    num_cpus: int | None) -> None:
    """Local Ray with fewer pending trials than idle CPUs: give each trial more threads.

    Not done on a busy machine: oversubscribed OpenMP threads can run ten times slower.
    """
    if backend != "ray" or address is not None:
        return
    cpus = num_cpus or os.cpu_count() or 1
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > cpus / 2:
        return
    pending = sum(_pending(s) for s in wave)
    if not 0 < pending < cpus:
        return
    share = max(1, cpus // pending)
    for stage in wave:
        res = stage.sweep.grid.resources
        if not stage.explicit_resources and res.gpus == 0 and res.cpus == 1 and res.threads == 1:
            stage.sweep.grid.resources = TrialResources(cpus=share, gpus=0, threads=share)


def _run_wave(
    wave: list[StagePlan], backend: str, address: str | None, max_concurrent: int | None,
    num_cpus: int | None, progress: bool, echo: Echo | None,
) -> dict[str, float]:
    """Run the sweeps of one wave: one after the other (serial backend, or a single stage),
    or side by side on one Ray instance (their trials share its CPUs)."""
    seconds: dict[str, float] = {}

    def one(stage: StagePlan, bar: bool) -> None:
        ts = time.perf_counter()
        run_sweep(stage.sweep, address=address, max_concurrent=max_concurrent, progress=bar,
                  backend=backend, num_cpus=num_cpus, echo=echo)
        seconds[stage.name] = round(time.perf_counter() - ts, 1)

    if backend != "ray" or len(wave) == 1:
        for stage in wave:
            one(stage, progress)
        return seconds
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from robens.sweep import _import_ray

    ray = _import_ray()
    owns = not ray.is_initialized()
    if owns:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.WARNING}
        if address:
            kwargs["address"] = address
        elif num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    try:
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            futures = [pool.submit(one, stage, False) for stage in wave]
            errors = [f.exception() for f in futures]
    finally:
        if owns:
            ray.shutdown()
    for err in errors:
        if err is not None:
            raise err
    return seconds


def run_recipe(
    recipe: str | os.PathLike | Mapping[str, Any] | RecipePlan,
    scale: str = "quick",
    dataset: str | None = None,
    output_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    backend: Literal["ray", "serial"] = "ray",
    address: str | None = None,
    max_concurrent: int | None = None,
    num_cpus: int | None = None,
    gpus_per_trial: float | None = None,
    progress: bool = True,
    echo: Echo | None = print,
    report: bool = True,
    command: str | None = None,
) -> RecipeResult:
    """Run every stage of a recipe through the sweep (skipping complete trials), then write
    ``summary.json`` and the report. Stages run in order, except that consecutive stages that
    do not read each other's checkpoints run side by side on the Ray backend (:func:`waves`);
    a failed trial stops the recipe with :class:`~robens.sweep.SweepError` after its wave.

    ``gpus_per_trial`` reserves Ray GPUs per trial (default: 1 when this machine has CUDA and
    the recipe sets none, else 0); the other arguments are those of :func:`plan_recipe` and
    :func:`robens.sweep.run_sweep`.
    """
    say = echo or (lambda _m: None)
    plan = (recipe if isinstance(recipe, RecipePlan)
            else plan_recipe(recipe, scale, dataset, output_dir, overrides))
    if gpus_per_trial is None and backend == "ray":
        import torch

        if torch.cuda.is_available() and plan.recipe.resources.gpus == 0:
            gpus_per_trial = 1.0
    t0 = time.perf_counter()
    started = _dt.datetime.now().isoformat(timespec="seconds")
    say(f"recipe {plan.name}: scale {plan.scale}, dataset {plan.dataset}, {len(plan.stages)}"
        f" stage(s) -> {plan.output_dir}")
    for note in plan.notes:
        say(f"  {note}")
    stage_seconds: dict[str, float] = {}
    done = 0
    for wave in waves(plan):
        for stage in wave:
            done += 1
            if gpus_per_trial is not None:
                res = stage.sweep.grid.resources
                stage.sweep.grid.resources = TrialResources(cpus=res.cpus, gpus=gpus_per_trial,
                                                            threads=res.threads)
            say(f"stage {done}/{len(plan.stages)} {stage.name}: {len(stage.trials)} trial(s)"
                + (f" (reads {', '.join(stage.needs)})" if stage.needs else ""))
        _auto_resources(wave, backend, address, num_cpus)
        stage_seconds.update(_run_wave(wave, backend, address, max_concurrent, num_cpus,
                                       progress, echo))
    wall = round(time.perf_counter() - t0, 1)
    timing = _update_timing(plan, started, wall, stage_seconds, command)
    summary, path = write_summary(plan, timing=timing, command=command)
    say(f"summary: {path} (wall time {wall:.0f} s)")
    for check in summary["checks"]:
        mark = {True: "PASS", False: "FAIL", None: "n/a"}[check["passed"]]
        say(f"  [{mark}] {check['name']}: {check['detail']}")
    index = build_report(plan, summary) if report else None
    if index is not None:
        say(f"report: {index}")
    return RecipeResult(plan, summary, path, index, wall)


def _update_timing(plan: RecipePlan, started: str, wall: float, stages: dict[str, float],
                   command: str | None) -> dict[str, Any]:
    path = plan.output_dir / "timing.json"
    try:
        timing = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        timing = {"invocations": []}
    timing["invocations"].append({
        "started": started, "wall_seconds": wall, "stages": stages, "command": command,
        "cpus": os.cpu_count(),
    })
    atomic_write_json(path, timing)
    return timing


def _trial_seconds(plan: RecipePlan) -> float:
    total = 0.0
    for _, t in plan.trials():
        try:
            total += float(json.loads((t.run_dir / "DONE.json").read_text())["seconds"])
        except (FileNotFoundError, KeyError, ValueError, TypeError):
            continue
    return round(total, 1)


def write_summary(
    plan: RecipePlan, timing: dict[str, Any] | None = None, command: str | None = None
) -> tuple[dict[str, Any], Path]:
    """Compute the recipe's summary from the records of its complete trials and write
    ``summary.json``; returns ``(summary, path)``."""
    if timing is None:
        try:
            timing = json.loads((plan.output_dir / "timing.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            timing = {"invocations": []}
    views = trial_views(plan)
    summary = summarize(plan, views)
    total = sum(len(s.trials) for s in plan.stages)
    invocations = timing.get("invocations", [])
    summary.update({
        "recipe": plan.name,
        "title": plan.recipe.title,
        "scale": plan.scale,
        "dataset": plan.dataset,
        "source": plan.source,
        "output_dir": str(plan.output_dir),
        "notes": plan.notes,
        "overrides": plan.overrides,
        "trials_complete": len(views),
        "trials_total": total,
        "wall_seconds": round(sum(i.get("wall_seconds", 0.0) for i in invocations), 1),
        "wall_seconds_last": invocations[-1]["wall_seconds"] if invocations else None,
        "trial_seconds": _trial_seconds(plan),
        "command": command or (invocations[-1].get("command") if invocations else None),
        "cpus": os.cpu_count(),
        "finished": _dt.datetime.now().isoformat(timespec="seconds"),
    })
    path = plan.output_dir / "summary.json"
    atomic_write_json(path, summary)
    return summary, path


def build_report(plan: RecipePlan, summary: dict[str, Any] | None = None) -> Path:
    """The recipe's report (``report/index.html``, ``summary.md``, ``full/``)."""
    from robens.report.reproduce import build_recipe_report

    if summary is None:
        summary, _ = write_summary(plan)
    dirs = [t.run_dir for _, t in plan.trials() if (t.run_dir / "DONE.json").exists()]
    return build_recipe_report(summary, plan.report_dir, dirs)


# ---------------------------------------------------------------------------- summaries
def pct(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{100 * v:.{digits}f}"


def _pair(values: list[float | None]) -> str:
    return "/".join(pct(v) for v in values)


def _table(key: str, title: str, headers: list[str], rows: list[list[str]],
           classes: list[str] | None = None, note: str = "", source: str = "") -> dict[str, Any]:
    return {"key": key, "title": title, "headers": headers, "rows": rows,
            "classes": classes or [""] * len(rows), "note": note, "source": source}


def _check(name: str, passed: bool | None, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": passed, "detail": detail}


def summarize(plan: RecipePlan, views: list[TrialView]) -> dict[str, Any]:
    """``{"tables", "checks", "data"}`` of the recipe's summary kind."""
    fn = SUMMARIES[plan.recipe.summary]
    if not views:
        return {"tables": [], "checks": [_check("results", None, "no trial has finished yet")],
                "data": {}}
    return fn(plan, views)


def _ref_dataset(plan: RecipePlan, published: list[str]) -> str | None:
    """The dataset whose published rows we show: ours, else the recipe's default, else the
    first one published."""
    for d in (plan.dataset, next(iter(plan.recipe.datasets))):
        if d in published:
            return d
    return published[0] if published else None


# ------------------------------------------------------------ Jacobian ensembles (Co et al.)
JE_FAMILIES = {"standard": "Standard", "jr_only": "JR only", "bagging": "Bagging",
               "snapshot": "Snapshot", "soft_voting": "Soft voting", "joint": "Joint"}


def je_family(view: TrialView) -> str:
    """``standard``, ``jr_only``, ``bagging``, ``snapshot``, ``soft_voting`` or ``joint``."""
    cfg = view.config
    if cfg.training.strategy in ("bagging", "snapshot"):
        return cfg.training.strategy
    if cfg.training.soft_voting == "val_accuracy":
        return "soft_voting"
    if cfg.model.members == 1:
        return "jr_only" if view.reg_lambda("jr") > 0 else "standard"
    return "joint"


def _summary_jacobian(plan: RecipePlan, views: list[TrialView]) -> dict[str, Any]:
    from robens.report.reproduce import published_table

    eps_list = [float(e) for e in plan.recipe.vars.get("uap_eps", [0.1, 0.15, 0.2, 0.25])]
    rows_data = []
    for v in views:
        clean = v.clean()
        uap = [v.value("robust_accuracy", threat_model="universal", eps=e) for e in eps_list]
        avg = sum(uap) / len(uap) if uap and all(u is not None for u in uap) else None
        weighted = 0.5 * (clean + avg) if clean is not None and avg is not None else None
        rows_data.append({"trial": v.id, "family": je_family(v), "members": v.members,
                          "lambda": v.reg_lambda("jr"), "clean": clean, "uap": uap,
                          "avg_uap": avg, "weighted": weighted})
    rows_data.sort(key=lambda r: -(r["weighted"] if r["weighted"] is not None else -1))
    headers = ["Ensemble", "M", "λ_JR", "Clean"] + [f"UAP {e:g}" for e in eps_list] + [
        "Avg UAP", "Weighted"]
    rows = [[JE_FAMILIES[r["family"]], str(r["members"]), f"{r['lambda']:g}", pct(r["clean"])]
            + [pct(u) for u in r["uap"]] + [pct(r["avg_uap"]), pct(r["weighted"])]
            for r in rows_data]
    ours = _table("ours", f"Our runs ({plan.dataset}, {plan.scale} scale), best weighted first",
                  headers, rows, note="Accuracy in % on the suite's test subset; UAP = worst"
                  " (highest fooling rate) SGD-UAP over the seeds; weighted = (clean + avg UAP)/2.")

    pub = published_table("je_table1")
    ref = _ref_dataset(plan, [r["dataset"] for r in pub["rows"]])
    cmp_rows, classes = [], []
    for p in [r for r in pub["rows"] if r["dataset"] == ref]:
        cmp_rows.append([f"published ({ref})", JE_FAMILIES[p["ensemble"]], str(p["members"]),
                         f"{p['lambda']:g}", f"{p['clean']:g}", f"{p['avg_uap']:g}",
                         f"{p['weighted']:g}"])
        classes.append("published")
        for r in rows_data:
            if (r["family"], r["members"]) == (p["ensemble"], p["members"]) and abs(
                r["lambda"] - p["lambda"]
            ) < 1e-9:
                cmp_rows.append(["ours", JE_FAMILIES[r["family"]], str(r["members"]),
                                 f"{r['lambda']:g}", pct(r["clean"]), pct(r["avg_uap"]),
                                 pct(r["weighted"])])
                classes.append("ours")
    best = _je_best(rows_data)
    for label, r in best.items():
        if r is not None:
            cmp_rows.append([f"ours: best {label}", JE_FAMILIES[r["family"]], str(r["members"]),
                             f"{r['lambda']:g}", pct(r["clean"]), pct(r["avg_uap"]),
                             pct(r["weighted"])])
            classes.append("ours")
    note = "Published rows with our run of the same recipe (if any) below each; then our best" \
        " run of each kind."
    if ref != plan.dataset:
        note += f" Published on {ref}, ours on {plan.dataset}."
    comparison = _table("published", pub["title"], ["", "Ensemble", "M", "λ_JR", "Clean",
                                                      "Avg UAP", "Weighted"],
                        cmp_rows, classes, note, pub["source"])

    ens, single, std = (best[k] for k in ("JR ensemble", "JR only", "standard"))
    if ens and single and std:
        ok = ens["weighted"] > single["weighted"] > std["weighted"]
        detail = (f"best JR ensemble ({JE_FAMILIES[ens['family']]} M={ens['members']}"
                  f" λ={ens['lambda']:g}) {pct(ens['weighted'])} "
                  f"{'>' if ens['weighted'] > single['weighted'] else '<='} best JR-only single"
                  f" (λ={single['lambda']:g}) {pct(single['weighted'])} "
                  f"{'>' if single['weighted'] > std['weighted'] else '<='} standard"
                  f" {pct(std['weighted'])} (weighted accuracy %; paper: 63.5 > 55.1 > 50.9"
                  " on F-MNIST)")
        checks = [_check("paper's ordering of weighted accuracy", ok, detail)]
    else:
        checks = [_check("paper's ordering of weighted accuracy", None,
                         "needs a standard model, a JR-only model and a JR ensemble")]
    data = {"rows": rows_data, "uap_eps": eps_list,
            "best": {k: (v["trial"] if v else None) for k, v in best.items()}}
    return {"tables": [ours, comparison], "checks": checks, "data": data}


def _je_best(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    def best(pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        cands = [r for r in rows if pred(r) and r["weighted"] is not None]
        return max(cands, key=lambda r: r["weighted"]) if cands else None

    return {
        "JR ensemble": best(lambda r: r["members"] > 1 and r["lambda"] > 0),
        "JR only": best(lambda r: r["family"] == "jr_only"),
        "standard": best(lambda r: r["family"] == "standard"),
        "ensemble without JR": best(lambda r: r["members"] > 1 and r["lambda"] == 0),
    }


# ------------------------------------------------------------ GAL / diversity training
GAL_ATTACKS = [("fgsm", "FGSM"), ("rfgsm", "R-FGSM"), ("ifgsm", "I-FGSM"),
               ("mifgsm", "MI-FGSM"), ("pgd_cw", "PGD-CW")]
GAL_ROLES = {"base": "Base", "div": "Div", "ens": "Ens", "ens-div": "Ens+Div"}
_GAL_MODEL = {"conv3": "Conv-3", "conv4": "Conv-4", "resnet20": "ResNet-20"}


def _roles(views: list[TrialView], roles: Mapping[str, str]) -> dict[str, TrialView]:
    out: dict[str, TrialView] = {}
    for v in views:
        if v.name in roles and v.name not in out:
            out[v.name] = v
    return out


def _summary_gal(plan: RecipePlan, views: list[TrialView]) -> dict[str, Any]:
    from robens.report.reproduce import published_table

    eps = [float(e) for e in plan.recipe.vars.get("eps", [0.1, 0.3])]
    targets = _roles(views, GAL_ROLES)
    cells: dict[str, dict[str, list[float | None]]] = {}
    rows, gaas_rows = [], []
    gaas_eps = sorted({float(r["eps"]) for v in targets.values()
                       for r in v.select("gaas_success")})
    ks = sorted({int(r["k"]) for v in targets.values() for r in v.select("gaas_success")})
    for role, label in GAL_ROLES.items():
        v = targets.get(role)
        if v is None:
            continue
        cells[role] = {a: [v.value("robust_accuracy", threat_model="transfer", attack=a, eps=e)
                           for e in eps] for a, _ in GAL_ATTACKS}
        coh = v.value("coherence")
        rows.append([label, pct(v.clean())] + [_pair(cells[role][a]) for a, _ in GAL_ATTACKS]
                    + ["—" if coh is None else f"{coh:.3f}"])
        for e in gaas_eps:
            gaas_rows.append([label, f"{e:g}"] + [pct(v.value("gaas_success", eps=e, k=k))
                                                  for k in ks])
    headers = ["T", "Clean"] + [h for _, h in GAL_ATTACKS] + ["coherence"]
    eps_txt = "/".join(f"{e:g}" for e in eps)
    ours = _table("ours", f"Our runs ({plan.dataset}, {plan.scale} scale): black-box accuracy %"
                  f" at eps {eps_txt}", headers, rows,
                  note="Transfer attacks crafted on the separately trained surrogate ensemble"
                  " (average CE of its members); coherence = mean over test images of the max"
                  " pairwise cosine of member loss gradients.")
    pub = published_table("gal_table2")
    ref = _ref_dataset(plan, [r["dataset"] for r in pub["rows"]])
    arch = _GAL_MODEL.get(str(views[0].config.model.arch))
    pub_rows = [r for r in pub["rows"] if r["dataset"] == ref]
    if arch and any(r["model"] == arch for r in pub_rows):
        pub_rows = [r for r in pub_rows if r["model"] == arch]
    cmp_rows, classes = [], []
    for p in pub_rows:
        cmp_rows.append([f"published {p['model']} ({ref})", p["training"], f"{p['clean']:g}"]
                        + ["/".join(f"{x:g}" for x in p[a]) for a, _ in GAL_ATTACKS])
        classes.append("published")
        role = {v: k for k, v in GAL_ROLES.items()}.get(p["training"])
        v = targets.get(role) if role else None
        if v is not None and (p["model"] == pub_rows[-1]["model"]):
            cmp_rows.append([f"ours ({plan.dataset})", p["training"], pct(v.clean())]
                            + [_pair(cells[role][a]) for a, _ in GAL_ATTACKS])
            classes.append("ours")
    note = f"Ours at eps {eps_txt}."
    if ref != plan.dataset:
        note += f" Published on {ref} (eps {pub['eps'].get(ref)}), ours on {plan.dataset}."
    comparison = _table("published", pub["title"], ["", "T", "Clean"]
                        + [h for _, h in GAL_ATTACKS], cmp_rows, classes, note, pub["source"])
    tables = [ours, comparison]
    if gaas_rows:
        tables.append(_table("gaas", "GAAS: mean fraction of k orthogonal gradient-aligned"
                             " directions that fool the model (%)", ["T", "eps"]
                             + [f"k={k}" for k in ks], gaas_rows,
                             note="Lower = a smaller adversarial subspace (Tramèr et al. 2017)."))
    checks = []

    def compare(a: str, b: str, idx: list[int]) -> tuple[int, int, int, list[str]]:
        """Cells where ``a`` beats / loses to / ties ``b``, and the lost ones."""
        won = lost = tied = 0
        names = []
        for att, label in GAL_ATTACKS:
            for i in idx:
                x, y = cells[a][att][i], cells[b][att][i]
                if x is None or y is None:
                    continue
                if x > y:
                    won += 1
                elif x < y:
                    lost += 1
                    names.append(f"{label}@{eps[i]:g} ({pct(x)} vs {pct(y)})")
                else:
                    tied += 1
        return won, lost, tied, names

    if "div" in cells and "base" in cells:
        won, lost, tied, names = compare("div", "base", [0])
        total = won + lost + tied
        checks.append(_check(f"Div beats Base under every transfer attack at eps {eps[0]:g}",
                             total > 0 and won == total,
                             f"{won}/{total} attacks" + (f"; not: {', '.join(names)}"
                                                         if names else "")))
    if "ens-div" in cells and "ens" in cells:
        won, lost, tied, names = compare("ens-div", "ens", list(range(len(eps))))
        by_eps = [compare("ens-div", "ens", [i])[:3] for i in range(len(eps))]
        per_eps = "; ".join(
            f"eps {e:g}: {c[0]}/{sum(c)} won" for e, c in zip(eps, by_eps, strict=True))
        checks.append(_check(
            "Ens+Div beats Ens on most (attack, eps) cells (more wins than losses)",
            won + lost > 0 and won > lost,
            f"{won} won, {lost} lost, {tied} tied of {won + lost + tied} cells ({per_eps})"
            + (f"; lost: {', '.join(names)}" if names else "")
            + " [paper, MNIST: 5 won, 1 lost, 4 tied]"))
    data = {"eps": eps, "cells": cells, "clean": {k: v.clean() for k, v in targets.items()},
            "coherence": {k: v.value("coherence") for k, v in targets.items()}}
    return {"tables": tables, "checks": checks, "data": data}


# ------------------------------------------------------------ ADP
ADP_ROLES = {"baseline": "Baseline", "adp-2-0": "ADP 2,0", "adp-2-0.5": "ADP 2,0.5"}
_PARAM_OF = {"cw": "c", "ead": "c", "jsma": "gamma"}


def _attack_param(r: dict[str, Any]) -> float:
    key = _PARAM_OF.get(str(r.get("attack")))
    params = r.get("params") or {}
    return float(params.get(key, 0.0)) if key else float(r.get("eps", 0.0))


def _summary_adp(plan: RecipePlan, views: list[TrialView]) -> dict[str, Any]:
    from robens.report.reproduce import published_table

    targets = _roles(views, ADP_ROLES)
    cells: list[tuple[str, float]] = []
    for v in targets.values():
        for r in v.select("robust_accuracy", threat_model="white_box"):
            key = (str(r["attack"]), _attack_param(r))
            if key not in cells:
                cells.append(key)
    order = ["fgsm", "bim", "ifgsm", "pgd", "mifgsm", "jsma", "cw", "ead"]
    cells.sort(key=lambda c: (order.index(c[0]) if c[0] in order else 99, c[1]))

    def ours(role: str, attack: str, param: float) -> float | None:
        v = targets.get(role)
        if v is None:
            return None
        recs = [r for r in v.select("robust_accuracy", threat_model="white_box", attack=attack)
                if abs(_attack_param(r) - param) < 1e-12]
        return float(recs[0]["value"]) if recs else None

    pub = published_table("adp_table2")
    ref = _ref_dataset(plan, [r["dataset"] for r in pub["rows"]])
    pubs = {(r["attack"], float(r["param"])): r for r in pub["rows"] if r["dataset"] == ref}
    headers = ["Attack", "Param"] + [f"ours {lab}" for lab in ADP_ROLES.values()] + [
        f"published {lab} ({ref})" for lab in ADP_ROLES.values()]
    rows = [["Clean", "—"] + [pct(targets[k].clean()) if k in targets else "—"
                               for k in ADP_ROLES] + ["—"] * 3]
    values: dict[str, dict[str, float | None]] = {}
    for attack, param in cells:
        vals = [ours(k, attack, param) for k in ADP_ROLES]
        values[f"{attack}@{param:g}"] = dict(zip(ADP_ROLES, vals, strict=True))
        p = pubs.get(("bim" if attack == "ifgsm" else attack, param))
        rows.append([attack.upper(), f"{param:g}"] + [pct(x) for x in vals]
                    + ([f"{p[k]:g}" for k in ("baseline", "adp_2_0", "adp_2_05")] if p
                       else ["—"] * 3))
    note = ("White-box accuracy % on the ensemble's averaged prediction; Param = eps"
            " (FGSM/BIM/PGD/MIM), c (C&W, EAD).")
    if ref != plan.dataset:
        note += f" Published on {ref}, ours on {plan.dataset}."
    table = _table("published", f"{pub['title']} — ours ({plan.dataset}, {plan.scale} scale)"
                   " beside published", headers, rows, note=note, source=pub["source"])
    checks = []
    for role in ("adp-2-0.5", "adp-2-0"):
        if role not in targets or "baseline" not in targets:
            continue
        pairs = [(d[role], d["baseline"]) for d in values.values()
                 if d.get(role) is not None and d.get("baseline") is not None]
        won = sum(1 for a, b in pairs if a > b)
        checks.append(_check(f"{ADP_ROLES[role]} beats Baseline on most white-box attacks",
                             bool(pairs) and won > len(pairs) / 2, f"{won}/{len(pairs)} attacks"))
    return {"tables": [table], "checks": checks,
            "data": {"cells": values, "clean": {k: v.clean() for k, v in targets.items()}}}


# ------------------------------------------------------------ GDR (Adam & Speciel 2020)
def spearman(x: list[float], y: list[float]) -> tuple[float, float]:
    """Spearman's rank correlation and its two-sided p-value (``nan`` when undefined)."""
    import numpy as np
    from scipy import stats

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    res = stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def _summary_gdr(plan: RecipePlan, views: list[TrialView]) -> dict[str, Any]:
    from robens.report.reproduce import published_table

    eps = [float(e) for e in plan.recipe.vars.get("eps", [0.03, 0.06, 0.09])]
    attacks = list(plan.recipe.vars.get("attacks", ["fgsm", "pgd", "mifgsm"]))
    points = []
    for v in views:
        g = v.value("gdr")
        if g is None:
            continue
        asr = {f"{a}@{e:g}": v.value("attack_success_rate", threat_model="white_box", attack=a,
                                     eps=e) for a in attacks for e in eps}
        terms = {k: w for k, w in v.terms.items() if k not in ("ce", "ensemble_ce")}
        points.append({"trial": v.id, "objective": v.config.objective, "seed": v.config.seed,
                       "terms": terms, "gdr": g, "clean": v.clean(), "asr": asr})
    points.sort(key=lambda p: p["gdr"])
    headers = ["objective", "seed", "Clean %", "GDR"] + [f"ASR {a} {e:g} %" for a in attacks
                                                         for e in eps]
    rows = [[p["objective"], str(p["seed"]), pct(p["clean"]), f"{p['gdr']:.4f}"]
            + [pct(p["asr"][f"{a}@{e:g}"], 2) for a in attacks for e in eps] for p in points]
    ours = _table("ours", f"Our ensembles ({plan.dataset}, {plan.scale} scale), by GDR", headers,
                  rows, note="GDR = mean over test images of the Gaussian-orthant rating of the"
                  " members' loss gradients (lower = more diverse); ASR = white-box attack success"
                  " rate on the ensemble (fraction of correctly classified images fooled).")
    corr_rows, corr = [], {}
    for a in attacks:
        for e in eps:
            key = f"{a}@{e:g}"
            pairs = [(p["gdr"], p["asr"][key]) for p in points if p["asr"][key] is not None]
            rho, pval = spearman([x for x, _ in pairs], [y for _, y in pairs])
            corr[key] = {"rho": rho, "p": pval, "n": len(pairs)}
            corr_rows.append([a, f"{e:g}", str(len(pairs)), _num(rho),
                              "—" if math.isnan(pval) else f"{pval:.3g}"])
    pub = published_table("gdr_blog")
    corr_table = _table("correlation", "Spearman rank correlation between GDR and attack success"
                        " rate", ["attack", "eps", "n", "rho", "p"], corr_rows,
                        note=pub["note"], source=pub["source"])
    rhos = [c["rho"] for c in corr.values() if not math.isnan(c["rho"])]
    n = len(points)
    if rhos:
        pos = sum(1 for r in rhos if r > 0)
        med = sorted(rhos)[len(rhos) // 2]
        checks = [_check("rank correlation between GDR and attack success is positive (blog)",
                         pos > len(rhos) / 2,
                         f"{pos}/{len(rhos)} (attack, eps) cells positive, median rho"
                         f" {med:+.2f}, n = {n} ensembles each")]
    else:
        checks = [_check("rank correlation between GDR and attack success is positive (blog)",
                         None, f"undefined with n = {n} ensembles")]
    gdrs = [p["gdr"] for p in points]
    data = {"points": points, "correlation": corr, "n": n,
            "gdr_range": [min(gdrs), max(gdrs)] if gdrs else None}
    return {"tables": [ours, corr_table], "checks": checks, "data": data}


def _num(v: float | None, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.{digits}f}"


# ------------------------------------------------------------ MMC
MMC_ROLES = {"sce": "SCE", "mmc": "MMC-10"}


def _summary_mmc(plan: RecipePlan, views: list[TrialView]) -> dict[str, Any]:
    from robens.report.reproduce import published_table

    eps = [float(e) for e in plan.recipe.vars.get("eps", [8 / 255, 16 / 255])]
    steps = [int(s) for s in plan.recipe.vars.get("pgd_steps", [10, 50])]
    targets = _roles(views, MMC_ROLES)

    def acc(v: TrialView, s: int, e: float, cw: bool = False) -> float | None:
        recs = [r for r in v.select("robust_accuracy", threat_model="white_box", attack="pgd",
                                    eps=e) if int((r.get("params") or {}).get("steps", 10)) == s
                and ((r.get("params") or {}).get("loss") == "cw") == cw]
        return float(recs[0]["value"]) if recs else None

    cells = {k: {f"pgd{s}-un@{e:g}": acc(v, s, e) for e in eps for s in steps}
             for k, v in targets.items()}
    headers = ["", "Method", "Clean"] + [f"PGD{s}-un eps {e:.3g}" for e in eps for s in steps]
    rows, classes = [], []
    pub = published_table("mmc_cifar10")
    for p in pub["rows"]:
        if p["method"] not in ("SCE", "MMC-10"):
            continue
        # published (tar10, un10, tar50, un50) per eps: keep the untargeted ones
        # published per eps: (PGD10-tar, PGD10-un, PGD50-tar, PGD50-un); keep the untargeted
        pub_cells = [f"{p[key][{10: 1, 50: 3}[s]]:g}" if i < 2 and s in (10, 50) else "—"
                     for i, key in enumerate(("e8", "e16", "e8", "e16")[: len(eps)])
                     for s in steps]
        rows.append(["published (cifar10, eps 8/255, 16/255)", p["method"], f"{p['clean']:g}"]
                    + pub_cells)
        classes.append("published")
        role = {v: k for k, v in MMC_ROLES.items()}[p["method"]]
        if role in targets:
            v = targets[role]
            rows.append([f"ours ({plan.dataset})", p["method"], pct(v.clean())]
                        + [pct(cells[role][f"pgd{s}-un@{e:g}"]) for e in eps for s in steps])
            classes.append("ours")
    note = ("Adaptive white-box PGD: the MMC model is attacked through its MMC loss, the SCE"
            f" model through CE; ours at eps {', '.join(f'{e:.3g}' for e in eps)}. Targeted"
            " PGD columns are not run (the suite has no target selection).")
    table = _table("published", pub["title"], headers, rows, classes, note, pub["source"])
    checks = []
    if "sce" in cells and "mmc" in cells:
        keys = [k for k in cells["mmc"] if cells["mmc"][k] is not None
                and cells["sce"][k] is not None]
        won = sum(1 for k in keys if cells["mmc"][k] > cells["sce"][k])
        checks.append(_check("MMC beats SCE under every adaptive PGD attack",
                             bool(keys) and won == len(keys), f"{won}/{len(keys)} cells"))
    tables = [table]
    cw_cells = {k: {f"pgd{s}-cw@{e:g}": acc(v, s, e, cw=True) for e in eps for s in steps}
                for k, v in targets.items()}
    cw_keys = [k for k in cw_cells.get("mmc", {})
               if cw_cells["mmc"][k] is not None and cw_cells.get("sce", {}).get(k) is not None]
    if cw_keys:
        tables.append(_table(
            "cw", "A stronger adaptive attack: PGD with the CW margin loss on both models' scores",
            ["Method"] + [k.replace("pgd", "PGD").replace("-cw@", "-CW eps ") for k in cw_keys],
            [[MMC_ROLES[r]] + [pct(cw_cells[r][k]) for k in cw_keys] for r in ("sce", "mmc")],
            note="max_{j != y} h_j - h_y (kappa 0) on the MMC scores h = -1/2 ||z - mu||^2 and on"
            " the SCE logits; not in the paper's table."))
        n = min(_n_attacked(targets[r], eps) for r in ("sce", "mmc"))
        details, won = [], 0
        lo, hi = 1 / max(n, 1), 1 - 1 / max(n, 1)  # floor: no zero-width error at 0%
        for k in cw_keys:
            a, b = cw_cells["mmc"][k], cw_cells["sce"][k]
            pa, pb = min(max(a, lo), hi), min(max(b, lo), hi)
            se = math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / max(n, 1))
            won += int(a - b > 2 * se)
            details.append(f"{k}: {pct(a)} vs {pct(b)} (2 SE = {pct(2 * se)})")
        checks.append(_check(
            "MMC beats SCE by more than 2 standard errors under PGD with the CW margin loss",
            won == len(cw_keys), f"{won}/{len(cw_keys)} cells; " + "; ".join(details)))
    return {"tables": tables, "checks": checks,
            "data": {"cells": cells, "cw_cells": cw_cells,
                     "clean": {k: v.clean() for k, v in targets.items()}}}


def _n_attacked(v: TrialView, eps: list[float]) -> int:
    """Images of the trial's white-box PGD records (the smallest count)."""
    ns = [int(r.get("n") or 0) for e in eps
          for r in v.select("robust_accuracy", threat_model="white_box", attack="pgd", eps=e)]
    return min(ns) if ns else 0


# ------------------------------------------------------------ RCE detection
RCE_ROLES = {"ce": "CE", "rce": "RCE"}
RCE_DETECTORS = [("confidence", "Confidence"), ("non_me", "non-ME"),
                 ("kernel_density", "K-density")]


def _summary_rce(plan: RecipePlan, views: list[TrialView]) -> dict[str, Any]:
    from robens.report.reproduce import published_table

    targets = _roles(views, RCE_ROLES)
    attacks: list[str] = []
    for v in targets.values():
        for r in v.select("detection_auc"):
            if r["attack"] not in attacks:
                attacks.append(r["attack"])
    pub = published_table("rce_detection")
    ref = _ref_dataset(plan, [r["dataset"] for r in pub["rows"]])
    pubs = {r["attack"]: r for r in pub["rows"] if r["dataset"] == ref}
    headers = ["Attack", "pairs CE/RCE"] + [f"ours {h} CE→RCE" for _, h in RCE_DETECTORS] + [
        f"published {h} ({ref})" for _, h in RCE_DETECTORS]
    rows, aucs = [], {}
    for a in attacks:
        vals = {k: {d: (targets[k].value("detection_auc", attack=a, detector=d)
                        if k in targets else None) for d, _ in RCE_DETECTORS} for k in RCE_ROLES}
        aucs[a] = vals
        pairs = [str(targets[k].select("detection_auc", attack=a)[0].get("n_pairs", "?"))
                 if k in targets and targets[k].select("detection_auc", attack=a) else "—"
                 for k in RCE_ROLES]
        p = pubs.get(a)
        rows.append([a, "/".join(pairs)]
                    + [f"{pct(vals['ce'][d])}→{pct(vals['rce'][d])}" for d, _ in RCE_DETECTORS]
                    + ([f"{p[d][0]:g}→{p[d][1]:g}" for d, _ in RCE_DETECTORS] if p
                       else ["—"] * 3))
    note = ("ROC-AUC (%) of clean (correct) vs successful adversarial pairs; CE-trained →"
            " RCE-trained model.")
    if ref != plan.dataset:
        note += f" Published on {ref}, ours on {plan.dataset}."
    clean = {k: v.clean() for k, v in targets.items()}
    table = _table("published", pub["title"], headers, rows, note=note, source=pub["source"])
    checks = []
    for d, label in RCE_DETECTORS[1:2]:
        cmp = [(v["rce"][d], v["ce"][d]) for v in aucs.values()
               if v["rce"][d] is not None and v["ce"][d] is not None]
        won = sum(1 for r, c in cmp if r > c)
        checks.append(_check(f"RCE raises the {label} AUC on most attacks",
                             bool(cmp) and won > len(cmp) / 2, f"{won}/{len(cmp)} attacks"))
    return {"tables": [table], "checks": checks, "data": {"auc": aucs, "clean": clean}}


SUMMARIES: dict[str, Callable[[RecipePlan, list[TrialView]], dict[str, Any]]] = {
    "jacobian": _summary_jacobian,
    "gal": _summary_gal,
    "adp": _summary_adp,
    "gdr": _summary_gdr,
    "mmc": _summary_mmc,
    "rce": _summary_rce,
}


__all__ = [
    "RECIPES_DIR",
    "Recipe",
    "RecipePlan",
    "RecipeResult",
    "StagePlan",
    "TrialView",
    "build_report",
    "dataset_available",
    "deep_merge",
    "format_recipe_plan",
    "list_recipes",
    "load_recipe",
    "objective_weights",
    "plan_recipe",
    "recipe_path",
    "resolve_recipe",
    "run_recipe",
    "spearman",
    "summarize",
    "trial_views",
    "write_summary",
]
