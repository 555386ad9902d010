"""Ensemble training strategies, registered by name in :data:`STRATEGIES`.

* ``joint`` (default): all members train on the same batches with one objective;
* ``bagging``: member i trains on its own bootstrap resample;
* ``snapshot``: one network, cyclic cosine schedule, one snapshot per cycle;
* ``dverge``: round-robin cross-training on the other members' distilled images (DVERGE).

A new strategy is one module with a ``@STRATEGIES.register("name")`` class derived from
:class:`Strategy`, imported here.
"""

from robens.errors import ConfigError
from robens.training.context import StrategyContext
from robens.training.strategies.bagging import Bagging
from robens.training.strategies.base import MIN_VOTE_WEIGHT, STRATEGIES, Strategy
from robens.training.strategies.dverge import Dverge
from robens.training.strategies.snapshot import Snapshot

__all__ = [
    "MIN_VOTE_WEIGHT",
    "STRATEGIES",
    "Bagging",
    "Dverge",
    "Snapshot",
    "Strategy",
    "make_strategy",
]


def make_strategy(ctx: StrategyContext) -> Strategy:
    """The strategy named by ``training.strategy``, built on ``ctx``."""
    name = ctx.config.training.strategy
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; available: {', '.join(STRATEGIES)}")
    return STRATEGIES.get(name)(ctx)
