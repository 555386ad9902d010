"""Datasets (Fashion-MNIST, MNIST, CIFAR-10, synthetic) and batch-wise augmentation.

>>> from robens.data import load_dataset
>>> train = load_dataset("synthetic", "train", size=100)
>>> x, y = train.tensors()  # float32 in [0, 1], int64
"""

from robens.data.base import ImageDataset
from robens.data.datasets import (
    DATASETS,
    KNOWN_DATASETS,
    DatasetSpec,
    candidate_dirs,
    canonical_name,
    find_dataset_dir,
    list_datasets,
    load_dataset,
)
from robens.data.download import dataset_info, download_dataset, verify_dataset
from robens.data.idx import read_idx, write_idx
from robens.data.synthetic import make_synthetic
from robens.data.transforms import (
    Augment,
    add_truncated_normal_noise,
    random_crop,
    random_hflip,
    random_shift,
    truncated_normal,
)

__all__ = [
    "DATASETS",
    "KNOWN_DATASETS",
    "Augment",
    "DatasetSpec",
    "ImageDataset",
    "add_truncated_normal_noise",
    "candidate_dirs",
    "canonical_name",
    "dataset_info",
    "download_dataset",
    "find_dataset_dir",
    "list_datasets",
    "load_dataset",
    "make_synthetic",
    "random_crop",
    "random_hflip",
    "random_shift",
    "read_idx",
    "truncated_normal",
    "verify_dataset",
    "write_idx",
]
