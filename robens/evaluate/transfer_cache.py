"""Transfer-attack examples crafted once per surrogate and reused by every target.

A transfer attack (GAL paper protocol, Kariyappa & Qureshi 2019, Sec. 5) crafts its examples
on the surrogate alone: they depend on the surrogate's weights, the attack, its budget and
parameters, the seed, the test images and their batching, never on the target. When several
targets are attacked through one surrogate (the four targets of the GAL Table 2 recipe), the
first suite to craft an (attack, eps) pair stores the examples here and the others read them.

One safetensors file per key (never unpickled) holding ``x_adv`` and ``norm``; its metadata
records the key's fields and a SHA-256 digest of the tensors, checked on every read. A file
that fails the check, or any read error, is a miss: the examples are crafted again and the
file rewritten (atomically), so a broken cache costs time, never a wrong number. Concurrent
suites (a sweep's targets evaluated side by side) craft a key once: the first holds the key's
claim (:meth:`TransferCache.claim`, a ``<key>.lock`` beside it) while it crafts; the others
first run their units that nobody is crafting (crafting the keys nobody has claimed, so two
suites share the work), then wait for the rest and read them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save

from robens.checkpoint import read_safetensors, tensors_digest
from robens.filelock import exclusive_lock
from robens.utils import atomic_write_bytes

FORMAT = "robens-transfer-examples"


def cache_key(fields: dict[str, Any]) -> str:
    """Stable key of the fields that determine the crafted examples."""
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def data_digest(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> str:
    """SHA-256 of the attacked images and labels, in order and with their batching."""
    return tensors_digest({
        f"{kind}{i}": t for i, (x, y) in enumerate(batches) for kind, t in (("x", x), ("y", y))
    })


class TransferCache:
    """Examples under ``root/<key>.safetensors``; see the module docstring."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def claim(
        self, key: str, on_wait: Callable[[str], None] | None = None, wait: bool = True
    ) -> AbstractContextManager[bool]:
        """Hold the exclusive claim on crafting ``key`` (:func:`robens.filelock.exclusive_lock`
        on ``<key>.lock``): another process claiming it waits, calling ``on_wait(holder)``
        once (or, ``wait=False``, gets :class:`robens.filelock.LockBusy`). Yields False (no
        claim) where ``root`` is read-only."""
        return exclusive_lock(self.root / f"{key}.lock", on_wait, wait)

    def load(self, key: str, n: int) -> dict[str, torch.Tensor] | None:
        """``{"x_adv", "norm"}`` for ``key`` with ``n`` examples, or None (miss or bad file)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            tensors, metadata = read_safetensors(path.read_bytes())
            meta = json.loads(metadata["robens"])
        except Exception:  # noqa: BLE001 - any unreadable file is a miss, crafted again
            return None
        if (
            meta.get("format") != FORMAT
            or meta.get("key") != key
            or set(tensors) != {"x_adv", "norm"}
            or tensors["x_adv"].shape[0] != n
            or tensors["norm"].shape != (n,)
            or meta.get("sha256") != tensors_digest(tensors)
        ):
            return None
        return tensors

    def save(
        self, key: str, x_adv: torch.Tensor, norm: torch.Tensor, fields: dict[str, Any]
    ) -> bool:
        """Store the examples atomically; False (nothing written) where ``root`` is read-only."""
        tensors = {
            "x_adv": x_adv.detach().cpu().contiguous(),
            "norm": norm.detach().cpu().contiguous(),
        }
        meta = {"format": FORMAT, "key": key, "fields": fields, "sha256": tensors_digest(tensors)}
        blob = st_save(tensors, metadata={"robens": json.dumps(meta, default=str)})
        try:
            atomic_write_bytes(self.path(key), blob)
        except OSError:
            return False
        return True
