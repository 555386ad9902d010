"""Learning-rate schedules as pure functions of the global step (resumable by construction).

Changing ``training.epochs`` of a run (resuming a finished or interrupted run with more, or
fewer, epochs) keeps the steps already taken only when their learning rates do not depend on
the run's length:

- ``constant`` and ``step`` are defined per step and per epoch alone (``step`` milestones are
  epochs), so a run extended from ``E`` to ``E'`` epochs follows exactly the schedule of an
  uninterrupted ``E'``-epoch run; a milestone beyond ``E`` takes effect in the new epochs.
- ``cosine`` and ``cyclic_cosine`` stretch over ``steps_per_epoch * epochs`` steps: another
  length changes the learning rate of steps already taken, so a resume with another
  ``training.epochs`` is refused (:func:`length_change_error` says why).
"""

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


#: schedules whose learning rate at a step depends on the run's length
LENGTH_DEPENDENT = ("cosine", "cyclic_cosine")


def length_change_error(
    cfg: ScheduleConfig, old_epochs: int, new_epochs: int, steps_done: int
) -> str | None:
    """Why a run of ``old_epochs`` cannot go on as one of ``new_epochs``; ``None`` if it can.

    ``steps_done`` is the number of optimizer steps already taken (for the message).
    """
    if old_epochs == new_epochs or cfg.name not in LENGTH_DEPENDENT:
        return None
    return (
        f"schedule {cfg.name!r} spans training.epochs, so changing training.epochs from"
        f" {old_epochs} to {new_epochs} would change the learning rate of the {steps_done}"
        f" step(s) already taken; keep training.epochs: {old_epochs} to resume, or train"
        " the longer run in another output directory (constant and step schedules can be"
        " extended)"
    )
