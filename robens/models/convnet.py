"""Conv-3 and Conv-4 of GAL / Diversity Training (Kariyappa & Qureshi 2019, arXiv:1901.09981,
Sec. 4 "Architectures"; docs/methods.md section 2).

- Conv-3 = C32-C64-M-C128-M-FC1024-FC10
- Conv-4 = C32-C64-C128-M-C128-M-FC1024-FC10

3x3 convs with padding 1, 2x2 max-pool, the activation (Leaky-ReLU in the paper) after every conv
and after FC1024.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robens.errors import ConfigError
from robens.models.layers import ImageClassifier, Normalize, NormalizeSpec
from robens.models.variants import variant

Layout = Sequence[int | str]


class ConvNet(ImageClassifier):
    """Plain conv stack given by a ``layout`` (ints = 3x3 conv widths, ``"M"`` = 2x2 max-pool),
    then FC(``hidden``) -> act -> classifier. ``feature_dim = hidden``."""

    def __init__(
        self,
        in_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        *,
        activation: str = "relu",
        leaky_slope: float = 0.1,
        normalize: NormalizeSpec | Normalize | None = None,
        layout: Layout | None = None,
        hidden: int = 1024,
    ) -> None:
        layout = tuple(layout or ())
        pools = sum(1 for item in layout if item == "M")
        super().__init__(
            in_shape, num_classes, activation, leaky_slope, normalize, min_size=2**pools
        )
        c, h, w = self.in_shape
        layers: list[nn.Module] = []
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            else:
                if isinstance(item, bool) or not isinstance(item, int) or item < 1:
                    raise ConfigError(f"layout entries must be positive ints or 'M', got {item!r}")
                layers += [nn.Conv2d(c, int(item), kernel_size=3, padding=1), self.act()]
                c = int(item)
        self.layout = layout
        self.feature_dim = int(hidden)
        layers += [nn.Flatten(), nn.Linear(c * h * w, self.feature_dim), self.act()]
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(self.feature_dim, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate representation [B, hidden] (after the FC1024 activation)."""
        return self.body(self.normalize(x))


Conv3 = variant(
    ConvNet,
    "Conv3",
    "GAL Conv-3: C32-C64-M-C128-M-FC1024-FC(num_classes).",
    fixed={"layout": (32, 64, "M", 128, "M"), "hidden": 1024},
)
Conv4 = variant(
    ConvNet,
    "Conv4",
    "GAL Conv-4: C32-C64-C128-M-C128-M-FC1024-FC(num_classes).",
    fixed={"layout": (32, 64, 128, "M", 128, "M"), "hidden": 1024},
    defaults={"in_shape": (3, 32, 32)},
)
