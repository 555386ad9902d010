"""CIFAR-10 python batches, read without arbitrary-object unpickling.

The official ``cifar-10-batches-py`` files are pickled dicts holding a numpy array and a list
of labels. :class:`SafeUnpickler` resolves only the few globals such pickles need (numpy
array reconstruction and ``_codecs.encode``); any other global, such as ``os.system`` or
``builtins.eval``, raises :class:`DatasetError` before anything runs.
"""

from __future__ import annotations

import _codecs
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robens.data.files import read_file
from robens.errors import DatasetError

BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SHAPE = (3, 32, 32)
_ROW = 3 * 32 * 32


def _numpy_attr(module: str, name: str) -> Callable[..., Any]:
    """Resolve ``numpy.<module>.<name>`` on numpy 2 (``numpy._core``) or 1 (``numpy.core``)."""
    import importlib

    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise DatasetError(f"this numpy has no {module}.{name}, needed to read the pickle")


def _allowed() -> dict[tuple[str, str], Callable[[], Any]]:
    table: dict[tuple[str, str], Callable[[], Any]] = {
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("_codecs", "encode"): lambda: _codecs.encode,
    }
    for package in ("numpy.core", "numpy._core"):
        for module, name in (
            ("multiarray", "_reconstruct"),
            ("multiarray", "scalar"),
            ("numeric", "_frombuffer"),
        ):
            table[(f"{package}.{module}", name)] = lambda m=module, n=name: _numpy_attr(m, n)
    return table


_ALLOWED = _allowed()


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers, bytes, str, numbers and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        resolve = _ALLOWED.get((module, name))
        if resolve is None:
            raise DatasetError(
                f"refusing to unpickle global {module}.{name}: only numpy arrays and plain"
                " containers are allowed in dataset files"
            )
        return resolve()


def safe_load(path: str | os.PathLike[str]) -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler` (``encoding="bytes"``, like CIFAR)."""
    path = Path(path)
    raw = read_file(path)
    try:
        return SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    except Exception as exc:  # a corrupt pickle raises many kinds of errors
        raise DatasetError(f"{path} is not a valid CIFAR batch pickle ({exc!r})") from None


def _get(batch: dict[Any, Any], key: str) -> Any:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    return None


def read_cifar_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file: images uint8 [n, 3, 32, 32] and labels int64 [n] in [0, 9]."""
    batch = safe_load(path)
    if not isinstance(batch, dict):
        raise DatasetError(f"{path} holds a {type(batch).__name__}, expected a dict")
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if data is None or labels is None:
        keys = sorted(repr(k) for k in batch)
        raise DatasetError(f"{path} lacks the keys b'data' and b'labels' (has {keys})")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: data must be a uint8 numpy array, got {kind}")
    if data.ndim != 2 or data.shape[1] != _ROW:
        raise DatasetError(f"{path}: data has shape {list(data.shape)}, expected [n, {_ROW}]")
    try:
        labels = np.asarray(labels)
    except Exception:
        raise DatasetError(f"{path}: labels are not a list of integers") from None
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DatasetError(f"{path}: labels must be a flat list of integers")
    if len(labels) != len(data):
        raise DatasetError(f"{path}: {len(data)} images but {len(labels)} labels")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(
            f"{path}: labels lie in [{labels.min()}, {labels.max()}], expected [0, 9]"
        )
    images = np.ascontiguousarray(data.reshape(len(data), *IMAGE_SHAPE))
    return images, labels


def find_batch_dir(folder: str | os.PathLike[str], split: str | None = None) -> Path | None:
    """The folder holding the batches of ``split`` (both splits if None): ``folder`` itself
    or its ``cifar-10-batches-py`` subfolder; None when neither has them."""
    names = batch_names(split) if split else TRAIN_BATCHES + TEST_BATCHES
    for candidate in (Path(folder) / BATCH_FOLDER, Path(folder)):
        if any((candidate / n).is_file() for n in names):
            return candidate
    return None


def batch_names(split: str) -> tuple[str, ...]:
    """The batch file names of a split (``train`` or ``test``)."""
    if split == "train":
        return TRAIN_BATCHES
    if split == "test":
        return TEST_BATCHES
    raise DatasetError(f"split must be 'train' or 'test', got {split!r}")


def read_cifar10(folder: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read every batch of ``split`` from ``folder`` (or its ``cifar-10-batches-py``)."""
    names = batch_names(split)
    where = find_batch_dir(folder, split) or Path(folder)
    missing = [n for n in names if not (where / n).is_file()]
    if missing:
        raise DatasetError(f"{where} lacks the CIFAR-10 batch files {missing}")
    parts = [read_cifar_batch(where / n) for n in names]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return images, labels


def expected_split_files(split: str) -> list[str]:
    """The batch files a CIFAR-10 ``split`` needs, under ``cifar-10-batches-py/``."""
    return [f"{BATCH_FOLDER}/{b}" for b in batch_names(split)]


def split_files(folder: Path, split: str) -> tuple[list[Path], list[str]]:
    """(files found, names missing) of a CIFAR-10 ``split`` in ``folder``."""
    where = find_batch_dir(folder, split)
    names = batch_names(split)
    if where is None:
        return [], list(names)
    found = [where / b for b in names if (where / b).is_file()]
    return found, [b for b in names if not (where / b).is_file()]


def read_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N, 3, 32, 32] and labels int64 [N] of a CIFAR-10 ``split``."""
    images, labels = read_cifar10(folder, split)
    return torch.from_numpy(images), torch.from_numpy(labels)
