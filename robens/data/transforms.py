"""Batch-wise data augmentation on float NCHW tensors in [0, 1].

Each sample of a batch gets its own random draw, taken from the ``torch.Generator`` passed in
(the global generator when None), so a seed reproduces an augmentation exactly. Random
numbers are drawn on the generator's device and moved to the batch's device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robens.errors import InputError


def _check_batch(x: object, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} must be a float tensor [B, C, H, W], got {shape}")
    return x


def _check_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _check_float(value: object, name: str, positive: bool = False) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        bound = "> 0" if positive else ">= 0"
        raise InputError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def _device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _translate(x: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Move sample ``b`` by ``shifts[b] = (dy, dx)`` pixels (|d| <= pad), filling with 0."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    shifts = shifts.to(x.device)
    rows = torch.arange(h, device=x.device)[None, :] + pad - shifts[:, :1]
    cols = torch.arange(w, device=x.device)[None, :] + pad - shifts[:, 1:]
    batch = torch.arange(b, device=x.device)[:, None, None]
    # advanced indices separated by a slice put their dims first: [B, H, W, C]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def _random_translate(
    x: torch.Tensor, pad: int, name: str, generator: torch.Generator | None, centred: bool
) -> torch.Tensor:
    """Translate each image by a random (dy, dx) with |d| <= pad, zero fill.

    The draw is ``randint(-pad, pad + 1)`` used as the shift (``centred``), or
    ``randint(0, 2 pad + 1)`` used as a crop offset, shift ``pad - offset``.
    """
    _check_batch(x)
    pad = _check_int(pad, name)
    if pad == 0 or x.shape[0] == 0:
        return x
    low = -pad if centred else 0
    draws = torch.randint(
        low, low + 2 * pad + 1, (x.shape[0], 2), generator=generator, device=_device(generator)
    )
    return _translate(x, draws if centred else pad - draws, pad)


def random_shift(
    x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Translate each image by integers (dy, dx) in [-max_shift, max_shift], zero fill."""
    return _random_translate(x, max_shift, "max_shift", generator, centred=True)


def random_crop(
    x: torch.Tensor, padding: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad by ``padding`` on every side, then crop a random window of the original size."""
    return _random_translate(x, padding, "padding", generator, centred=False)


def random_hflip(
    x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5
) -> torch.Tensor:
    """Flip each image left-right with probability ``p``."""
    _check_batch(x)
    p = _check_float(p, "p")
    if p > 1:
        raise InputError(f"p must lie in [0, 1], got {p}")
    if p == 0 or x.shape[0] == 0:
        return x
    flip = torch.rand(x.shape[0], generator=generator, device=_device(generator)) < p
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def truncated_normal(
    shape: tuple[int, ...] | torch.Size,
    sigma: float,
    generator: torch.Generator | None = None,
    cut: float = 2.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Samples of N(0, sigma^2) conditioned on |z| <= cut * sigma (exact inverse CDF).

    Uniforms on [Phi(-cut), Phi(cut)] are mapped through the normal quantile in float64, so
    the result is exact up to rounding; its std is ``sigma * sqrt(1 - 2 c phi(c) / (2 Phi(c)
    - 1))`` (0.8796 sigma for ``cut=2``).
    """
    sigma = _check_float(sigma, "sigma")
    cut = _check_float(cut, "cut", positive=True)
    u = torch.rand(
        tuple(shape), generator=generator, device=_device(generator), dtype=torch.float64
    )
    lo = 0.5 * math.erfc(cut / math.sqrt(2.0))  # Phi(-cut)
    p = lo + (1.0 - 2.0 * lo) * u
    z = math.sqrt(2.0) * torch.erfinv(2.0 * p - 1.0)
    z = z.clamp_(-cut, cut) * sigma
    return z.to(dtype=dtype, device=device if device is not None else z.device)


def truncated_normal_std(cut: float = 2.0) -> float:
    """Standard deviation of a unit normal truncated to [-cut, cut]."""
    mass = math.erf(cut / math.sqrt(2.0))
    density = math.exp(-0.5 * cut * cut) / math.sqrt(2.0 * math.pi)
    return math.sqrt(1.0 - 2.0 * cut * density / mass)


def add_truncated_normal_noise(
    x: torch.Tensor, sigma: float, generator: torch.Generator | None = None, cut: float = 2.0
) -> torch.Tensor:
    """Add truncated normal noise (see :func:`truncated_normal`) and clamp to [0, 1]."""
    _check_batch(x)
    if _check_float(sigma, "sigma") == 0:
        return x
    noise = truncated_normal(x.shape, sigma, generator, cut, dtype=x.dtype, device=x.device)
    return (x + noise).clamp_(0.0, 1.0)


@dataclass(frozen=True)
class Augment:
    """A training augmentation: crop, shift, horizontal flip, then truncated-normal noise.

    With every setting at zero/False it returns its input unchanged.
    """

    shift: int = 0
    crop_padding: int = 0
    hflip: bool = False
    noise_sigma: float = 0.0

    def __post_init__(self) -> None:
        _check_int(self.shift, "shift")
        _check_int(self.crop_padding, "crop_padding")
        if not isinstance(self.hflip, bool):
            raise InputError(f"hflip must be a bool, got {self.hflip!r}")
        _check_float(self.noise_sigma, "noise_sigma")

    @property
    def is_identity(self) -> bool:
        """True when the augmentation changes nothing."""
        return not (self.shift or self.crop_padding or self.hflip or self.noise_sigma)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment the batch ``x`` with randomness from ``generator``."""
        _check_batch(x)
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator)
        if self.shift:
            x = random_shift(x, self.shift, generator)
        if self.hflip:
            x = random_hflip(x, generator)
        if self.noise_sigma:
            x = add_truncated_normal_noise(x, self.noise_sigma, generator)
        return x
