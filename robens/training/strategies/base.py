"""The strategy interface, its registry, and the default joint strategy.

A strategy decides how batches reach the members and what one training step is; it sees only a
:class:`~robens.training.context.StrategyContext`. Writing one is one file::

    @STRATEGIES.register("mine")
    class Mine(Strategy):
        name = "mine"

        def epoch_batches(self, epoch): ...          # batches of epoch ``epoch``
        def train_step(self, x, y, lr, step): ...    # own optimizers / several passes
        def on_epoch_start(self, epoch): ...         # per-epoch work (e.g. refresh targets)

Orthogonal to the strategy, every one of them supports adversarial training on the fly and
ensemble adversarial training (``training.adversarial``, see
:mod:`robens.training.adversarial`), applied after the data augmentation, and soft voting
(``training.soft_voting: val_accuracy``): at the end of training the convex ensemble weights
are set proportional to each member's accuracy on the ``data.val_size`` held-out images; they
live in the ensemble's ``weights`` buffer, so the checkpoint carries them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from robens.errors import CheckpointError, ConfigError
from robens.metrics.accuracy import evaluate_accuracy
from robens.registry import Registry
from robens.training.adversarial import AdversarialAugmenter
from robens.training.context import NonFiniteStep, StrategyContext
from robens.utils import make_generator

MIN_VOTE_WEIGHT = 1e-6

#: Strategy classes by name (``training.strategy``); each is built as ``cls(context)``.
STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


@STRATEGIES.register("joint")
class Strategy:
    """Joint training: all members on the same batches, one objective, one optimizer step."""

    name = "joint"

    def __init__(self, ctx: StrategyContext) -> None:
        self.ctx = ctx
        cfg = ctx.config
        if cfg.training.soft_voting == "val_accuracy" and not cfg.data.val_size:
            raise ConfigError(
                "training.soft_voting: val_accuracy weighs members by their accuracy on held-out"
                " images: set data.val_size (e.g. 5000) to hold them out of training"
            )
        adv = AdversarialAugmenter(cfg.training.adversarial, ctx.device)
        self.adversarial = adv if adv.enabled else None
        self.vote: dict[str, Any] = {}

    # ---------------------------------------------------------------- batches
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.ctx.train_set) / self.ctx.config.data.batch_size)

    def epoch_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled training batches of epoch ``epoch`` (seeded by the epoch)."""
        gen = make_generator(self.ctx.seed, "shuffle", epoch)
        bs = self.ctx.config.data.batch_size
        yield from self.ctx.train_set.batches(bs, shuffle=True, generator=gen)

    def training_model(self) -> nn.Module:
        """The module the objective is computed on this step (the whole ensemble here)."""
        return self.ctx.ensemble

    def augment(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Data augmentation only (shift/crop/flip and D_noise)."""
        return self.ctx.augment(x, y, gen)

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmentation, then (when configured) adversarial examples appended to the batch."""
        x, y = self.augment(x, y, gen)
        if self.adversarial is not None:
            x, y = self.adversarial(self.training_model(), x, y, gen)
        return x, y

    # ---------------------------------------------------------------- one step
    def train_step(
        self, x: torch.Tensor, y: torch.Tensor, lr: float, step: int
    ) -> dict[str, float]:
        """One optimizer step at learning rate ``lr`` after ``step`` completed steps.

        Returns the logged values (``loss``, ``acc``, ``lr`` and one per objective term);
        raises :class:`NonFiniteStep` (before stepping) on a non-finite loss or gradient.
        """
        ctx = self.ctx
        ctx.ensemble.train()
        for group in ctx.optimizer.param_groups:
            group["lr"] = lr
        epochs = max(1, ctx.config.training.epochs)
        progress = (step // max(1, self.steps_per_epoch())) / epochs  # TRS's epoch / epochs
        gen = make_generator(ctx.seed, "objective", step, device=x.device)
        batch = ctx.objective.batch(self.training_model(), x, y, progress=progress,
                                    generator=gen)
        total, parts = ctx.objective(batch)
        if not torch.isfinite(total):
            bad = [name for name, v in parts.items() if not torch.isfinite(v).all()]
            what = (f"non-finite term(s): {', '.join(bad)}" if bad else "every term is finite;"
                    " their weighted sum overflowed: " + ", ".join(
                        f"{n}={v.detach().float().mean().item():.4g}" for n, v in parts.items()))
            raise NonFiniteStep(f"loss is {total.item()} ({what})")
        ctx.optimizer.zero_grad(set_to_none=True)
        total.backward()
        clip = ctx.config.training.grad_clip or math.inf
        norm = torch.nn.utils.clip_grad_norm_(ctx.ensemble.parameters(), clip)
        if not torch.isfinite(norm):
            bad = [
                n for n, p in ctx.ensemble.named_parameters()
                if p.grad is not None and not torch.isfinite(p.grad).all()
            ]
            names = ", ".join(ctx.objective.names())
            raise NonFiniteStep(f"non-finite gradients in {bad[:3]} (objective terms: {names})")
        ctx.optimizer.step()
        self.on_step_end(step + 1)
        with torch.no_grad():
            if batch.per_member_inputs:  # bagging: each member on its own batch
                acc = (batch.member_logits.argmax(-1) == batch.y).float().mean().item()
            else:
                acc = (batch.logits.argmax(-1) == batch.y).float().mean().item()
        out = {"loss": total.item(), "acc": acc, "lr": lr}
        out.update({k: v.item() for k, v in parts.items()})
        return out

    # ---------------------------------------------------------------- hooks
    def on_epoch_start(self, epoch: int) -> None:
        """Called before the batches of epoch ``epoch`` (0-based)."""

    def on_epoch_end(self, epoch: int) -> None:
        """Called after the last step of epoch ``epoch``, before its evaluation."""

    def on_step_end(self, step: int) -> None:
        """Called after every optimizer step; ``step`` counts the completed steps."""

    def on_fit_end(self) -> None:
        """Called once after the last epoch (before the final evaluation and checkpoint)."""
        if self.ctx.config.training.soft_voting == "val_accuracy":
            self.set_vote_weights()

    def set_vote_weights(self) -> list[float]:
        """Soft voting: weights proportional to each member's validation accuracy."""
        ctx = self.ctx
        if ctx.val_set is None:  # pragma: no cover - checked in __init__
            raise ConfigError("soft voting by validation accuracy needs data.val_size > 0")
        acc = evaluate_accuracy(
            ctx.ensemble, ctx.val_set.batches(ctx.config.data.eval_batch_size), device=ctx.device
        )
        members = acc["members"] or [acc["ensemble"]]
        raw = torch.tensor([max(float(a), MIN_VOTE_WEIGHT) for a in members], dtype=torch.float64)
        weights = (raw / raw.sum()).tolist()
        ctx.ensemble.set_weights(weights)
        self.vote = {"val_accuracy": members, "weights": weights, "val_size": acc["n"]}
        ctx.echo(
            "soft voting: weights "
            + " ".join(f"{w:.4f}" for w in weights)
            + " from validation accuracy "
            + " ".join(f"{100 * a:.2f}%" for a in members)
        )
        return weights

    # ---------------------------------------------------------------- resume
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint (under ``strategy/``), e.g. a strategy's own optimizers."""
        return {}

    def state_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name}
        if self.vote:
            meta["soft_voting"] = self.vote
        return meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore what :meth:`state_tensors` / :meth:`state_meta` saved."""
        if meta.get("name", self.name) != self.name:
            raise CheckpointError(
                f"the checkpoint was written by strategy {meta.get('name')!r}, not {self.name!r}"
            )
        self.vote = dict(meta.get("soft_voting", {}))
