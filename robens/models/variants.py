"""Named variants of a class: other defaults and fixed arguments, no repeated signature.

``Conv3 = variant(ConvNet, "Conv3", doc, fixed={"layout": ...})`` is a subclass whose
constructor drops ``layout`` from its signature and passes it to ``ConvNet``;
``defaults={"steps": 30}`` changes a default. ``inspect.signature`` shows the variant's own
signature, so registries that read signatures (model specs, attack parameters) see it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

C = TypeVar("C", bound=type)


def variant(
    base: C,
    cls_name: str,
    doc: str,
    *,
    fixed: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    **attrs: Any,
) -> C:
    """A subclass of ``base`` named ``cls_name`` with ``fixed`` arguments and new ``defaults``;
    ``attrs`` become class attributes."""
    fixed, defaults = dict(fixed or {}), dict(defaults or {})
    params = inspect.signature(base).parameters  # without ``self``
    unknown = sorted((set(fixed) | set(defaults)) - set(params))
    if unknown:
        raise TypeError(f"{base.__name__} has no parameter(s) {', '.join(unknown)}")
    sig = inspect.Signature(
        [
            p.replace(default=defaults.get(name, p.default))
            for name, p in params.items()
            if name not in fixed
        ],
        return_annotation=inspect.signature(base.__init__).return_annotation,
    )

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        base.__init__(self, **bound.arguments, **fixed)

    namespace = {
        "__init__": __init__,
        "__signature__": sig,
        "__doc__": doc,
        "__module__": base.__module__,
        "__qualname__": cls_name,
        **attrs,
    }
    return type(base)(cls_name, (base,), namespace)  # type: ignore[return-value]
