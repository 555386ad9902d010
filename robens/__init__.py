"""robens: adversarially robust model ensembles in PyTorch.

The bring-your-own-model API (:mod:`robens.api`) is imported lazily: ``robens.fit``,
``robens.save_model``, ``robens.load_model``, and ``robens.evaluate(model, suite, data,
out=...)``: ``robens.evaluate`` is also the evaluation package, made callable here.
"""

from __future__ import annotations

import importlib
import types
from typing import Any

__version__ = "0.1.0"

_API = ("fit", "save_model", "load_model", "FitResult")


class _CallableEvaluate(types.ModuleType):
    """The ``robens.evaluate`` package, callable as :func:`robens.api.evaluate`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return importlib.import_module("robens.api").evaluate(*args, **kwargs)


importlib.import_module("robens.evaluate").__class__ = _CallableEvaluate


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("robens.api"), name)
    raise AttributeError(f"module 'robens' has no attribute {name!r}")


__all__ = ["__version__", "evaluate", *_API]
