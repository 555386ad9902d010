"""LeNet-5 variant of the Jacobian Ensembles paper (Co et al.), after Hoffman et al. 2019.

docs/methods.md section 6: "LeNet-5 variant [Hoffman]", reconstructed as
conv5x5-32 (pad 2) -> act -> maxpool2 -> conv5x5-64 (pad 2) -> act -> maxpool2 -> FC1024 -> act
-> FC(num_classes). On 1x28x28 and 10 classes it has 3,274,634 parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robens.models.layers import ImageClassifier, Normalize, NormalizeSpec


class LeNet5(ImageClassifier):
    """LeNet-5 variant for any ``in_shape`` (C, H, W) with H, W >= 4; ``feature_dim = 1024``."""

    min_size = 4

    def __init__(
        self,
        in_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        *,
        activation: str = "relu",
        leaky_slope: float = 0.1,
        normalize: NormalizeSpec | Normalize | None = None,
    ) -> None:
        super().__init__(in_shape, num_classes, activation, leaky_slope, normalize)
        c, h, w = self.in_shape
        self.feature_dim = 1024
        self.body = nn.Sequential(
            nn.Conv2d(c, 32, kernel_size=5, padding=2),
            self.act(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2),
            self.act(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (h // 4) * (w // 4), self.feature_dim),
            self.act(),
        )
        self.classifier = nn.Linear(self.feature_dim, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate representation [B, 1024] (after the FC1024 activation)."""
        return self.body(self.normalize(x))
