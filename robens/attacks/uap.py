"""Universal adversarial perturbations by SGD (SGD-UAP; Shafahi et al. 2020, as implemented in
``kenny-co/sgd-uap-torch`` and used by Co et al., docs/methods.md section 6).

One perturbation ``delta`` (shape ``[C, H, W]``) for a whole data distribution. Starting from
``delta = 0``, each step takes a batch and updates

    ``delta <- clip_[-eps, eps](delta + step_ratio * eps * sign(grad_delta L))``,
    ``L = mean_b min(CE(f(clip(x_b + delta, 0, 1)), y_b), beta)``  (clamped CE, ``beta = 12``),

with ``L`` negated and ``y := target`` for a targeted UAP. ``iterations`` is the number of such
steps (batches); the data is cycled as often as needed, so memory does not depend on the
dataset size. ``seeds = N`` repeats the search with ``N`` different batch orders and keeps the
worst case: the perturbation with the highest fooling rate (misclassification; target hit rate
when targeted) on the ranking data.

Fooling rates: ART's ``UniversalPerturbation.fooling_rate`` counts predictions that differ
from the labels it is given (misclassification); the UAP literature also reports changed
predictions. :func:`uap_metrics` reports both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from robens.attacks.base import Attack, Gen, ModelLike
from robens.attacks.registry import register_attack
from robens.data import ImageDataset
from robens.ensemble import combine_member_logits
from robens.errors import InputError
from robens.utils import derive_seed, eval_mode

Batches = ImageDataset | Iterable[tuple[torch.Tensor, torch.Tensor]]


def _model_dtype_device(model: object, fallback: torch.Tensor) -> tuple[torch.dtype, torch.device]:
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.dtype, p.device
    if isinstance(model, (list, tuple)) and model:
        return _model_dtype_device(model[0], fallback)
    return fallback.dtype, fallback.device


def _as_batches(data: object, name: str) -> Batches:
    """``data`` as batches: a bare ``(x, y)`` pair of tensors is one batch (``[(x, y)]``);
    anything that is neither an ImageDataset nor an iterable is an :class:`InputError`."""
    if (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)):
        return [(data[0], data[1])]
    if isinstance(data, ImageDataset):
        return data
    if isinstance(data, torch.Tensor) or not hasattr(data, "__iter__"):
        raise InputError(
            f"{name} must be an ImageDataset, an iterable of (x, y) batches or one (x, y) pair,"
            f" got {type(data).__name__}"
        )
    return data  # type: ignore[return-value]


@register_attack("sgd_uap", "sgduap")
class SGDUAP(Attack):
    """SGD universal adversarial perturbation (L-inf).

    Args:
        model: logits callable, Ensemble, or list of models (see :class:`Attack`).
        eps: L-inf budget of the perturbation.
        batch_size: images per SGD step when ``data`` is an :class:`ImageDataset` (an iterable of
            batches is used as given).
        iterations: number of SGD steps (one per batch).
        beta: clamp of the per-sample cross-entropy (``inf`` disables it).
        step_ratio: step size as a fraction of ``eps`` (``0.8``; the code's "step_decay").
        targeted, target: targeted UAP towards class ``target`` (or towards the labels given
            when ``target`` is ``None``).
        seeds: number of random restarts (batch orders); the worst case is kept.
        seed: base seed of the shuffling (restart ``r`` uses ``derive_seed(seed, r)``).

    ``fit(data)`` returns ``delta`` ``[C, H, W]``; afterwards ``atk(x)`` returns
    ``clip(x + delta, 0, 1)``. Calling an unfitted attack fits it on the batch it is given.
    """

    name = "uap"
    deterministic = False
    #: called after every SGD step of :meth:`fit` (``iterations * seeds`` calls), by a caller
    #: that shows progress
    on_step: Callable[[], None] | None = None
    supported_norms = ("linf",)
    supported_losses = ("ce",)

    def __init__(
        self,
        model: ModelLike,
        eps: float,
        batch_size: int = 200,
        iterations: int = 100,
        beta: float = 12.0,
        step_ratio: float = 0.8,
        targeted: bool = False,
        target: int | None = None,
        seeds: int = 1,
        combine: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(model, eps, "linf", "ce", targeted, combine, seed)
        self.batch_size = self._check_int(batch_size, "batch_size")
        self.iterations = self._check_int(iterations, "iterations")
        self.beta = self._check_positive(beta, "beta")
        self.step_ratio = self._check_positive(step_ratio, "step_ratio")
        self.seeds = self._check_int(seeds, "seeds")
        if target is not None:
            if isinstance(target, bool) or not isinstance(target, int) or target < 0:
                raise InputError(f"target must be a class index >= 0 or None, got {target!r}")
            if not targeted:
                raise InputError("target is given but targeted=False; pass targeted=True")
        self.target = target
        self.delta: torch.Tensor | None = None
        self.history: list[dict[str, Any]] = []
        self.params = {
            "batch_size": self.batch_size,
            "iterations": self.iterations,
            "beta": self.beta,
            "step_ratio": self.step_ratio,
            "seeds": self.seeds,
            "target": target,
        }

    # ------------------------------------------------------------------ data streams
    def _stream(self, data: Batches, restart: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches for restart ``restart``.

        An ImageDataset is reshuffled every epoch with ``derive_seed(seed, "uap", restart,
        epoch)``. A re-iterable of batches is cycled; restart ``r > 0`` starts at a seeded
        batch offset (counting the batches once). A one-shot iterator is read once, in order.
        """
        base = 0 if self.seed is None else int(self.seed)
        if isinstance(data, ImageDataset):
            epoch = 0
            while True:
                g = torch.Generator().manual_seed(derive_seed(base, "uap", restart, epoch))
                yield from data.batches(self.batch_size, shuffle=True, generator=g)
                epoch += 1
        if iter(data) is data:  # a one-shot iterator: a single pass, in its own order
            yield from data  # type: ignore[misc]
            return
        # a re-iterable of batches: restart r starts at a seeded offset (a different order)
        n = sum(1 for _ in data) if restart else 0
        offset = 0
        if restart and n:
            g = torch.Generator().manual_seed(derive_seed(base, "uap-offset", restart))
            offset = int(torch.randint(0, n, (1,), generator=g))
        first = True
        while True:
            got = False
            for i, batch in enumerate(data):
                if first and i < offset:
                    continue
                got = True
                yield batch
            if not got and not first:
                return
            first = False

    def _loss(self, logits_fn: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits_fn(x), y, reduction="none")
        if math.isfinite(self.beta):
            ce = ce.clamp_max(self.beta)
        loss = ce.mean()
        return -loss if self.targeted else loss

    def _labels(self, y: torch.Tensor) -> torch.Tensor:
        if self.targeted and self.target is not None:
            return torch.full_like(y, self.target)
        return y

    def _fit_once(
        self, data: Batches, restart: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        delta: torch.Tensor | None = None
        step = self.step_ratio * self.eps
        done = 0
        for x, y in self._stream(data, restart):
            if done >= self.iterations:
                break
            x = x.to(device=device, dtype=dtype)
            y = self._labels(y.to(device))
            if delta is None:
                delta = torch.zeros_like(x[:1])
            with torch.enable_grad():
                d = delta.detach().requires_grad_(True)
                loss = self._loss(self._objective_logits, (x + d).clamp(0.0, 1.0), y)
                (grad,) = torch.autograd.grad(loss, d)
            delta = (delta + step * grad.sign()).clamp(-self.eps, self.eps).detach()
            done += 1
            if self.on_step is not None:
                self.on_step()
        if delta is None:
            raise InputError("the data for the universal perturbation has no batches")
        return delta[0]

    def _objective_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits whose CE is attacked (``combine`` applied to members; see :class:`Attack`)."""
        if self.combine in ("logits", "probs") and self._kind != "single":
            return combine_member_logits(self._member_logits(x), self._weights, self.combine)
        return self.logits(x)

    def _rank_value(self, metrics: dict[str, float]) -> float:
        if self.targeted:
            return metrics.get("target_rate", 0.0)
        return metrics["fooling_rate_misclassified"]

    def fit(self, data: Batches, select_on: Batches | None = None) -> torch.Tensor:
        """Craft the universal perturbation on ``data`` (an ImageDataset, an iterable of
        ``(x, y)`` batches, or one ``(x, y)`` pair); returns ``delta`` ``[C, H, W]``.

        With ``seeds > 1`` each restart's perturbation is scored on ``select_on`` (default:
        ``data``, one pass) and the one with the highest fooling rate is kept; every restart's
        scores are in :attr:`history`.
        """
        if self.combine == "loss":
            raise InputError("SGD-UAP supports combine='logits' or 'probs', not 'loss'")
        data = _as_batches(data, "data")
        if select_on is not None:
            select_on = _as_batches(select_on, "select_on")
        if self.seeds > 1 and not isinstance(data, ImageDataset) and iter(data) is data:
            raise InputError(
                "seeds > 1 needs data that can be iterated again (an ImageDataset or a list of"
                " batches), not a one-shot iterator"
            )
        dtype, device = _model_dtype_device(self.model, torch.zeros(()))
        if not dtype.is_floating_point:
            dtype = torch.float32
        self.history = []
        best: torch.Tensor | None = None
        best_value = -math.inf
        with eval_mode(self.model):
            for r in range(self.seeds):
                delta = self._fit_once(data, r, dtype, device)
                if self.seeds == 1:
                    best = delta
                    break
                metrics = uap_metrics(
                    self.logits,
                    delta.to(device=device, dtype=dtype),
                    select_on if select_on is not None else data,
                    target=self.target if self.targeted else None,
                )
                metrics["restart"] = r
                self.history.append(metrics)
                value = self._rank_value(metrics)
                if value > best_value:
                    best, best_value = delta, value
        self.delta = best
        return best  # type: ignore[return-value]

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        if self.delta is None:
            self.fit([(x, y)])
        delta = self.delta.to(device=x.device, dtype=x.dtype)  # type: ignore[union-attr]
        if tuple(delta.shape) != tuple(x.shape[1:]):
            raise InputError(
                f"x has per-image shape {tuple(x.shape[1:])} but the perturbation has"
                f" {tuple(delta.shape)}"
            )
        return (x + delta).clamp(0.0, 1.0)


@torch.no_grad()
def uap_metrics(
    model: Callable[[torch.Tensor], torch.Tensor],
    delta: torch.Tensor,
    batches: Batches,
    batch_size: int = 500,
    target: int | None = None,
) -> dict[str, Any]:
    """Accuracy and fooling rates of the universal perturbation ``delta`` over ``batches``.

    Returns ``{"accuracy", "clean_accuracy", "fooling_rate_changed"`` (prediction differs from
    the clean prediction), ``"fooling_rate_misclassified"`` (prediction differs from the label:
    ART's definition), ``"n"}`` and ``"target_rate"`` when ``target`` is given. The model is
    evaluated in eval mode and its modes restored.
    """
    if isinstance(batches, ImageDataset):
        batches = batches.batches(batch_size)
    dtype, device = _model_dtype_device(model, delta)
    d = delta.detach().to(device=device, dtype=dtype)
    n = correct = correct_clean = changed = hit = 0
    with eval_mode(model):
        for x, y in batches:
            x = x.to(device=device, dtype=dtype)
            y = y.to(device)
            clean = model(x).argmax(-1)
            adv = model((x + d).clamp(0.0, 1.0)).argmax(-1)
            n += y.numel()
            correct += int((adv == y).sum())
            correct_clean += int((clean == y).sum())
            changed += int((adv != clean).sum())
            if target is not None:
                hit += int((adv == target).sum())
    if n == 0:
        raise InputError("uap_metrics got no samples")
    out: dict[str, Any] = {
        "accuracy": correct / n,
        "clean_accuracy": correct_clean / n,
        "fooling_rate_changed": changed / n,
        "fooling_rate_misclassified": 1 - correct / n,
        "n": n,
    }
    if target is not None:
        out["target_rate"] = hit / n
    return out
