"""Finding, loading and resolving recipes: ``$var`` substitution and the scale and dataset
merges (recipe <- ``datasets[d].set`` <- ``scales[s].set`` <- ``datasets[d].scales[s]``)."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robens.config import load_yaml, validate_schema
from robens.errors import ConfigError
from robens.recipes.schema import DatasetSpec, Recipe
from robens.utils import deep_merge

RECIPES_DIR = Path(__file__).resolve().parents[2] / "configs" / "reproduce"
VAR_PATTERN = re.compile(r"^\$([A-Za-z_]\w*)$")


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


def validate_recipe(data: Any, label: str) -> Recipe:
    """``data`` validated as a :class:`Recipe` (errors name ``label`` and the key)."""
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
    validate_recipe(with_vars(data, label), label)
    return data, label


def with_vars(data: Mapping[str, Any], label: str) -> dict[str, Any]:
    """``data`` with its ``$vars`` substituted in base, suite and stages."""
    out = dict(data)
    variables = out.get("vars") or {}
    if not isinstance(variables, Mapping):
        raise ConfigError(f"recipe {label}: vars must be a mapping")
    for key in ("base", "suite", "stages"):
        if key in out:
            out[key] = substitute(out[key], variables, key)
    return out


def substitute(node: Any, variables: Mapping[str, Any], where: str, depth: int = 0) -> Any:
    """Replace ``"$name"`` strings by ``variables[name]`` (whose own ``$names`` are replaced
    too, up to 8 levels)."""
    if isinstance(node, str):
        m = VAR_PATTERN.match(node)
        if not m:
            return node
        if m.group(1) not in variables:
            raise ConfigError(f"{where}: unknown variable {node!r} (vars: {sorted(variables)})")
        if depth >= 8:
            raise ConfigError(f"{where}: variables nest too deeply (a cycle?) at {node!r}")
        return substitute(copy.deepcopy(variables[m.group(1)]), variables, where, depth + 1)
    if isinstance(node, Mapping):
        return {k: substitute(v, variables, f"{where}.{k}", depth) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, variables, f"{where}[{i}]", depth) for i, v in enumerate(node)]
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
    recipe = validate_recipe(with_vars(raw, label), label)
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
    merged = with_vars(merged, where)
    resolved = validate_recipe(merged, where)
    notes = list(recipe.scales[scale].notes) + list(dspec.notes)
    return resolved, ds, label, notes


__all__ = [
    "RECIPES_DIR",
    "dataset_available",
    "list_recipes",
    "load_recipe",
    "recipe_path",
    "resolve_recipe",
    "substitute",
    "validate_recipe",
    "with_vars",
]
