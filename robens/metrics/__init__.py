"""Evaluation metrics: accuracy, transferability, GAAS, gradient diversity, Jacobian norms,
disagreement and noise/rotation robustness."""

from robens.metrics.accuracy import evaluate_accuracy, weighted_accuracy
from robens.metrics.gaas import gaas_directions, gaas_success, regular_hadamard
from robens.metrics.gradients import STATISTICS, gradient_statistics, histogram, summarize
from robens.metrics.jacobian import jacobian_statistics, member_jacobians, theorem31
from robens.metrics.robustness import (
    add_gaussian_noise,
    disagreement_rate,
    noise_accuracy,
    rotate,
    rotation_accuracy,
)
from robens.metrics.transfer import surrogate_transfer, transfer_matrix, transfer_summary

__all__ = [
    "STATISTICS",
    "add_gaussian_noise",
    "disagreement_rate",
    "evaluate_accuracy",
    "gaas_directions",
    "gaas_success",
    "gradient_statistics",
    "histogram",
    "jacobian_statistics",
    "member_jacobians",
    "noise_accuracy",
    "regular_hadamard",
    "rotate",
    "rotation_accuracy",
    "summarize",
    "surrogate_transfer",
    "theorem31",
    "transfer_matrix",
    "transfer_summary",
    "weighted_accuracy",
]
