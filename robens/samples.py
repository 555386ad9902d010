"""Per-sample outcomes of suite units: the ``suite/samples/<unit>.npz`` arrays a unit stores
(``index``, ``label``, ``pred_clean``, ``pred_adv``) and what a record's value counts in them.

Read by the report's paired comparison and by the recipes' checks (McNemar's test on the same
images), so both count an image as robust by one rule.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def samples_path(run_dir: str | os.PathLike, unit: str) -> Path:
    """Where a run's suite unit ``unit`` stores its per-sample arrays."""
    return Path(run_dir) / "suite" / "samples" / f"{unit}.npz"


def sample_outcomes(
    run_dir: str | os.PathLike, record: dict[str, Any] | None, clean: bool = False
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(dataset index, correct)`` per image of an attack record (``None`` when its unit stored
    no per-sample arrays). Correct = classified correctly attacked and, except for universal
    perturbations (whose accuracy counts every image, as the record's value does), also clean;
    ``clean=True``: correct on the clean images. A damaged file raises (``OSError``,
    ``ValueError``, ``KeyError``); no pickle is ever loaded."""
    unit = None if record is None else record.get("unit")
    if not unit:
        return None
    path = samples_path(run_dir, unit)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        label, adv = z["label"], z["pred_adv"]
        ok = (z["pred_clean"] if clean else adv) == label
        if not clean and record.get("threat_model") != "universal":
            ok &= z["pred_clean"] == label
        return z["index"].astype(np.int64), ok


__all__ = ["sample_outcomes", "samples_path"]
