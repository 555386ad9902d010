"""Ensemble training strategies: how batches reach the members and what happens between steps.

* ``joint`` (default): all members train on the same batches with one objective.
* ``bagging``: member i trains on its own bootstrap resample (n draws with replacement, seeded
  by ``(seed, "bootstrap", i)``, fixed for the run); each step gives every member its own
  batch, ``x [M, B, C, H, W]`` and ``y [M, B]`` (Jacobian Ensembles Sec. 4; Breiman 1996).
* ``snapshot``: one network trained with the cyclic cosine schedule of Huang et al. 2017
  (Eq. 2), one cycle per member; the snapshot at the end of cycle k becomes member k.

Orthogonal to the strategy, every one of them supports
* adversarial training on the fly and ensemble adversarial training
  (``training.adversarial``, see :mod:`robens.training.adversarial`), applied after the data
  augmentation (shift/crop/flip and the GAL paper's truncated-normal noise, sigma = eps/2);
* soft voting (``training.soft_voting: val_accuracy``): at the end of training the convex
  ensemble weights are set proportional to each member's accuracy on the ``data.val_size``
  images held out of training; they live in the ensemble's ``weights`` buffer, so the
  checkpoint carries them (and its metadata lists them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from robens.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from robens.training.trainer import Trainer

MIN_VOTE_WEIGHT = 1e-6


class Strategy:
    """Joint training; subclasses change batches, per-step hooks and the end of training."""

    name = "joint"

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        cfg = trainer.cfg
        if cfg.training.soft_voting == "val_accuracy" and not cfg.data.val_size:
            raise ConfigError(
                "training.soft_voting: val_accuracy weighs members by their accuracy on held-out"
                " images: set data.val_size (e.g. 5000) to hold them out of training"
            )
        from robens.training.adversarial import AdversarialAugmenter

        adv = AdversarialAugmenter(cfg.training.adversarial, trainer.device)
        self.adversarial = adv if adv.enabled else None
        self.vote: dict[str, Any] = {}

    # ---------------------------------------------------------------- batches
    def steps_per_epoch(self) -> int:
        n, bs = len(self.trainer.train_set), self.trainer.cfg.data.batch_size
        return math.ceil(n / bs)

    def epoch_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.trainer.joint_batches(epoch)

    def training_model(self) -> nn.Module:
        """The module the objective is computed on this step (the whole ensemble here)."""
        return self.trainer.ensemble

    def augment(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Data augmentation only (the trainer's shift/crop/flip and D_noise)."""
        return self.trainer.augment_batch(x, y, gen)

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmentation, then (when configured) adversarial examples appended to the batch."""
        x, y = self.augment(x, y, gen)
        if self.adversarial is not None:
            x, y = self.adversarial(self.training_model(), x, y, gen)
        return x, y

    # ---------------------------------------------------------------- hooks
    def on_step_end(self) -> None:
        """Called after every optimizer step."""

    def on_fit_end(self) -> None:
        """Called once after the last epoch (before the final evaluation and checkpoint)."""
        if self.trainer.cfg.training.soft_voting == "val_accuracy":
            self.set_vote_weights()

    def set_vote_weights(self) -> list[float]:
        """Soft voting: weights proportional to each member's validation accuracy."""
        from robens.metrics.accuracy import evaluate_accuracy

        t = self.trainer
        if t.val_set is None:  # pragma: no cover - checked in __init__
            raise ConfigError("soft voting by validation accuracy needs data.val_size > 0")
        acc = evaluate_accuracy(
            t.ensemble, t.val_set.batches(t.cfg.data.eval_batch_size), device=t.device
        )
        members = acc["members"] or [acc["ensemble"]]
        raw = torch.tensor([max(float(a), MIN_VOTE_WEIGHT) for a in members], dtype=torch.float64)
        weights = (raw / raw.sum()).tolist()
        t.ensemble.set_weights(weights)
        self.vote = {"val_accuracy": members, "weights": weights, "val_size": acc["n"]}
        t.echo(
            "soft voting: weights "
            + " ".join(f"{w:.4f}" for w in weights)
            + " from validation accuracy "
            + " ".join(f"{100 * a:.2f}%" for a in members)
        )
        return weights

    # ---------------------------------------------------------------- resume
    def state_tensors(self) -> dict[str, torch.Tensor]:
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


class Bagging(Strategy):
    """Each member trains on its own bootstrap resample of the training set."""

    name = "bagging"

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        n = len(trainer.train_set)
        self.indices = [
            torch.randint(0, n, (n,), generator=_gen(trainer.cfg.seed, "bootstrap", i))
            for i in range(trainer.ensemble.num_members)
        ]

    def fingerprint(self) -> list[int]:
        return [int(ix.sum()) for ix in self.indices]

    def epoch_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        t = self.trainer
        bs = t.cfg.data.batch_size
        orders = [
            ix[torch.randperm(len(ix), generator=_gen(t.cfg.seed, "bagging-shuffle", epoch, i))]
            for i, ix in enumerate(self.indices)
        ]
        n = len(orders[0])
        for start in range(0, n, bs):
            parts = [t.train_set.tensors(order[start : start + bs]) for order in orders]
            yield torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts])

    def augment(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [self.trainer.augment_batch(xi, yi, gen) for xi, yi in zip(x, y, strict=True)]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])

    def state_meta(self) -> dict[str, Any]:
        return {**super().state_meta(), "bootstrap_fingerprint": self.fingerprint()}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().load_state(tensors, meta)
        saved = meta.get("bootstrap_fingerprint")
        if saved is not None and list(saved) != self.fingerprint():
            raise CheckpointError(
                "the bootstrap resamples differ from the checkpoint's (different training set?)"
            )


class Snapshot(Strategy):
    """Snapshot ensembling (Huang et al. 2017): member k = the network after cosine cycle k.

    The live network is the last member; at the end of cycle k (k < M - 1) its weights are
    copied into members k..M-2, so during training the ensemble holds the snapshots taken so
    far (plus copies of the latest) and at the end exactly one snapshot per member. The
    snapshots are part of the ensemble's weights, hence of every checkpoint (resumable); the
    strategy metadata records how many were taken. The schedule must be ``cyclic_cosine`` with
    ``cycles = members``; the default constant schedule is switched to it automatically.
    """

    name = "snapshot"

    def __init__(self, trainer: Trainer) -> None:
        cfg = trainer.cfg
        m = cfg.model.members
        if cfg.schedule.name == "constant":
            data = cfg.to_dict()
            data["schedule"] = {**data["schedule"], "name": "cyclic_cosine", "cycles": m}
            from robens.config import validate_config

            trainer.cfg = validate_config(data, source="(snapshot strategy)")
            trainer.echo(f"snapshot strategy: schedule set to cyclic_cosine with {m} cycles")
        elif cfg.schedule.name != "cyclic_cosine" or cfg.schedule.cycles != m:
            raise ConfigError(
                f"strategy 'snapshot' takes one snapshot per cosine cycle: set schedule.name:"
                f" cyclic_cosine and schedule.cycles: {m} (= model.members), got"
                f" {cfg.schedule.name} with {cfg.schedule.cycles} cycle(s)"
            )
        super().__init__(trainer)
        ens = trainer.ensemble
        if ens.num_members != m:  # pragma: no cover - built from the same config
            raise ConfigError("snapshot: the ensemble size differs from model.members")
        archs = {str(s) for s in trainer.member_specs}
        if len(archs) != 1:
            raise ConfigError("strategy 'snapshot' trains one network: members must share one arch")
        total = self.steps_per_epoch() * trainer.cfg.training.epochs
        if total < m:
            raise ConfigError(
                f"snapshot needs at least one step per cycle: {total} steps for {m} cycles"
            )
        from robens.training.schedules import cycle_ends

        self.ends = cycle_ends(self.steps_per_epoch(), trainer.cfg.training.epochs, m)
        self.taken = 0
        self._copy(m - 1, range(m - 1))  # before the first snapshot every member = live net

    @property
    def live(self) -> nn.Module:
        return self.trainer.ensemble.members[-1]

    def training_model(self) -> nn.Module:
        return self.live

    @torch.no_grad()
    def _copy(self, src: int, dst: range | list[int]) -> None:
        members = self.trainer.ensemble.members
        state = members[src].state_dict()
        for k in dst:
            members[k].load_state_dict(state)

    def on_step_end(self) -> None:
        step = self.trainer.state.global_step
        m = self.trainer.ensemble.num_members
        while self.taken < m - 1 and step >= self.ends[self.taken]:
            self._copy(m - 1, range(self.taken, m - 1))
            self.taken += 1
        if step >= self.ends[-1]:
            self.taken = m

    def on_fit_end(self) -> None:
        m = self.trainer.ensemble.num_members
        if self.taken < m:  # pragma: no cover - the last cycle ends at the last step
            raise CheckpointError(f"snapshot: only {self.taken} of {m} snapshots were taken")
        super().on_fit_end()

    def state_meta(self) -> dict[str, Any]:
        return {**super().state_meta(), "snapshots_taken": self.taken, "cycle_ends": self.ends}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().load_state(tensors, meta)
        self.taken = int(meta.get("snapshots_taken", 0))


def _gen(seed: int, *keys: Any) -> torch.Generator:
    from robens.utils import make_generator

    return make_generator(seed, *keys)


STRATEGIES: dict[str, type[Strategy]] = {
    "joint": Strategy,
    "bagging": Bagging,
    "snapshot": Snapshot,
}


def make_strategy(trainer: Trainer) -> Strategy:
    """The strategy named by ``training.strategy``."""
    name = trainer.cfg.training.strategy
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; available: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](trainer)
