"""The shared batch context and the composable objective.

A training objective is a weighted sum of small terms, ``CE + 0.5*GAL + 0.1*JR``. Each term
is an object ``term(batch) -> scalar`` that reads a :class:`Batch`. The batch computes
member logits, per-sample member losses and member input-gradients lazily and at most once,
so every gradient-based term shares one (double) backward pass per step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from robens.errors import ConfigError, InputError
from robens.registry import Registry
from robens.utils import eval_mode, frozen_norm_stats

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def per_sample_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per sample for logits ``[..., B, C]`` and labels ``[B]`` -> ``[..., B]``."""
    lead = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])
    yy = y.expand(lead).reshape(-1)
    return F.cross_entropy(flat, yy, reduction="none").reshape(lead)


class Batch:
    """Per-step context shared by every term of an objective.

    Args:
        model: an :class:`~robens.ensemble.Ensemble` (anything with ``member_logits`` and
            ``combine_logits``) or a single ``nn.Module`` (treated as an ensemble of one).
        x: inputs ``[B, C, H, W]`` in [0, 1].  y: labels ``[B]``.  Per-member inputs (bagging:
            every member sees its own bootstrap batch) are ``x [M, B, C, H, W]`` with
            ``y [M, B]``; terms that compare members at the same input (GAL, cosine, GDR, ADP)
            refuse them via :meth:`require_shared_inputs`.
        input_grads: allocate one input leaf per member (``[M, B, C, H, W]``) so that member
            input-gradients come out of a single backward pass.
        create_graph: keep the graph of input-gradients (needed to train on them).
        member_loss: per-sample loss ``(logits [M,B,C], y) -> [M,B]`` whose input-gradient
            the gradient terms use (cross-entropy by default; MMC/RCE models pass theirs).
        progress: fraction of training done, in [0, 1] (the trainer passes ``epoch / epochs``
            as the TRS reference does); terms with a schedule (TRS's eps ramp) read it, and
            treat ``None`` as the start of training.
        generator: the random source of terms that draw noise (TRS's PGD start); the global
            RNG when ``None``.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        input_grads: bool = False,
        create_graph: bool = True,
        member_loss: LossFn = per_sample_ce,
        progress: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if progress is not None and not 0.0 <= float(progress) <= 1.0:
            raise InputError(f"progress must be a fraction in [0, 1], got {progress!r}")
        self.progress = progress
        self.generator = generator
        self.model = model
        self.x = x
        self.y = y
        self.input_grads_enabled = input_grads
        self.create_graph = create_graph
        self.member_loss = member_loss
        self.backward_passes = 0  # input-gradient computations made (tests count them)
        self._cache: dict[str, Any] = {}
        self._x_members: torch.Tensor | None = None
        if x.dim() == 5:
            if x.shape[0] != self.num_members or tuple(y.shape) != tuple(x.shape[:2]):
                raise InputError(
                    f"per-member inputs need x [M={self.num_members}, B, C, H, W] and y [M, B];"
                    f" got x {list(x.shape)} and y {list(y.shape)}"
                )
        elif y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise InputError(f"y must be [B] labels for x {list(x.shape)}, got {list(y.shape)}")

    @property
    def members(self) -> list[nn.Module]:
        """The member modules (``[model]`` for a single model)."""
        return list(self.model.members) if self.is_ensemble else [self.model]

    @property
    def per_member_inputs(self) -> bool:
        """True when every member has its own batch (``x [M, B, ...]``, ``y [M, B]``)."""
        return self.x.dim() == 5

    def require_shared_inputs(self, term: str) -> None:
        """Raise a ConfigError when members see different inputs (bagging batches)."""
        if self.per_member_inputs:
            raise ConfigError(
                f"objective term {term!r} compares members at the same input, but this batch"
                " gives every member its own inputs (strategy 'bagging'); use 'ce' (or 'jr',"
                " 'mmc', 'rce') with bagging"
            )

    @property
    def member_y(self) -> torch.Tensor:
        """Labels broadcast to ``[M, B]``."""
        if self.y.dim() == 2:
            return self.y
        return self.y.unsqueeze(0).expand(self.num_members, -1)

    @property
    def is_ensemble(self) -> bool:
        return hasattr(self.model, "member_logits")

    @property
    def num_members(self) -> int:
        return self.model.num_members if self.is_ensemble else 1

    def _cached(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    @property
    def member_logits(self) -> torch.Tensor:
        """Logits of every member, ``[M, B, C]``."""

        def compute() -> torch.Tensor:
            if self.input_grads_enabled:
                m = self.num_members
                if self.per_member_inputs:
                    xm = self.x.detach().clone()
                else:
                    xm = self.x.detach().unsqueeze(0).expand(m, *self.x.shape).clone()
                self._x_members = xm.requires_grad_(True)
                if self.is_ensemble:
                    return self.model.member_logits(self._x_members)
                return self.model(self._x_members[0]).unsqueeze(0)
            if self.is_ensemble:
                return self.model.member_logits(self.x)
            x = self.x[0] if self.per_member_inputs else self.x
            return self.model(x).unsqueeze(0)

        return self._cached("member_logits", compute)

    @property
    def logits(self) -> torch.Tensor:
        """Combined ensemble logits ``[B, C]``."""

        def compute() -> torch.Tensor:
            if self.per_member_inputs:
                raise ConfigError(
                    "the combined ensemble output is undefined when every member sees its own"
                    " inputs (strategy 'bagging'); use member terms such as 'ce'"
                )
            if self.is_ensemble:
                return self.model.combine_logits(self.member_logits)
            return self.member_logits[0]

        return self._cached("logits", compute)

    @property
    def member_probs(self) -> torch.Tensor:
        """Softmax of every member, ``[M, B, C]``."""
        return self._cached("member_probs", lambda: torch.softmax(self.member_logits, -1))

    @property
    def member_losses(self) -> torch.Tensor:
        """Per-sample member losses ``[M, B]`` (``member_loss`` of each member)."""
        return self._cached("member_losses", lambda: self.member_loss(self.member_logits, self.y))

    @property
    def member_input_grads(self) -> torch.Tensor:
        """``d loss_i(x_b) / d x_b`` for every member i and sample b: ``[M, B, C, H, W]``.

        One backward pass for all members (each member sees its own copy of the input).
        """

        def compute() -> torch.Tensor:
            if not self.input_grads_enabled:
                raise InputError(
                    "member_input_grads needs Batch(..., input_grads=True); the objective sets it"
                    " when one of its terms declares needs_input_grads"
                )
            losses = self.member_losses
            assert self._x_members is not None
            with torch.enable_grad():
                (g,) = torch.autograd.grad(
                    losses.sum(), self._x_members, create_graph=self.create_graph
                )
            self.backward_passes += 1
            return g

        return self._cached("member_input_grads", compute)

    @property
    def member_input_grads_flat(self) -> torch.Tensor:
        """Member input-gradients flattened per sample: ``[M, B, D]``."""
        g = self.member_input_grads
        return g.reshape(g.shape[0], g.shape[1], -1)

    @property
    def member_inputs(self) -> torch.Tensor:
        """The per-member input leaves ``[M, B, C, H, W]`` the member logits were computed on."""
        _ = self.member_logits
        if self._x_members is None:
            raise InputError("member_inputs needs Batch(..., input_grads=True)")
        return self._x_members

    def member_vjp(self, v: torch.Tensor) -> torch.Tensor:
        """``v_{m,b}^T J_{m,b}`` for every member and sample, ``[M, B, D]``.

        ``J_{m,b} = d z_m(x_b) / d x_b`` is the input-logit Jacobian and ``v`` is ``[M, B, C]``.
        One backward pass over the shared forward graph (counted in ``backward_passes``); the
        graph is kept (``create_graph``) so a Jacobian penalty can be trained on.
        """
        logits = self.member_logits
        xm = self.member_inputs
        with torch.enable_grad():
            (g,) = torch.autograd.grad(
                logits, xm, grad_outputs=v.to(logits), create_graph=self.create_graph,
                retain_graph=True,
            )
        self.backward_passes += 1
        return g.reshape(g.shape[0], g.shape[1], -1)


def input_gradients(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    member_loss: LossFn = per_sample_ce,
    mode: str = "eval",
) -> torch.Tensor:
    """Member input-gradients ``[M, B, D]`` of ``member_loss`` (no graph kept; for metrics).

    ``mode="eval"`` (the default) computes them in eval mode whatever the caller's mode
    (restored after): BatchNorm on its running statistics, Dropout off, nothing updated.
    ``mode="train"`` takes the caller's modes as they are, so a train-mode model gives the
    gradients of its training forward (batch statistics, as a training objective sees them),
    and the BatchNorm running statistics are restored afterwards. The training objectives
    themselves do not call this: a :class:`Batch` differentiates the step's one training
    forward, so BatchNorm statistics move once per step, as in plain training.
    """
    if mode not in ("eval", "train"):
        raise InputError(f"mode must be 'eval' or 'train', got {mode!r}")
    keep = eval_mode(model) if mode == "eval" else frozen_norm_stats(model)
    with torch.enable_grad(), keep:
        batch = Batch(model, x, y, input_grads=True, create_graph=False, member_loss=member_loss)
        return batch.member_input_grads_flat.detach()


class Term:
    """A scalar objective term. Subclasses set ``name`` and ``needs_input_grads``.

    A term whose per-sample loss should define the member input-gradients (the loss of GAL's
    ``grad_x J_i``) sets ``member_loss``: ``(member logits [M,B,C], y) -> [M,B]``; the
    first such term of an :class:`Objective` is used (cross-entropy otherwise).
    """

    name: str = "term"
    needs_input_grads: bool = False
    member_loss: LossFn | None = None

    def __call__(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


# ----------------------------------------------------------------------------- registry
#: the objective terms; ``robens/objectives/__init__.py`` imports every built-in term module,
#: and Python imports that package before this module, so the built-ins are always registered
TERMS: Registry[Callable[..., Term]] = Registry("objective term")


def register_term(name: str) -> Callable[[Callable[..., Term]], Callable[..., Term]]:
    """Register a term factory under ``name`` (used by the config and ``parse_objective``)."""

    def deco(factory: Callable[..., Term]) -> Callable[..., Term]:
        TERMS.register(name, factory, replace=True)
        return factory

    return deco


def list_terms() -> list[str]:
    """Names of the registered objective terms."""
    return TERMS.names()


def build_term(name: str, **params: Any) -> Term:
    """Instantiate a registered term by name; unknown names and parameters are ConfigErrors."""
    key = name.lower().strip()
    if key not in TERMS:
        raise ConfigError(f"unknown objective term {name!r}; available: {', '.join(list_terms())}")
    try:
        return TERMS.get(key)(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for objective term {name!r}: {exc}") from None


@dataclass
class Objective:
    """A weighted sum of terms. ``objective(batch) -> (total, {name: value})``."""

    terms: list[tuple[float, Term]] = field(default_factory=list)

    @property
    def needs_input_grads(self) -> bool:
        return any(t.needs_input_grads for _, t in self.terms)

    def names(self) -> list[str]:
        return [t.name for _, t in self.terms]

    def batch(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw: Any) -> Batch:
        """A :class:`Batch` with input-gradients enabled iff a term needs them.

        The member loss of the input-gradients is that of the first term that defines one
        (``mmc``, ``rce``), else cross-entropy, unless ``member_loss=`` is given.
        """
        if "member_loss" not in kw:
            for _, term in self.terms:
                if term.member_loss is not None:
                    kw["member_loss"] = term.member_loss
                    break
        return Batch(model, x, y, input_grads=self.needs_input_grads, **kw)

    def __call__(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for weight, term in self.terms:
            value = term(batch)
            parts[term.name] = value
            total = weight * value if total is None else total + weight * value
        if total is None:
            raise ConfigError("the objective has no terms")
        return total, parts

    def __str__(self) -> str:
        return " + ".join(f"{w:g}*{t.name}" for w, t in self.terms)


_TERM_RE = re.compile(r"^\s*(?:(?P<w>[0-9.eE+-]+)\s*\*\s*)?(?P<name>[A-Za-z_][\w-]*)\s*$")


def _split_terms(spec: str) -> list[str]:
    """Split on ``+`` between terms, not inside a weight's exponent (``1e+3*gal``)."""
    return re.split(r"(?<![\d.][eE])\+", spec)


def parse_objective_spec(spec: str) -> list[tuple[float, str]]:
    """``[(1.0, "ce"), (0.5, "gal")]`` for ``"ce + 0.5*gal"``: the one objective parser.

    Pure parsing (no term is built); weights accept any float literal, ``1e+3`` included.
    Raises :class:`ConfigError` naming the piece that does not parse.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("objective must be a non-empty string such as 'ce + 0.5*gal'")
    out: list[tuple[float, str]] = []
    for piece in _split_terms(spec):
        m = _TERM_RE.match(piece)
        if not m:
            raise ConfigError(f"cannot parse objective term {piece.strip()!r} in {spec!r}")
        try:
            weight = float(m.group("w")) if m.group("w") else 1.0
        except ValueError:
            raise ConfigError(f"bad weight in objective term {piece.strip()!r}") from None
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(
                f"weight of objective term {piece.strip()!r} must be a finite number >= 0,"
                f" got {weight}"
            )
        out.append((weight, m.group("name").lower()))
    return out


def objective_weights(spec: str) -> dict[str, float]:
    """``{"ce": 1.0, "jr": 0.05}`` for ``"ce + 0.05*jr"`` (terms without a factor weigh 1)."""
    return {name: w for w, name in parse_objective_spec(spec)}


def parse_objective(spec: str, params: dict[str, dict[str, Any]] | None = None) -> Objective:
    """Parse ``"ce + 0.5*gal + 0.1*jr"``; ``params`` maps a term name to its keyword arguments."""
    params = {k.lower(): v for k, v in (params or {}).items()}
    terms: list[tuple[float, Term]] = []
    seen: set[str] = set()
    for weight, name in parse_objective_spec(spec):
        seen.add(name)
        terms.append((weight, build_term(name, **params.get(name, {}))))
    unused = set(params) - seen
    if unused:
        raise ConfigError(f"parameters given for terms not in the objective: {sorted(unused)}")
    return Objective(terms)
