"""The training loop: all members jointly, one objective, resumable checkpoints.

Reproducibility: every random choice of epoch ``e`` (shuffling, augmentation, noise, adversarial
eps) comes from generators seeded with ``derive_seed(seed, ..., e)``, and the global torch
seed is reset from it too, so a run resumed from the checkpoint of epoch ``e - 1`` replays
epoch ``e`` exactly and ends with the same weights as an uninterrupted run.

Resume compares training identities (:mod:`robens.identity`), not whole configs: the output
folder, threads, device, evaluation batch size and test size may change, and
``training.epochs`` may change (a finished run extended) when the schedule and the objective do
not depend on the run's length (:func:`robens.training.schedules.length_change_error`). A
finished run extended with ``soft_voting: val_accuracy`` trains on with the configured weights
(as an uninterrupted run would) and votes again at its new end.

A run folder holds ``checkpoint.safetensors`` (the weights and metadata: all that evaluation
reads) and ``optimizer.safetensors`` (the optimizer's and the strategy's state, bound to that
checkpoint; :func:`robens.checkpoint.save_training_checkpoint`). A finished run keeps both, so
it can be extended; deleting the optimizer file of a finished run only rules that out.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robens.checkpoint import (
    load_checkpoint,
    load_resume_state,
    module_from_tensors,
    module_to_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_training_checkpoint,
    split_prefix,
)
from robens.config import ExperimentConfig, dump_config, validate_config
from robens.data.base import ImageDataset
from robens.data.datasets import load_dataset
from robens.ensemble import Ensemble
from robens.errors import CheckpointError, ConfigError, TrainingError
from robens.factory import build_ensemble, ensemble_meta
from robens.identity import format_diff, identity_diff, train_identity
from robens.metrics.accuracy import evaluate_accuracy
from robens.objectives import Objective, parse_objective
from robens.progress import Progress
from robens.runlock import RunLock
from robens.training.context import BatchAugment, NonFiniteStep, StrategyContext, build_optimizer
from robens.training.schedules import learning_rate, length_change_error
from robens.training.strategies import make_strategy
from robens.utils import (
    atomic_write_json,
    atomic_write_text,
    config_hash,
    derive_seed,
    make_generator,
    resolve_device,
    versions,
)

CHECKPOINT_NAME = "checkpoint.safetensors"
PROGRESS_FIELDS = "loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f}"
__all__ = ["CHECKPOINT_NAME", "TrainResult", "TrainState", "Trainer", "build_optimizer"]


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    run_dir: Path
    ensemble: Ensemble
    history: list[dict[str, Any]]
    checkpoint: Path
    skipped_batches: int = 0

    @property
    def test_accuracy(self) -> float:
        return float(self.history[-1]["test"]["ensemble"]) if self.history else float("nan")


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped_batches: int = 0


class Trainer:
    """Train an ensemble as described by an :class:`ExperimentConfig`.

    Args:
        config: the validated experiment config.
        run_dir: where the checkpoint, config and history go (``config.output_dir`` by default).
        progress: show a progress bar.
        echo: where one-line messages go (``print`` by default; ``None`` silences them).
        datasets: optional pre-loaded ``(train, test)`` datasets (tests, notebooks).
    """

    def __init__(
        self,
        config: ExperimentConfig,
        run_dir: str | os.PathLike | None = None,
        progress: bool = True,
        echo: Callable[[str], None] | None = print,
        datasets: tuple[ImageDataset, ImageDataset] | None = None,
    ) -> None:
        self.cfg = config
        self.run_dir = Path(run_dir or config.output_dir)
        self.progress = progress
        self.echo = echo or (lambda _msg: None)
        self.device = resolve_device(config.training.device)
        if config.training.threads:
            torch.set_num_threads(config.training.threads)
        self.train_set, self.test_set = datasets or self._load_data()
        self.val_set: ImageDataset | None = None
        if config.data.val_size:
            self._split_validation()
        torch.manual_seed(derive_seed(config.seed, "init"))
        self.ensemble, self.member_specs = build_ensemble(
            config.model, self.train_set.in_shape, self.train_set.num_classes
        )
        self.ensemble.to(self.device)
        self.objective: Objective = parse_objective(config.objective, config.terms)
        self.optimizer = build_optimizer(config, list(self.ensemble.parameters()))
        self.augment = BatchAugment.from_config(config.data.augment)
        for note in config.notes:  # what config validation completed
            self.echo(note)
        self.context = StrategyContext(
            config=config,
            ensemble=self.ensemble,
            member_specs=self.member_specs,
            train_set=self.train_set,
            val_set=self.val_set,
            objective=self.objective,
            optimizer=self.optimizer,
            make_optimizer=lambda params: build_optimizer(config, params),
            augment=self.augment,
            device=self.device,
            echo=self.echo,
        )
        self.strategy = make_strategy(self.context)
        self.state = TrainState()
        self.config_hash = config_hash(self.cfg.to_dict())
        self.identity = train_identity(self.cfg.to_dict())
        self._complete = False  # whether the checkpoint on disk is of a finished run

    # ------------------------------------------------------------------ setup
    def _load_data(self) -> tuple[ImageDataset, ImageDataset]:
        d = self.cfg.data
        train = load_dataset(d.dataset, "train", root=d.root, size=d.train_size, seed=self.cfg.seed)
        test = load_dataset(d.dataset, "test", root=d.root, size=d.test_size, seed=self.cfg.seed)
        return train, test

    def _split_validation(self) -> None:
        n = len(self.train_set)
        k = self.cfg.data.val_size
        if k >= n:
            raise TrainingError(f"data.val_size ({k}) must be smaller than the training set ({n})")
        perm = torch.randperm(n, generator=make_generator(self.cfg.seed, "val-split"))
        self.val_set = self.train_set.indices(perm[:k])
        self.train_set = self.train_set.indices(perm[k:])

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    @property
    def steps_per_epoch(self) -> int:
        return self.strategy.steps_per_epoch()

    # ------------------------------------------------------------------ one step
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float] | None:
        """One strategy step at the scheduled learning rate; ``None`` for a skipped batch."""
        lr = learning_rate(
            self.cfg.schedule,
            self.cfg.optimizer.lr,
            self.state.global_step,
            self.steps_per_epoch,
            self.cfg.training.epochs,
        )
        try:
            logs = self.strategy.train_step(x, y, lr, self.state.global_step)
        except NonFiniteStep as exc:
            return self._nonfinite(str(exc))
        self.state.global_step += 1
        return logs

    def _nonfinite(self, message: str) -> None:
        step = self.state.global_step
        if self.cfg.training.on_nonfinite == "skip":
            self.state.skipped_batches += 1
            self.optimizer.zero_grad(set_to_none=True)
            self.echo(f"warning: skipped batch at step {step}: {message}")
            return None
        last = self.checkpoint_path if self.checkpoint_path.exists() else None
        kept = f"; the last good checkpoint {last} is kept" if last else ""
        hint = (
            f" (lr {self.cfg.optimizer.lr:g}: a diverging run usually needs a lower optimizer.lr"
            " or training.grad_clip; training.on_nonfinite: skip drops such batches instead)"
        )
        raise TrainingError(f"training stopped at step {step}: {message}{kept}{hint}")

    # ------------------------------------------------------------------ epochs
    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch and evaluate; returns the epoch's history record."""
        torch.manual_seed(derive_seed(self.cfg.seed, "torch", epoch))
        gen = make_generator(self.cfg.seed, "augment", epoch)
        sums: dict[str, float] = {}
        count = 0
        t0 = time.perf_counter()
        self.strategy.on_epoch_start(epoch)
        with Progress(self.progress, PROGRESS_FIELDS) as progress:
            bar = progress.task(
                f"epoch {epoch + 1}", self.steps_per_epoch, loss=float("nan"), acc=0.0
            )
            for x, y in self.strategy.epoch_batches(epoch):
                x, y = x.to(self.device), y.to(self.device)
                x, y = self.strategy.transform_batch(x, y, gen)
                logs = self.train_step(x, y)
                if logs is not None:
                    count += 1
                    for k, v in logs.items():
                        sums[k] = sums.get(k, 0.0) + v
                    bar.advance(loss=logs["loss"], acc=logs["acc"])
                else:
                    bar.advance()
        self.strategy.on_epoch_end(epoch)
        train_means = {k: v / max(count, 1) for k, v in sums.items()}
        record = {
            "epoch": epoch + 1,
            "train": train_means,
            "test": self.evaluate(self.test_set),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        return record

    def evaluate(self, dataset: ImageDataset) -> dict[str, Any]:
        """Per-member and ensemble accuracy on ``dataset``."""
        bs = self.cfg.data.eval_batch_size
        return evaluate_accuracy(
            self.ensemble, dataset.batches(bs, shuffle=False), device=self.device
        )

    # ------------------------------------------------------------------ checkpoints
    def save(self, complete: bool = False) -> Path:
        """The checkpoint (the weights and metadata) and, beside it in ``optimizer.safetensors``,
        what only resuming needs: the optimizer's state and the strategy's own tensors."""
        opt_tensors, opt_meta = optimizer_to_tensors(self.optimizer)
        state = dict(opt_tensors)
        state.update({f"strategy/{k}": v for k, v in self.strategy.state_tensors().items()})
        meta = {
            "kind": "ensemble",
            "config": self.cfg.to_dict(),
            "config_hash": self.config_hash,
            "train_identity": self.identity,
            "seed": self.cfg.seed,
            "epoch": self.state.epoch,
            "global_step": self.state.global_step,
            "complete": complete,
            "history": self.state.history,
            "skipped_batches": self.state.skipped_batches,
            "strategy": self.strategy.state_meta(),
            "model": ensemble_meta(self.ensemble, self.member_specs),
            "dataset": {
                "name": self.train_set.name,
                "num_classes": self.train_set.num_classes,
                "in_shape": list(self.train_set.in_shape),
                "train_size": len(self.train_set),
                "test_size": len(self.test_set),
            },
            "versions": versions(),
        }
        path = save_training_checkpoint(self.checkpoint_path, module_to_tensors(self.ensemble),
                                        meta, state, {"optimizer": opt_meta})
        atomic_write_json(self.run_dir / "history.json", self.state.history)
        return path

    def restore(self) -> bool:
        """Load the run directory's checkpoint; returns False when there is none."""
        if not self.checkpoint_path.exists():
            return False
        tensors, meta = load_checkpoint(self.checkpoint_path)
        self._check_resume(meta)
        configured = self.ensemble.weights.clone()
        module_from_tensors(self.ensemble, tensors, "model")
        done = bool(meta.get("complete")) and int(meta["epoch"]) == self.cfg.training.epochs
        # a finished run with nothing more to train needs no optimizer state (its file may be
        # gone); every other resume does, and refuses one written with another checkpoint
        state, state_meta = ({}, {}) if done else load_resume_state(
            self.checkpoint_path, tensors, meta)
        if not done:
            optimizer_from_tensors(self.optimizer, state, state_meta["optimizer"])
        self.strategy.load_state(split_prefix(state, "strategy"), meta.get("strategy", {}))
        self.state = TrainState(
            epoch=int(meta["epoch"]),
            global_step=int(meta["global_step"]),
            history=list(meta.get("history", [])),
            skipped_batches=int(meta.get("skipped_batches", 0)),
        )
        self._complete = bool(meta.get("complete"))
        extending = self._complete and self.state.epoch < self.cfg.training.epochs
        if extending and self.cfg.training.soft_voting == "val_accuracy":
            self.ensemble.set_weights(configured)  # voted again at the new end
            self.strategy.vote = {}
        return True

    def _check_resume(self, meta: dict[str, Any]) -> None:
        """Refuse a checkpoint whose training identity or length does not fit this config."""
        where = self.checkpoint_path
        stored = meta.get("train_identity")
        if not isinstance(stored, dict):  # written before identities were recorded
            old = meta.get("config")
            if not isinstance(old, dict):
                raise CheckpointError(f"{where} holds no config to compare with; cannot resume")
            stored = train_identity(_revalidated(old))
        diff = identity_diff(stored, self.identity)
        if diff:
            raise CheckpointError(
                f"{where} was trained with a different config ({format_diff(diff)}); resume"
                " with the checkpoint's values or choose another output directory"
            )
        done = int(meta.get("epoch", 0))
        epochs = self.cfg.training.epochs
        if done > epochs:
            raise CheckpointError(
                f"{where} has already trained {done} epoch(s), more than training.epochs:"
                f" {epochs}; resume with training.epochs >= {done}"
            )
        old_cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
        old_epochs = int(old_cfg.get("training", {}).get("epochs", epochs))
        if old_epochs == epochs:
            return
        steps = int(meta.get("global_step", 0))
        why = length_change_error(self.cfg.schedule, old_epochs, epochs, steps)
        ramps = [t.name for _, t in self.objective.terms if getattr(t, "uses_progress", False)]
        if why is None and ramps:
            why = (
                f"objective term(s) {', '.join(ramps)} follow the training progress (epoch /"
                f" training.epochs), so changing training.epochs from {old_epochs} to {epochs}"
                f" would change the {steps} step(s) already taken; keep training.epochs:"
                f" {old_epochs} to resume"
            )
        if why is not None:
            raise CheckpointError(f"cannot resume {where} with training.epochs {epochs}: {why}")

    # ------------------------------------------------------------------ fit
    def fit(self, resume: bool = False) -> TrainResult:
        """Train for ``training.epochs`` epochs (continuing a checkpoint when ``resume``)."""
        with RunLock(self.run_dir):
            if resume:
                if self.restore():
                    self.echo(f"resuming {self.run_dir} after epoch {self.state.epoch}")
            elif self.checkpoint_path.exists():
                raise CheckpointError(
                    f"{self.checkpoint_path} exists: pass --resume to continue that run, or choose"
                    " another output directory (nothing was overwritten)"
                )
            atomic_write_text(self.run_dir / "config.yaml", dump_config(self.cfg))
            epochs = self.cfg.training.epochs
            for epoch in range(self.state.epoch, epochs):
                record = self.run_epoch(epoch)
                self.state.epoch = epoch + 1
                self.state.history.append(record)
                last = self.state.epoch == epochs
                if last:
                    self._finish(record)
                self.save(complete=last)
                self._complete = last
                self.echo(_epoch_line(record))
            if self.state.epoch == epochs and not self._complete:
                # an interrupted run resumed with training.epochs = its last epoch
                if self.state.history:
                    self._finish(self.state.history[-1])
                self.save(complete=True)
                self._complete = True
        return TrainResult(
            self.run_dir,
            self.ensemble,
            self.state.history,
            self.checkpoint_path,
            self.state.skipped_batches,
        )

    def _finish(self, record: dict[str, Any]) -> None:
        """End of training: the strategy's last word, then the final test evaluation."""
        self.strategy.on_fit_end()
        record["test"] = self.evaluate(self.test_set)


def _revalidated(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with today's defaults filled in (as written when it no longer validates)."""
    try:
        return validate_config(config).to_dict()
    except ConfigError:
        return config


def _epoch_line(record: dict[str, Any]) -> str:
    test = record["test"]
    members = " ".join(f"{100 * a:.2f}" for a in test["members"])
    train = record["train"]
    return (
        f"epoch {record['epoch']}: loss {train.get('loss', float('nan')):.4f}"
        f" | test acc ensemble {100 * test['ensemble']:.2f}% members [{members}]"
        f" | {record['seconds']:.1f}s"
    )


def read_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch history of a run directory."""
    path = Path(run_dir) / "history.json"
    return json.loads(path.read_text()) if path.exists() else []
