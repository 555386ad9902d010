"""Reproduction recipes: one YAML per published result, run through the sweep, reported beside
the published numbers (``robens reproduce NAME --scale quick|paper --dataset ...``).

The package: :mod:`~robens.recipes.schema` (the pydantic models), :mod:`~robens.recipes.resolution`
(loading, ``$vars``, the scale and dataset merges), :mod:`~robens.recipes.planning` (stages of
trials, ``@stage`` references, waves), :mod:`~robens.recipes.running` (each stage on Ray as soon
as the stages it reads are done, timing),
:mod:`~robens.recipes.results` (summary and report) and :mod:`robens.recipes.summaries` (one file
per paper, registered by name). A new paper: one YAML in ``configs/reproduce/`` and one summary.

A recipe lives in ``configs/reproduce/<name>.yaml``::

    name: diversity-training
    title: GAL (Kariyappa & Qureshi 2019), Table 2
    summary: gal                   # the summary computed from the records (SUMMARIES)
    published: [gal_table2]        # robens.report.published tables the summary reads
    datasets:                      # supported datasets (first = default) and their overrides
      fashion-mnist: {notes: [...], set: {vars: {eps: [0.1, 0.2]}}}
      mnist: {set: {...}, scales: {paper: {...}}}
    vars: {eps: [0.1, 0.3]}        # a string "$eps" anywhere in base/suite/stages -> vars["eps"]
    base: {...}                    # experiment config shared by every stage
    suite: {...}                   # attack suite shared by every stage (see robens.evaluate.suite)
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

from robens.recipes.planning import (
    RecipePlan,
    StagePlan,
    default_output_dir,
    estimated_cost,
    format_recipe_plan,
    plan_recipe,
    waves,
)
from robens.recipes.resolution import (
    RECIPES_DIR,
    dataset_available,
    list_recipes,
    load_recipe,
    recipe_path,
    resolve_recipe,
)
from robens.recipes.results import build_report, summarize, trial_views, write_summary
from robens.recipes.running import RecipeResult, run_recipe
from robens.recipes.schema import REQUIRED_SCALES, Recipe
from robens.recipes.summaries import SUMMARIES, spearman
from robens.recipes.views import TrialView

__all__ = [
    "RECIPES_DIR",
    "REQUIRED_SCALES",
    "SUMMARIES",
    "Recipe",
    "RecipePlan",
    "RecipeResult",
    "StagePlan",
    "TrialView",
    "build_report",
    "dataset_available",
    "default_output_dir",
    "estimated_cost",
    "format_recipe_plan",
    "list_recipes",
    "load_recipe",
    "plan_recipe",
    "recipe_path",
    "resolve_recipe",
    "run_recipe",
    "spearman",
    "summarize",
    "trial_views",
    "waves",
    "write_summary",
]
