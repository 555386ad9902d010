"""Model registry (timm style): models are built by name from plain, JSON-serializable arguments.

Models live in :data:`MODELS`, a shared :class:`~robens.registry.Registry`; add one with
``@register_model("name")`` on a class or factory taking the standard arguments.

``build_model("conv3", in_shape=(1, 28, 28), activation="leaky_relu")`` returns an
:class:`~robens.models.layers.ImageClassifier` whose ``robens_spec`` dict rebuilds the same
architecture through :func:`build_model_from_spec` (used by checkpoints).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from robens.errors import ConfigError
from robens.models.convnet import Conv3, Conv4
from robens.models.layers import (
    NormalizeSpec,
    canonical_activation,
    check_in_shape,
    check_num_classes,
    check_slope,
    normalize_stats,
)
from robens.models.lenet import LeNet5
from robens.models.resnet import CifarResNet, ResNet20, ResNet26
from robens.registry import Registry

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])

#: name -> model class or factory (names case-insensitive, ``-``, ``_`` and spaces ignored)
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
_STANDARD_ARGS = ("in_shape", "num_classes", "activation", "leaky_slope", "normalize")


def _key(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch not in "-_ ")


def _check_builder_signature(name: str, builder: Callable[..., Any]) -> None:
    """A builder must accept every standard keyword (or ``**kwargs``): refused at registration,
    not at the first ``build_model``, with the keywords it lacks named."""
    if not callable(builder):
        raise ConfigError(f"model {name!r}: the registered builder {builder!r} is not callable")
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):  # a builtin or C extension without a signature: trust it
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    missing = [a for a in _STANDARD_ARGS if a not in params or params[a].kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL)]
    if missing:
        what = getattr(builder, "__qualname__", repr(builder))
        raise ConfigError(
            f"model {name!r}: {what} must accept the keyword arguments"
            f" {', '.join(_STANDARD_ARGS)} (or **kwargs); it lacks {', '.join(missing)}"
        )


def register_model(name: str, aliases: Sequence[str] = ()) -> Callable[[Builder], Builder]:
    """Decorator registering a model class or factory under ``name`` (plus ``aliases``).

    The builder is called as ``builder(in_shape=..., num_classes=..., activation=...,
    leaky_slope=..., normalize=..., **kw)`` and must return an ``nn.Module``. Names are matched
    case-insensitively, ignoring ``-``, ``_`` and spaces. Re-registering a taken name is an error.
    """
    if not isinstance(name, str) or not _key(name):
        raise ConfigError(f"model name must be a non-empty string, got {name!r}")
    keys = (_key(name), *(_key(a) for a in aliases))

    def decorator(builder: Builder) -> Builder:
        _check_builder_signature(name, builder)
        taken = MODELS.aliases()
        for k in keys:
            owner = taken.get(k)
            if owner is not None and MODELS.get(owner) is not builder:
                raise ConfigError(f"model name {k!r} is already registered (as {owner!r})")
        MODELS.register(name, builder, aliases=keys, replace=True)
        return builder

    return decorator


def list_models() -> list[str]:
    """Sorted canonical names of the registered models."""
    return MODELS.names()


def resolve_model_name(name: object) -> str:
    """Canonical registered name for ``name`` (case-insensitive alias); ConfigError if unknown."""
    if isinstance(name, str) and _key(name) in MODELS:
        return MODELS.canonical(_key(name))
    raise ConfigError(f"unknown model {name!r}; available models: {', '.join(list_models())}")


def _spec_extras(
    name: str, builder: Callable[..., nn.Module], kw: Mapping[str, Any]
) -> dict[str, Any]:
    """Check the extra keyword arguments of ``builder`` and return them for the spec, with the
    builder's JSON-serializable defaults filled in (so a spec survives a change of default)."""
    params = inspect.signature(builder).parameters
    extras: dict[str, Any] = {}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        named = {
            p: v
            for p, v in params.items()
            if p not in _STANDARD_ARGS
            and p != "self"
            and v.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        unknown = sorted(set(kw) - set(named))
        if unknown:
            raise ConfigError(
                f"unknown argument(s) {', '.join(unknown)} for model {name!r}; extra arguments"
                f" it accepts: {', '.join(named) or 'none'}"
            )
        for p, v in named.items():
            if v.default is not inspect.Parameter.empty and p not in kw:
                try:
                    json.dumps(v.default)
                except (TypeError, ValueError):
                    continue
                extras[p] = v.default
    for key, value in kw.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"argument {key}={value!r} of model {name!r} must be JSON-serializable"
            ) from None
        extras[key] = value
    return {k: extras[k] for k in sorted(extras)}


def build_model(
    name: str,
    *,
    in_shape: Sequence[int] = (1, 28, 28),
    num_classes: int = 10,
    activation: str = "relu",
    leaky_slope: float = 0.1,
    normalize: NormalizeSpec | Mapping[str, Any] | None = None,
    seed: int | None = None,
    **kw: Any,
) -> nn.Module:
    """Build a registered model; see :func:`list_models` for names.

    ``normalize`` is ``None`` (identity) or ``(mean, std)`` (floats or per-channel sequences),
    applied inside the model. ``seed`` makes the weight initialization reproducible without
    touching the global RNG. Extra ``kw`` go to the model (e.g. ``shortcut="B"`` for ResNets,
    ``depth=32`` for ``"resnet"``). The result carries ``model.robens_spec``, a JSON-serializable
    dict such that ``build_model_from_spec(model.robens_spec)`` rebuilds the same architecture.
    """
    canonical = resolve_model_name(name)
    builder = MODELS.get(canonical)
    shape = check_in_shape(in_shape, 1, canonical)
    n_cls = check_num_classes(num_classes)
    act = canonical_activation(activation)
    slope = check_slope(leaky_slope)
    norm = normalize_stats(normalize, shape[0])
    extras = _spec_extras(canonical, builder, kw)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be an int or None, got {seed!r}")

    def make() -> nn.Module:
        return builder(
            in_shape=shape,
            num_classes=n_cls,
            activation=act,
            leaky_slope=slope,
            normalize=norm,
            **kw,
        )

    if seed is None:
        model = make()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = make()
    if not isinstance(model, nn.Module):
        raise ConfigError(f"builder of model {canonical!r} returned {type(model).__name__}")
    model.robens_spec = {
        "name": canonical,
        "in_shape": list(shape),
        "num_classes": n_cls,
        "activation": act,
        "leaky_slope": slope,
        "normalize": None if norm is None else [list(norm[0]), list(norm[1])],
        **extras,
    }
    return model


def build_model_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from its ``robens_spec`` (also after a JSON round trip)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"model spec must be a mapping, got {type(spec).__name__}")
    if "name" not in spec:
        raise ConfigError("model spec has no 'name'")
    args = dict(spec)
    name = args.pop("name")
    if "seed" in args:
        raise ConfigError("model spec must not contain 'seed' (weights come from the checkpoint)")
    return build_model(name, **args)


register_model("lenet", aliases=("lenet5", "lenet-5-variant"))(LeNet5)
register_model("conv3", aliases=("convnet3",))(Conv3)
register_model("conv4", aliases=("convnet4",))(Conv4)
register_model("resnet20")(ResNet20)
register_model("resnet26")(ResNet26)
register_model("resnet", aliases=("cifar_resnet",))(CifarResNet)
