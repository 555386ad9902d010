"""Checks at the API boundary: each failure names the argument and what was expected."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

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


def parse_eps(value: object, name: str = "eps") -> float:
    """A budget given as a number or a fraction string (``0.1``, ``"8/255"``), as a float."""
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number or a fraction like 8/255, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    num, sep, den = text.partition("/")
    try:
        out = float(num) / float(den) if sep else float(text)
    except (ValueError, ZeroDivisionError):
        raise InputError(
            f"{name} must be a number or a fraction like 8/255, got {text!r}"
        ) from None
    if out != out or out in (float("inf"), float("-inf")):
        raise InputError(f"{name} must be finite, got {text!r}")
    return out


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """Validate an integer argument that must be at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


#: the largest seed every generator takes (torch and numpy seeds are signed 64-bit)
MAX_SEED = 2**63 - 1


def check_seed(seed: object, name: str = "seed") -> int:
    """Validate a random seed: an integer in ``[0, 2**63 - 1]``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{name} must be an integer in [0, 2**63 - 1], got {seed!r}")
    return seed


def parse_device(device: object) -> torch.device:
    """``device`` as a :class:`torch.device`, or an :class:`InputError` naming the accepted
    forms (no availability check: see :func:`check_device`)."""
    if not isinstance(device, str) or not device.strip():
        raise InputError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    try:
        return torch.device(device.strip())
    except (RuntimeError, ValueError):
        raise InputError(
            f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from None


def check_device(device: object) -> torch.device:
    """A usable :class:`torch.device` for ``device`` (``auto`` = CUDA when available, else
    CPU); a device this machine or torch build cannot run on is an :class:`InputError`."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = parse_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no visible GPU"
            raise InputError(f"device {device!r} requested but CUDA is not available"
                             f" ({build}); use --device cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise InputError(f"device {device!r} requested but only {count} CUDA device(s)"
                             " are visible")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"device {device!r} requested but MPS is not available here")
    elif dev.type != "cpu":  # meta, xla, ...: tensors without data, or no robens support
        raise InputError(f"device {device!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return dev


def _probe_writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried: permissions lie to root, and
    pseudo file systems such as /proc refuse files whatever the mode bits say)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".robens-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def _folder_problem(p: Path) -> str | None:
    """Why files cannot be created under folder ``p`` (created if missing), or ``None``."""
    existing = next((q for q in (p, *p.parents) if q.exists()), None)
    if existing is None:  # pragma: no cover - the root always exists
        return None
    if not existing.is_dir():
        return "exists and is not a folder" if existing == p else f"{existing} is not a folder"
    if not _probe_writable(existing):
        return f"cannot create files in {existing}"
    return None


def check_output_dir(path: str | os.PathLike, name: str = "output folder") -> Path:
    """A folder robens may create and write into: no part of it may be an existing file, and
    the deepest existing folder must accept new files. Returns the path (not created)."""
    if "\0" in str(path):
        raise InputError(f"{name} {str(path)!r} contains a NUL character")
    p = Path(path).expanduser()
    problem = _folder_problem(p)
    if problem:
        raise InputError(f"{name} {p}: {problem}")
    return p


def check_output_file(path: str | os.PathLike, name: str = "output file") -> Path:
    """A file path robens may (over)write: not a folder, its folder creatable and writable."""
    if "\0" in str(path):
        raise InputError(f"{name} {str(path)!r} contains a NUL character")
    p = Path(path).expanduser()
    problem = "is a folder; give a file name" if p.is_dir() else _folder_problem(p.parent)
    if problem:
        raise InputError(f"{name} {p}: {problem}")
    return p
