"""Small shared helpers: atomic writes, seeds, versions, config hashes."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from robens.validation import check_device


def _create_temp(folder: Path, name: str) -> tuple[int, str]:
    """A new ``.NAME.XXXX.tmp`` file in ``folder``, created with mode 0666 less the umask."""
    for _ in range(100):
        tmp = str(folder / f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {name} in {folder}")  # pragma: no cover


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    The file gets the permissions of an ordinary new file (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path.name)
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
    """``"auto"``/``None`` -> CUDA when available, else CPU; a device that cannot run here
    is an :class:`~robens.errors.InputError` (:func:`robens.validation.check_device`)."""
    return check_device(device)


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


@contextmanager
def frozen_norm_stats(model: object) -> Iterator[None]:
    """Restore the running statistics of every normalisation layer of ``model`` on exit.

    A train-mode forward of BatchNorm (any module with ``track_running_stats``) updates its
    running mean, variance and batch count; inside this block it still normalises with the
    batch's statistics (the forward is unchanged), but the buffers are put back afterwards.
    """
    saved = [
        (buf, buf.detach().clone())
        for m in _modules_of(model)
        if getattr(m, "track_running_stats", False)
        for _, buf in m.named_buffers(recurse=False)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


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
