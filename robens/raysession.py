"""One Ray session for sweeps and recipes: importing, starting and stopping Ray in one place.

:func:`ray_session` starts a local instance (or connects to ``address``) unless Ray is already
initialized, and shuts down only an instance it started, so a recipe can hold one session
while the sweeps of a wave run side by side inside it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Mapping
from typing import Any

from robens.errors import ConfigError

#: how to install Ray, the optional ``sweep`` extra (its pin is in ``pyproject.toml``)
INSTALL_HINT = 'pip install "robens[sweep]" (or pip install ray==2.60.0)'


def import_ray() -> Any:
    """The ``ray`` module; a clear :class:`ConfigError` when it is not installed.

    Ray is an optional extra: nothing imports it at module level, and the serial backend
    (``backend="serial"``, ``--backend serial``) runs sweeps and recipes without it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"the ray backend needs Ray, an optional extra: {INSTALL_HINT}; or run the trials"
            " in-process, one by one, without Ray: --backend serial (backend='serial')"
        ) from None
    return ray


#: seconds a cluster address gets to accept a TCP connection before the sweep gives up
PROBE_TIMEOUT = 3.0
_DEFAULT_PORTS = {"ray": 10001, "": 6379}


def check_ray_target(
    address: str | None, num_cpus: int | None = None, timeout: float = PROBE_TIMEOUT
) -> None:
    """Fail fast on a bad Ray target: ``num_cpus`` below 1, or a ``host:port`` (or
    ``ray://host:port``) address that does not accept a TCP connection within ``timeout``
    seconds (``ray.init`` itself retries for about 20 s). ``auto`` and ``local`` are left to Ray."""
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int)
                                 or num_cpus < 1):
        raise ConfigError(f"num_cpus must be an integer >= 1, got {num_cpus!r}")
    if not address or address in ("auto", "local"):
        return
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    host, colon, port_text = rest.rstrip("/").rpartition(":")
    if not colon:
        host, port_text = rest.rstrip("/"), str(_DEFAULT_PORTS.get(scheme, 6379))
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"Ray address {address!r}: port {port_text!r} is not a number") from None
    if not host or not 0 < port < 65536:
        raise ConfigError(f"Ray address {address!r} is not host:port (or ray://host:port)")
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            pass
    except OSError as exc:
        problem: str | None = f"{host}:{port}: {exc.strerror or exc} within {timeout:g} s"
    else:
        problem = _gcs_problem(f"{host}:{port}") if not scheme else None
    if problem:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address!r} ({problem}); check the address, or"
            " drop --address for a local Ray"
        )


def _gcs_problem(address: str) -> str | None:
    """Ask the GCS at ``address`` for its cluster id once (``ray.init`` asks for about 20 s):
    something that accepts TCP but is no Ray head (a proxy, another service) answers at once.
    ``None`` when it answers, or when this Ray has no client to ask with."""
    try:
        from ray._raylet import GcsClient
    except ImportError:
        return None
    try:
        GcsClient(address=address).cluster_id  # noqa: B018 - the call is the probe
    except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not a Ray head"
        return f"{address} accepts connections but is not a Ray head: {str(exc)[:200]}"
    return None


def init_kwargs(
    address: str | None = None,
    num_cpus: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``ray.init`` arguments: quiet, no dashboard; a cluster ``address`` or local ``num_cpus``.

    ``logging_level`` is that of the driver's ``ray`` logger: ``ERROR`` for the local instance
    robens starts itself, whose start-up warnings (token authentication enabled by default,
    ...) concern no choice of the user's; ``WARNING`` for a cluster given by ``address``, whose
    warnings may. Errors reach the user either way, and ``ray.init`` raises on a failure."""
    local = address in (None, "", "local")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR if local else logging.WARNING,
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


__all__ = ["INSTALL_HINT", "check_ray_target", "import_ray", "init_kwargs", "ray_session"]
