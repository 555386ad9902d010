"""Checks at the API boundary: each failure names the argument and what was expected."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from robens.errors import InputError

PIXEL_TOL = 1e-6


def check_images(
    x: object,
    name: str = "x",
    shape: Sequence[int] | None = None,
    check_range: bool = True,
) -> torch.Tensor:
    """Validate a float NCHW batch in [0, 1]; ``shape`` is the expected (C, H, W)."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise InputError(
            f"{name} must be a floating-point tensor with pixels in [0, 1], got dtype {x.dtype}"
            " (convert uint8 images with x.float() / 255)"
        )
    if x.dim() != 4:
        raise InputError(f"{name} must be a 4-D NCHW batch, got shape {tuple(x.shape)}")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise InputError(
            f"{name} has per-image shape {tuple(x.shape[1:])}, expected {tuple(shape)} (C, H, W)"
        )
    if check_range and x.numel() > 0:
        lo, hi = torch.aminmax(x.detach())
        if not torch.isfinite(lo) or not torch.isfinite(hi):
            raise InputError(f"{name} contains NaN or Inf values")
        if lo.item() < -PIXEL_TOL or hi.item() > 1 + PIXEL_TOL:
            raise InputError(
                f"{name} has pixel values in [{lo.item():.4g}, {hi.item():.4g}], expected [0, 1]"
                " (normalization belongs inside the model, not in the data)"
            )
    return x


def check_labels(
    y: object, num_classes: int, batch_size: int | None = None, name: str = "y"
) -> torch.Tensor:
    """Validate integer class labels in ``[0, num_classes)``."""
    if not isinstance(y, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise InputError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.dim() != 1:
        raise InputError(f"{name} must be 1-D (one label per sample), got shape {tuple(y.shape)}")
    if batch_size is not None and y.shape[0] != batch_size:
        raise InputError(f"{name} has {y.shape[0]} labels for a batch of {batch_size} inputs")
    if y.numel() > 0:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise InputError(
                f"{name} has labels in [{lo}, {hi}], expected [0, {num_classes - 1}]"
                f" for {num_classes} classes"
            )
    return y


def check_eps(eps: object, name: str = "eps", upper: float = 1.0) -> float:
    """Validate a perturbation budget in [0, upper] (pixels in [0, 1])."""
    try:
        value = float(eps)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {eps!r}") from None
    if not (0.0 <= value <= upper):
        raise InputError(f"{name} must lie in [0, {upper}], got {value}")
    return value


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Validate an integer argument that must be at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
