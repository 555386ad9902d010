"""A small seeded, learnable image dataset for tests, examples and smoke runs.

Each class has a fixed smooth random template (low-resolution Gaussian noise upsampled
bilinearly). A sample is its class template under a random contrast, brightness and shift
of up to two pixels, plus pixel noise, quantized to uint8. Train and test draw samples of the
same templates from different seeds, so a small model trained for a few seconds generalizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robens.data.base import ImageDataset
from robens.errors import DatasetError

DEFAULT_SIZES = {"train": 2000, "test": 500}
#: the largest split generated (it is built in memory at once)
MAX_SIZE = 1_000_000
_SPLIT_STREAM = {"train": 1, "test": 2}
_MIX = 0x9E3779B97F4A7C15


def _stream_seed(seed: int, stream: int) -> int:
    """A 63-bit seed derived from (seed, stream), distinct for distinct pairs."""
    return ((seed * 4 + stream) * _MIX + 0x632BE59BD9B4E019) % (2**63 - 1)


def class_templates(
    num_classes: int, in_shape: tuple[int, int, int], seed: int = 0
) -> torch.Tensor:
    """Smooth per-class templates in [0, 1], float32 [num_classes, C, H, W]."""
    c, h, w = in_shape
    g = torch.Generator().manual_seed(_stream_seed(seed, 0))
    coarse = torch.randn(num_classes, c, max(2, h // 5), max(2, w // 5), generator=g)
    fine = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)
    return torch.sigmoid(2.5 * fine)


def make_synthetic(
    n: int | None,
    split: str,
    seed: int = 0,
    in_shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
) -> ImageDataset:
    """Generate ``n`` samples (default: 2000 train, 500 test) of the synthetic dataset.

    Returns an :class:`ImageDataset` named ``synthetic``, classes balanced. The same
    ``(n, split, seed)`` always gives the same data; ``seed`` picks the templates and the
    split picks an independent stream of samples of them.
    """
    if split not in _SPLIT_STREAM:
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    if n is None:
        n = DEFAULT_SIZES[split]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DatasetError(f"synthetic dataset size must be an integer >= 1, got {n!r}")
    if n > MAX_SIZE:  # generated in memory: ~3 KB a sample while it is made
        raise DatasetError(
            f"synthetic dataset size {n} is larger than its maximum of {MAX_SIZE} per split"
        )
    if num_classes < 2:
        raise DatasetError(f"num_classes must be at least 2, got {num_classes}")
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise DatasetError(f"in_shape must be (C, H, W) with positive sizes, got {in_shape}")
    c, h, w = (int(s) for s in in_shape)
    templates = class_templates(num_classes, (c, h, w), seed)
    g = torch.Generator().manual_seed(_stream_seed(seed, _SPLIT_STREAM[split]))
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    contrast = 0.7 + 0.6 * torch.rand(n, 1, 1, 1, generator=g)
    brightness = 0.15 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)
    x = (templates[labels] - 0.5) * contrast + 0.5 + brightness
    pad = 2
    shifts = torch.randint(-pad, pad + 1, (n, 2), generator=g)
    padded = F.pad(x, (pad, pad, pad, pad), value=0.5)
    rows = torch.arange(h)[None, :] + pad - shifts[:, :1]
    cols = torch.arange(w)[None, :] + pad - shifts[:, 1:]
    batch = torch.arange(n)[:, None, None]
    x = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    x = x + 0.12 * torch.randn(x.shape, generator=g)
    images = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).contiguous()
    return ImageDataset(
        images=images,
        labels=labels.to(torch.int64),
        num_classes=num_classes,
        name="synthetic",
        split=split,
        class_names=[f"class_{k}" for k in range(num_classes)],
    )


def synthetic_split(size: int | None, split: str) -> ImageDataset:
    """The ``split`` that :func:`~robens.data.load_dataset` subsets: at least ``size`` samples
    (and never fewer than the split's default size)."""
    return make_synthetic(max(size or 0, DEFAULT_SIZES[split]), split)
