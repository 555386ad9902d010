"""The per-sample result record every attack's ``run`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from robens.attacks.base import Attack


@dataclass
class AttackResult:
    """What :meth:`Attack.run` returns; every tensor field has one entry per sample.

    ``loss`` is the attack objective at ``x_adv`` (the value the attack maximizes: the loss for
    untargeted attacks, minus the loss towards the target for targeted ones). ``queries`` counts
    model evaluations for query-based (black-box) attacks and is ``None`` for white-box ones.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    norm: torch.Tensor
    loss: torch.Tensor
    queries: torch.Tensor | None = None
    y: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)
    attack: Attack | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.x_adv.shape[0])

    def select(self, idx: torch.Tensor | slice) -> AttackResult:
        """The results of the samples at ``idx``."""

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx]

        return AttackResult(
            self.x_adv[idx],
            self.success[idx],
            self.norm[idx],
            self.loss[idx],
            pick(self.queries),
            pick(self.y),
            dict(self.info),
            self.attack,
        )

    def to_record_fields(self) -> dict[str, Any]:
        """Flat JSON-able summary: the attack's description plus success rate, norms, loss."""
        n = len(self)
        fields: dict[str, Any] = dict(self.info)
        fields.update(
            n=n,
            success_rate=float(self.success.float().mean()) if n else float("nan"),
            mean_norm=float(self.norm.double().mean()) if n else float("nan"),
            max_norm=float(self.norm.double().max()) if n else float("nan"),
            mean_loss=float(self.loss.double().mean()) if n else float("nan"),
        )
        if self.queries is not None:
            fields["mean_queries"] = float(self.queries.double().mean()) if n else float("nan")
        return fields
