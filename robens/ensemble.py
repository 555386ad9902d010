"""Ensembles of classifiers: M members, convex weights, combined logits.

``Ensemble(x)`` always returns logits-like scores ``[B, C]`` so that it can stand wherever a
single model does (attacks, cross-entropy, argmax):

* ``combine="logits"``     -> ``sum_i w_i z_i``            (Theorem 3.1 of Jacobian Ensembles)
* ``combine="probs"``      -> ``log(sum_i w_i softmax(z_i))``  (soft voting; ADP's ensemble)
* ``combine="log_probs"``  -> ``sum_i w_i log_softmax(z_i)``

``member_logits(x)`` returns ``[M, B, C]``. Members sharing one architecture (and no
BatchNorm in training mode) can be evaluated by one ``torch.func.vmap`` call over stacked
parameters; the result equals the loop path (see tests/test_ensemble.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, vmap

from robens.errors import InputError
from robens.validation import check_images

Combine = Literal["logits", "probs", "log_probs"]
COMBINES = ("logits", "probs", "log_probs")


def check_weights(weights: Sequence[float] | torch.Tensor | None, m: int) -> torch.Tensor:
    """Validate convex weights: ``m`` positive finite numbers summing to 1 (tolerance 1e-6)."""
    if weights is None:
        return torch.full((m,), 1.0 / m, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if w.numel() != m:
        raise InputError(f"weights has {w.numel()} entries for {m} members")
    if not torch.isfinite(w).all() or (w <= 0).any():
        raise InputError(f"weights must be positive and finite, got {w.tolist()}")
    if abs(float(w.sum()) - 1.0) > 1e-6:
        raise InputError(
            f"weights must sum to 1 (convex combination), got sum {float(w.sum()):.6g}"
        )
    return w


# ---------------------------------------------------------------------------- combining
def _weights_like(weights: torch.Tensor, values: torch.Tensor, dims: int) -> torch.Tensor:
    return weights.to(device=values.device, dtype=values.dtype).view(-1, *([1] * dims))


def combine_member_logits(
    member_logits: torch.Tensor, weights: torch.Tensor, how: str = "logits"
) -> torch.Tensor:
    """Combine ``[M, B, C]`` member logits with convex ``weights`` ``[M]`` into ``[B, C]``.

    ``"logits"``: ``sum_i w_i z_i``; ``"probs"``: ``log sum_i w_i softmax(z_i)`` (computed
    stably); ``"log_probs"``: ``sum_i w_i log_softmax(z_i)``. The one implementation behind
    :meth:`Ensemble.combine_logits` and the attacks' ``combine``.
    """
    w = _weights_like(weights, member_logits, 2)
    if how == "probs":
        return torch.logsumexp(torch.log_softmax(member_logits, -1) + torch.log(w), dim=0)
    if how == "log_probs":
        return (w * torch.log_softmax(member_logits, -1)).sum(0)
    if how != "logits":
        raise InputError(f"combine must be one of {COMBINES}, got {how!r}")
    return (w * member_logits).sum(0)


def weighted_member_sum(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i v_i`` of per-member, per-sample values ``[M, B]`` -> ``[B]``."""
    return (_weights_like(weights, values, 1) * values).sum(0)


def combine_member_losses(
    member_logits: torch.Tensor,
    weights: torch.Tensor,
    loss: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The weighted mean of per-member losses ``loss(z_i) -> [B]`` over ``[M, B, C]`` logits
    (the GAL paper's surrogate objective; ART's ``EnsembleClassifier.loss_gradient``)."""
    return weighted_member_sum(torch.stack([loss(z) for z in member_logits]), weights)


def _signature(module: nn.Module) -> tuple:
    return tuple((n, tuple(p.shape), p.dtype) for n, p in module.named_parameters()) + tuple(
        (n, tuple(b.shape), b.dtype) for n, b in module.named_buffers()
    )


def _check_output(out: object, member: int | None) -> torch.Tensor:
    """A member's output must be one logits tensor (not a tuple, a dict or a model output
    object: wrap such a model so that its forward returns the logits)."""
    if not isinstance(out, torch.Tensor):
        who = "a member" if member is None else f"member {member}"
        raise InputError(
            f"{who} returned a {type(out).__name__}, expected a logits tensor [B, C]; wrap the"
            " model so that forward() returns only the logits"
        )
    return out


class Ensemble(nn.Module):
    """An ensemble of ``M`` classifiers with convex weights.

    Args:
        members: models returning logits ``[B, C]`` (same ``C``).
        weights: convex weights (positive, summing to 1); uniform when ``None``.
        combine: ``"logits"``, ``"probs"`` or ``"log_probs"`` (see module docstring).
        vectorize: ``True`` forces the vmap path (error if members differ), ``False`` the loop,
            ``"auto"`` uses vmap on CUDA when possible and the loop on CPU, where the
            benchmark (benchmarks/bench_ensemble.py) measured the loop to be as fast or faster.
        in_shape: expected per-image shape ``(C, H, W)``; inputs are validated against it and
            against the [0, 1] pixel range unless ``validate=False``.
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        weights: Sequence[float] | torch.Tensor | None = None,
        combine: Combine = "logits",
        vectorize: bool | Literal["auto"] = "auto",
        in_shape: Sequence[int] | None = None,
        validate: bool = True,
    ) -> None:
        super().__init__()
        members = list(members)
        if len(members) < 1:
            raise InputError("an Ensemble needs at least one member (M >= 1)")
        for i, m in enumerate(members):
            if not isinstance(m, nn.Module):
                raise InputError(f"member {i} is a {type(m).__name__}, expected an nn.Module")
        if combine not in COMBINES:
            raise InputError(f"combine must be one of {COMBINES}, got {combine!r}")
        if vectorize not in (True, False, "auto"):
            raise InputError(f"vectorize must be True, False or 'auto', got {vectorize!r}")
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", check_weights(weights, len(members)).float())
        self.combine = combine
        self.vectorize = vectorize
        if in_shape is None:
            spec = getattr(members[0], "robens_spec", None)
            in_shape = spec.get("in_shape") if isinstance(spec, dict) else None
        self.in_shape = tuple(in_shape) if in_shape is not None else None
        self.validate = validate
        self._homogeneous = all(_signature(m) == _signature(members[0]) for m in members) and all(
            type(m) is type(members[0]) for m in members
        )
        if vectorize is True and not self._homogeneous:
            raise InputError("vectorize=True needs members of one architecture")

    # ------------------------------------------------------------------ properties
    @property
    def num_members(self) -> int:
        return len(self.members)

    def set_weights(self, weights: Sequence[float] | torch.Tensor) -> None:
        """Replace the convex weights (validated)."""
        w = check_weights(weights, self.num_members)
        self.weights.copy_(w.to(self.weights))

    def uses_vmap(self, x: torch.Tensor) -> bool:
        """Whether :meth:`member_logits` takes the vectorized path for this input."""
        if self.vectorize is False or not self._homogeneous or self.num_members == 1:
            return False
        has_train_bn = any(
            isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.training
            for mod in self.members[0].modules()
        )
        if has_train_bn:
            if self.vectorize is True:
                raise InputError(
                    "vectorize=True cannot run BatchNorm members in training mode; use eval()"
                    " or vectorize='auto'"
                )
            return False
        if self.vectorize == "auto":
            return x.device.type != "cpu"
        return True

    # ------------------------------------------------------------------ forward paths
    def _check(self, x: torch.Tensor) -> None:
        if self.validate:
            check_images(x, "x", shape=self.in_shape)

    def _member_logits_loop(self, x: torch.Tensor) -> torch.Tensor:
        outs = [_check_output(m(x), i) for i, m in enumerate(self.members)]
        c = outs[0].shape[-1]
        for i, o in enumerate(outs):
            if o.dim() != 2 or o.shape[-1] != c:
                raise InputError(
                    f"member {i} returned shape {tuple(o.shape)}; all members must return"
                    f" logits [B, {c}]"
                )
        return torch.stack(outs)

    def _member_logits_vmap(self, x: torch.Tensor) -> torch.Tensor:
        base = self.members[0]
        names = [n for n, _ in base.named_parameters()]
        params = {
            n: torch.stack([dict(m.named_parameters())[n] for m in self.members]) for n in names
        }
        buffers = {
            n: torch.stack([dict(m.named_buffers())[n] for m in self.members])
            for n, _ in base.named_buffers()
        }

        def call(p: dict, b: dict, inp: torch.Tensor) -> torch.Tensor:
            return _check_output(functional_call(base, (p, b), (inp,)), None)

        in_dims_x = 0 if x.dim() == 5 else None
        # members are independent models: random layers (Dropout in training mode) draw a
        # different mask for each, as the loop does (the masks themselves differ from the loop's)
        return vmap(call, in_dims=(0, 0, in_dims_x), randomness="different")(params, buffers, x)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every member, ``[M, B, C]``.

        ``x`` is ``[B, C, H, W]`` (shared by all members) or ``[M, B, C, H, W]`` (one input per
        member, used to take every member's input-gradient in one backward pass).
        """
        if x.dim() == 5:
            if x.shape[0] != self.num_members:
                raise InputError(
                    f"x has {x.shape[0]} member slices, expected {self.num_members}"
                    " ([M, B, C, H, W])"
                )
            self._check(x.flatten(0, 1))
            if self.uses_vmap(x):
                return self._member_logits_vmap(x)
            return torch.stack([_check_output(m(xi), i)
                                for i, (m, xi) in enumerate(zip(self.members, x, strict=True))])
        self._check(x)
        if self.uses_vmap(x):
            return self._member_logits_vmap(x)
        return self._member_logits_loop(x)

    def combine_logits(self, member_logits: torch.Tensor) -> torch.Tensor:
        """Combine ``[M, B, C]`` member logits into ensemble scores ``[B, C]``."""
        return combine_member_logits(member_logits, self.weights, self.combine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine_logits(self.member_logits(x))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Ensemble class probabilities ``[B, C]``."""
        return torch.softmax(self(x), -1)

    def extra_repr(self) -> str:
        w = ", ".join(f"{v:.3g}" for v in self.weights.tolist())
        return f"M={self.num_members}, combine={self.combine}, weights=[{w}]"

