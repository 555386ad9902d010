"""CIFAR-style ResNet (He et al., "Deep Residual Learning", CVPR 2016, Sec. 4.2).

depth = 6n + 2: a 3x3 conv with 16 channels, then 3 stages of n basic blocks with 16/32/64
channels (stride 2 at the start of stages 2 and 3), global average pooling and the classifier.
ResNet-20 (n = 3) and ResNet-26 (n = 4) are the GAL members (Kariyappa & Qureshi 2019;
docs/methods.md section 2: C16-3x{RES16-RES32-RES64}-FC10).

Shortcut: option A by default (parameter-free: stride-2 subsampling and zero-padded channels, as
He et al. use on CIFAR; ResNet-20 has 269,722 parameters for 10 classes); ``shortcut="B"`` uses a
1x1 conv + BatchNorm projection where the shape changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from robens.errors import ConfigError
from robens.models.layers import ImageClassifier, Normalize, NormalizeSpec, make_activation
from robens.models.variants import variant

SHORTCUTS = ("A", "B")


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by ``stride`` and zero-pad the new channels."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad_front, self.pad_back = extra // 2, extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_front}, {self.pad_back})"


class BasicBlock(nn.Module):
    """conv3x3-BN-act-conv3x3-BN, plus the shortcut, then act (He et al. 2016, Fig. 2)."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        activation: str,
        leaky_slope: float,
        shortcut: str = "A",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_activation(activation, leaky_slope)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = make_activation(activation, leaky_slope)
        self.shortcut: nn.Module
        if stride == 1 and in_planes == planes:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class CifarResNet(ImageClassifier):
    """CIFAR ResNet of ``depth = 6n + 2`` (n >= 1); ``feature_dim = 64`` (after global pooling)."""

    def __init__(
        self,
        depth: int = 20,
        in_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        *,
        activation: str = "relu",
        leaky_slope: float = 0.1,
        normalize: NormalizeSpec | Normalize | None = None,
        shortcut: str = "A",
    ) -> None:
        super().__init__(in_shape, num_classes, activation, leaky_slope, normalize)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"depth must be 6n + 2 with n >= 1 (20, 26, 32, ...), got {depth!r}")
        if not isinstance(shortcut, str) or shortcut.upper() not in SHORTCUTS:
            raise ConfigError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")
        self.depth = depth
        self.shortcut_type = shortcut.upper()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(self.in_shape[0], 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            self.act(),
        )
        blocks: list[nn.Module] = []
        in_planes = 16
        for stage, planes in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(
                    BasicBlock(
                        in_planes,
                        planes,
                        stride,
                        self.activation,
                        self.leaky_slope,
                        self.shortcut_type,
                    )
                )
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = 64
        self.classifier = nn.Linear(self.feature_dim, self.num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled output of the last block [B, 64]."""
        return self.pool(self.blocks(self.stem(self.normalize(x))))


ResNet20 = variant(
    CifarResNet,
    "ResNet20",
    "ResNet-20: 3 stages x 3 basic blocks (16/32/64 channels).",
    fixed={"depth": 20},
)
ResNet26 = variant(
    CifarResNet,
    "ResNet26",
    "ResNet-26: 3 stages x 4 basic blocks (16/32/64 channels).",
    fixed={"depth": 26},
)
