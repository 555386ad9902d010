"""What the report prints beside an accuracy: its sample size, a 95% Wilson interval and the
attack settings that produced it, read from the record itself.

An accuracy record holds the fraction ``value`` of ``n`` images, so the number of correct
images is ``k = round(value * n)`` and its interval is :func:`robens.stats.wilson_interval`.
"""

from __future__ import annotations

import math
from typing import Any

from scipy.stats import norm

from robens.stats import wilson_interval

#: record fields of the attack settings, in the order the report prints them, and their labels
SETTING_FIELDS = (
    ("param_steps", "steps"), ("param_restarts", "restarts"), ("param_n_restarts", "restarts"),
    ("param_alpha", "alpha"), ("param_n_queries", "queries"), ("param_iterations", "iterations"),
    ("param_seeds", "seeds"), ("param_stages", "stages"), ("param_c", "c"),
    ("param_binary_search_steps", "binary steps"), ("loss", "loss"), ("norm", "norm"),
)
#: ``params`` keys (suite records of older runs keep only the parameters the suite set)
PARAM_LABELS = {"steps": "steps", "restarts": "restarts", "n_restarts": "restarts",
                "alpha": "alpha", "n_queries": "queries", "iterations": "iterations",
                "seeds": "seeds", "loss": "loss", "norm": "norm"}


def value_of(rec: dict[str, Any] | None) -> float | None:
    """The record's value (``None`` when absent or NaN)."""
    if rec is None or rec.get("value") is None:
        return None
    v = float(rec["value"])
    return None if math.isnan(v) else v


def interval(rec: dict[str, Any] | None, z: float = 1.959963984540054) -> (
        tuple[float, float] | None):
    """The Wilson interval of an accuracy record (``None`` without a value or an ``n``)."""
    v, n = value_of(rec), (rec or {}).get("n")
    if v is None or not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        return None
    return wilson_interval(min(n, max(0, round(v * n))), n, z)


def cell(rec: dict[str, Any] | None, digits: int = 2) -> str:
    """``"45.20 [42.1, 48.3] n=1000"`` (percent); ``"—"`` without a record."""
    v = value_of(rec)
    if v is None:
        return "—"
    ci = interval(rec)
    if ci is None:
        return f"{100 * v:.{digits}f} (n not recorded)"
    return f"{100 * v:.{digits}f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] n={rec['n']}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def settings(rec: dict[str, Any] | None) -> str:
    """The attack settings of a record, e.g. ``"eps 0.1, steps 10, restarts 1, alpha 0.025,
    loss ce, norm linf"``; settings the record does not hold are said to be unrecorded."""
    if rec is None:
        return ""
    parts = [f"eps {float(rec.get('eps', 0)):g}"]
    seen: set[str] = set()
    for key, label in SETTING_FIELDS:
        if rec.get(key) is not None and label not in seen:
            parts.append(f"{label} {_fmt(rec[key])}")
            seen.add(label)
    recorded = len(parts) > 1
    for key, v in sorted((rec.get("params") or {}).items()):
        label = PARAM_LABELS.get(key, key)
        if label not in seen and v is not None:
            parts.append(f"{label} {_fmt(v)}")
            seen.add(label)
    if rec.get("combine_attack"):
        parts.append(f"aggregation {rec['combine_attack']}")
    if rec.get("surrogate"):
        parts.append(f"surrogate {rec['surrogate']}")
    if rec.get("fit_size"):
        parts.append(f"fit on {rec['fit_size']} {rec.get('fit_split', '')} images".replace(
            "  ", " "))
    if not recorded:
        parts.append("other settings: defaults, not recorded")
    return ", ".join(parts)


def combined_interval(
    parts: list[dict[str, Any] | None], weights: list[float]
) -> tuple[float, float] | None:
    """A conservative 95% interval of ``sum_i weights[i] * accuracy_i`` (weights >= 0): the
    same combination of the parts' Wilson bounds, each at level 1 - 0.05/m for m parts
    (Bonferroni), so all hold together, and so the combination, with probability >= 95%."""
    if not parts or len(parts) != len(weights) or any(value_of(p) is None for p in parts):
        return None
    z = float(norm.ppf(1 - 0.05 / (2 * len(parts))))
    cis = [c for c in (interval(p, z) for p in parts) if c is not None]
    if len(cis) != len(parts):
        return None
    return (sum(w * c[0] for w, c in zip(weights, cis, strict=True)),
            sum(w * c[1] for w, c in zip(weights, cis, strict=True)))


def weighted_interval(
    clean: dict[str, Any] | None, uaps: list[dict[str, Any]], weight: float = 0.5
) -> tuple[float, float] | None:
    """The :func:`combined_interval` of ``weight * clean + (1 - weight) * mean(uap)`` (the
    clean and m UAP accuracies: Bonferroni level 1 - 0.05/(m + 1))."""
    if not uaps:
        return None
    return combined_interval([clean, *uaps], [weight] + [(1 - weight) / len(uaps)] * len(uaps))


def mean_cell(recs: list[dict[str, Any]], digits: int = 1) -> str:
    """The mean of several accuracies with its :func:`combined_interval` and their n."""
    vals = [value_of(r) for r in recs]
    if not recs or any(v is None for v in vals):
        return "—"
    mean = sum(v for v in vals if v is not None) / len(vals)
    ci = combined_interval(list(recs), [1 / len(recs)] * len(recs))
    ns = "/".join(str(n) for n in sorted({r.get("n") for r in recs}, key=str))
    if ci is None:
        return f"{100 * mean:.{digits}f} (n not recorded)"
    return f"{100 * mean:.{digits}f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] n={ns}"
