"""Runs one attack suite on one checkpoint, unit by unit, resumably (see robens.evaluate.suite).

The runner builds the unit list (ids from :mod:`robens.evaluate.storage`), skips finished
units, dispatches the others through the unit registry (:mod:`robens.evaluate.units`) with a
:class:`~robens.evaluate.units.UnitContext`, and rewrites the results files after each unit.
Surrogates with a ``train:`` section are trained by the ``train_fn`` it is given.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robens.data import ImageDataset
from robens.errors import ConfigError
from robens.evaluate.clean import checkpoint_test_set
from robens.evaluate.storage import UnitStore, attack_unit_id, clean_unit_id, metric_unit_id
from robens.evaluate.suite_config import SuiteConfig, load_suite, metric_specs
from robens.evaluate.surrogates import Surrogates, TrainFn
from robens.evaluate.units import UNITS, AttackEntry, UnitContext
from robens.factory import load_ensemble
from robens.filelock import LockBusy
from robens.metrics.accuracy import weighted_accuracy
from robens.objectives.base import parse_objective_spec
from robens.progress import Progress
from robens.records import make_record, records_from_meta
from robens.runlock import RunLock
from robens.utils import resolve_device

Echo = Callable[[str], None]
Records = list[dict[str, Any]]


def _regularizer(objective: Any) -> tuple[str, float]:
    """``("gal", 0.5)`` for ``"ce + 0.5*gal"``: the first non-CE term and its weight.

    ``("none", 0.0)`` without one; pieces that do not parse are skipped (never raises).
    """
    text = str(objective)
    try:
        terms = parse_objective_spec(text)
    except ConfigError:
        terms = []
        for piece in text.split("+"):
            try:
                terms += parse_objective_spec(piece)
            except ConfigError:
                continue
    for weight, name in terms:
        if name not in ("ce", "ensemble_ce"):
            return name, weight
    return "none", 0.0


def _adversarial(adv: dict[str, Any]) -> bool:
    return bool(adv) and (adv.get("attack", "none") != "none" or bool(adv.get("sources")))


def run_fields(meta: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Identifying record fields of a checkpoint, plus its recipe (members, objective, lambda)."""
    base = records_from_meta(meta, dataset=dataset)
    cfg = meta.get("config", {})
    model = cfg.get("model", {})
    objective = cfg.get("objective", "ce")
    term, lam = _regularizer(objective)
    base.update(
        members=int(model.get("members", len(meta.get("model", {}).get("members", [])) or 1)),
        arch=model.get("arch"),
        objective=objective,
        reg_term=term,
        reg_lambda=lam,
        strategy=cfg.get("training", {}).get("strategy", "joint"),
        adversarial_training=_adversarial(cfg.get("training", {}).get("adversarial", {})),
        combine=meta.get("model", {}).get("combine", model.get("combine")),
    )
    return base


def _cross_check(records: Records, margin: float = 0.01) -> None:
    """Flag white-box results that a black-box attack beats (AutoAttack-style sanity check,
    Croce & Hein 2020; Athalye et al. 2018, Sec. 3.1): at equal eps, the same attack run
    on a surrogate (transfer), or a universal perturbation, should not be stronger than the
    white-box attack. Adds a warning to the white-box ``robust_accuracy`` and
    ``attack_success_rate`` records."""
    other = [r for r in records if r["metric"] == "robust_accuracy"
             and r.get("threat_model") in ("transfer", "universal")]
    for r in records:
        if r.get("threat_model") != "white_box" or r["metric"] not in (
            "robust_accuracy", "attack_success_rate"
        ):
            continue
        white = next((w for w in records if w["metric"] == "robust_accuracy"
                      and w.get("unit") == r.get("unit")), r)
        for o in other:
            comparable = o["threat_model"] == "universal" or o["attack"] == r["attack"]
            if (comparable and abs(o["eps"] - r["eps"]) < 1e-12
                    and o["value"] < white["value"] - margin):
                msg = (
                    f"a {o['threat_model']} {o['attack']} attack at eps={o['eps']:g} leaves"
                    f" {100 * o['value']:.2f}% accuracy, below this white-box"
                    f" {100 * white['value']:.2f}%: the white-box gradients may be masked"
                )
                warnings = list(r.get("warnings") or [])
                if msg not in warnings:
                    r["warnings"] = [*warnings, msg]


@dataclass(frozen=True)
class ModelTarget:
    """A model object to run a suite on (no checkpoint): the module, metadata in a
    checkpoint's layout (``config``, ``dataset``, ``model``, ``sha256``), the test images and,
    for universal perturbations fitted on training images, a training set."""

    model: Any
    meta: dict[str, Any]
    test_set: ImageDataset
    train_set: ImageDataset | None = None


@dataclass
class _ObjectContext(UnitContext):
    """A unit context whose training images come from the caller, not a dataset registry."""

    def train_data(self, size: int) -> ImageDataset:
        train = self.extras.get("train_set")
        if train is None:
            raise ConfigError(
                "this suite fits on training images (a universal attack with fit_split: train):"
                " pass train_data=... to robens.evaluate, or set fit_split: test"
            )
        return train.subset(size, seed=self.suite.seed)


class SuiteRunner:
    """Runs one suite on one checkpoint; see :func:`run_suite`."""

    def __init__(
        self,
        checkpoint: str | os.PathLike | None,
        suite: SuiteConfig,
        out: str | os.PathLike | None = None,
        progress: bool = True,
        echo: Echo | None = print,
        dataset: str | None = None,
        data_root: str | None = None,
        device: str = "auto",
        train_fn: TrainFn | None = None,
        target: ModelTarget | None = None,
    ) -> None:
        """``checkpoint`` names the model to evaluate, or ``target`` gives it as an object
        (:class:`ModelTarget`: a user's module with its test data); exactly one of them."""
        if (checkpoint is None) == (target is None):
            raise ConfigError("give SuiteRunner a checkpoint or a model target (exactly one)")
        self.suite = suite
        self.echo: Echo = echo or (lambda _m: None)
        self.progress = progress
        self.device = resolve_device(device)
        if target is None:
            self.checkpoint: Path | None = Path(checkpoint)  # type: ignore[arg-type]
            ckpt_dir = self.checkpoint if self.checkpoint.is_dir() else self.checkpoint.parent
            self.model, self.meta = load_ensemble(self.checkpoint)
            self.full_test = checkpoint_test_set(self.meta, dataset, data_root, None, suite.seed)
            default_out = ckpt_dir
        else:
            if out is None:
                raise ConfigError("evaluating a model object needs an output folder (out=...)")
            self.checkpoint = None
            self.model, self.meta, self.full_test = target.model, target.meta, target.test_set
            default_out = Path(out)
        self.out = Path(out) if out is not None else default_out
        self.store = UnitStore(self.out)
        self.model.to(self.device)
        self.base = run_fields(self.meta, self.full_test.name)
        self.base["suite"] = suite.name
        self.base["eval_seed"] = suite.seed
        self.fingerprint = {
            "checkpoint": self.meta.get("sha256") or self.meta.get("config_hash"),
            "dataset": self.full_test.name,
            "seed": suite.seed,
        }
        self.surrogates = Surrogates(suite.surrogates, self.meta, self.out, self.device,
                                     train_fn, progress, self.echo)
        self.data_root = data_root
        self.ran: list[str] = []
        self.skipped: list[str] = []
        context = UnitContext if target is None else _ObjectContext
        self.ctx = context(
            suite=suite, model=self.model, meta=self.meta, device=self.device,
            full_test=self.full_test, base=self.base, store=self.store,
            surrogates=self.surrogates, progress=Progress(False), echo=self.echo,
            data_root=data_root,
        )
        if target is not None:
            self.ctx.extras["train_set"] = target.train_set

    # ------------------------------------------------------------------ units
    def units(self) -> list[tuple[str, Callable[[], Records]]]:
        """``(unit id, function returning its records)`` in suite order."""
        s = self.suite
        clean_id = clean_unit_id(self.fingerprint, s.test_size)
        clean = UNITS.get("clean")
        out: list[tuple[str, Callable[[], Records]]] = [
            (clean_id, lambda: clean.run(self.ctx.for_unit(clean_id), clean.spec()))
        ]
        for entry in s.attacks:
            spec = entry.model_dump(exclude={"eps"})
            spec["test_size"] = entry.test_size or s.test_size
            spec["surrogate_spec"] = (
                s.surrogates[entry.surrogate].model_dump() if entry.surrogate in s.surrogates
                else entry.surrogate
            )
            for eps in entry.eps:
                uid = attack_unit_id(entry.label, eps, spec, self.fingerprint)
                out.append((uid, lambda e=entry, v=eps, u=uid: self.unit_attack(e, v, u)))
        for key, spec_m, unit in metric_specs(s):
            ref = getattr(spec_m, unit.surrogate_field) if unit.surrogate_field else None
            extra = {"surrogate": s.surrogates.get(ref, ref)} if ref else {}
            uid = metric_unit_id(key, spec_m.model_dump(), s.test_size, self.fingerprint,
                                 **extra)
            out.append((uid, lambda f=unit.run, sp=spec_m, u=uid: f(self.ctx.for_unit(u), sp)))
        return out

    def unit_attack(self, entry: AttackEntry, eps: float, uid: str) -> Records:
        """Run the attack unit of ``entry``'s threat model at ``eps``."""
        return UNITS.get(entry.threat).run(self.ctx.for_unit(uid), entry, eps)

    def run(self) -> dict[str, Any]:
        """Every unit not already done, in suite order; a transfer unit whose examples another
        process is crafting (a suite of the same surrogate running beside this one) goes after
        the others, which first craft what nobody has claimed, then waits for them. Results
        are in suite order whatever the order the units ran in."""
        units = self.units()
        self.out.mkdir(parents=True, exist_ok=True)
        deferred: list[tuple[str, Callable[[], Records]]] = []
        with RunLock(self.out), Progress(self.progress) as bar:
            self.ctx.progress = bar
            self.ctx.defer_busy = True
            for uid, fn in units:
                if self.store.done(uid):
                    self.skipped.append(uid)
                    continue
                try:
                    self._run_unit(units, uid, fn)
                except LockBusy as busy:
                    self.echo(f"unit {uid}: {busy.holder} is crafting its transfer examples;"
                              " run after the others")
                    deferred.append((uid, fn))
            self.ctx.defer_busy = False  # the deferred units wait for their examples
            for uid, fn in deferred:
                self._run_unit(units, uid, fn)
            records = self._write_results(units)
        if self.skipped:
            self.echo(f"{len(self.skipped)} finished unit(s) of suite {self.suite.name!r} skipped"
                      f" (results in {self.store.units_dir})")
        return {
            "records": records,
            "results_jsonl": str(self.store.results_jsonl),
            "results_csv": str(self.store.results_csv),
            "ran": list(self.ran),
            "skipped": list(self.skipped),
            "warnings": sorted({w for r in records for w in r.get("warnings", [])}),
        }

    def _run_unit(self, units: list, uid: str, fn: Callable[[], Records]) -> None:
        t0 = time.perf_counter()
        records = fn()
        seconds = round(time.perf_counter() - t0, 3)
        for r in records:
            r.setdefault("unit", uid)
        self.store.write_unit(uid, seconds, records)
        self.ran.append(uid)
        self._write_results(units)

    def _write_results(self, units: list) -> Records:
        records = self.store.records([uid for uid, _ in units])
        _cross_check(records)
        records.extend(self._derived(records))
        self.store.write_results(records)
        return records

    def _derived(self, records: Records) -> Records:
        """Weighted accuracy (Co et al. Table 1) from the clean and worst-UAP accuracies."""
        clean = [r for r in records if r["metric"] == "clean_accuracy" and r.get("unit", "")
                 .startswith("clean-")]
        uap = [r for r in records if r["metric"] == "robust_accuracy"
               and r.get("threat_model") == "universal"]
        if not clean or not uap:
            return []
        value = weighted_accuracy(clean[0]["value"], [r["value"] for r in uap])
        return [make_record(
            **self.base, metric="weighted_accuracy", value=value, attack="uap",
            uap_eps=[r["eps"] for r in uap], threat_model="universal", n=clean[0].get("n"),
            unit="derived-weighted-accuracy",
        )]


def run_suite(
    checkpoint: str | os.PathLike,
    suite: str | os.PathLike | dict | list | SuiteConfig,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    echo: Echo | None = print,
    dataset: str | None = None,
    data_root: str | None = None,
    test_size: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    seed: int | None = None,
    train_fn: TrainFn | None = None,
) -> dict[str, Any]:
    """Run an attack suite on a checkpoint; resumable (finished units are skipped).

    Args:
        checkpoint: ``checkpoint.safetensors`` or its run directory.
        suite: a suite YAML path, mapping, list of attack entries, or :class:`SuiteConfig`.
        out: where results go (default: the checkpoint's directory): ``results.jsonl``,
            ``results.csv``, ``suite/units/*.json`` (finished units), ``suite/samples/*.npz``.
        test_size, batch_size, seed: override the suite's values when given.
        train_fn: trains ``train:`` surrogates (:class:`~robens.evaluate.surrogates.TrainFn`);
            without it such a surrogate is a :class:`ConfigError` when it is needed.

    Returns ``{"records", "results_jsonl", "results_csv", "ran", "skipped", "warnings"}``.
    """
    cfg = load_suite(suite)
    over = {k: v for k, v in {"test_size": test_size, "batch_size": batch_size, "seed": seed}
            .items() if v is not None}
    if over:
        cfg = cfg.model_copy(update=over)
    runner = SuiteRunner(checkpoint, cfg, out, progress, echo, dataset, data_root, device,
                         train_fn)
    return runner.run()
