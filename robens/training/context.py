"""What a training strategy may see: a narrow :class:`StrategyContext` instead of the Trainer.

The trainer builds the context once (config, data, ensemble, objective, optimizer, device,
echo) and hands it to the strategy; strategies never import the trainer. A strategy that needs
its own optimizers (one per member, say) builds them with :attr:`StrategyContext.make_optimizer`
and overrides :meth:`~robens.training.strategies.Strategy.train_step`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robens.config import AugmentConfig, ExperimentConfig
from robens.data.base import ImageDataset
from robens.data.transforms import Augment, add_truncated_normal_noise
from robens.ensemble import Ensemble
from robens.objectives import Objective

Echo = Callable[[str], None]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class NonFiniteStep(Exception):
    """Raised by a training step whose loss or gradients are not finite (nothing was stepped).

    The trainer applies ``training.on_nonfinite``: skip the batch, or stop with the message.
    """


def build_optimizer(cfg: ExperimentConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam or SGD(momentum) from the config."""
    o = cfg.optimizer
    params = list(params)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(
        params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
    )


@dataclass(frozen=True)
class BatchAugment:
    """Shift/crop/flip, then the GAL paper's D_noise (truncated normal, sigma = eps/2),
    appended to the batch (``concat``) or replacing it (``replace``)."""

    augment: Augment
    noise_eps: float = 0.0
    noise_mode: str = "concat"

    @classmethod
    def from_config(cls, cfg: AugmentConfig) -> BatchAugment:
        aug = Augment(shift=cfg.shift, crop_padding=cfg.crop_padding, hflip=cfg.hflip)
        return cls(aug, cfg.noise_eps, cfg.noise_mode)

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.augment(x, gen)
        if self.noise_eps > 0:
            noisy = add_truncated_normal_noise(x, self.noise_eps / 2, gen)
            if self.noise_mode == "concat":
                x, y = torch.cat([x, noisy]), torch.cat([y, y])
            else:
                x = noisy
        return x, y


@dataclass(frozen=True)
class StrategyContext:
    """Everything a strategy may use; the config is read-only (completed by validation).

    ``optimizer`` is the trainer's optimizer over all ensemble parameters (saved with every
    checkpoint, under ``optim/`` in the run's ``optimizer.safetensors``);
    ``make_optimizer(params)`` builds another one from the same config. ``member_specs`` are
    the members' build specs (one per member).
    """

    config: ExperimentConfig
    ensemble: Ensemble
    member_specs: list[dict[str, Any]]
    train_set: ImageDataset
    val_set: ImageDataset | None
    objective: Objective
    optimizer: torch.optim.Optimizer
    make_optimizer: OptimizerFactory
    augment: BatchAugment
    device: torch.device
    echo: Echo

    @property
    def seed(self) -> int:
        return self.config.seed
