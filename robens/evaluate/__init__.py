"""Evaluation: clean accuracy now; attack suites in suite.py."""

from robens.evaluate.clean import checkpoint_test_set, evaluate_clean_checkpoint

__all__ = ["checkpoint_test_set", "evaluate_clean_checkpoint"]
