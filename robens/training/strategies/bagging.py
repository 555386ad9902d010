"""Bagging: member i trains on its own bootstrap resample (Breiman 1996; Jacobian Ensembles
Sec. 4): n draws with replacement, seeded by ``(seed, "bootstrap", i)`` and fixed for the run;
each step gives every member its own batch, ``x [M, B, C, H, W]`` and ``y [M, B]``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from robens.errors import CheckpointError
from robens.training.context import StrategyContext
from robens.training.strategies.base import STRATEGIES, Strategy
from robens.utils import make_generator


@STRATEGIES.register("bagging")
class Bagging(Strategy):
    """Each member trains on its own bootstrap resample of the training set."""

    name = "bagging"

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx)
        n = len(ctx.train_set)
        self.indices = [
            torch.randint(0, n, (n,), generator=make_generator(ctx.seed, "bootstrap", i))
            for i in range(ctx.ensemble.num_members)
        ]

    def fingerprint(self) -> list[int]:
        return [int(ix.sum()) for ix in self.indices]

    def epoch_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ctx = self.ctx
        bs = ctx.config.data.batch_size
        orders = [
            ix[torch.randperm(len(ix), generator=_shuffle_gen(ctx.seed, epoch, i))]
            for i, ix in enumerate(self.indices)
        ]
        n = len(orders[0])
        for start in range(0, n, bs):
            parts = [ctx.train_set.tensors(order[start : start + bs]) for order in orders]
            yield torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts])

    def augment(
        self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [self.ctx.augment(xi, yi, gen) for xi, yi in zip(x, y, strict=True)]
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


def _shuffle_gen(seed: int, epoch: int, member: int) -> torch.Generator:
    """The generator of member ``member``'s bootstrap order in epoch ``epoch``."""
    return make_generator(seed, "bagging-shuffle", epoch, member)
