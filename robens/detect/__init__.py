"""Adversarial-example detection: scores (higher = normal), ROC-AUC and the RCE protocol.

>>> from robens.detect import roc_auc
>>> roc_auc([0.9, 0.8], [0.1, 0.2])
1.0
"""

from robens.detect.protocol import DetectionResult, detection_protocol
from robens.detect.roc import downsample_curve, roc_auc, roc_curve
from robens.detect.scores import (
    DETECTORS,
    KernelDensity,
    confidence,
    detection_scores,
    features_of,
    log_kernel_density,
    member_agreement,
    non_me,
)

__all__ = [
    "DETECTORS",
    "DetectionResult",
    "KernelDensity",
    "confidence",
    "detection_protocol",
    "detection_scores",
    "downsample_curve",
    "features_of",
    "log_kernel_density",
    "member_agreement",
    "non_me",
    "roc_auc",
    "roc_curve",
]
