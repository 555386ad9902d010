"""Build ensembles from a config, and rebuild them from a checkpoint's metadata."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import nn

from robens.checkpoint import load_checkpoint, module_from_tensors
from robens.config import ModelConfig
from robens.ensemble import Ensemble
from robens.errors import CheckpointError
from robens.models import RCEModel, build_model
from robens.models.heads import attach_mm_head


def member_specs(cfg: ModelConfig, in_shape: Sequence[int], num_classes: int) -> list[dict]:
    """One JSON-able build spec per member."""
    archs = cfg.archs or [cfg.arch] * cfg.members
    return [
        {
            "name": arch,
            "in_shape": list(in_shape),
            "num_classes": num_classes,
            "activation": cfg.activation,
            "leaky_slope": cfg.leaky_slope,
            "head": cfg.head,
            "mm_scale": cfg.mm_scale,
            "rce": cfg.rce,
        }
        for arch in archs
    ]


def build_member(spec: dict[str, Any]) -> nn.Module:
    """Build one member from its spec (architecture, then head and inference wrapper)."""
    spec = dict(spec)
    head = spec.pop("head", "linear")
    mm_scale = spec.pop("mm_scale", 10.0)
    rce = spec.pop("rce", False)
    name = spec.pop("name")
    model = build_model(name, **spec)
    if head != "linear":
        model = attach_mm_head(model, kind=head, scale=mm_scale)
    if rce:
        model = RCEModel(model)
    return model


def ensemble_meta(ens: Ensemble, specs: list[dict]) -> dict[str, Any]:
    """What a checkpoint needs to rebuild ``ens``."""
    return {
        "members": specs,
        "weights": ens.weights.tolist(),
        "combine": ens.combine,
        "in_shape": list(ens.in_shape) if ens.in_shape else None,
    }


def build_ensemble(
    cfg: ModelConfig, in_shape: Sequence[int], num_classes: int
) -> tuple[Ensemble, list[dict]]:
    """A fresh (randomly initialized) ensemble and its member specs."""
    specs = member_specs(cfg, in_shape, num_classes)
    members = [build_member(s) for s in specs]
    ens = Ensemble(
        members,
        weights=cfg.weights,
        combine=cfg.combine,
        vectorize=cfg.vectorize,
        in_shape=in_shape,
    )
    return ens, specs


def ensemble_from_meta(model_meta: dict[str, Any], vectorize: bool | str = "auto") -> Ensemble:
    """Rebuild an (untrained) ensemble from checkpoint metadata."""
    try:
        members = [build_member(s) for s in model_meta["members"]]
        return Ensemble(
            members,
            weights=model_meta.get("weights"),
            combine=model_meta.get("combine", "logits"),
            vectorize=vectorize,  # type: ignore[arg-type]
            in_shape=model_meta.get("in_shape"),
        )
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint model metadata is malformed: {exc}") from None


def load_ensemble(
    path: str | os.PathLike, vectorize: bool | str = "auto"
) -> tuple[Ensemble, dict[str, Any]]:
    """Load a trained ensemble (eval mode) and the checkpoint's metadata."""
    tensors, meta = load_checkpoint(path)
    if "model" not in meta:
        raise CheckpointError(f"{path} holds no ensemble (metadata has no 'model' entry)")
    ens = ensemble_from_meta(meta["model"], vectorize=vectorize)
    module_from_tensors(ens, tensors, "model")
    ens.eval()
    return ens, meta
