"""Small shared helpers: atomic writes, seeds, versions, config hashes."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomic text write (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomic JSON write, pretty-printed."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def derive_seed(seed: int, *keys: Any) -> int:
    """A 63-bit seed derived from ``seed`` and any keys (stable across runs and platforms)."""
    h = hashlib.sha256(json.dumps([seed, *keys], default=str).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, *keys: Any, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded with :func:`derive_seed`."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *keys))
    return g


def versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    import numpy

    import robens

    return {
        "robens": robens.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def config_hash(config: Any) -> str:
    """Short SHA-256 of a JSON-serializable config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def resolve_device(device: str | None) -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def chunks(seq: list, size: int) -> Iterable[list]:
    """Consecutive slices of ``seq`` of length ``size``."""
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _modules_of(model: object) -> list[torch.nn.Module]:
    if isinstance(model, torch.nn.Module):
        return list(model.modules())
    if isinstance(model, (list, tuple)):
        return [m for member in model for m in _modules_of(member)]
    return []


@contextmanager
def eval_mode(model: object) -> Iterator[None]:
    """Put every module of ``model`` (a module or a list of them) in eval mode; restore after.

    Each submodule's own ``training`` flag is restored, so a model whose parts were in mixed
    modes comes back exactly as it was. Used by attacks, metrics and detection.
    """
    mods = _modules_of(model)
    saved = [m.training for m in mods]
    try:
        for m in mods:
            m.training = False
        yield
    finally:
        for m, flag in zip(mods, saved, strict=True):
            m.training = flag


def deep_merge(base: Any, over: Any, dotted: bool = False) -> Any:
    """``over`` merged into ``base`` (copies): mappings merge key by key, the rest replaces.

    With ``dotted=True`` a key ``"a.b"`` of ``over`` addresses ``base["a"]["b"]``. The one
    config merge of robens (configs, suites, surrogates, recipes).
    """
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for k, v in over.items():
            if dotted and isinstance(k, str) and "." in k:
                head, rest = k.split(".", 1)
                out[head] = deep_merge(out.get(head) or {}, {rest: v}, dotted)
            elif k in out and isinstance(v, Mapping) and isinstance(out[k], Mapping):
                out[k] = deep_merge(out[k], v, dotted)
            else:
                out[k] = copy.deepcopy(v)
        return out
    return copy.deepcopy(over)
