"""Checkpoints: one safetensors file holding tensors plus JSON metadata, written atomically.

Layout of a checkpoint file:

* tensors ``model/<state_dict key>`` (the ensemble), ``optim/<param index>/<state key>``
  (optimizer tensors), and any extra tensors a caller stores under its own prefix;
* the safetensors header's metadata ``{"robens": <JSON>}`` with the config, seed, epoch,
  optimizer hyper-parameters, training history, library versions and a SHA-256 digest of
  the tensors and metadata, which :func:`load_checkpoint` verifies. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from robens.errors import CheckpointError
from robens.utils import atomic_write_bytes, versions

FORMAT = "robens-checkpoint"
FORMAT_VERSION = 1


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def checkpoint_digest(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """SHA-256 binding the tensors and the metadata (all of it but the digest itself)."""
    body = {k: v for k, v in meta.items() if k != "sha256"}
    blob = json.dumps(body, sort_keys=True, default=str).encode()
    return hashlib.sha256(tensors_digest(tensors).encode() + blob).hexdigest()


def read_safetensors(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the header's string metadata of a safetensors blob (never unpickles).

    Raises ``SafetensorError`` / ``ValueError`` on a truncated or corrupt blob."""
    tensors = st_load(data)
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    return tensors, header.get("__metadata__") or {}


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no two sharing memory: safetensors refuses shared storage,
    so a tied weight (one parameter under two names) is stored once under each name, and
    loading it back with ``load_state_dict`` ties it again (both names get the same values)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"checkpoint entry {k!r} is a {type(v).__name__}, not a tensor")
        t = v.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[k] = t
    return out


def save_checkpoint(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Write tensors and metadata to ``path`` atomically; returns the path."""
    path = Path(path)
    clean = _unshared(tensors)
    meta = dict(meta)
    meta.setdefault("format", FORMAT)
    meta.setdefault("format_version", FORMAT_VERSION)
    meta.setdefault("versions", versions())
    meta = json.loads(json.dumps(meta, default=str))  # exactly what will be read back
    meta["sha256"] = checkpoint_digest(clean, meta)
    blob = st_save(clean, metadata={"robens": json.dumps(meta)})
    atomic_write_bytes(path, blob)
    return path


def load_checkpoint(
    path: str | os.PathLike, verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint; refuses missing, truncated, edited or foreign files with a clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.safetensors"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    try:
        tensors, metadata = read_safetensors(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise CheckpointError(
            f"{path} is not a readable robens checkpoint (truncated or corrupt): {exc}"
        ) from None
    raw = metadata.get("robens")
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file without robens metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt metadata JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a robens checkpoint (format field missing)")
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {meta.get('format_version')}; this robens reads"
            f" up to {FORMAT_VERSION}: upgrade robens"
        )
    if verify:
        expected = meta.get("sha256")
        if not expected:
            raise CheckpointError(f"{path} carries no tensor digest; refusing to load it")
        if checkpoint_digest(tensors, meta) != expected:
            raise CheckpointError(
                f"{path}: digest mismatch: its tensors or metadata were edited or corrupted"
            )
    return tensors, meta


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Tensors whose names start with ``prefix + '/'``, with the prefix removed."""
    p = prefix + "/"
    return {k[len(p) :]: v for k, v in tensors.items() if k.startswith(p)}


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state dict into tensors and JSON-able hyper-parameters."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    """Restore what :func:`optimizer_to_tensors` saved into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in split_prefix(tensors, "optim").items():
        idx, key = name.split("/", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    try:
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"optimizer state does not match this model: {exc}") from None


def module_to_tensors(module: nn.Module, prefix: str = "model") -> dict[str, torch.Tensor]:
    """A module's state dict under ``prefix/``."""
    return {f"{prefix}/{k}": v for k, v in module.state_dict().items()}


def module_from_tensors(
    module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str = "model"
) -> None:
    """Load ``prefix/`` tensors into ``module`` strictly (missing/unexpected keys are errors)."""
    state = split_prefix(tensors, prefix)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit the model: {exc}") from None
