"""Ensemble training strategies: how batches reach the members and what happens between steps.

``joint`` trains all members on the same batches with one objective (the default).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from robens.training.trainer import Trainer


class Strategy:
    """Joint training; subclasses change batches, per-step hooks and the end of training."""

    name = "joint"

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def steps_per_epoch(self) -> int:
        n, bs = len(self.trainer.train_set), self.trainer.cfg.data.batch_size
        return math.ceil(n / bs)

    def epoch_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.trainer.joint_batches(epoch)

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.trainer.augment_batch(x, y, gen)

    def on_step_end(self) -> None:
        """Called after every optimizer step."""

    def on_fit_end(self) -> None:
        """Called once after the last epoch (before the final evaluation and checkpoint)."""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def state_meta(self) -> dict[str, Any]:
        return {"name": self.name}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore what :meth:`state_tensors` / :meth:`state_meta` saved."""


STRATEGIES: dict[str, type[Strategy]] = {"joint": Strategy}


def make_strategy(trainer: Trainer) -> Strategy:
    """The strategy named by ``training.strategy``."""
    return STRATEGIES[trainer.cfg.training.strategy](trainer)
