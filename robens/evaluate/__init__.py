"""Evaluation: clean accuracy (clean.py) and resumable attack suites (suite.py)."""

from robens.evaluate.clean import checkpoint_test_set, evaluate_clean_checkpoint
from robens.evaluate.suite import SuiteConfig, load_suite, run_suite, run_suite_cli

__all__ = [
    "SuiteConfig",
    "checkpoint_test_set",
    "evaluate_clean_checkpoint",
    "load_suite",
    "run_suite",
    "run_suite_cli",
]
