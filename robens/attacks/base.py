"""The attack base class (the result record and projections live in ``result``/``projections``).

Conventions (docs/attacks-and-testing.md):

* ``atk = PGD(model, eps=0.1)``, ``x_adv = atk(x, y)``: a detached tensor of the same shape,
  device and dtype as ``x``; ``atk.run(x, y)`` returns an :class:`AttackResult` with per-sample
  success, perturbation norm, final objective and query counts.
* ``model`` is any callable returning scores ``[B, C]``, an :class:`~robens.ensemble.Ensemble`,
  or a list/tuple of such models. ``combine`` says how several members form the attack
  objective: ``"logits"`` (attack the weighted mean of logits), ``"probs"`` (attack
  ``log sum_i w_i softmax(z_i)``, ADP's ensemble) or ``"loss"`` (the weighted mean of member
  losses, the GAL paper's surrogate objective; ART's ``EnsembleClassifier.loss_gradient``); all
  three are :mod:`robens.ensemble`'s combine functions. ``combine=None`` attacks an
  ``Ensemble``'s own output and a list's mean logits. Success is always judged on the model's
  own prediction (an ``Ensemble``'s forward; for a list the mean logits, or the mean
  probabilities when ``combine="probs"``).
* Models declare what they return (:mod:`robens.models.convention`); the attack reads the
  declaration once, at construction: ``loss="mmc"`` takes ``-h_y`` from members whose outputs
  are Max-Mahalanobis scores, and otherwise the features entering each head with centres.
* Inputs are float NCHW in [0, 1]; ``y=None`` attacks the model's own predictions;
  ``targeted=True`` means ``y`` holds the targets.
* Every module of the model is put in ``eval()`` during the attack and its own mode is restored
  afterwards; gradients are taken with ``torch.autograd.grad`` with respect to the input only,
  so parameters' ``.grad`` stay untouched; the input tensor is never modified.
* Per-sample reductions everywhere: the loss is summed over the batch (never averaged into one
  number that mixes samples), so each sample's result is independent of the rest of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from robens.attacks.losses import MMCFeatures, attack_objective, check_loss, mmc_plan
from robens.attacks.projections import normalize_step, per_sample_norm, project, project_l1
from robens.attacks.result import AttackResult
from robens.ensemble import combine_member_logits, combine_member_losses, weighted_member_sum
from robens.errors import InputError
from robens.models.convention import output_convention
from robens.utils import eval_mode
from robens.validation import check_eps, check_images, check_labels

Norm = Literal["linf", "l2", "l1", "l0"]
COMBINES = ("logits", "probs", "loss")
Gen = torch.Generator | None
ModelLike = Callable[[torch.Tensor], torch.Tensor] | nn.Module | Sequence[Any]

__all__ = ["COMBINES", "Attack", "AttackResult", "Gen", "ModelLike", "combine_member_logits"]
__all__ += ["eval_mode", "normalize_step", "per_sample_norm", "project", "project_l1"]


# ---------------------------------------------------------------------------- base class
class Attack:
    """Base of every robens attack.

    Args:
        model: logits callable, :class:`~robens.ensemble.Ensemble`, or a list/tuple of models.
        eps: perturbation budget in ``norm`` (pixels in [0, 1]); ``linf`` needs ``eps <= 1``,
            ``l2`` ``eps <= sqrt(D)`` and ``l1`` ``eps <= D`` for ``D`` input values.
        norm: ``"linf"`` or ``"l2"`` (attacks may support fewer or more).
        loss: ``"ce"``, ``"cw"`` (hinge with margin ``kappa``) or ``"mmc"`` (Max-Mahalanobis
            centres; adaptive attack on MMC heads).
        targeted: ``y`` holds target classes and the attack drives predictions to them.
        combine: how members form the objective: ``"logits"``, ``"probs"`` or ``"loss"``.
        seed: seed of the attack's own ``torch.Generator`` (re-seeded on every call, so two
            calls agree); ``None`` draws from the global torch RNG (torchattacks' behaviour).
        kappa: confidence margin of the CW hinge.
    """

    name: ClassVar[str] = "attack"
    #: the result for a sample does not depend on randomness or on the rest of the batch
    deterministic: ClassVar[bool] = True
    supported_norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    supported_losses: ClassVar[tuple[str, ...]] = ("ce", "cw", "mmc")

    def __init__(
        self,
        model: ModelLike,
        eps: float | None,
        norm: str = "linf",
        loss: str = "ce",
        targeted: bool = False,
        combine: str | None = None,
        seed: int | None = None,
        *,
        kappa: float = 0.0,
    ) -> None:
        if norm not in self.supported_norms:
            raise InputError(
                f"norm must be one of {', '.join(self.supported_norms)} for {self.name},"
                f" got {norm!r}"
            )
        self.norm = norm
        self.eps = None if eps is None else self._check_eps(eps, norm)
        self.loss = check_loss(loss)
        if self.loss not in self.supported_losses:
            raise InputError(
                f"loss must be one of {', '.join(self.supported_losses)} for {self.name},"
                f" got {loss!r}"
            )
        if not isinstance(targeted, bool):
            raise InputError(f"targeted must be True or False, got {targeted!r}")
        self.targeted = targeted
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InputError(f"seed must be an integer or None, got {seed!r}")
        self.seed = seed
        try:
            self.kappa = float(kappa)
        except (TypeError, ValueError):
            raise InputError(f"kappa must be a number, got {kappa!r}") from None
        if math.isnan(self.kappa) or self.kappa < 0:
            raise InputError(f"kappa must be >= 0, got {kappa!r}")
        self._setup_model(model, combine)
        self.params: dict[str, Any] = {}
        self.adaptive: dict[str, Any] = {}
        self._num_classes: int | None = None
        self._queries: torch.Tensor | None = None

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_eps(eps: object, norm: str) -> float:
        if isinstance(eps, bool):
            raise InputError(f"eps must be a number, got {eps!r}")
        upper = 1.0 if norm == "linf" else math.inf
        value = check_eps(eps, "eps", upper=upper)
        if not math.isfinite(value):
            raise InputError(f"eps must be finite, got {eps!r}")
        return value

    @staticmethod
    def _check_positive(value: object, name: str, allow_zero: bool = False) -> float:
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"{name} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise InputError(f"{name} must be a finite number {bound}, got {value!r}")
        return v

    @staticmethod
    def _check_int(value: object, name: str, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
        return value

    def _setup_model(self, model: ModelLike, combine: str | None) -> None:
        if combine is not None and combine not in COMBINES:
            raise InputError(
                f"combine must be one of {', '.join(COMBINES)} or None, got {combine!r}"
            )
        self.model = model
        if isinstance(model, (list, tuple)):
            if len(model) == 0:
                raise InputError("model is an empty list; give at least one model")
            for i, m in enumerate(model):
                if not callable(m):
                    raise InputError(f"model[{i}] is a {type(m).__name__}, not a callable model")
            self._kind = "list"
            self._members = list(model)
            self._weights = torch.full((len(model),), 1.0 / len(model), dtype=torch.float64)
            self.combine = combine or "logits"
        elif hasattr(model, "member_logits") and hasattr(model, "combine_logits"):
            self._kind = "ensemble"
            self._members = list(getattr(model, "members", []))
            self._weights = getattr(model, "weights", None)
            self.combine = combine
        elif callable(model):
            if combine is not None:
                raise InputError(
                    "combine applies to an Ensemble or a list of models, not to a single model"
                )
            self._kind = "single"
            self._members = []
            self._weights = None
            self.combine = None
        else:
            raise InputError(
                f"model must be a callable returning logits, got {type(model).__name__}"
            )
        members = self._members if self._kind != "single" else [model]
        #: each member's declared output convention (robens.models.convention), read once
        self.output_conventions = tuple(output_convention(m) for m in members)
        plan = mmc_plan(model, members, self._weights) if self.loss == "mmc" else None
        if self.loss == "mmc" and plan is None:
            raise InputError(
                "loss='mmc' needs a model with Max-Mahalanobis centres (an MMC head with"
                " 'mm_centers'); use loss='ce' for other models"
            )
        self._mmc_heads = plan.heads if plan else []
        self._mmc_weights = plan.weights if plan else []
        self._mmc_from_scores = bool(plan and plan.from_scores)

    @property
    def num_members(self) -> int:
        return max(1, len(self._members))

    # ------------------------------------------------------------------ model evaluation
    def _member_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self._kind == "list":
            return torch.stack([m(x) for m in self._members])
        return self.model.member_logits(x)  # type: ignore[union-attr]

    def scores(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prediction logits ``[B, C]`` and, if ``y`` is given, the attack objective ``[B]``.

        The objective is the per-sample value the attack maximizes (see
        :func:`~robens.attacks.losses.attack_objective`); one forward pass serves both.
        """
        mmc = self.loss == "mmc" and y is not None
        hooks = mmc and not self._mmc_from_scores
        need_members = mmc and not hooks
        capture = MMCFeatures(self._mmc_heads) if hooks else nullcontext()
        member: torch.Tensor | None = None
        with capture:
            if self._kind == "single":
                logits = self.model(x)  # type: ignore[operator]
                member = logits.unsqueeze(0) if need_members else None
            elif self._kind == "list":
                member = self._member_logits(x)
                pred = "probs" if self.combine == "probs" else "logits"
                logits = combine_member_logits(member, self._weights, pred)
            elif hooks or (self.combine is None and not need_members):
                logits = self.model(x)  # type: ignore[operator]
            else:
                member = self._member_logits(x)
                logits = self.model.combine_logits(member)  # type: ignore[union-attr]
        if y is None:
            return logits, None
        if mmc:
            if hooks:
                losses = capture.losses(y)  # type: ignore[union-attr]
                value = sum(w * v for w, v in zip(self._mmc_weights, losses, strict=True))
            else:  # L_MMC = -h_y from the members' Max-Mahalanobis scores
                h_y = member.gather(-1, y.expand(member.shape[:-1]).unsqueeze(-1)).squeeze(-1)
                w = torch.as_tensor(self._mmc_weights, dtype=member.dtype, device=member.device)
                value = -weighted_member_sum(h_y, w)
            return logits, (-value if self.targeted else value)
        if self.combine == "loss" and member is not None:
            return logits, combine_member_losses(
                member, self._weights, lambda z: self._objective_from_logits(z, y)
            )
        if self.combine in ("logits", "probs") and member is not None:
            comb = combine_member_logits(member, self._weights, self.combine)
            return logits, self._objective_from_logits(comb, y)
        return logits, self._objective_from_logits(logits, y)

    def _objective_from_logits(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return attack_objective(logits, y, self.loss, self.targeted, self.kappa)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model's prediction logits ``[B, C]``."""
        return self.scores(x)[0]

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The per-sample attack objective ``[B]`` (maximized by the attack)."""
        return self.scores(x, y)[1]  # type: ignore[return-value]

    def gradient(
        self, x_adv: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(grad of the objective wrt x_adv, objective [B], logits [B, C])``, input only.

        The objective is summed over the batch before differentiating (per-sample gradients);
        ``torch.autograd.grad`` leaves the parameters' ``.grad`` untouched.
        """
        with torch.enable_grad():
            xa = x_adv.detach().requires_grad_(True)
            logits, obj = self.scores(xa, y)
            (grad,) = torch.autograd.grad(obj.sum(), xa)  # type: ignore[union-attr]
        return grad.detach(), obj.detach(), logits.detach()  # type: ignore[union-attr]

    def is_success(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample success: misclassified (untargeted) or classified as the target."""
        pred = logits.argmax(-1)
        return pred == y if self.targeted else pred != y

    def generator(self, device: torch.device) -> torch.Generator | None:
        """A fresh generator seeded with ``seed`` on ``device``, or ``None`` (global RNG)."""
        if self.seed is None:
            return None
        g = torch.Generator(device=device)
        g.manual_seed(int(self.seed))
        return g

    # ------------------------------------------------------------------ entry points
    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial examples for ``x`` (detached; same shape, device and dtype)."""
        return self._execute(x, y, full=False)  # type: ignore[return-value]

    def run(self, x: torch.Tensor, y: torch.Tensor | None = None) -> AttackResult:
        """Attack and return per-sample success, norms, final objective and queries."""
        return self._execute(x, y, full=True)  # type: ignore[return-value]

    forward = __call__

    def _prepare(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Validate inputs (in eval mode) and return the labels to use."""
        d = x[0].numel() if x.shape[0] else 0
        if self.eps is not None and d:
            if self.norm == "l2" and self.eps > math.sqrt(d) + 1e-9:
                raise InputError(
                    f"eps must lie in [0, sqrt(D) = {math.sqrt(d):.4g}] for l2, got {self.eps}"
                )
            if self.norm == "l1" and self.eps > d:
                raise InputError(f"eps must lie in [0, D = {d}] for l1, got {self.eps}")
        if y is None:
            if self.targeted:
                raise InputError("y must hold the target classes when targeted=True")
            with torch.no_grad():
                logits = self.logits(x)
            self._num_classes = int(logits.shape[-1])
            return logits.argmax(-1)
        if self._num_classes is None and x.shape[0]:
            with torch.no_grad():
                self._num_classes = int(self.logits(x[:1]).shape[-1])
        check_labels(y, self._num_classes or 1 << 62, x.shape[0], "y")
        return y.to(device=x.device, dtype=torch.int64)

    def _execute(
        self, x: torch.Tensor, y: torch.Tensor | None, full: bool
    ) -> torch.Tensor | AttackResult:
        check_images(x, "x")
        self._queries = None
        with eval_mode(self.model):
            y = self._prepare(x, y)
            x0 = x.detach()
            if x.shape[0] == 0 or self.eps == 0:
                x_adv = x0.clone()
            else:
                x_adv = self._attack(x0, y, self.generator(x.device)).detach()
            if not full:
                return x_adv
            with torch.no_grad():
                logits, obj = self.scores(x_adv, y)
        queries = self._queries
        if queries is None and not self.white_box:
            queries = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        return AttackResult(
            x_adv=x_adv,
            success=self.is_success(logits, y),
            norm=per_sample_norm(x_adv - x0, self.norm),
            loss=obj.detach(),  # type: ignore[union-attr]
            queries=queries,
            y=y,
            info=self.describe(),
            attack=self,
        )

    white_box: ClassVar[bool] = True

    def _attack(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator | None
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ description
    def describe(self) -> dict[str, Any]:
        """The attack as flat JSON-able record fields."""
        out: dict[str, Any] = {
            "attack": self.name,
            "eps": self.eps,
            "norm": self.norm,
            "loss": self.loss,
            "targeted": self.targeted,
            "combine": self.combine if self._kind != "single" else None,
            "seed": self.seed,
        }
        if self.loss == "cw" or "kappa" in self.params:
            out["kappa"] = self.kappa if math.isfinite(self.kappa) else "inf"  # JSON-safe
        out.update({f"param_{k}": v for k, v in self.params.items()})
        if self.adaptive:
            out["adaptive"] = dict(self.adaptive)
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return (
            f"{type(self).__name__}(eps={self.eps}, norm={self.norm!r}, loss={self.loss!r},"
            f" targeted={self.targeted}{', ' + args if args else ''})"
        )
