"""One Ray session for sweeps and recipes: importing, starting and stopping Ray in one place.

:func:`ray_session` starts a local instance (or connects to ``address``) unless Ray is already
initialized, and shuts down only an instance it started, so a recipe can hold one session
while the sweeps of a wave run side by side inside it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from robens.errors import ConfigError


def import_ray() -> Any:
    """The ``ray`` module; a clear :class:`ConfigError` when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray backend needs Ray: pip install ray (or run with backend='serial' /"
            " --backend serial)"
        ) from None
    return ray


def init_kwargs(
    address: str | None = None,
    num_cpus: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``ray.init`` arguments: quiet, no dashboard; a cluster ``address`` or local ``num_cpus``."""
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address:
        kwargs["address"] = address
    elif num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    kwargs.update(extra or {})
    return kwargs


@contextlib.contextmanager
def ray_session(
    address: str | None = None,
    num_cpus: int | None = None,
    extra: Mapping[str, Any] | None = None,
    ray: Any = None,
) -> Iterator[Any]:
    """Yield an initialized ``ray`` (``ray`` given, else :func:`import_ray`); shut down on
    exit only when this call started it."""
    ray = ray if ray is not None else import_ray()
    owns = not ray.is_initialized()
    if owns:
        ray.init(**init_kwargs(address, num_cpus, extra))
    try:
        yield ray
    finally:
        if owns:
            ray.shutdown()


__all__ = ["import_ray", "init_kwargs", "ray_session"]
