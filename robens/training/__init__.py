"""Training: the loop, schedules and ensemble strategies."""

from robens.training.trainer import Trainer, TrainResult, build_optimizer

__all__ = ["TrainResult", "Trainer", "build_optimizer"]
