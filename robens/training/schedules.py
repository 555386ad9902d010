"""Learning-rate schedules as pure functions of the global step (resumable by construction)."""

from __future__ import annotations

import math

from robens.config import ScheduleConfig


def cyclic_cosine_lr(base_lr: float, t: int, total: int, cycles: int) -> float:
    """Snapshot-ensemble schedule (Huang et al. 2017, Eq. 2), ``t`` counted from 1.

    ``alpha(t) = alpha0/2 * (cos(pi * mod(t-1, ceil(T/M)) / ceil(T/M)) + 1)``.
    """
    period = math.ceil(total / cycles)
    return base_lr / 2 * (math.cos(math.pi * ((t - 1) % period) / period) + 1)


def learning_rate(
    cfg: ScheduleConfig, base_lr: float, step: int, steps_per_epoch: int, epochs: int
) -> float:
    """Learning rate at global ``step`` (0-based) of a run of ``epochs`` epochs."""
    total = max(1, steps_per_epoch * epochs)
    if cfg.name == "constant":
        return base_lr
    if cfg.name == "step":
        epoch = step // max(1, steps_per_epoch)
        passed = sum(1 for m in cfg.milestones if epoch >= m)
        return base_lr * cfg.gamma**passed
    if cfg.name == "cosine":
        return base_lr / 2 * (1 + math.cos(math.pi * step / total))
    return cyclic_cosine_lr(base_lr, step + 1, total, cfg.cycles)


def cycle_ends(steps_per_epoch: int, epochs: int, cycles: int) -> list[int]:
    """Global steps (1-based counts of completed steps) at which each cosine cycle ends."""
    total = steps_per_epoch * epochs
    period = math.ceil(total / cycles)
    return [min(total, period * (k + 1)) for k in range(cycles)]
