"""Checkpoints: safetensors files holding tensors plus JSON metadata, written atomically.

Layout of a checkpoint file:

* tensors ``model/<state_dict key>`` (the ensemble), and any extra tensors a caller stores
  under its own prefix;
* the safetensors header's metadata ``{"robens": <JSON>}`` with the config, seed, epoch,
  training history, library versions and a SHA-256 digest of the tensors and metadata, which
  :func:`load_checkpoint` verifies. Nothing is ever unpickled.

A training run keeps what only resuming needs (the optimizer's state ``optim/<param
index>/<state key>``, a strategy's own tensors ``strategy/...`` and the optimizer's
hyper-parameters) beside its checkpoint, in ``optimizer.safetensors``
(:func:`save_training_checkpoint`): the same format with its own digest, bound to its
checkpoint by the checkpoint's SHA-256, so the checkpoint itself is just the weights.
Checkpoints written before that split hold ``optim/`` tensors themselves, and still resume
(:func:`load_resume_state`).
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
#: the format of a run's resume state (:func:`save_training_checkpoint`)
STATE_FORMAT = "robens-resume-state"
#: the resume state's file, beside the checkpoint
OPTIMIZER_NAME = "optimizer.safetensors"


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


def _encode(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[bytes, str]:
    """The safetensors blob of ``tensors`` and ``meta`` (digest added), and that digest."""
    clean = _unshared(tensors)
    meta = dict(meta)
    meta.setdefault("format", FORMAT)
    meta.setdefault("format_version", FORMAT_VERSION)
    meta.setdefault("versions", versions())
    meta = json.loads(json.dumps(meta, default=str))  # exactly what will be read back
    meta["sha256"] = checkpoint_digest(clean, meta)
    return st_save(clean, metadata={"robens": json.dumps(meta)}), meta["sha256"]


def save_checkpoint(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Write tensors and metadata to ``path`` atomically; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, _encode(tensors, meta)[0])
    return path


def _staged(state_path: Path) -> Path:
    """Where the next resume state waits while its checkpoint is written."""
    return state_path.with_name(f"{state_path.stem}.next{state_path.suffix}")


def save_training_checkpoint(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    state_tensors: dict[str, torch.Tensor],
    state_meta: dict[str, Any],
) -> Path:
    """Write a training checkpoint (``tensors``: the weights) and, beside it in
    :data:`OPTIMIZER_NAME`, its resume state (``state_tensors`` and the JSON ``state_meta``),
    bound to the checkpoint by the checkpoint's SHA-256; returns the checkpoint's path.

    Each file is written atomically, and a kill at any point leaves a pair that resumes: the
    new state is written first under ``optimizer.next.safetensors``, then the checkpoint,
    then the state is renamed into place (:func:`load_resume_state` finds it in either).
    """
    path = Path(path)
    state_path = path.with_name(OPTIMIZER_NAME)
    blob, sha = _encode(tensors, {**meta, "resume_state": state_path.name})
    body = {**state_meta, "format": STATE_FORMAT, "checkpoint": path.name,
            "checkpoint_sha256": sha}
    staged = _staged(state_path)
    atomic_write_bytes(staged, _encode(state_tensors, body)[0])
    atomic_write_bytes(path, blob)
    os.replace(staged, state_path)
    return path


def read_resume_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify an optimizer-state file (:data:`OPTIMIZER_NAME`) on its own; which
    checkpoint it belongs to is its metadata's ``checkpoint_sha256``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"optimizer state not found: {path}")
    return _load(path, STATE_FORMAT, "optimizer state")


def load_resume_state(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The resume state (tensors, JSON) of the checkpoint at ``path``, already read as
    ``tensors`` and ``meta``: its :data:`OPTIMIZER_NAME`, verified and refused unless it was
    written with this very checkpoint; for a checkpoint written before the split, its own
    non-``model/`` tensors and ``optimizer`` metadata.

    Settles a save killed between its writes (the matching state is renamed into place, a
    stale one removed), so call it only while holding the run's exclusive lock.
    """
    path = Path(path)
    name = meta.get("resume_state")
    if not name:
        state = {k: v for k, v in tensors.items() if not k.startswith("model/")}
        return state, {"optimizer": meta.get("optimizer", {})}
    state_path = path.with_name(str(name))
    staged = _staged(state_path)
    problems: list[str] = []
    for candidate in (staged, state_path):
        if not candidate.is_file():
            continue
        try:
            found, found_meta = read_resume_state(candidate)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if found_meta.get("checkpoint_sha256") != meta.get("sha256"):
            problems.append(f"{candidate} was written with another checkpoint than {path}")
            continue
        if candidate == staged:
            os.replace(staged, state_path)
        elif staged.exists():
            staged.unlink()
        return found, found_meta
    if not problems:
        raise CheckpointError(
            f"cannot resume {path}: its optimizer state {state_path} is missing (the"
            " checkpoint's weights can still be evaluated; train into a new output directory)"
        )
    raise CheckpointError(
        f"cannot resume {path} with a mismatched optimizer state: {'; '.join(problems)};"
        f" restore the {state_path.name} saved with this checkpoint, or train into a new"
        " output directory"
    )


def load_checkpoint(
    path: str | os.PathLike, verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint; refuses missing, truncated, edited or foreign files with a clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.safetensors"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return _load(path, FORMAT, "checkpoint", verify)


def _load(
    path: Path, fmt: str, what: str, verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a robens safetensors file of format ``fmt`` (``what`` names it)."""
    data = path.read_bytes()
    try:
        tensors, metadata = read_safetensors(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise CheckpointError(
            f"{path} is not a readable robens {what} (truncated or corrupt): {exc}"
        ) from None
    raw = metadata.get("robens")
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file without robens metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt metadata JSON: {exc}") from None
    if isinstance(meta, dict) and meta.get("format") == STATE_FORMAT != fmt:
        raise CheckpointError(
            f"{path} holds a training run's optimizer state, not a {what}: give the"
            f" {meta.get('checkpoint', 'checkpoint.safetensors')} beside it"
        )
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise CheckpointError(f"{path} is not a robens {what} (format field missing)")
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
