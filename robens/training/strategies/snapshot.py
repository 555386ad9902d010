"""Snapshot ensembling (Huang et al. 2017): one network trained with the cyclic cosine schedule
(Eq. 2), one cycle per member; the snapshot at the end of cycle k becomes member k."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robens.config import check_snapshot_schedule
from robens.errors import CheckpointError, ConfigError
from robens.training.context import StrategyContext
from robens.training.schedules import cycle_ends
from robens.training.strategies.base import STRATEGIES, Strategy


@STRATEGIES.register("snapshot")
class Snapshot(Strategy):
    """Member k = the network after cosine cycle k.

    The live network is the last member; at the end of cycle k (k < M - 1) its weights are
    copied into members k..M-2, so during training the ensemble holds the snapshots taken so
    far (plus copies of the latest) and at the end exactly one snapshot per member. The
    snapshots are part of the ensemble's weights, hence of every checkpoint (resumable); the
    strategy metadata records how many were taken. The schedule must be ``cyclic_cosine`` with
    ``cycles = members``; config validation switches the default constant schedule to it.
    """

    name = "snapshot"

    def __init__(self, ctx: StrategyContext) -> None:
        cfg = ctx.config
        m = cfg.model.members
        check_snapshot_schedule(cfg.schedule, m)
        super().__init__(ctx)
        if ctx.ensemble.num_members != m:  # pragma: no cover - built from the same config
            raise ConfigError("snapshot: the ensemble size differs from model.members")
        if len({str(s) for s in ctx.member_specs}) != 1:
            raise ConfigError("strategy 'snapshot' trains one network: members must share one arch")
        total = self.steps_per_epoch() * cfg.training.epochs
        if total < m:
            raise ConfigError(
                f"snapshot needs at least one step per cycle: {total} steps for {m} cycles"
            )
        self.ends = cycle_ends(self.steps_per_epoch(), cfg.training.epochs, m)
        self.taken = 0
        self._copy(m - 1, range(m - 1))  # before the first snapshot every member = live net

    @property
    def live(self) -> nn.Module:
        return self.ctx.ensemble.members[-1]

    def training_model(self) -> nn.Module:
        return self.live

    @torch.no_grad()
    def _copy(self, src: int, dst: range | list[int]) -> None:
        members = self.ctx.ensemble.members
        state = members[src].state_dict()
        for k in dst:
            members[k].load_state_dict(state)

    def on_step_end(self, step: int) -> None:
        m = self.ctx.ensemble.num_members
        while self.taken < m - 1 and step >= self.ends[self.taken]:
            self._copy(m - 1, range(self.taken, m - 1))
            self.taken += 1
        if step >= self.ends[-1]:
            self.taken = m

    def on_fit_end(self) -> None:
        m = self.ctx.ensemble.num_members
        if self.taken < m:  # pragma: no cover - the last cycle ends at the last step
            raise CheckpointError(f"snapshot: only {self.taken} of {m} snapshots were taken")
        super().on_fit_end()

    def state_meta(self) -> dict[str, Any]:
        return {**super().state_meta(), "snapshots_taken": self.taken, "cycle_ends": self.ends}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().load_state(tensors, meta)
        self.taken = int(meta.get("snapshots_taken", 0))
