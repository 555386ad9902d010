"""Datasets as uint8 tensors in memory, and the one entry point :func:`load_dataset`.

Images stay uint8 [N, C, H, W]; :meth:`ImageDataset.tensors` and
:meth:`ImageDataset.batches` convert to float32 in [0, 1] on the fly, so a 60000-image
dataset costs 47 MB instead of 188 MB. Nothing here downloads: a missing dataset raises
:class:`DatasetError` saying where it looked and how to get the files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from robens.errors import DatasetError

ENV_VAR = "ROBENS_DATA"
SPLITS = ("train", "test")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
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
_ALIASES = {
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "f-mnist": "fashion-mnist",
    "mnist": "mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "synthetic": "synthetic",
    "synth": "synthetic",
}
#: Folders where operating-system packages install datasets (Debian: dataset-fashion-mnist).
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
    "mnist": (Path("/usr/share/datasets/mnist"),),
}


@dataclass(eq=False, repr=False)
class ImageDataset:
    """A labelled image dataset: uint8 images [N, C, H, W] and int64 labels [N]."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str = "dataset"
    split: str = "train"
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8:
            raise DatasetError(f"{self.name}: images must be a uint8 tensor")
        if self.images.dim() != 4:
            raise DatasetError(
                f"{self.name}: images must be [N, C, H, W], got shape {list(self.images.shape)}"
            )
        if not isinstance(self.labels, torch.Tensor) or self.labels.dim() != 1:
            raise DatasetError(f"{self.name}: labels must be a 1-D tensor")
        if self.labels.dtype.is_floating_point or self.labels.dtype == torch.bool:
            raise DatasetError(f"{self.name}: labels must be integers, got {self.labels.dtype}")
        if self.labels.dtype != torch.int64:
            self.labels = self.labels.to(torch.int64)
        if len(self.labels) != len(self.images):
            raise DatasetError(
                f"{self.name}: {len(self.images)} images but {len(self.labels)} labels"
            )
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise DatasetError(f"{self.name}: num_classes must be an int")
        if self.num_classes < 1:
            raise DatasetError(f"{self.name}: num_classes must be >= 1, got {self.num_classes}")
        if self.labels.numel():
            lo, hi = int(self.labels.min()), int(self.labels.max())
            if lo < 0 or hi >= self.num_classes:
                raise DatasetError(
                    f"{self.name}: labels lie in [{lo}, {hi}], expected [0, {self.num_classes - 1}]"
                )
        if not self.class_names:
            self.class_names = [str(k) for k in range(self.num_classes)]
        self.class_names = list(self.class_names)
        if len(self.class_names) != self.num_classes:
            raise DatasetError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)},"
            f" in_shape={self.in_shape}, num_classes={self.num_classes})"
        )

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """The shape (C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def _like(self, images: torch.Tensor, labels: torch.Tensor) -> ImageDataset:
        return ImageDataset(
            images, labels, self.num_classes, self.name, self.split, list(self.class_names)
        )

    def _check_index(self, idx: torch.Tensor) -> torch.Tensor:
        if not isinstance(idx, torch.Tensor):
            idx = torch.as_tensor(idx)
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise DatasetError(
                    f"a boolean mask must have shape [{len(self)}], got {list(idx.shape)}"
                )
            return idx.nonzero().flatten()
        if idx.dtype.is_floating_point or idx.dim() != 1:
            raise DatasetError("indices must be a 1-D integer (or boolean mask) tensor")
        idx = idx.to(torch.int64)
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise DatasetError(f"indices out of range for a dataset of {len(self)} samples")
        return idx

    def indices(self, idx: torch.Tensor) -> ImageDataset:
        """The samples at ``idx`` (integer indices or a boolean mask), in that order."""
        idx = self._check_index(idx)
        return self._like(self.images[idx], self.labels[idx])

    def subset(self, n: int | None, seed: int = 0) -> ImageDataset:
        """``n`` distinct samples chosen at random with ``seed`` (kept in dataset order).

        ``n=None`` or ``n >= len(self)`` returns ``self``.
        """
        if n is None:
            return self
        if isinstance(n, bool) or not isinstance(n, int):
            raise DatasetError(f"subset size must be an integer or None, got {n!r}")
        if n < 1:
            raise DatasetError(f"subset size must be >= 1, got {n}")
        if n >= len(self):
            return self
        g = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(len(self), generator=g)[:n].sort().values
        return self.indices(idx)

    def bootstrap(self, generator: torch.Generator | None = None) -> ImageDataset:
        """A bootstrap resample: ``len(self)`` draws with replacement."""
        idx = torch.randint(0, len(self), (len(self),), generator=generator)
        return self._like(self.images[idx], self.labels[idx])

    def tensors(self, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 images in [0, 1] and int64 labels, of all samples or those at ``idx``."""
        if idx is None:
            images, labels = self.images, self.labels
        else:
            idx = self._check_index(idx)
            images, labels = self.images[idx], self.labels[idx]
        return images.to(torch.float32).div_(255.0), labels.clone()

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate over (float images in [0, 1], labels) batches, slicing one permutation."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DatasetError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else None
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            end = min(start + batch_size, n)
            if order is None:
                x, y = self.images[start:end], self.labels[start:end]
            else:
                sel = order[start:end]
                x, y = self.images[sel], self.labels[sel]
            yield x.to(torch.float32).div_(255.0), y.clone()

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """How many batches :meth:`batches` yields."""
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)


def canonical_name(name: str) -> str:
    """The canonical name of a dataset (``fmnist`` -> ``fashion-mnist``), case-insensitive."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(KNOWN_DATASETS)}")
    return _ALIASES[key]


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

    ``root`` (itself, then ``root/<name>``); ``$ROBENS_DATA`` (itself, then
    ``$ROBENS_DATA/<name>``); ``~/.robens/data/<name>``; then system folders such as
    ``/usr/share/datasets/fashion-mnist``.
    """
    name = canonical_name(name)
    dirs: list[Path] = []
    if root is not None:
        base = Path(root).expanduser()
        dirs += [base, base / name]
    env = os.environ.get(ENV_VAR)
    if env:
        base = Path(env).expanduser()
        dirs += [base, base / name]
    dirs.append(data_home() / name)
    dirs += list(SYSTEM_DIRS.get(name, ()))
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def find_idx_file(folder: Path, base: str) -> Path | None:
    """The IDX file ``base`` in ``folder``: plain, ``.gz``, or with ``.idx`` spelling."""
    dotted = base.replace("-idx", ".idx")
    for stem in (base, dotted):
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def expected_files(name: str, split: str) -> list[str]:
    """The file names dataset ``name`` needs for ``split``."""
    name = canonical_name(name)
    if name in ("fashion-mnist", "mnist"):
        return [f"{f}.gz" for f in IDX_FILES[split]]
    if name == "cifar10":
        from robens.data.cifar import BATCH_FOLDER, batch_names

        return [f"{BATCH_FOLDER}/{b}" for b in batch_names(split)]
    return []


def _split_files(name: str, folder: Path, split: str) -> tuple[list[Path], list[str]]:
    """(files found, names missing) for ``split`` of ``name`` in ``folder``."""
    if name == "cifar10":
        from robens.data.cifar import batch_names, find_batch_dir

        where = find_batch_dir(folder, split)
        names = batch_names(split)
        if where is None:
            return [], list(names)
        found = [where / b for b in names if (where / b).is_file()]
        return found, [b for b in names if not (where / b).is_file()]
    found, missing = [], []
    for base in IDX_FILES[split]:
        path = find_idx_file(folder, base)
        if path is None:
            missing.append(base)
        else:
            found.append(path)
    return found, missing


def find_dataset_dir(
    name: str, root: str | os.PathLike[str] | None = None, split: str | None = None
) -> Path | None:
    """The first searched folder holding every file of ``split`` (of any split if None)."""
    name = canonical_name(name)
    if name == "synthetic":
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
        + f" (set {ENV_VAR} or pass root= to add a folder).",
        "Expected files: "
        + ", ".join(expected_files(name, split))
        + (" (gzipped or not)" if name != "cifar10" else ""),
    ]
    if partial:
        lines.append("Incomplete: " + "; ".join(partial))
    lines.append("To get it: " + how_to_get(name) + ".")
    return DatasetError("\n".join(lines))


def _load_idx(name: str, folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from robens.data.idx import read_idx

    found, _ = _split_files(name, folder, split)
    image_path, label_path = found
    images = read_idx(image_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{image_path} holds shape {list(images.shape)}, expected [N, 28, 28] images"
        )
    labels = read_idx(label_path)
    if labels.ndim != 1:
        raise DatasetError(f"{label_path} holds shape {list(labels.shape)}, expected [N] labels")
    if len(labels) != len(images):
        raise DatasetError(
            f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{label_path} has label {int(labels.max())}, expected 0 to 9")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype("int64"))


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
    samples. Raises :class:`DatasetError` when the files are missing or corrupt.
    """
    name = canonical_name(name)
    check_split(split)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise DatasetError(f"size must be an integer >= 1 or None, got {size!r}")
    if name == "synthetic":
        from robens.data.synthetic import DEFAULT_SIZES, make_synthetic

        n = max(size or 0, DEFAULT_SIZES[split])
        return make_synthetic(n, split).subset(size, seed)
    folder = find_dataset_dir(name, root, split)
    if folder is None:
        raise _missing_error(name, split, root)
    if name == "cifar10":
        from robens.data.cifar import CLASS_NAMES, read_cifar10

        images_np, labels_np = read_cifar10(folder, split)
        images, labels = torch.from_numpy(images_np), torch.from_numpy(labels_np)
        class_names = list(CLASS_NAMES)
    else:
        images, labels = _load_idx(name, folder, split)
        class_names = list(FASHION_MNIST_CLASSES if name == "fashion-mnist" else MNIST_CLASSES)
    dataset = ImageDataset(images, labels, 10, name, split, class_names)
    return dataset.subset(size, seed)
