"""Training: the loop, schedules and ensemble strategies (plug-ins on a narrow context)."""

from robens.training.context import StrategyContext, build_optimizer
from robens.training.strategies import STRATEGIES, Strategy, make_strategy
from robens.training.trainer import Trainer, TrainResult

__all__ = [
    "STRATEGIES",
    "Strategy",
    "StrategyContext",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "make_strategy",
]
