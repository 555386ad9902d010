"""Shared building blocks: in-model normalization, the activation factory, argument checks and
the :class:`ImageClassifier` base every robens model derives from.

Convention (docs/design.md): inputs are float NCHW in [0, 1]; normalization lives inside the
model as its first layer, so an attack's eps is measured in pixels.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from robens.errors import ConfigError
from robens.models.convention import output_convention

ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "elu", "gelu", "silu", "softplus", "tanh")
_ACTIVATION_ALIASES = {"leakyrelu": "leaky_relu", "lrelu": "leaky_relu", "swish": "silu"}

NormalizeSpec = tuple[Sequence[float] | float, Sequence[float] | float]


def canonical_activation(name: object) -> str:
    """Return the canonical activation name (``"Leaky-ReLU"`` -> ``"leaky_relu"``)."""
    if not isinstance(name, str):
        raise ConfigError(
            f"activation must be a string, one of {', '.join(ACTIVATIONS)}; got {name!r}"
        )
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ACTIVATION_ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}")
    return key


def check_slope(slope: object, name: str = "leaky_slope") -> float:
    """Validate a Leaky-ReLU negative slope: a finite number in [0, 1]."""
    if isinstance(slope, bool):
        raise ConfigError(f"{name} must be a number in [0, 1], got {slope!r}")
    try:
        value = float(slope)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1], got {slope!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"{name} must be a number in [0, 1], got {slope!r}")
    return value


def make_activation(name: str, slope: float = 0.1) -> nn.Module:
    """Build a fresh activation module by name.

    ``"leaky_relu"`` uses ``negative_slope=slope``; GAL (Kariyappa & Qureshi 2019, Sec. 4) uses
    Leaky-ReLU after every conv so that the input-gradient terms do not vanish. Never in place,
    so double backward and ``torch.func`` transforms stay safe.
    """
    key = canonical_activation(name)
    if key == "relu":
        return nn.ReLU()
    if key == "leaky_relu":
        return nn.LeakyReLU(negative_slope=check_slope(slope))
    if key == "elu":
        return nn.ELU()
    if key == "gelu":
        return nn.GELU()
    if key == "silu":
        return nn.SiLU()
    if key == "softplus":
        return nn.Softplus()
    return nn.Tanh()


def _as_floats(value: object, name: str) -> list[float]:
    if isinstance(value, torch.Tensor):
        value = value.detach().flatten().tolist()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise ConfigError(
            f"{name} must be a number or a non-empty sequence of numbers, got {value!r}"
        )
    out: list[float] = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{name} must hold numbers only, got {value!r}")
        out.append(float(v))
    return out


def broadcast_stats(
    mean: object, std: object, num_channels: int | None = None
) -> tuple[list[float], list[float]]:
    """Validate ``mean``/``std`` and broadcast them to ``num_channels`` plain float lists."""
    m, s = _as_floats(mean, "normalize mean"), _as_floats(std, "normalize std")
    n = max(len(m), len(s)) if num_channels is None else num_channels
    for vals, label in ((m, "mean"), (s, "std")):
        if len(vals) not in (1, n):
            raise ConfigError(
                f"normalize {label} has {len(vals)} values, expected 1 or {n} (one per channel)"
            )
    m = m * n if len(m) == 1 else m
    s = s * n if len(s) == 1 else s
    if not all(math.isfinite(v) for v in m):
        raise ConfigError(f"normalize mean must be finite, got {m}")
    if not all(math.isfinite(v) and v > 0 for v in s):
        raise ConfigError(f"normalize std must be finite and > 0, got {s}")
    return m, s


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` with ``mean`` and ``std`` as (persistent) buffers.

    ``mean`` and ``std`` are floats or per-channel sequences; a float (or a length-1 sequence)
    broadcasts over channels. ``Normalize(0.0, 1.0)`` is the identity.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        mean: Sequence[float] | float = 0.0,
        std: Sequence[float] | float = 1.0,
        num_channels: int | None = None,
    ) -> None:
        super().__init__()
        m, s = broadcast_stats(mean, std, num_channels)
        n = len(m)
        self.register_buffer("mean", torch.tensor(m, dtype=torch.float32).view(1, n, 1, 1))
        self.register_buffer("std", torch.tensor(s, dtype=torch.float32).view(1, n, 1, 1))

    @property
    def num_channels(self) -> int:
        return int(self.mean.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def as_lists(self) -> tuple[list[float], list[float]]:
        """``(mean, std)`` as plain per-channel float lists (JSON friendly)."""
        return self.mean.flatten().tolist(), self.std.flatten().tolist()

    def extra_repr(self) -> str:
        m, s = self.as_lists()
        return f"mean={[round(v, 4) for v in m]}, std={[round(v, 4) for v in s]}"


def check_in_shape(
    in_shape: object, min_size: int = 1, model: str = "model"
) -> tuple[int, int, int]:
    """Validate ``in_shape`` = (C, H, W) of positive ints with ``H, W >= min_size``."""
    if isinstance(in_shape, (str, bytes)) or not isinstance(in_shape, Sequence):
        raise ConfigError(f"in_shape must be a (C, H, W) triple of positive ints, got {in_shape!r}")
    dims: list[int] = []
    for d in in_shape:
        if isinstance(d, bool):
            break
        try:
            dims.append(operator.index(d))
        except TypeError:
            break
    if len(dims) != 3 or len(in_shape) != 3 or any(d < 1 for d in dims):
        raise ConfigError(f"in_shape must be a (C, H, W) triple of positive ints, got {in_shape!r}")
    c, h, w = dims
    if h < min_size or w < min_size:
        raise ConfigError(
            f"in_shape {tuple(dims)} is too small for {model}: its pooling needs H, W >= {min_size}"
        )
    return int(c), int(h), int(w)


def check_num_classes(num_classes: object) -> int:
    """Validate ``num_classes``: an int >= 2."""
    if isinstance(num_classes, bool):
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    try:
        n = operator.index(num_classes)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}") from None
    if n < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return int(n)


def normalize_stats(
    normalize: NormalizeSpec | Mapping[str, object] | Normalize | None, num_channels: int
) -> tuple[list[float], list[float]] | None:
    """Parse a ``normalize`` argument: ``None``, ``(mean, std)``, ``{"mean": .., "std": ..}`` or
    a :class:`Normalize`; return per-channel ``(mean, std)`` float lists, or ``None``."""
    if normalize is None:
        return None
    if isinstance(normalize, Normalize):
        mean, std = normalize.as_lists()
    elif isinstance(normalize, Mapping) and set(normalize) == {"mean", "std"}:
        mean, std = normalize["mean"], normalize["std"]
    elif (
        isinstance(normalize, (str, bytes))
        or not isinstance(normalize, Sequence)
        or len(normalize) != 2
    ):
        raise ConfigError(f"normalize must be None or a (mean, std) pair, got {normalize!r}")
    else:
        mean, std = normalize
    return broadcast_stats(mean, std, num_channels)


def make_normalize(
    normalize: NormalizeSpec | Mapping[str, object] | Normalize | None, num_channels: int
) -> Normalize:
    """Build the model's first layer from a ``normalize`` argument (``None``: identity)."""
    stats = normalize_stats(normalize, num_channels)
    if stats is None:
        return Normalize(0.0, 1.0, num_channels=num_channels)
    return Normalize(*stats, num_channels=num_channels)


class ImageClassifier(nn.Module):
    """Base of every robens model: ``forward(x) = classifier(features(x))``.

    Subclasses set ``feature_dim`` and ``classifier = nn.Linear(feature_dim, num_classes)`` and
    implement :meth:`features` (the penultimate representation, after the last hidden activation;
    used by kernel-density detection and Max-Mahalanobis heads). Swap a head by assigning
    ``model.classifier``.
    """

    min_size: ClassVar[int] = 1
    feature_dim: int
    classifier: nn.Module

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        activation: str,
        leaky_slope: float,
        normalize: NormalizeSpec | Normalize | None,
        min_size: int | None = None,
    ) -> None:
        super().__init__()
        if min_size is not None:
            self.min_size = min_size
        self.in_shape = check_in_shape(in_shape, self.min_size, type(self).__name__)
        self.num_classes = check_num_classes(num_classes)
        self.activation = canonical_activation(activation)
        self.leaky_slope = check_slope(leaky_slope)
        self.normalize = make_normalize(normalize, self.in_shape[0])

    @property
    def output_convention(self) -> str:
        """What :meth:`forward` returns: its ``classifier``'s convention (``"logits"`` for a
        linear head, ``"mm_scores"`` for a Max-Mahalanobis head); see
        :mod:`robens.models.convention`."""
        return output_convention(self.classifier)

    def act(self) -> nn.Module:
        """A fresh instance of the model's activation."""
        return make_activation(self.activation, self.leaky_slope)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
