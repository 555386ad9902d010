"""The dataset registry and the one entry point :func:`load_dataset`.

Every dataset is a :class:`DatasetSpec` registered in :data:`DATASETS` (with its aliases):
its image shape and class names, and how the files of a split are found and read, or how the
split is generated. Nothing here downloads: a missing dataset raises :class:`DatasetError`
saying where it looked and how to get the files.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from robens.data.base import ImageDataset
from robens.data.cifar import CLASS_NAMES as CIFAR10_CLASSES
from robens.data.cifar import IMAGE_SHAPE as CIFAR10_SHAPE
from robens.data.cifar import expected_split_files as cifar_expected
from robens.data.cifar import read_split as cifar_read
from robens.data.cifar import split_files as cifar_files
from robens.data.idx import IDX_FILES, find_idx_file
from robens.data.idx import expected_split_files as idx_expected
from robens.data.idx import read_split as idx_read
from robens.data.idx import split_files as idx_files
from robens.data.synthetic import synthetic_split
from robens.errors import DatasetError
from robens.registry import Registry

__all__ = [
    "DATASETS",
    "IDX_FILES",
    "KNOWN_DATASETS",
    "DatasetSpec",
    "ImageDataset",
    "candidate_dirs",
    "canonical_name",
    "find_dataset_dir",
    "find_idx_file",
    "list_datasets",
    "load_dataset",
]

ENV_VAR = "ROBENS_DATA"
SPLITS = ("train", "test")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))
KNOWN_DATASETS = ("fashion-mnist", "mnist", "cifar10", "synthetic")
#: Folders where operating-system packages install datasets (Debian: dataset-fashion-mnist).
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
    "mnist": (Path("/usr/share/datasets/mnist"),),
}

SplitFiles = Callable[[Path, str], tuple[list[Path], list[str]]]
SplitReader = Callable[[Path, str], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: shape and classes, and either its files (``files``, ``locate``, ``read``)
    or a generator of its splits (``generate(size, split)``, never read from disk)."""

    in_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    files: Callable[[str], list[str]] | None = None  # expected file names of a split
    locate: SplitFiles | None = None  # (files found, names missing) in a folder
    read: SplitReader | None = None  # uint8 images [N, C, H, W], labels [N]
    generate: Callable[[int | None, str], ImageDataset] | None = None
    files_note: str = ""  # appended to the expected files in a missing-dataset error

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _mnist_like(class_names: tuple[str, ...]) -> DatasetSpec:
    """A 28x28 grey-scale dataset stored as IDX files (MNIST's layout)."""
    return DatasetSpec(
        (1, 28, 28), class_names, idx_expected, idx_files, idx_read, files_note=" (gzipped or not)"
    )


DATASETS.register(
    "fashion-mnist",
    _mnist_like(FASHION_MNIST_CLASSES),
    aliases=("fashion_mnist", "fashionmnist", "fmnist", "f-mnist"),
)
DATASETS.register("mnist", _mnist_like(MNIST_CLASSES))
DATASETS.register(
    "cifar10",
    DatasetSpec(
        CIFAR10_SHAPE, CIFAR10_CLASSES, cifar_expected, cifar_files, cifar_read
    ),
    aliases=("cifar-10", "cifar_10"),
)
DATASETS.register(
    "synthetic",
    DatasetSpec((1, 28, 28), tuple(f"class_{k}" for k in range(10)), generate=synthetic_split),
    aliases=("synth",),
)


def list_datasets() -> list[str]:
    """Registered dataset names: the built-in ones first, then any added later."""
    return [*KNOWN_DATASETS, *(n for n in DATASETS.names() if n not in KNOWN_DATASETS)]


def canonical_name(name: str) -> str:
    """The canonical name of a dataset (``fmnist`` -> ``fashion-mnist``), case-insensitive."""
    if name not in DATASETS:
        raise DatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}"
        )
    return DATASETS.canonical(name)


def check_split(split: str) -> str:
    """Validate a split name (``train`` or ``test``)."""
    if split not in SPLITS:
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    return split


def data_home() -> Path:
    """The per-user data folder, ``~/.robens/data``."""
    return Path.home() / ".robens" / "data"


def candidate_dirs(name: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for dataset ``name``, in order.

    An explicit ``root`` is searched alone (itself, then ``root/<name>``); else an explicit
    ``$ROBENS_DATA`` alone (itself, then ``$ROBENS_DATA/<name>``): a folder the user named that
    does not hold the dataset is an error, never a silent fall back to another copy. Without
    either: ``~/.robens/data/<name>``, then system folders such as
    ``/usr/share/datasets/fashion-mnist``.
    """
    name = canonical_name(name)
    explicit = root if root is not None and str(root) != "" else os.environ.get(ENV_VAR)
    if explicit:
        base = Path(explicit).expanduser()
        return [base, base / name]
    dirs: list[Path] = [data_home() / name]
    dirs += list(SYSTEM_DIRS.get(name, ()))
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def expected_files(name: str, split: str) -> list[str]:
    """The file names dataset ``name`` needs for ``split``."""
    spec = DATASETS.get(canonical_name(name))
    return spec.files(split) if spec.files is not None else []


def _split_files(name: str, folder: Path, split: str) -> tuple[list[Path], list[str]]:
    """(files found, names missing) for ``split`` of ``name`` in ``folder``."""
    spec = DATASETS.get(name)
    if spec.locate is None:
        return [], []
    return spec.locate(folder, split)


def find_dataset_dir(
    name: str, root: str | os.PathLike[str] | None = None, split: str | None = None
) -> Path | None:
    """The first searched folder holding every file of ``split`` (of any split if None)."""
    name = canonical_name(name)
    if DATASETS.get(name).generate is not None:
        return None
    splits = [check_split(split)] if split else list(SPLITS)
    for folder in candidate_dirs(name, root):
        if not folder.is_dir():
            continue
        for s in splits:
            _, missing = _split_files(name, folder, s)
            if not missing:
                return folder
    return None


def how_to_get(name: str) -> str:
    """One sentence on how to obtain dataset ``name``."""
    name = canonical_name(name)
    home = data_home() / name
    if name == "fashion-mnist":
        return (
            "install it with `apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu), or run"
            f" `robens data download fashion-mnist`, or place the files in {home}"
        )
    return f"run `robens data download {name}`, or place the files in {home}"


def _searched_note(root: str | os.PathLike[str] | None) -> str:
    if root is not None and str(root) != "":
        return " (the data root given explicitly, so only it was searched)."
    if os.environ.get(ENV_VAR):
        return f" (${ENV_VAR} is set, so only it was searched; unset it to search the defaults)."
    return f" (set {ENV_VAR} or pass root= / --data-root to name a folder)."


def _missing_error(name: str, split: str, root: str | os.PathLike[str] | None) -> DatasetError:
    searched = candidate_dirs(name, root)
    partial = []
    for folder in searched:
        if folder.is_dir():
            found, missing = _split_files(name, folder, split)
            if found:
                partial.append(f"{folder} has {[p.name for p in found]} but lacks {missing}")
    lines = [
        f"dataset {name!r} ({split} split) not found.",
        "Searched: "
        + ", ".join(str(d) for d in searched)
        + _searched_note(root),
        "Expected files: "
        + ", ".join(expected_files(name, split))
        + DATASETS.get(name).files_note,
    ]
    if partial:
        lines.append("Incomplete: " + "; ".join(partial))
    lines.append("To get it: " + how_to_get(name) + ".")
    return DatasetError("\n".join(lines))


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    size: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Load ``split`` of dataset ``name`` (``fashion-mnist``, ``mnist``, ``cifar10``,
    ``synthetic``; aliases such as ``fmnist`` accepted), optionally a random subset.

    ``size`` keeps ``size`` samples chosen with ``seed`` (see :meth:`ImageDataset.subset`).
    For ``synthetic`` the data are generated (never read from disk), with at least ``size``
    samples. Raises :class:`DatasetError` when the files are missing or corrupt, or when
    ``size`` exceeds the split.
    """
    name = canonical_name(name)
    check_split(split)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise DatasetError(f"size must be an integer >= 1 or None, got {size!r}")
    try:
        ok = not isinstance(seed, bool) and 0 <= operator.index(seed) < 2**63
    except TypeError:
        ok = False
    if not ok:
        raise DatasetError(f"seed must be an integer in [0, 2**63 - 1], got {seed!r}")
    spec = DATASETS.get(name)
    if spec.generate is not None:
        return spec.generate(size, split).subset(size, seed)
    folder = find_dataset_dir(name, root, split)
    if folder is None:
        raise _missing_error(name, split, root)
    if spec.read is None:  # pragma: no cover - a registered spec reads or generates
        raise DatasetError(f"dataset {name!r} has no reader")
    images, labels = spec.read(folder, split)
    dataset = ImageDataset(images, labels, spec.num_classes, name, split, list(spec.class_names))
    if size is not None and size > len(dataset):
        raise DatasetError(
            f"{name} has {len(dataset)} {split} images in {folder}; a subset of {size} is larger"
            f" than the split (ask for at most {len(dataset)}, or none for all of it)"
        )
    return dataset.subset(size, seed)
