"""Intermediate layers of any ``nn.Module``: candidate names and activations via hooks.

DVERGE (Yang et al., NeurIPS 2020, Sec. 3.1) distils *features before the ReLU* of layer l.
A layer is named by a string:

* ``"a.b"`` (or ``"a.b:out"``): the output of submodule ``a.b`` (its first call);
* ``"a.b:in"``: the (first) input of submodule ``a.b`` -- ``"body.1:in"`` of an activation
  module is the pre-activation feature;
* ``""``: the model's output (logits).

:func:`candidate_layers` lists a model's layers by this rule, in registration order:

1. the model's own ``feature_layers`` (a sequence of such names), when it defines one;
2. otherwise, when the model has activation modules (:data:`ACTIVATION_TYPES`), the input of
   each (the pre-activation features: for the robens CIFAR ResNet-20 these are the stem BN, each
   block's ``bn1`` and each block's pre-ReLU sum -- 19 layers, with the logits DVERGE's 20);
3. otherwise, the output of every leaf module that has parameters;

then the output ``""`` unless ``include_output=False``. Registration order is the forward order
for the robens models; a user's model whose forward differs should declare ``feature_layers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from robens.errors import InputError

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Tanh, nn.Sigmoid,
    nn.PReLU, nn.ReLU6, nn.SELU, nn.CELU, nn.Mish, nn.Hardtanh, nn.Hardswish,
)
OUTPUT = ""


@contextmanager
def frozen_parameters(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Parameters of ``modules`` set to ``requires_grad=False`` inside the block (restored
    after): an input-gradient loop (an attack, a distillation PGD) then records no graph to the
    weights, so its forwards keep fewer tensors and its backwards do less work."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class _Captured(Exception):  # noqa: N818  (control flow: stops the forward once captured)
    pass


def candidate_layers(model: nn.Module, include_output: bool = True) -> list[str]:
    """The model's candidate feature layers by the rule of the module docstring."""
    declared = getattr(model, "feature_layers", None)
    if declared is not None:
        names = [str(n) for n in declared]
        for name in names:
            _split(model, name)  # validate
        names = [n for n in names if n != OUTPUT]
    else:
        acts = [n for n, m in model.named_modules() if n and isinstance(m, ACTIVATION_TYPES)]
        if acts:
            names = [f"{n}:in" for n in acts]
        else:
            names = [
                n for n, m in model.named_modules()
                if n and not any(True for _ in m.children())
                and any(True for _ in m.parameters(recurse=False))
            ]
    return names + [OUTPUT] if include_output else names


def resolve_layer(model: nn.Module, layer: str | int) -> str:
    """A layer name from a name or a 1-based index into :func:`candidate_layers` (DVERGE's
    ``--distill-layer`` counts from 1)."""
    if isinstance(layer, bool):
        raise InputError(f"layer must be a name or a 1-based index, got {layer!r}")
    if isinstance(layer, int):
        names = candidate_layers(model)
        if not 1 <= layer <= len(names):
            raise InputError(f"layer index {layer} is out of range 1..{len(names)}: {names}")
        return names[layer - 1]
    _split(model, layer)
    return layer


def _split(model: nn.Module, layer: str) -> tuple[nn.Module, bool]:
    """``(submodule, capture_input)`` of a layer name; InputError naming the candidates."""
    if not isinstance(layer, str):
        raise InputError(f"layer must be a string name, got {layer!r}")
    name, _, where = layer.partition(":")
    if where not in ("", "in", "out"):
        raise InputError(f"layer {layer!r}: the suffix must be ':in' or ':out'")
    try:
        module = model.get_submodule(name) if name else model
    except AttributeError:
        known = candidate_layers(model) if getattr(model, "feature_layers", None) is None else []
        raise InputError(
            f"model {type(model).__name__} has no layer {name!r}; candidates: {known}"
        ) from None
    return module, where == "in"


def _capture(model: nn.Module, layer: str, run: Any) -> torch.Tensor:
    """Run ``run()`` with a hook on ``layer``; return the captured tensor (forward stops there)."""
    module, want_input = _split(model, layer)
    box: list[torch.Tensor] = []

    def pre_hook(_m: nn.Module, args: tuple) -> None:
        box.append(args[0])
        raise _Captured

    def post_hook(_m: nn.Module, _args: tuple, out: Any) -> None:
        box.append(out[0] if isinstance(out, (tuple, list)) else out)
        raise _Captured

    if module is model and not want_input:
        return run()
    handle = (
        module.register_forward_pre_hook(pre_hook)
        if want_input
        else module.register_forward_hook(post_hook)
    )
    try:
        run()
    except _Captured:
        pass
    finally:
        handle.remove()
    if not box:
        raise InputError(f"layer {layer!r} was not reached by the forward pass")
    if not isinstance(box[0], torch.Tensor):
        raise InputError(f"layer {layer!r} produced a {type(box[0]).__name__}, not a tensor")
    return box[0]


def layer_features(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """Activation of ``model`` at ``layer`` for input ``x`` (a forward hook; the forward stops
    at the layer, so later layers cost nothing). Works for any ``nn.Module``."""
    return _capture(model, layer, lambda: model(x))


def functional_features(
    model: nn.Module,
    layer: str,
    params: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor],
    x: torch.Tensor,
) -> torch.Tensor:
    """:func:`layer_features` of ``model`` with the given parameters and buffers
    (``torch.func.functional_call``); safe under ``torch.func.vmap`` over stacked members."""
    state = (dict(params), dict(buffers))
    return _capture(model, layer, lambda: functional_call(model, state, (x,)))


def member_features(
    members: Sequence[nn.Module], layer: str, x: torch.Tensor, vectorize: bool = False
) -> torch.Tensor:
    """Features ``[M, B, ...]`` of every member at ``layer`` for per-member inputs
    ``x [M, B, C, H, W]``; ``vectorize`` uses one ``vmap`` over stacked parameters (members of
    one architecture), otherwise a loop; both give the same values."""
    if x.dim() < 2 or x.shape[0] != len(members):
        raise InputError(f"x must be [M={len(members)}, B, ...] per-member inputs")
    if not vectorize:
        return torch.stack([layer_features(m, layer, xi) for m, xi in zip(members, x, strict=True)])
    base = members[0]
    params = {  # torch.stack keeps the graph to every member's parameters
        n: torch.stack([dict(m.named_parameters())[n] for m in members])
        for n, _ in base.named_parameters()
    }
    buffers = {
        n: torch.stack([dict(m.named_buffers())[n] for m in members])
        for n, _ in base.named_buffers()
    }

    def call(p: dict, b: dict, xi: torch.Tensor) -> torch.Tensor:
        return functional_features(base, layer, p, b, xi)

    return torch.func.vmap(call)(params, buffers, x)
