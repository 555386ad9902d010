"""Tests of robens.data.transforms: shapes, ranges, identities, shifts, truncated normal."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robens.data.transforms import (
    Augment,
    add_truncated_normal_noise,
    random_crop,
    random_hflip,
    random_shift,
    truncated_normal,
    truncated_normal_std,
)
from robens.errors import InputError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(b: int = 8, c: int = 3, h: int = 10, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=gen(seed))


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Reference: move one image [C, H, W] by (dy, dx) with zero fill, pixel by pixel."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[:, i, j] = x[:, i - dy, j - dx]
    return out


def find_shift(src: torch.Tensor, out: torch.Tensor, m: int) -> tuple[int, int] | None:
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            if torch.equal(shifted(src, dy, dx), out):
                return dy, dx
    return None


ALL = {
    "shift": lambda x, g: random_shift(x, 2, g),
    "crop": lambda x, g: random_crop(x, 3, g),
    "hflip": lambda x, g: random_hflip(x, g),
    "noise": lambda x, g: add_truncated_normal_noise(x, 0.3, g),
    "augment": lambda x, g: Augment(shift=1, crop_padding=2, hflip=True, noise_sigma=0.1)(x, g),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_shape_range_and_reproducibility(name: str) -> None:
    x = batch()
    out = ALL[name](x, gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, ALL[name](x, gen(1)))
    assert not torch.equal(out, ALL[name](x, gen(2)))
    assert torch.equal(x, batch())  # input untouched


def test_identity_at_zero_settings() -> None:
    x = batch()
    assert random_shift(x, 0, gen()) is x and random_crop(x, 0, gen()) is x
    assert random_hflip(x, gen(), p=0.0) is x
    assert add_truncated_normal_noise(x, 0.0, gen()) is x
    assert Augment().is_identity and Augment()(x, gen()) is x
    assert not Augment(noise_sigma=0.1).is_identity


def test_shift_moves_content() -> None:
    x = torch.zeros(200, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0
    out = random_shift(x, 2, gen(3))
    pos = out.flatten(1).argmax(1)
    dy, dx = pos // 9 - 4, pos % 9 - 4
    assert out.sum(dim=(1, 2, 3)).eq(1).all()  # the pixel moved, nothing else appeared
    assert dy.abs().max() == 2 and dx.abs().max() == 2
    offsets = {(int(a), int(b)) for a, b in zip(dy, dx, strict=True)}
    assert len(offsets) == 25  # every offset in [-2, 2]^2 occurs in 200 draws
    assert (dy != 0).any() and (dx != 0).any()


def test_shift_and_crop_are_zero_filled_translations() -> None:
    x = batch(b=16, c=2, h=6, w=7, seed=4) + 0.01
    for out, m in ((random_shift(x, 2, gen(5)), 2), (random_crop(x, 3, gen(6)), 3)):
        for i in range(len(x)):
            assert find_shift(x[i], out[i], m) is not None


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 4),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    m=st.integers(0, 4),
    seed=st.integers(0, 2**31),
)
def test_shift_property(b: int, h: int, w: int, m: int, seed: int) -> None:
    x = torch.rand(b, 1, h, w, generator=gen(seed)) + 0.01
    out = random_shift(x, m, gen(seed))
    assert out.shape == x.shape
    for i in range(b):
        assert find_shift(x[i], out[i], m) is not None


def test_hflip() -> None:
    x = batch(b=400, c=1, h=3, w=5)
    out = random_hflip(x, gen(7))
    flipped = torch.tensor([torch.equal(o, f) for o, f in zip(out, x.flip(-1), strict=True)])
    same = torch.tensor([torch.equal(o, s) for o, s in zip(out, x, strict=True)])
    assert (flipped ^ same).all()
    assert 0.4 < flipped.float().mean() < 0.6
    assert torch.equal(random_hflip(x, gen(), p=1.0), x.flip(-1))


def test_truncated_normal_bounds_and_std() -> None:
    sigma = 0.3
    z = truncated_normal((200_000,), sigma, gen(8))
    assert z.dtype == torch.float32 and z.abs().max() <= 2 * sigma + 1e-6
    assert z.abs().max() > 1.95 * sigma  # the tails reach the cut
    assert abs(truncated_normal_std(2.0) - 0.8796) < 1e-4
    assert abs(z.std().item() / sigma - 0.8796) < 0.01
    assert abs(z.mean().item()) < 0.005
    assert torch.equal(z, truncated_normal((200_000,), sigma, gen(8)))
    z1 = truncated_normal((100_000,), 1.0, gen(9), cut=1.0)
    assert z1.abs().max() <= 1.0 and abs(z1.std().item() - truncated_normal_std(1.0)) < 0.01
    assert math.isclose(truncated_normal_std(8.0), 1.0, abs_tol=1e-9)
    assert truncated_normal((2, 3), 0.0, gen()).abs().max() == 0
    assert truncated_normal((4,), 1.0, gen(), dtype=torch.float64).dtype == torch.float64


def test_noise_is_bounded_and_clamped() -> None:
    x = torch.full((4, 1, 50, 50), 0.5)
    out = add_truncated_normal_noise(x, 0.1, gen(10))
    assert (out - x).abs().max() <= 0.2 + 1e-6
    edge = add_truncated_normal_noise(torch.ones(2, 1, 8, 8), 0.5, gen(11))
    assert edge.max() == 1.0 and edge.min() < 1.0


def test_augment_applies_everything() -> None:
    x = batch(b=4)
    aug = Augment(shift=1, crop_padding=1, hflip=True, noise_sigma=0.05)
    out = aug(x, gen(12))
    assert out.shape == x.shape and not torch.equal(out, x)


def test_invalid_arguments() -> None:
    x = batch()
    with pytest.raises(InputError):
        random_shift(x, -1, gen())
    with pytest.raises(InputError):
        random_crop(x, 1.5, gen())  # type: ignore[arg-type]
    with pytest.raises(InputError):
        random_hflip(x, gen(), p=1.5)
    with pytest.raises(InputError):
        truncated_normal((3,), -1.0, gen())
    with pytest.raises(InputError):
        truncated_normal((3,), 1.0, gen(), cut=0.0)
    with pytest.raises(InputError):
        random_shift(torch.zeros(2, 3, 4, dtype=torch.float32), 1, gen())
    with pytest.raises(InputError):
        random_shift(torch.zeros(2, 1, 3, 4, dtype=torch.uint8), 1, gen())
    with pytest.raises(InputError):
        Augment(shift=-2)
    with pytest.raises(InputError):
        Augment(noise_sigma=float("nan"))


def test_empty_batch_and_default_generator() -> None:
    empty = torch.zeros(0, 1, 4, 4)
    assert random_shift(empty, 2).shape == empty.shape
    assert random_crop(batch(), 2).shape == batch().shape
