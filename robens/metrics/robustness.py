"""Member disagreement and accuracy under Gaussian noise and small rotations.

* :func:`disagreement_rate`: the mean over samples and member pairs of ``1[f_a(x) != f_b(x)]``
  (pairwise disagreement, a standard ensemble-diversity measure; Kuncheva & Whitaker 2003), and
  the fraction of samples on which the members are not unanimous.
* :func:`noise_accuracy`: accuracy on ``clip(x + N(0, sigma^2 I), 0, 1)`` (the MMC paper's
  Gaussian-noise robustness, Pang et al. ICLR 2020, Sec. 5.3).
* :func:`rotate` / :func:`rotation_accuracy`: rotation about the image centre with
  ``torch.nn.functional.affine_grid`` + ``grid_sample`` (bilinear, zero padding), positive
  angles counter-clockwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from robens.errors import InputError
from robens.utils import eval_mode

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def _device_of(model: object) -> torch.device | None:
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return None


@torch.no_grad()
def disagreement_rate(ensemble: object, batches: Batches) -> dict[str, float]:
    """``{"pairwise": mean pairwise disagreement, "any": P(members not unanimous), "n"}``."""
    if not hasattr(ensemble, "member_logits"):
        raise InputError("disagreement_rate needs an Ensemble (member_logits)")
    dev = _device_of(ensemble)
    pair_sum = 0.0
    any_sum = 0
    n = 0
    with eval_mode(ensemble):
        for x, _ in batches:
            if dev is not None:
                x = x.to(dev)
            votes = ensemble.member_logits(x).argmax(-1)  # [M, B]
            m = votes.shape[0]
            n += votes.shape[1]
            if m < 2:
                continue
            diff = votes.unsqueeze(0) != votes.unsqueeze(1)  # [M, M, B]
            iu = torch.triu_indices(m, m, offset=1)
            pair_sum += float(diff[iu[0], iu[1]].double().mean(0).sum())
            any_sum += int((votes != votes[:1]).any(0).sum())
    if n == 0:
        raise InputError("disagreement_rate got no samples")
    return {"pairwise": pair_sum / n, "any": any_sum / n, "n": n}


def _accuracy_under(
    model: Callable[[torch.Tensor], torch.Tensor],
    batches: Batches,
    transforms: dict[float, Callable[[torch.Tensor], torch.Tensor]],
) -> dict[float, float]:
    dev = _device_of(model)
    correct = dict.fromkeys(transforms, 0)
    n = 0
    with eval_mode(model), torch.no_grad():
        for x, y in batches:
            if dev is not None:
                x, y = x.to(dev), y.to(dev)
            n += y.numel()
            for key, fn in transforms.items():
                correct[key] += int((model(fn(x)).argmax(-1) == y).sum())
    if n == 0:
        raise InputError("accuracy evaluation got no samples")
    return {k: v / n for k, v in correct.items()}


def add_gaussian_noise(
    x: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``clip(x + sigma * N(0, I), 0, 1)``."""
    if sigma < 0 or not math.isfinite(sigma):
        raise InputError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if sigma == 0:
        return x.clone()
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + sigma * noise).clamp(0.0, 1.0)


def noise_accuracy(
    model: Callable[[torch.Tensor], torch.Tensor],
    batches: Batches,
    sigmas: Sequence[float],
    seed: int = 0,
) -> dict[float, float]:
    """Accuracy under Gaussian noise for each ``sigma`` (seeded; one draw per sample)."""
    dev = _device_of(model) or torch.device("cpu")
    gens = {s: torch.Generator(device=dev).manual_seed(seed) for s in sigmas}
    fns = {float(s): (lambda x, s=s: add_gaussian_noise(x, s, gens[s])) for s in sigmas}
    return _accuracy_under(model, batches, fns)


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate images ``[B, C, H, W]`` by ``degrees`` counter-clockwise about their centre.

    Bilinear interpolation, zeros outside the image (``grid_sample`` with
    ``align_corners=False``); pixel aspect is handled so non-square images rotate rigidly.
    """
    if x.dim() != 4:
        raise InputError(f"x must be [B, C, H, W], got {list(x.shape)}")
    b, _, h, w = x.shape
    t = math.radians(degrees)
    cos, sin = math.cos(t), math.sin(t)
    # output pixel p samples the input at R(-t) p; in (x right, y down) pixel coordinates a
    # counter-clockwise turn on screen is [[cos, sin], [-sin, cos]], so R(-t) is its transpose;
    # normalized coordinates scale x by 2/w and y by 2/h.
    theta = torch.tensor(
        [[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]], dtype=x.dtype, device=x.device
    )
    grid = F.affine_grid(theta.expand(b, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotation_accuracy(
    model: Callable[[torch.Tensor], torch.Tensor], batches: Batches, degrees: Sequence[float]
) -> dict[float, float]:
    """Accuracy on images rotated by each angle in ``degrees``."""
    return _accuracy_under(
        model, batches, {float(a): (lambda x, a=a: rotate(x, a).clamp(0.0, 1.0)) for a in degrees}
    )
