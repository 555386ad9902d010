"""Evaluation: the robust-accuracy engine (engine.py), clean accuracy (clean.py), ``robens
attack`` (attack.py) and resumable attack suites (suite.py over runner.py, suite_config.py,
storage.py, surrogates.py and the registered units in units/).

Names are imported lazily, so importing :mod:`robens.evaluate.engine` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "SuiteConfig": "robens.evaluate.suite",
    "load_suite": "robens.evaluate.suite",
    "run_suite": "robens.evaluate.suite",
    "run_suite_cli": "robens.evaluate.suite",
    "SuiteRunner": "robens.evaluate.runner",
    "SurrogateSpec": "robens.evaluate.surrogates",
    "Surrogates": "robens.evaluate.surrogates",
    "TrainFn": "robens.evaluate.surrogates",
    "UnitStore": "robens.evaluate.storage",
    "UNITS": "robens.evaluate.units",
    "Unit": "robens.evaluate.units",
    "UnitContext": "robens.evaluate.units",
    "register_unit": "robens.evaluate.units",
    "checkpoint_test_set": "robens.evaluate.clean",
    "evaluate_clean_checkpoint": "robens.evaluate.clean",
    "evaluate_attack": "robens.evaluate.engine",
    "Outcome": "robens.evaluate.engine",
    "Precomputed": "robens.evaluate.engine",
}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'robens.evaluate' has no attribute {name!r}")


__all__ = sorted(_NAMES)
