"""The training identity of a config: the keys that determine the trained weights.

A run may be resumed (and a sweep's trial folder reused) by any config with the same training
identity. The identity is the config flattened to dotted keys, without the keys that only say
where or how fast a run goes or how it is evaluated (:data:`NOT_IDENTITY`), and with paths
normalised (absolute, ``~`` expanded, no trailing slash). ``training.epochs`` is left out
too: a run may be extended to more epochs when its schedule and objective are defined
independently of the run's length (see :mod:`robens.training.schedules`); the trainer checks
that separately.

The record field ``config_hash`` is unchanged by this module: it is still the hash of the
whole config a checkpoint was last written with (:func:`robens.utils.config_hash`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from robens.utils import config_hash

#: dotted keys that do not change the trained weights
NOT_IDENTITY: tuple[str, ...] = (
    "name",
    "output_dir",
    "data.test_size",
    "data.eval_batch_size",
    "training.epochs",
    "training.device",
    "training.threads",
)
#: dotted keys holding a path (or a list of paths), compared after normalisation
PATH_KEYS: tuple[str, ...] = ("data.root", "training.adversarial.sources",
                             "training.dverge.init_checkpoint")
ABSENT = "(not set)"


def normalize_path(path: str) -> str:
    """``path`` absolute, with ``~`` expanded, ``..`` resolved and no trailing slash."""
    return os.path.normpath(os.path.abspath(os.path.expanduser(path)))


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"a.b": value}`` (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):  # an empty section sets nothing
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def train_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The dotted keys of ``config`` (a config dict) that determine the trained weights."""
    flat = flatten(config)
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key in NOT_IDENTITY:
            continue
        if key in PATH_KEYS and isinstance(value, str):
            value = normalize_path(value)
        elif key in PATH_KEYS and isinstance(value, list):
            value = [normalize_path(v) if isinstance(v, str) else v for v in value]
        out[key] = value
    return out


def identity_hash(identity: Mapping[str, Any]) -> str:
    """A short hash of a training identity (from :func:`train_identity`)."""
    return config_hash(dict(identity))


def identity_diff(
    old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for each key whose value differs, sorted by key."""
    keys = sorted(set(old) | set(new))
    return [
        (k, old.get(k, ABSENT), new.get(k, ABSENT))
        for k in keys
        if old.get(k, ABSENT) != new.get(k, ABSENT)
    ]


def format_diff(
    diff: list[tuple[str, Any, Any]], old: str = "checkpoint", new: str = "now"
) -> str:
    """``key: OLD (checkpoint) vs NEW (now)`` for each difference, joined by ``; ``."""
    return "; ".join(f"{k}: {a!r} ({old}) vs {b!r} ({new})" for k, a, b in diff)


__all__ = [
    "NOT_IDENTITY",
    "PATH_KEYS",
    "flatten",
    "format_diff",
    "identity_diff",
    "identity_hash",
    "normalize_path",
    "train_identity",
]
