"""Evaluation metrics."""

from robens.metrics.accuracy import evaluate_accuracy, weighted_accuracy

__all__ = ["evaluate_accuracy", "weighted_accuracy"]
