"""Surrogates of transfer attacks: a checkpoint, or a ``train:`` section trained on demand.

A suite names its surrogates (``surrogates: {baseline: {train: {seed: 1}}}``); an attack entry
or a metric refers to one by name or by checkpoint path. A ``train:`` section holds overrides
of the target checkpoint's config (nested or dotted keys); the run goes to
``<out>/surrogates/<name>`` unless the section sets ``output_dir``. Training is not done here:
the caller passes a ``train_fn(config, progress=, echo=) -> checkpoint path`` (robens'
own is :func:`robens.pipeline.train_checkpoint`), so evaluation never imports the trainer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, model_validator

from robens.config import ExperimentConfig, validate_config
from robens.errors import ConfigError
from robens.factory import load_ensemble
from robens.records import records_from_meta
from robens.utils import deep_merge

Echo = Callable[[str], None]


class TrainFn(Protocol):
    """Trains ``config`` (resuming; nothing to do when complete) and returns its checkpoint."""

    def __call__(self, config: ExperimentConfig, *, progress: bool, echo: Echo) -> Path: ...


class SurrogateSpec(BaseModel):
    """A surrogate for transfer attacks: an existing ``checkpoint``, or a ``train`` section
    (overrides of the target checkpoint's config, nested or dotted keys; trained by the
    ``train_fn`` into ``output_dir``, default ``<out>/surrogates/<name>``)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str | None = None
    train: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> SurrogateSpec:
        if (self.checkpoint is None) == (self.train is None):
            raise ValueError("give exactly one of 'checkpoint' or 'train'")
        return self


def surrogate_config(
    meta: dict[str, Any], name: str, overrides: dict[str, Any], out: Path
) -> ExperimentConfig:
    """The validated config of surrogate ``name``: the target's config plus ``overrides``."""
    base = copy.deepcopy(meta.get("config", {}))
    base["name"] = f"{base.get('name', 'experiment')}-surrogate-{name}"
    base["output_dir"] = str(out / "surrogates" / name)
    return validate_config(deep_merge(base, overrides, dotted=True), source=f"surrogate {name!r}")


class Surrogates:
    """Resolves surrogate names or paths to loaded models (each loaded, or trained, once)."""

    def __init__(
        self,
        specs: dict[str, SurrogateSpec],
        target_meta: dict[str, Any],
        out: Path,
        device: torch.device,
        train_fn: TrainFn | None = None,
        progress: bool = True,
        echo: Echo = print,
    ) -> None:
        self.specs = specs
        self.target_meta = target_meta
        self.out = out
        self.device = device
        self.train_fn = train_fn
        self.progress = progress
        self.echo = echo
        self._models: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._files: dict[str, tuple[Path, str | None]] = {}

    def checkpoint(self, ref: str) -> Path:
        """The checkpoint of ``ref`` (a name or a path), trained first for ``train:`` specs."""
        spec = self.specs.get(ref)
        if spec is None:
            return Path(ref)
        if spec.checkpoint is not None:
            return Path(spec.checkpoint)
        if self.train_fn is None:
            raise ConfigError(
                f"surrogate {ref!r} has a 'train' section but no train_fn was given to train it"
                " (robens.pipeline.train_checkpoint trains with robens' Trainer)"
            )
        cfg = surrogate_config(self.target_meta, ref, spec.train or {}, self.out)
        return Path(self.train_fn(cfg, progress=self.progress, echo=self.echo))

    def get(self, ref: str) -> tuple[Any, dict[str, Any]]:
        """``(model, info)``; ``info`` holds the record fields naming the surrogate."""
        if ref in self._models:
            return self._models[ref]
        path = self.checkpoint(ref)
        model, meta = load_ensemble(path)
        model.to(self.device)
        self._files[ref] = (path, meta.get("sha256"))
        info = {
            "surrogate": ref,
            "surrogate_method": meta.get("config", {}).get("name"),
            "surrogate_seed": meta.get("seed"),
            "surrogate_model": records_from_meta(meta)["model"],
        }
        self._models[ref] = (model, info)
        return model, info

    def file(self, ref: str) -> tuple[Path, str | None]:
        """``(checkpoint path, sha256)`` of a surrogate already loaded by :meth:`get`."""
        return self._files[ref]

    def first(self) -> Any | None:
        """The model of the first named surrogate (``None`` when the suite names none)."""
        names = list(self.specs)
        return self.get(names[0])[0] if names else None
