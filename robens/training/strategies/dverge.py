"""DVERGE training (Yang et al., NeurIPS 2020, arXiv:2009.14720; docs/methods.md s. 8).

Each step takes a *source* batch ``(x_s, y_s)`` (the epoch's ordinary shuffle) and an
independent *target* batch ``x_t`` (a second shuffle, seeded by ``(seed, "dverge-target",
epoch)``), distils every member's features at the epoch's layer
(:func:`~robens.objectives.dverge.distill_members`, one batched computation) and trains
member i on the source labels of the other members' distilled images
(:func:`~robens.objectives.dverge.cross_training_loss`); ``plus_adv`` adds member i's own PGD
loss. All distillations are computed before any member steps, which is the reference's
round-robin of per-member optimizer steps: each member's loss depends only on its own
parameters, so one backward of the summed losses gives every member its own gradient.

The layer is ``training.dverge.layer``: fixed (a name or a 1-based index into
:func:`~robens.models.features.candidate_layers`), or ``"random"``, drawn afresh every epoch
from ``(seed, epoch)`` alone (:func:`~robens.objectives.dverge.draw_layer`), so a resumed run
draws the same layers. Optimizers: one per member (the reference) or the trainer's joint one;
the per-member ones are checkpointed under ``strategy/``. ``init_checkpoint`` starts from a
baseline ensemble's weights (ignored on resume, where the run's own checkpoint wins).

Distillation and cross-training run the members in training mode, as the reference does;
``plus_adv``'s PGD runs each member in eval mode (:func:`robens.training.adversarial.pgd`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from robens.checkpoint import (
    load_checkpoint,
    module_from_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    split_prefix,
)
from robens.errors import CheckpointError, ConfigError, InputError
from robens.models.features import candidate_layers, resolve_layer
from robens.objectives.dverge import (
    DistillSettings,
    cross_training_loss,
    distill_members,
    draw_layer,
)
from robens.training.adversarial import pgd
from robens.training.context import NonFiniteStep, StrategyContext
from robens.training.strategies.base import STRATEGIES, Strategy
from robens.utils import make_generator

RANDOM = "random"


@STRATEGIES.register("dverge")
class Dverge(Strategy):
    """Round-robin cross-training on the other members' feature-distilled images."""

    name = "dverge"

    def __init__(self, ctx: StrategyContext) -> None:
        cfg = ctx.config
        d = cfg.training.dverge
        _check_config(ctx)
        super().__init__(ctx)
        self.members = list(ctx.ensemble.members)
        self.settings = DistillSettings(
            eps=d.eps, alpha=d.alpha, steps=d.steps, mu=d.mu, rand_start=d.rand_start
        )
        self.candidates = _common_candidates(self.members)
        self.fixed = None if d.layer == RANDOM else _fixed_layer(self.members, d.layer)
        if self.fixed is None:
            _check_random_layer(self.candidates)
        self.layer: str | None = self.fixed
        self.layers: dict[str, str] = {}  # epoch (1-based, as in the history) -> layer
        if d.optimizer == "per_member":
            self.optimizers = [ctx.make_optimizer(m.parameters()) for m in self.members]
        else:
            self.optimizers = [ctx.optimizer]
        self._target: torch.Tensor | None = None
        self._x_t: torch.Tensor | None = None
        if d.init_checkpoint:
            self._load_init(d.init_checkpoint)

    # ---------------------------------------------------------------- setup
    def _load_init(self, path: str) -> None:
        tensors, meta = load_checkpoint(path)
        if meta.get("kind") != "ensemble":
            raise CheckpointError(f"training.dverge.init_checkpoint {path} is not an ensemble")
        try:
            module_from_tensors(self.ctx.ensemble, tensors, "model")
        except CheckpointError as exc:
            raise CheckpointError(
                f"training.dverge.init_checkpoint {path} does not fit this ensemble ({exc})"
            ) from None
        self.ctx.echo(f"dverge: starting from the ensemble of {path}")

    # ---------------------------------------------------------------- batches
    def on_epoch_start(self, epoch: int) -> None:
        self.layer = self.fixed or draw_layer(self.ctx.seed, epoch, self.candidates)
        self.layers[str(epoch + 1)] = self.layer

    def epoch_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Source batches; the matching target batch (a second shuffle) waits in ``_target``."""
        ctx = self.ctx
        bs = ctx.config.data.batch_size
        order = torch.randperm(
            len(ctx.train_set), generator=make_generator(ctx.seed, "dverge-target", epoch)
        )
        start = 0
        for x, y in super().epoch_batches(epoch):
            self._target = ctx.train_set.tensors(order[start : start + len(y)])[0]
            start += bs
            yield x, y

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The source batch's augmentation; the target gets the same shift/crop/flip draw."""
        if self._target is None:
            raise InputError("dverge: transform_batch called outside epoch_batches")
        x, y = self.ctx.augment(x, y, gen)
        self._x_t = self.ctx.augment.augment(self._target.to(x.device), gen)
        return x, y

    # ---------------------------------------------------------------- one step
    def train_step(
        self, x: torch.Tensor, y: torch.Tensor, lr: float, step: int
    ) -> dict[str, float]:
        ctx, d = self.ctx, self.ctx.config.training.dverge
        x_t = self._x_t
        if x_t is None or self.layer is None or x_t.shape != x.shape:
            raise InputError("dverge: each step needs its target batch (from epoch_batches)")
        ens = ctx.ensemble
        ens.train()
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        gen = make_generator(ctx.seed, "dverge", step, device=x.device)
        adv = None
        if d.plus_adv:
            eps = torch.full((x.shape[0],), d.adv_eps)
            alpha = torch.full((x.shape[0],), d.adv_alpha)
            adv = torch.stack([
                pgd(m, x, y, eps, steps=d.adv_steps, alpha=alpha, generator=gen)
                for m in self.members
            ])
        distilled = distill_members(ens, self.layer, x, x_t, self.settings, gen,
                                    vectorize=ctx.config.model.vectorize)
        losses = cross_training_loss(ens, distilled, y, adv=adv, coeff=d.coeff)
        total = losses.sum()
        if not torch.isfinite(total):
            raise NonFiniteStep(f"dverge loss is {total.item()} (member losses {losses.tolist()})")
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        total.backward()
        clip = ctx.config.training.grad_clip or math.inf
        for i, opt in enumerate(self.optimizers):
            params = [p for g in opt.param_groups for p in g["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
            if not torch.isfinite(norm):
                raise NonFiniteStep(f"dverge: non-finite gradients (optimizer {i})")
        for opt in self.optimizers:
            opt.step()
        self.on_step_end(step + 1)
        with torch.no_grad():
            acc = (ens(x).argmax(-1) == y).float().mean().item()
        out = {"loss": total.item(), "acc": acc, "lr": lr}
        out.update({f"dverge_member{i}": v for i, v in enumerate(losses.tolist())})
        return out

    # ---------------------------------------------------------------- resume
    def _own_optimizers(self) -> list[torch.optim.Optimizer]:
        return [] if self.optimizers == [self.ctx.optimizer] else self.optimizers

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for i, opt in enumerate(self._own_optimizers()):
            tensors, _ = optimizer_to_tensors(opt)
            out.update({f"member{i}/{k}": v for k, v in tensors.items()})
        return out

    def state_meta(self) -> dict[str, Any]:
        metas = [optimizer_to_tensors(opt)[1] for opt in self._own_optimizers()]
        return {**super().state_meta(), "layers": dict(self.layers), "optimizers": metas}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().load_state(tensors, meta)
        own = self._own_optimizers()
        metas = meta.get("optimizers", [])
        if len(metas) != len(own):
            raise CheckpointError(
                f"dverge: the checkpoint holds {len(metas)} member optimizer(s), this run"
                f" {len(own)} (training.dverge.optimizer changed?)"
            )
        for i, (opt, m) in enumerate(zip(own, metas, strict=True)):
            optimizer_from_tensors(opt, split_prefix(tensors, f"member{i}"), m)
        self.layers = {str(k): str(v) for k, v in meta.get("layers", {}).items()}


def _check_config(ctx: StrategyContext) -> None:
    """Settings DVERGE cannot honour are errors, never silently dropped."""
    cfg = ctx.config
    if ctx.ensemble.num_members < 2:
        raise ConfigError("strategy 'dverge' cross-trains members: set model.members >= 2")
    if cfg.objective.replace(" ", "") != "ce" or cfg.terms:
        raise ConfigError(
            "strategy 'dverge' trains with its own cross-training loss: leave objective: ce"
            f" and no terms (got objective {cfg.objective!r}, terms {sorted(cfg.terms)})"
        )
    adv = cfg.training.adversarial
    if adv.attack != "none" or adv.sources:
        raise ConfigError(
            "strategy 'dverge' has its own adversarial variant: set training.dverge.plus_adv"
            " instead of training.adversarial"
        )
    if cfg.data.augment.noise_eps > 0:
        raise ConfigError("strategy 'dverge' does not take data.augment.noise_eps (set it to 0)")


def _common_candidates(members: list[torch.nn.Module]) -> list[str]:
    lists = [candidate_layers(m) for m in members]
    if any(names != lists[0] for names in lists[1:]):
        return []  # members differ: only a fixed layer name common to all can be used
    return lists[0]


def _fixed_layer(members: list[torch.nn.Module], layer: int | str) -> str:
    names = {resolve_layer(m, layer) for m in members}
    if len(names) != 1:
        raise ConfigError(f"training.dverge.layer {layer!r} names different layers per member:"
                          f" {sorted(names)}; give a layer name")
    return names.pop()


def _check_random_layer(candidates: list[str]) -> None:
    """A random layer needs members with one list of candidate layers."""
    if not candidates:
        raise ConfigError(
            "training.dverge.layer: random needs members with the same candidate layers;"
            " give a fixed layer name present in every member"
        )
