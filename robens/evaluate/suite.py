"""Attack suites: white-box, transfer and universal attacks plus metrics, resumable.

A suite is a YAML file (validated by pydantic; unknown keys are errors naming the key)::

    name: main
    test_size: 1000          # random test subset (seeded), null = the whole test split
    batch_size: 250
    seed: 0
    surrogates:              # for transfer attacks: a checkpoint, or a training section
      baseline: {train: {seed: 1, objective: ce}}        # overrides of the target's config
      other: {checkpoint: runs/other}
    attacks:
      - {attack: pgd, eps: [0.1], params: {steps: 10}}               # white_box (default)
      - {attack: fgsm, eps: [0.1], threat: transfer, surrogate: baseline}
      - {attack: uap, eps: [0.15], threat: universal, params: {iterations: 20, seeds: 2}}
    metrics:                 # each optional
      transfer_matrix: {attack: fgsm, eps: 0.1, samples: 500}
      gradients: {samples: 500}                      # coherence / cosine / GAL / GDR
      gaas: {eps: [0.1], k: [4, 16, 36, 64], samples: 200}
      jacobian: {samples: 100}
      disagreement: true
      noise: {sigmas: [0.05, 0.1, 0.2]}
      rotation: {degrees: [5, 10, 15]}
      detection: {attacks: [{attack: fgsm, eps: 0.1}], detectors: [confidence, non_me]}

A top-level list is read as ``attacks:``. Every (entry, eps) pair and every metric is a
*unit*; a finished unit's records are written atomically to ``<out>/suite/units/<id>.json``
and skipped when the suite runs again (the id hashes the entry, the checkpoint's digest and
the data settings, so a changed entry runs anew), so an interrupted evaluation continues where
it stopped. After every unit, ``<out>/results.jsonl`` and ``<out>/results.csv`` are rewritten
(atomically) from the finished units of this suite. Records follow docs/design.md, plus
``threat_model``, ``n``, ``members``, ``objective``, ``reg_term``, ``reg_lambda`` and per-unit
extras; white-box records carry the gradient-masking warnings of
:func:`robens.attacks.gradient_masking_checks` (AutoAttack-style checks, Croce & Hein 2020).

Transfer examples depend on the surrogate, never on the target: ``transfer_cache: auto`` (the
default) stores them beside the surrogate's checkpoint (``transfer-cache/``, safetensors with a
digest) so every target attacked through that surrogate reads them instead of crafting them
again (:mod:`robens.evaluate.transfer_cache`); a path moves the folder, ``null`` turns it off.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from robens.data import ImageDataset, load_dataset
from robens.errors import ConfigError, InputError
from robens.evaluate.clean import checkpoint_test_set
from robens.factory import load_ensemble
from robens.records import make_record, records_from_meta, write_csv_records, write_json_records
from robens.runlock import RunLock
from robens.utils import atomic_write_bytes, atomic_write_json, resolve_device, rich_progress

Echo = Callable[[str], None]
THREATS = ("white_box", "transfer", "universal")
RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"


# ---------------------------------------------------------------------------- schema
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, (int, float)) and not isinstance(v, bool) else v


class SurrogateSpec(_Strict):
    """A surrogate for transfer attacks: an existing ``checkpoint``, or a ``train`` section
    (overrides of the target checkpoint's config, nested or dotted keys; trained by the suite
    into ``output_dir``, default ``<out>/surrogates/<name>``)."""

    checkpoint: str | None = None
    train: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> SurrogateSpec:
        if (self.checkpoint is None) == (self.train is None):
            raise ValueError("give exactly one of 'checkpoint' or 'train'")
        return self


class AttackEntry(_Strict):
    """One attack x eps list x threat model."""

    attack: str
    eps: list[float]
    threat: Literal["white_box", "transfer", "universal"] = "white_box"
    params: dict[str, Any] = Field(default_factory=dict)
    combine: Literal["logits", "probs", "loss"] | None = None
    surrogate: str | None = None
    name: str | None = None
    test_size: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    masking_checks: bool = True
    masking_samples: int = Field(100, ge=1)
    masking_surrogate: bool = False
    spsa_check: bool = False
    fit_split: Literal["train", "test"] = "train"
    fit_size: int = Field(2000, ge=1)
    per_sample: bool | None = None

    @field_validator("eps", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("eps")
    @classmethod
    def _eps(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("give at least one eps")
        if any(not math.isfinite(e) or e < 0 for e in v):
            raise ValueError(f"eps must be finite numbers >= 0, got {v}")
        return v

    @model_validator(mode="after")
    def _check(self) -> AttackEntry:
        from robens.attacks import attack_parameters, canonical_attack_name

        try:
            key = canonical_attack_name(self.attack)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        self.attack = key
        if self.threat == "universal" and key != "uap":
            raise ValueError(f"threat 'universal' needs attack 'uap', got {key!r}")
        if key == "uap" and self.threat != "universal":
            raise ValueError("attack 'uap' is a universal attack: set threat: universal")
        if self.threat == "transfer" and not self.surrogate:
            raise ValueError("threat 'transfer' needs a 'surrogate' (a name or checkpoint path)")
        accepted = set(attack_parameters(key)) - {"eps", "combine", "seed"}
        unknown = sorted(set(self.params) - accepted)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)} for attack {key!r}; it accepts:"
                f" {', '.join(sorted(accepted))}"
            )
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.threat.replace('_', '-')}-{self.attack}"


class TransferMatrixSpec(_Strict):
    attack: str = "fgsm"
    eps: float = Field(0.1, ge=0.0)
    params: dict[str, Any] = Field(default_factory=dict)
    samples: int = Field(500, ge=1)


class GradientsSpec(_Strict):
    samples: int = Field(500, ge=1)
    statistics: list[Literal["coherence", "cosine", "gal", "gdr"]] = Field(
        default_factory=lambda: ["coherence", "cosine", "gal", "gdr"]
    )
    bins: int = Field(40, ge=2)
    gdr_samples: int = Field(20000, ge=100)


class GAASSpec(_Strict):
    eps: list[float] = Field(default_factory=lambda: [0.1])
    k: list[int] = Field(default_factory=lambda: [4, 16, 36, 64])
    samples: int = Field(200, ge=1)
    source: str | None = None

    @field_validator("eps", "k", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("k")
    @classmethod
    def _k(cls, v: list[int]) -> list[int]:
        from robens.metrics.gaas import regular_hadamard

        for k in v:
            try:
                regular_hadamard(k)
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return v


class JacobianSpec(_Strict):
    samples: int = Field(100, ge=1)


class DisagreementSpec(_Strict):
    samples: int | None = Field(None, ge=1)


class NoiseSpec(_Strict):
    sigmas: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2])
    samples: int | None = Field(None, ge=1)

    @field_validator("sigmas", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _as_list(v)


class RotationSpec(_Strict):
    degrees: list[float] = Field(default_factory=lambda: [5.0, 10.0, 15.0])
    samples: int | None = Field(None, ge=1)

    @field_validator("degrees", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return _as_list(v)


class DetectionAttack(_Strict):
    attack: str
    eps: float = Field(ge=0.0)
    params: dict[str, Any] = Field(default_factory=dict)


class DetectionSpec(_Strict):
    attacks: list[DetectionAttack] = Field(
        default_factory=lambda: [DetectionAttack(attack="fgsm", eps=0.1)]
    )
    detectors: list[Literal["confidence", "non_me", "kernel_density", "disagreement"]] = Field(
        default_factory=lambda: ["confidence", "non_me", "kernel_density", "disagreement"]
    )
    bandwidth: float = Field(1.0, gt=0.0)
    reference_per_class: int = Field(100, ge=1)
    samples: int = Field(500, ge=1)


class MetricsSpec(_Strict):
    """Optional metrics; ``true`` means the defaults, ``false``/absent means not computed."""

    transfer_matrix: TransferMatrixSpec | None = None
    gradients: GradientsSpec | None = None
    gaas: GAASSpec | None = None
    jacobian: JacobianSpec | None = None
    disagreement: DisagreementSpec | None = None
    noise: NoiseSpec | None = None
    rotation: RotationSpec | None = None
    detection: DetectionSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _booleans(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {k: ({} if v is True else None if v is False else v) for k, v in data.items()}
        return data


class SuiteConfig(_Strict):
    """An attack suite (see the module docstring)."""

    name: str = "suite"
    test_size: int | None = Field(1000, ge=1)
    batch_size: int = Field(250, ge=1)
    seed: int = Field(0, ge=0)
    per_sample: bool = False
    save_adversarial: bool = False
    # transfer examples shared by every target of one surrogate: "auto" = a folder
    # transfer-cache/ beside the surrogate's checkpoint, a path = that folder, null = off
    transfer_cache: str | None = "auto"
    surrogates: dict[str, SurrogateSpec] = Field(default_factory=dict)
    attacks: list[AttackEntry] = Field(default_factory=list)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)

    @model_validator(mode="after")
    def _surrogates_known(self) -> SuiteConfig:
        for i, e in enumerate(self.attacks):
            if e.surrogate and e.surrogate not in self.surrogates and not _looks_like_path(
                e.surrogate
            ):
                raise ValueError(
                    f"attacks.{i}.surrogate {e.surrogate!r} is neither a surrogate name"
                    f" ({', '.join(self.surrogates) or 'none defined'}) nor an existing path"
                )
        src = self.metrics.gaas.source if self.metrics.gaas else None
        if src and src not in self.surrogates and not _looks_like_path(src):
            raise ValueError(f"metrics.gaas.source {src!r} is not a surrogate name or a path")
        return self


def _looks_like_path(s: str) -> bool:
    return Path(s).exists()


def load_suite(suite: str | os.PathLike | dict | list | SuiteConfig) -> SuiteConfig:
    """Validate a suite given as a YAML path, a mapping, a list of attack entries or a config."""
    from robens.config import load_yaml, validate_schema

    if isinstance(suite, SuiteConfig):
        return suite
    source = "(mapping)"
    data: Any = suite
    if isinstance(suite, (str, os.PathLike)):
        source = str(suite)
        data = load_yaml(suite)
    if data is None:
        data = {}
    if isinstance(data, list):
        data = {"attacks": data}
    if not isinstance(data, dict):
        raise ConfigError(f"suite {source} must be a mapping or a list of attack entries")
    return validate_schema(SuiteConfig, data, source, kind="suite")


# ---------------------------------------------------------------------------- helpers
def _regularizer(objective: str) -> tuple[str, float]:
    """``("gal", 0.5)`` for ``"ce + 0.5*gal"``: the first non-CE term and its weight."""
    for piece in str(objective).split("+"):
        m = re.match(r"^\s*(?:([0-9.eE+-]+)\s*\*\s*)?([A-Za-z_][\w-]*)\s*$", piece)
        if not m:
            continue
        name = m.group(2).lower()
        if name in ("ce", "ensemble_ce"):
            continue
        try:
            return name, float(m.group(1)) if m.group(1) else 1.0
        except ValueError:
            return name, float("nan")
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


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if "." in k:
            head, rest = k.split(".", 1)
            out[head] = _deep_merge(out.get(head) or {}, {rest: v})
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _first_batches(
    data: ImageDataset, batch_size: int, samples: int | None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    d = data if samples is None or samples >= len(data) else data.indices(torch.arange(samples))
    return list(d.batches(batch_size))


class _Progress:
    """A rich progress bar over the batches of one unit (no-op when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._p = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            self._p = rich_progress()
            self._p.__enter__()
        return self

    def track(self, items: list, desc: str) -> Iterator:
        if self._p is None:
            yield from items
            return
        task = self._p.add_task(desc, total=len(items))
        for it in items:
            yield it
            self._p.update(task, advance=1)
        self._p.remove_task(task)

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)


# ---------------------------------------------------------------------------- evaluator
class SuiteRunner:
    """Runs one suite on one checkpoint; see :func:`run_suite`."""

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        suite: SuiteConfig,
        out: str | os.PathLike | None = None,
        progress: bool = True,
        echo: Echo | None = print,
        dataset: str | None = None,
        data_root: str | None = None,
        device: str = "auto",
    ) -> None:
        self.checkpoint = Path(checkpoint)
        self.suite = suite
        self.echo = echo or (lambda _m: None)
        self.progress = progress
        self.device = resolve_device(device)
        ckpt_dir = self.checkpoint if self.checkpoint.is_dir() else self.checkpoint.parent
        self.out = Path(out) if out is not None else ckpt_dir
        self.units_dir = self.out / "suite" / "units"
        self.samples_dir = self.out / "suite" / "samples"
        self.model, self.meta = load_ensemble(self.checkpoint)
        self.model.to(self.device)
        self.data_root = data_root
        full = checkpoint_test_set(self.meta, dataset, data_root, None, suite.seed)
        self.full_test = full
        self.base = run_fields(self.meta, full.name)
        self.base["suite"] = suite.name
        self.base["eval_seed"] = suite.seed
        self.fingerprint = {
            "checkpoint": self.meta.get("sha256") or self.meta.get("config_hash"),
            "dataset": full.name,
            "seed": suite.seed,
        }
        self._surrogates: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._surrogate_files: dict[str, tuple[Path, str | None]] = {}
        self.ran: list[str] = []
        self.skipped: list[str] = []

    # ------------------------------------------------------------------ data
    def test_indices(self, size: int | None) -> torch.Tensor:
        """Dataset indices of the seeded test subset of ``size`` (nested across sizes)."""
        n = len(self.full_test)
        if size is None or size >= n:
            return torch.arange(n)
        g = torch.Generator().manual_seed(int(self.suite.seed))
        return torch.randperm(n, generator=g)[:size].sort().values

    def test_data(self, size: int | None) -> tuple[ImageDataset, torch.Tensor]:
        idx = self.test_indices(size if size is not None else self.suite.test_size)
        return self.full_test.indices(idx), idx

    def train_data(self, size: int) -> ImageDataset:
        cfg = self.meta.get("config", {}).get("data", {})
        return load_dataset(
            self.full_test.name, "train", root=self.data_root or cfg.get("root"), size=size,
            seed=self.suite.seed,
        )

    # ------------------------------------------------------------------ surrogates
    def surrogate(self, ref: str) -> tuple[Any, dict[str, Any]]:
        """``(model, info)`` of a surrogate name or checkpoint path (trained when needed)."""
        if ref in self._surrogates:
            return self._surrogates[ref]
        spec = self.suite.surrogates.get(ref)
        if spec is None:
            path = Path(ref)
        elif spec.checkpoint is not None:
            path = Path(spec.checkpoint)
        else:
            path = self._train_surrogate(ref, spec.train or {})
        model, meta = load_ensemble(path)
        model.to(self.device)
        self._surrogate_files[ref] = (path, meta.get("sha256"))
        info = {
            "surrogate": ref,
            "surrogate_method": meta.get("config", {}).get("name"),
            "surrogate_seed": meta.get("seed"),
            "surrogate_model": records_from_meta(meta)["model"],
        }
        self._surrogates[ref] = (model, info)
        return model, info

    def _train_surrogate(self, name: str, overrides: dict[str, Any]) -> Path:
        from robens.checkpoint import load_checkpoint
        from robens.config import validate_config
        from robens.training import Trainer
        from robens.training.trainer import CHECKPOINT_NAME

        base = copy.deepcopy(self.meta.get("config", {}))
        base["name"] = f"{base.get('name', 'experiment')}-surrogate-{name}"
        base["output_dir"] = str(self.out / "surrogates" / name)
        cfg = validate_config(_deep_merge(base, overrides), source=f"surrogate {name!r}")
        ckpt = Path(cfg.output_dir) / CHECKPOINT_NAME
        if ckpt.exists() and load_checkpoint(ckpt)[1].get("complete"):
            return ckpt
        self.echo(f"training surrogate {name!r} (seed {cfg.seed}) into {cfg.output_dir}")
        Trainer(cfg, progress=self.progress, echo=self.echo).fit(resume=True)
        return ckpt

    def first_surrogate(self) -> Any | None:
        names = list(self.suite.surrogates)
        if not names:
            return None
        return self.surrogate(names[0])[0]

    # ------------------------------------------------------------------ units
    def units(self) -> list[tuple[str, Callable[[], list[dict[str, Any]]]]]:
        """``(unit id, function returning its records)`` in suite order."""
        s = self.suite
        out: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = []
        common = {**self.fingerprint, "test_size": s.test_size}
        out.append((f"clean-{_hash(common)}", self.unit_clean))
        for entry in s.attacks:
            spec = entry.model_dump(exclude={"eps"})
            spec["test_size"] = entry.test_size or s.test_size
            spec["surrogate_spec"] = (
                s.surrogates[entry.surrogate].model_dump() if entry.surrogate in s.surrogates
                else entry.surrogate
            )
            for eps in entry.eps:
                uid = f"{_slug(entry.label)}-eps{eps:g}-{_hash([spec, eps, self.fingerprint])}"
                out.append((uid, lambda e=entry, v=eps, u=uid: self.unit_attack(e, v, u)))
        m = s.metrics
        for key in MetricsSpec.model_fields:
            spec_m = getattr(m, key)
            if spec_m is None:
                continue
            h = _hash([key, spec_m.model_dump(), s.test_size, self.fingerprint])
            if key == "gaas" and spec_m.source:
                h = _hash([h, s.surrogates.get(spec_m.source, spec_m.source)])
            fn = getattr(self, f"metric_{key}")
            out.append((f"metric-{key}-{h}", lambda f=fn, sp=spec_m: f(sp)))
        return out

    def unit_path(self, uid: str) -> Path:
        return self.units_dir / f"{uid}.json"

    def run(self) -> dict[str, Any]:
        units = self.units()
        self.out.mkdir(parents=True, exist_ok=True)
        with RunLock(self.out), _Progress(self.progress) as bar:
            self._bar = bar
            for uid, fn in units:
                path = self.unit_path(uid)
                if path.exists():
                    self.skipped.append(uid)
                    continue
                t0 = time.perf_counter()
                records = fn()
                seconds = round(time.perf_counter() - t0, 3)
                for r in records:
                    r.setdefault("unit", uid)
                atomic_write_json(path, {"unit": uid, "seconds": seconds, "records": records})
                self.ran.append(uid)
                self._write_results(units)
            records = self._write_results(units)
        if self.skipped:
            self.echo(f"{len(self.skipped)} finished unit(s) of suite {self.suite.name!r} skipped"
                      f" (results in {self.units_dir})")
        return {
            "records": records,
            "results_jsonl": str(self.out / RESULTS_JSONL),
            "results_csv": str(self.out / RESULTS_CSV),
            "ran": list(self.ran),
            "skipped": list(self.skipped),
            "warnings": sorted({w for r in records for w in r.get("warnings", [])}),
        }

    def _write_results(self, units: list) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for uid, _ in units:
            path = self.unit_path(uid)
            if path.exists():
                records.extend(json.loads(path.read_text())["records"])
        _cross_check(records)
        records.extend(self._derived(records))
        write_json_records(self.out / RESULTS_JSONL, records)
        rows = [
            {k: (json.dumps(v) if isinstance(v, (list, dict)) and k != "versions" else v)
             for k, v in r.items()}
            for r in records
        ]
        write_csv_records(self.out / RESULTS_CSV, rows)
        return records

    def _derived(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Weighted accuracy (Co et al. Table 1) from the clean and worst-UAP accuracies."""
        from robens.metrics.accuracy import weighted_accuracy

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

    def rec(self, **fields: Any) -> dict[str, Any]:
        return make_record(**{**self.base, **fields})

    # ------------------------------------------------------------------ attack units
    def unit_clean(self) -> list[dict[str, Any]]:
        from robens.metrics.accuracy import evaluate_accuracy

        data, _ = self.test_data(None)
        batches = list(data.batches(self.suite.batch_size))
        acc = evaluate_accuracy(self.model, self._bar.track(batches, "clean"), device=self.device)
        recs = [self.rec(metric="clean_accuracy", value=acc["ensemble"], n=acc["n"],
                         threat_model="none")]
        for i, a in enumerate(acc["members"]):
            recs.append(self.rec(metric="member_clean_accuracy", value=a, member=i, n=acc["n"],
                                 threat_model="none"))
        self.echo(f"clean accuracy {100 * acc['ensemble']:.2f}% on {acc['n']} test images")
        return recs

    def _build(self, name: str, model: Any, eps: float, combine: str | None, params: dict):
        from robens.attacks import attack_parameters, build_attack

        kw = dict(params)
        accepted = attack_parameters(name)
        if "seed" in accepted:
            kw.setdefault("seed", self.suite.seed)
        if combine is not None and (hasattr(model, "member_logits") or isinstance(model, list)):
            kw["combine"] = combine
        if "eps" in accepted:
            kw["eps"] = eps  # minimum-norm attacks (JSMA) take no budget: eps only labels them
        return build_attack(name, model, **kw)

    def unit_attack(self, entry: AttackEntry, eps: float, uid: str) -> list[dict[str, Any]]:
        if entry.threat == "universal":
            return self._universal(entry, eps, uid)
        data, idx = self.test_data(entry.test_size)
        bs = entry.batch_size or self.suite.batch_size
        batches = list(data.batches(bs))
        extra: dict[str, Any] = {}
        if entry.threat == "transfer":
            source, extra = self.surrogate(entry.surrogate)  # type: ignore[arg-type]
            combine = entry.combine or "loss"
        else:
            source, combine = self.model, entry.combine
        atk = self._build(entry.attack, source, eps, combine, entry.params)
        cache, key, fields = self._transfer_cache(entry, eps, combine, batches)
        cached = cache.load(key, len(idx)) if cache is not None else None
        if cached is not None:
            self.echo(f"{entry.label} eps={eps:g}: transfer examples read from {cache.path(key)}")
        per: dict[str, list[torch.Tensor]] = {k: [] for k in ("y", "clean", "adv", "norm")}
        advs: list[torch.Tensor] = []
        fill_cache = cache is not None and cached is None
        warnings: list[str] = []
        desc = f"{entry.label} eps={eps:g}"
        start = 0
        for bi, (x, y) in enumerate(self._bar.track(batches, desc)):
            x, y = x.to(self.device), y.to(self.device)
            if cached is not None:
                stop = start + y.shape[0]
                x_adv = cached["x_adv"][start:stop].to(self.device)
                norm = cached["norm"][start:stop]
                start = stop
            else:
                result = atk.run(x, y)
                x_adv, norm = result.x_adv, result.norm.double().cpu()
            with torch.no_grad():
                pc = self.model(x).argmax(-1)
                pa = self.model(x_adv).argmax(-1)
            per["y"].append(y.cpu())
            per["clean"].append(pc.cpu())
            per["adv"].append(pa.cpu())
            per["norm"].append(norm)
            if self.suite.save_adversarial or fill_cache:
                advs.append(x_adv.detach().cpu())
            if bi == 0 and entry.threat == "white_box" and entry.masking_checks:
                k = min(entry.masking_samples, x.shape[0])
                warnings = self._masking(x[:k], y[:k], result.select(slice(0, k)), eps, entry)
        if fill_cache:
            cache.save(key, torch.cat(advs), torch.cat(per["norm"]), fields)
        y = torch.cat(per["y"])
        clean_ok = torch.cat(per["clean"]) == y
        adv_ok = torch.cat(per["adv"]) == y
        n = int(y.numel())
        robust = float((clean_ok & adv_ok).double().mean())
        clean = float(clean_ok.double().mean())
        success = float((clean_ok & ~adv_ok).sum()) / max(1, int(clean_ok.sum()))
        norms = torch.cat(per["norm"])
        common = dict(
            attack=entry.attack, eps=eps, threat_model=entry.threat, n=n, combine_attack=combine,
            params=entry.params, clean_accuracy=clean, mean_norm=float(norms.mean()),
            max_norm=float(norms.max()), warnings=warnings, **extra,
        )
        if entry.per_sample if entry.per_sample is not None else self.suite.per_sample:
            self._save_samples(uid, idx, per, advs if self.suite.save_adversarial else [])
        recs = [
            self.rec(metric="robust_accuracy", value=robust, **common),
            self.rec(metric="attack_success_rate", value=success, **common),
        ]
        tag = f" [{len(warnings)} masking warning(s)]" if warnings else ""
        self.echo(
            f"{entry.threat} {entry.attack} eps={eps:g}: robust {100 * robust:.2f}% (clean"
            f" {100 * clean:.2f}%) on {n} images{tag}"
        )
        for w in warnings:
            self.echo(f"warning: {w}")
        return recs

    def _transfer_cache(
        self, entry: AttackEntry, eps: float, combine: str | None, batches: list
    ) -> tuple[Any, str, dict[str, Any]]:
        """``(cache or None, key, key fields)`` of a transfer unit (see transfer_cache.py)."""
        from robens.evaluate.transfer_cache import TransferCache, cache_key, data_digest

        setting = self.suite.transfer_cache
        if entry.threat != "transfer" or setting is None:
            return None, "", {}
        path, digest = self._surrogate_files[entry.surrogate]  # type: ignore[index]
        if not digest:
            return None, "", {}
        fields = {
            "surrogate_sha256": digest, "attack": entry.attack, "params": entry.params,
            "combine": combine, "eps": eps, "seed": self.suite.seed,
            "dataset": self.full_test.name, "data": data_digest(batches),
            "device": self.device.type, "torch": torch.__version__,
        }
        folder = path if path.is_dir() else path.parent
        root = folder / "transfer-cache" if setting == "auto" else Path(setting)
        return TransferCache(root), cache_key(fields), fields

    def _masking(self, x, y, result, eps: float, entry: AttackEntry) -> list[str]:
        from robens.attacks import gradient_masking_checks

        try:
            return gradient_masking_checks(
                self.model, x, y, result,
                surrogate=self.first_surrogate() if entry.masking_surrogate else None,
                spsa_eps=eps if entry.spsa_check else None, repeat=True,
            )
        except InputError as exc:  # a check that does not apply to this attack
            return [f"gradient-masking checks not run: {exc}"]

    def _save_samples(self, uid: str, idx: torch.Tensor, per: dict, advs: list) -> None:
        arrays = {
            "index": idx.numpy(),
            "label": torch.cat(per["y"]).numpy(),
            "pred_clean": torch.cat(per["clean"]).numpy(),
            "pred_adv": torch.cat(per["adv"]).numpy(),
            "norm": torch.cat(per["norm"]).numpy(),
        }
        if advs:
            arrays["x_adv"] = torch.cat(advs).numpy()
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(self.samples_dir / f"{uid}.npz", buf.getvalue())

    def _universal(self, entry: AttackEntry, eps: float, uid: str) -> list[dict[str, Any]]:
        from robens.attacks import uap_metrics

        fit = (
            self.train_data(entry.fit_size) if entry.fit_split == "train"
            else self.test_data(entry.fit_size)[0]
        )
        atk = self._build("uap", self.model, eps, entry.combine, entry.params)
        self.echo(f"fitting SGD-UAP eps={eps:g} on {len(fit)} {entry.fit_split} images")
        delta = atk.fit(fit)
        data, _ = self.test_data(entry.test_size)
        bs = entry.batch_size or self.suite.batch_size
        batches = list(self._bar.track(list(data.batches(bs)), f"{entry.label} eps={eps:g}"))
        m = uap_metrics(self.model, delta.to(self.device), batches)
        buf = io.BytesIO()
        np.savez_compressed(buf, delta=delta.detach().cpu().numpy())
        atomic_write_bytes(self.samples_dir / f"{uid}-delta.npz", buf.getvalue())
        common = dict(
            attack="uap", eps=eps, threat_model="universal", n=m["n"], params=entry.params,
            clean_accuracy=m["clean_accuracy"], fooling_rate_changed=m["fooling_rate_changed"],
            fooling_rate_misclassified=m["fooling_rate_misclassified"], fit_split=entry.fit_split,
            fit_size=len(fit), seeds_history=[h.get("fooling_rate_misclassified")
                                              for h in atk.history],
        )
        self.echo(
            f"universal uap eps={eps:g}: accuracy {100 * m['accuracy']:.2f}%, fooling rate"
            f" {100 * m['fooling_rate_changed']:.2f}% (changed) on {m['n']} images"
        )
        return [
            self.rec(metric="robust_accuracy", value=m["accuracy"], **common),
            self.rec(metric="uap_fooling_rate", value=m["fooling_rate_changed"], **common),
        ]

    # ------------------------------------------------------------------ metric units
    def _members(self) -> int:
        return getattr(self.model, "num_members", 1)

    def metric_transfer_matrix(self, spec: TransferMatrixSpec) -> list[dict[str, Any]]:
        from robens.metrics.transfer import transfer_matrix, transfer_summary

        if self._members() < 2:
            self.echo("transfer matrix skipped: the model has one member")
            return []
        data, _ = self.test_data(None)
        batches = _first_batches(data, self.suite.batch_size, spec.samples)
        batches = [(x.to(self.device), y.to(self.device)) for x, y in batches]
        params = dict(spec.params)
        mat = transfer_matrix(self.model, spec.attack, batches, eps=spec.eps, **params)
        n = sum(int(y.numel()) for _, y in batches)
        summ = transfer_summary(mat)
        common = dict(attack=spec.attack, eps=spec.eps, threat_model="member_transfer", n=n,
                      params=params)
        recs = [
            self.rec(metric="transfer_matrix_accuracy", value=float(mat[i, j]), source=i,
                     target=j, **common)
            for i in range(mat.shape[0]) for j in range(mat.shape[1])
        ]
        recs.append(self.rec(metric="transfer_offdiag_accuracy", value=summ["transfer"],
                             **common))
        recs.append(self.rec(metric="transfer_diag_accuracy", value=summ["white_box"], **common))
        self.echo(
            f"transfer matrix ({spec.attack} eps={spec.eps:g}): member white-box"
            f" {100 * summ['white_box']:.2f}%, cross-member {100 * summ['transfer']:.2f}%"
        )
        return recs

    def metric_gradients(self, spec: GradientsSpec) -> list[dict[str, Any]]:
        from robens.metrics.gradients import gradient_statistics, histogram, summarize

        m = self._members()
        if m < 2:
            self.echo("gradient statistics skipped: the model has one member")
            return []
        data, _ = self.test_data(None)
        batches = _first_batches(data, self.suite.batch_size, spec.samples)
        stats = gradient_statistics(
            self.model, self._bar.track(batches, "gradients"), spec.statistics,
            gdr_samples=spec.gdr_samples, device=self.device,
        )
        limits = {
            "coherence": (-1.0, 1.0),
            "cosine": (-1.0, 1.0),
            "gal": (-1.0, 1.0 + math.log(m * (m - 1) / 2)),
            "gdr": (0.0, 0.5),
        }
        names = {"cosine": "mean_pairwise_cosine"}
        recs = []
        for stat, values in stats.items():
            s = summarize(values)
            h = histogram(values, spec.bins, limits[stat])
            recs.append(self.rec(
                metric=names.get(stat, stat), value=s["mean"], n=s["n"], statistic="mean",
                summary=s, hist_edges=h["edges"], hist_counts=h["counts"], threat_model="none",
            ))
        line = ", ".join(f"{names.get(k, k)} {float(np.mean(v)):.3f}" for k, v in stats.items())
        self.echo(f"gradient diversity: {line}")
        return recs

    def metric_gaas(self, spec: GAASSpec) -> list[dict[str, Any]]:
        from robens.metrics.gaas import gaas_success

        source, extra = (self.model, {"source": "self"})
        if spec.source:
            source, info = self.surrogate(spec.source)
            extra = {"source": spec.source, **info}
        data, _ = self.test_data(None)
        batches = _first_batches(data, self.suite.batch_size, spec.samples)
        recs = []
        for eps in spec.eps:
            res = gaas_success(
                source, self._bar.track(batches, f"gaas eps={eps:g}"), eps, spec.k,
                target=self.model, device=self.device,
            )
            for k, r in res.items():
                recs.append(self.rec(
                    metric="gaas_success", value=r["mean_fraction"], attack="gaas", eps=eps,
                    k=k, any_success=r["any"], n=r["n"], threat_model="gaas", **extra,
                ))
            line = ", ".join(f"k={k}: {100 * r['mean_fraction']:.1f}%" for k, r in res.items())
            self.echo(f"GAAS eps={eps:g}: {line}")
        return recs

    def metric_jacobian(self, spec: JacobianSpec) -> list[dict[str, Any]]:
        from robens.metrics.jacobian import jacobian_statistics

        data, _ = self.test_data(None)
        batches = _first_batches(data, min(self.suite.batch_size, 50), spec.samples)
        st = jacobian_statistics(self.model, self._bar.track(batches, "jacobian"),
                                 max_samples=spec.samples, device=self.device)
        common = dict(n=st["n"], entry_mean=st["entry_mean"], entry_var=st["entry_var"],
                      C=st["C"], D=st["D"], threat_model="none")
        recs = [self.rec(metric="member_jacobian_frob_sq", value=v, member=i, **common)
                for i, v in enumerate(st["member_frob_sq"])]
        recs += [
            self.rec(metric="ensemble_jacobian_frob_sq", value=st["ensemble_frob_sq"],
                     ratio_to_theorem=st["ratio"], **common),
            self.rec(metric="jacobian_theorem31_expected", value=st["predicted"], **common),
            self.rec(metric="jacobian_theorem31_lower", value=st["lower"], **common),
            self.rec(metric="jacobian_theorem31_upper", value=st["upper"], **common),
        ]
        self.echo(
            f"Jacobian ||J||_F^2: members {[round(v, 3) for v in st['member_frob_sq']]},"
            f" ensemble {st['ensemble_frob_sq']:.3f} (Theorem 3.1: {st['predicted']:.3f} in"
            f" [{st['lower']:.3f}, {st['upper']:.3f}])"
        )
        return recs

    def metric_disagreement(self, spec: DisagreementSpec) -> list[dict[str, Any]]:
        from robens.metrics.robustness import disagreement_rate

        if self._members() < 2:
            return []
        data, _ = self.test_data(None)
        batches = _first_batches(data, self.suite.batch_size, spec.samples)
        d = disagreement_rate(self.model, batches)
        self.echo(f"member disagreement: pairwise {100 * d['pairwise']:.2f}%,"
                  f" not unanimous {100 * d['any']:.2f}%")
        return [
            self.rec(metric="disagreement_pairwise", value=d["pairwise"], n=d["n"],
                     threat_model="none"),
            self.rec(metric="disagreement_any", value=d["any"], n=d["n"], threat_model="none"),
        ]

    def metric_noise(self, spec: NoiseSpec) -> list[dict[str, Any]]:
        from robens.metrics.robustness import noise_accuracy

        data, _ = self.test_data(None)
        batches = _first_batches(data, self.suite.batch_size, spec.samples)
        acc = noise_accuracy(self.model, batches, spec.sigmas, seed=self.suite.seed)
        n = sum(int(y.numel()) for _, y in batches)
        self.echo("Gaussian noise: " + ", ".join(f"sigma={s:g} {100 * a:.2f}%"
                                                  for s, a in acc.items()))
        return [self.rec(metric="noise_accuracy", value=a, attack="gaussian_noise", sigma=s,
                         n=n, threat_model="noise") for s, a in acc.items()]

    def metric_rotation(self, spec: RotationSpec) -> list[dict[str, Any]]:
        from robens.metrics.robustness import rotation_accuracy

        data, _ = self.test_data(None)
        batches = _first_batches(data, self.suite.batch_size, spec.samples)
        acc = rotation_accuracy(self.model, batches, spec.degrees)
        n = sum(int(y.numel()) for _, y in batches)
        self.echo("rotation: " + ", ".join(f"{d:g} deg {100 * a:.2f}%" for d, a in acc.items()))
        return [self.rec(metric="rotation_accuracy", value=a, attack="rotation", degrees=d,
                         n=n, threat_model="rotation") for d, a in acc.items()]

    def metric_detection(self, spec: DetectionSpec) -> list[dict[str, Any]]:
        from robens.detect import KernelDensity, detection_protocol

        detectors = list(spec.detectors)
        if self._members() < 2 and "disagreement" in detectors:
            detectors.remove("disagreement")
        kd = None
        if "kernel_density" in detectors:
            try:
                ncls = self.full_test.num_classes
                ref = self.train_data(spec.reference_per_class * ncls * 2)
                kd = KernelDensity(self.model, spec.bandwidth, spec.reference_per_class,
                                   seed=self.suite.seed).fit(ref.batches(self.suite.batch_size))
            except InputError as exc:
                self.echo(f"kernel density skipped: {exc}")
                detectors.remove("kernel_density")
        data, _ = self.test_data(None)
        batches = _first_batches(data, self.suite.batch_size, spec.samples)
        recs = []
        for a in spec.attacks:
            atk = self._build(a.attack, self.model, a.eps, None, a.params)
            res = detection_protocol(
                self.model, atk, self._bar.track(batches, f"detection {a.attack}"), detectors, kd
            )
            for d in detectors:
                fpr, tpr = res.curve(d) if res.n_pairs else ([], [])
                recs.append(self.rec(
                    metric="detection_auc", value=res.auc[d], detector=d, attack=a.attack,
                    eps=a.eps, n=res.n_total, n_pairs=res.n_pairs, fpr=fpr, tpr=tpr,
                    bandwidth=spec.bandwidth if d == "kernel_density" else None,
                    threat_model="white_box",
                ))
            self.echo(
                f"detection ({a.attack} eps={a.eps:g}, {res.n_pairs} pairs): "
                + ", ".join(f"{d} AUC {res.auc[d]:.3f}" for d in detectors)
            )
        return recs


def _cross_check(records: list[dict[str, Any]], margin: float = 0.01) -> None:
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
) -> dict[str, Any]:
    """Run an attack suite on a checkpoint; resumable (finished units are skipped).

    Args:
        checkpoint: ``checkpoint.safetensors`` or its run directory.
        suite: a suite YAML path, mapping, list of attack entries, or :class:`SuiteConfig`.
        out: where results go (default: the checkpoint's directory): ``results.jsonl``,
            ``results.csv``, ``suite/units/*.json`` (finished units), ``suite/samples/*.npz``.
        test_size, batch_size, seed: override the suite's values when given.

    Returns ``{"records", "results_jsonl", "results_csv", "ran", "skipped", "warnings"}``.
    """
    cfg = load_suite(suite)
    over = {k: v for k, v in {"test_size": test_size, "batch_size": batch_size, "seed": seed}
            .items() if v is not None}
    if over:
        cfg = cfg.model_copy(update=over)
    runner = SuiteRunner(checkpoint, cfg, out, progress, echo, dataset, data_root, device)
    return runner.run()


def run_suite_cli(
    checkpoint: str | os.PathLike,
    suite: str | os.PathLike,
    dataset: str | None,
    data_root: str | None,
    test_size: int | None,
    batch_size: int | None,
    out: str | os.PathLike | None,
    device: str,
    seed: int | None,
    progress: bool,
) -> dict[str, Any]:
    """``robens evaluate CKPT --suite SUITE``: run the suite and print a results table.

    The CLI's ``--batch-size`` and ``--seed`` have defaults (500, 0); they apply only where the
    suite file sets no value of its own, so a suite's choices win over the CLI defaults.
    """
    cfg = load_suite(suite)
    if "batch_size" in cfg.model_fields_set:
        batch_size = None
    if "seed" in cfg.model_fields_set:
        seed = None
    result = run_suite(
        checkpoint, cfg, out=out, progress=progress, echo=print, dataset=dataset,
        data_root=data_root, test_size=test_size, batch_size=batch_size, device=device,
        seed=seed,
    )
    print_results_table(result["records"])
    print(f"records: {result['results_jsonl']} and {result['results_csv']}")
    return result


def print_results_table(records: list[dict[str, Any]]) -> None:
    """A rich table of the accuracy-like records (one line per attack and eps)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="attack suite")
    for col in ("threat", "attack", "eps", "metric", "value %", "n"):
        table.add_column(col, justify="right" if col in ("eps", "value %", "n") else "left")
    shown = ("clean_accuracy", "robust_accuracy", "weighted_accuracy", "noise_accuracy",
             "rotation_accuracy", "detection_auc", "transfer_offdiag_accuracy")
    for r in records:
        if r["metric"] not in shown:
            continue
        label = r["metric"]
        if r["metric"] == "detection_auc":
            label = f"AUC {r.get('detector')}"
        elif r["metric"] == "noise_accuracy":
            label = f"noise sigma={r.get('sigma')}"
        elif r["metric"] == "rotation_accuracy":
            label = f"rotation {r.get('degrees')} deg"
        value = r["value"]
        table.add_row(
            str(r.get("threat_model", "")), str(r.get("attack", "")), f"{r.get('eps', 0):g}",
            label, "nan" if value is None else f"{100 * value:.2f}", str(r.get("n", "")),
        )
    Console().print(table)
