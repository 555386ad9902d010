"""AutoAttack: a cascade of parameter-free attacks (Croce & Hein, ICML 2020, Sec. 5).

``version="standard"``: APGD-CE (100 steps), APGD-T (targeted DLR, the 9 most likely other
classes, 100 steps each), FAB-T (not built in robens yet, so omitted and recorded in the
description) and Square (5,000 queries, ``p_init = 0.8``, margin loss). ``version="rand"`` (for
randomized defenses): APGD-CE and APGD-DLR with EOT over ``eot_iter = 20`` gradient samples.
``version="custom"``: the ``attacks`` given (stage names or :class:`Attack` instances).

Every stage runs only on the points still robust, and a point counts as robust only if it
survives every stage, so the robust accuracy is at most the minimum over the stages. Per
sample, the first adversarial example found is returned (the worst case); a still-robust sample
gets the first stage's output. After a call, ``attack.last_log`` holds one record per stage
(robust accuracy after it, points attacked and broken, seconds), :meth:`format_log` prints it
and ``result.info["stages"]`` carries it. As in the original, a model whose outputs look like
probabilities triggers a warning (APGD and APGD-T then use log-probabilities).

Equivalents: torchattacks ``AutoAttack(model, norm, eps, version, n_classes, seed)``, ART
``AutoAttack``, the reference ``autoattack.AutoAttack``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from robens.attacks.apgd import APGD, APGDT
from robens.attacks.base import Attack, Gen, ModelLike
from robens.attacks.dlr import looks_like_probs
from robens.attacks.registry import register_attack
from robens.attacks.square import Square
from robens.errors import InputError

VERSIONS = ("standard", "rand", "custom")
STAGES = ("apgd-ce", "apgd-dlr", "apgd-t", "square")
ProgressLike = Callable[[dict[str, Any]], None] | Any


@register_attack("aa", "auto_attack")
class AutoAttack(Attack):
    """AutoAttack (Croce & Hein 2020): the standard, rand or a custom cascade.

    Args:
        model: logits callable, Ensemble or list of models (see :class:`Attack`).
        eps: budget in ``norm``.
        norm: ``"linf"`` or ``"l2"``.
        version: ``"standard"``, ``"rand"`` or ``"custom"``.
        attacks: the stages of ``version="custom"``: names from ``STAGES`` or attacks.
        seed: seed of every stage.
        steps: APGD iterations per run (100); ``n_target_classes``: APGD-T targets (9);
            ``n_queries``: Square's budget (5,000); ``eot_iter``: EOT samples of ``rand`` (20).
        combine: how ensemble members form the objective (passed to every stage).
        progress: a callable receiving each stage's log record, or a
            :class:`robens.progress.Progress` (one bar step per stage).
    """

    name = "autoattack"
    deterministic = False
    supported_norms = ("linf", "l2")

    def __init__(
        self,
        model: ModelLike,
        eps: float = 8 / 255,
        norm: str = "linf",
        version: str = "standard",
        attacks: Sequence[str | Attack] | None = None,
        seed: int | None = 0,
        steps: int = 100,
        n_target_classes: int = 9,
        n_queries: int = 5000,
        eot_iter: int = 20,
        combine: str | None = None,
        progress: ProgressLike | None = None,
    ) -> None:
        norm = norm.lower() if isinstance(norm, str) else norm
        super().__init__(model, eps, norm, "ce", False, combine, seed)
        if version not in VERSIONS:
            raise InputError(f"version must be one of {', '.join(VERSIONS)}, got {version!r}")
        if (version == "custom") != (attacks is not None):
            raise InputError("attacks=[...] is given exactly when version='custom'")
        self.version = version
        self.steps = self._check_int(steps, "steps")
        self.n_target_classes = self._check_int(n_target_classes, "n_target_classes")
        self.n_queries = self._check_int(n_queries, "n_queries")
        self.eot_iter = self._check_int(eot_iter, "eot_iter")
        self.progress = progress
        if version == "standard":
            names: list[str | Attack] = ["apgd-ce", "apgd-t", "square"]
        elif version == "rand":
            names = ["apgd-ce", "apgd-dlr"]
        else:
            names = list(attacks or [])
            if not names:
                raise InputError("version='custom' needs at least one attack")
        self._early_exit = False
        self.stages: list[tuple[str, Attack]] = [self._stage(a) for a in names]
        self.last_log: list[dict[str, Any]] = []
        self.params: dict[str, Any] = {
            "version": version,
            "stages": ",".join(n for n, _ in self.stages),
            "steps": self.steps,
            "n_target_classes": self.n_target_classes,
            "n_queries": self.n_queries,
        }
        if version == "rand":
            self.params["eot_iter"] = self.eot_iter
        if version == "standard":
            self.params["omitted"] = "fab-t"

    def _stage(self, spec: str | Attack) -> tuple[str, Attack]:
        if isinstance(spec, Attack):
            if spec.targeted:
                raise InputError("AutoAttack stages must be untargeted attacks")
            return spec.name, spec
        key = str(spec).lower().replace("_", "-")
        eot = self.eot_iter if self.version == "rand" else 1
        common = {"eps": self.eps, "norm": self.norm, "seed": self.seed, "combine": self.combine}
        if key in ("apgd-ce", "apgd-dlr"):
            loss = "ce" if key == "apgd-ce" else "dlr"
            return key, APGD(self.model, steps=self.steps, loss=loss, eot_iter=eot, **common)
        if key == "apgd-t":
            atk = APGDT(self.model, steps=self.steps, n_target_classes=self.n_target_classes,
                        eot_iter=eot, **common)
            return key, atk
        if key == "square":
            return key, Square(self.model, n_queries=self.n_queries, p_init=0.8, **common)
        raise InputError(f"unknown AutoAttack stage {spec!r}; available: {', '.join(STAGES)}")

    @property
    def early_exit(self) -> bool:
        """Early exit of the stages that have one (APGD, APGD-T); set by the engine."""
        return self._early_exit

    @early_exit.setter
    def early_exit(self, on: bool) -> None:
        self._early_exit = bool(on)
        for _, atk in self.stages:
            if hasattr(atk, "early_exit"):
                atk.early_exit = self._early_exit

    # ------------------------------------------------------------------ cascade
    def _report(self, record: dict[str, Any], task: Any) -> None:
        if task is not None:
            task.advance()
        elif callable(self.progress):
            self.progress(record)

    def _attack(self, x: torch.Tensor, y: torch.Tensor, gen: Gen) -> torch.Tensor:
        n = x.shape[0]
        with torch.no_grad():
            logits0 = self.logits(x)
        if looks_like_probs(logits0):
            warnings.warn(
                "the model's outputs look like probabilities, not logits: AutoAttack's APGD"
                " stages use log-probabilities, but other attacks may be weakened",
                stacklevel=3,
            )
        robust = ~self.is_success(logits0, y)
        self.last_log = [{"stage": "clean", "robust_accuracy": float(robust.float().mean()),
                          "n_attacked": 0, "n_broken": 0, "seconds": 0.0}]
        x_out = x.clone()
        task = None
        if self.progress is not None and hasattr(self.progress, "task"):
            task = self.progress.task("AutoAttack", len(self.stages))
        for i, (name, atk) in enumerate(self.stages):
            t0 = time.perf_counter()
            idx = robust.nonzero().flatten()
            broken = 0
            if idx.numel():
                res = atk.run(x[idx], y[idx])
                succ = res.success
                if i == 0:
                    x_out[idx] = res.x_adv
                x_out[idx[succ]] = res.x_adv[succ]
                robust[idx[succ]] = False
                broken = int(succ.sum())
            record = {
                "stage": name,
                "robust_accuracy": float(robust.float().mean()) if n else float("nan"),
                "n_attacked": int(idx.numel()),
                "n_broken": broken,
                "seconds": time.perf_counter() - t0,
            }
            self.last_log.append(record)
            self._report(record, task)
        if task is not None:
            task.close()
        return x_out

    def run(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Any:
        """Attack; ``result.info["stages"]`` holds the per-stage log."""
        res = super().run(x, y)
        res.info["stages"] = [dict(r) for r in self.last_log]
        return res

    def format_log(self) -> str:
        """The per-stage log as a small table."""
        lines = [f"{'stage':<10} {'robust acc':>10} {'attacked':>8} {'broken':>6} {'seconds':>8}"]
        for r in self.last_log:
            lines.append(
                f"{r['stage']:<10} {100 * r['robust_accuracy']:>9.2f}% {r['n_attacked']:>8d}"
                f" {r['n_broken']:>6d} {r['seconds']:>8.2f}"
            )
        return "\n".join(lines)
