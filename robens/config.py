"""Experiment configs: YAML files validated by pydantic. Unknown keys are errors.

Every ``robens train`` flag maps to a dotted key here (``--lr`` is ``optimizer.lr``), and
``--set key=value`` reaches any other key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from robens.errors import ConfigError, InputError
from robens.validation import MAX_SEED, parse_device

M = TypeVar("M", bound=BaseModel)


def check_path_text(v: str, allow_empty: bool = False) -> str:
    """Text that names a file or folder (or a part of one): no NUL character, and not empty
    unless ``allow_empty``."""
    if "\0" in v:
        raise ValueError("must not contain a NUL character")
    if not allow_empty and not v.strip():
        raise ValueError("must not be empty")
    return v


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class AugmentConfig(Strict):
    """Training-time augmentation (GAL paper: shift + crop, flip on CIFAR, Gaussian noise)."""

    shift: int = Field(0, ge=0, le=16)
    crop_padding: int = Field(0, ge=0, le=16)
    hflip: bool = False
    noise_eps: float = Field(
        0.0, ge=0.0, le=1.0, description="D_noise: truncated normal with sigma = noise_eps / 2"
    )
    noise_mode: Literal["concat", "replace"] = "concat"


class DataConfig(Strict):
    dataset: str = "fashion-mnist"
    root: str | None = None

    @field_validator("root")
    @classmethod
    def _root_text(cls, v: str | None) -> str | None:
        return None if v is None else check_path_text(v)
    train_size: int | None = Field(None, ge=1)
    test_size: int | None = Field(None, ge=1)
    val_size: int = Field(0, ge=0, description="held out of training for soft-voting weights")
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    augment: AugmentConfig = AugmentConfig()


class ModelConfig(Strict):
    arch: str = "lenet"
    archs: list[str] | None = Field(None, description="mixed ensemble: one arch per member")
    members: int = Field(3, ge=1, le=1024)
    activation: str = "relu"
    leaky_slope: float = Field(0.1, ge=0.0, lt=1.0)
    combine: Literal["logits", "probs", "log_probs"] = "logits"
    weights: list[float] | None = None
    vectorize: bool | Literal["auto"] = "auto"
    head: Literal["linear", "mmc", "mmlda"] = "linear"
    mm_scale: float = Field(10.0, gt=0.0, description="C_MM: norm of Max-Mahalanobis centres")
    rce: bool = Field(False, description="reverse cross-entropy model: negated-logit inference")

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.archs is not None and len(self.archs) != self.members:
            raise ValueError(f"archs lists {len(self.archs)} models but members is {self.members}")
        if self.weights is not None:
            if len(self.weights) != self.members:
                raise ValueError(
                    f"weights has {len(self.weights)} entries but members is {self.members}"
                )
            if any(w <= 0 for w in self.weights) or abs(sum(self.weights) - 1.0) > 1e-6:
                raise ValueError("weights must be positive and sum to 1")
        return self


class OptimizerConfig(Strict):
    name: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0)


class ScheduleConfig(Strict):
    name: Literal["constant", "step", "cosine", "cyclic_cosine"] = "constant"
    milestones: list[int] = Field(default_factory=list, description="epochs (step schedule)")
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    cycles: int = Field(1, ge=1, description="cyclic cosine: number of cycles")

    @field_validator("milestones")
    @classmethod
    def _sorted(cls, v: list[int]) -> list[int]:
        if any(m < 1 for m in v) or v != sorted(v):
            raise ValueError("milestones must be increasing positive epochs")
        return v


class AdversarialConfig(Strict):
    """Adversarial training on the fly, or ensemble adversarial training from static sources."""

    attack: Literal["none", "fgsm", "pgd"] = "none"
    eps: float = Field(0.1, ge=0.0, le=1.0)
    eps_min: float | None = Field(None, ge=0.0, le=1.0, description="eps ~ U(eps_min, eps)")
    steps: int = Field(10, ge=1)
    ratio: float = Field(1.0, ge=0.0, description="adversarial examples per clean example")
    sources: list[str] = Field(default_factory=list, description="static pre-trained checkpoints")


class DvergeConfig(Strict):
    """DVERGE (``training.strategy: dverge``; docs/methods.md s. 8). Defaults: the paper's
    CIFAR-10 distillation (eps 0.07, alpha 0.007, 10 steps) and ``plus_adv`` PGD (8/255)."""

    layer: int | str = Field(
        "random", description="'random' (drawn per epoch), a 1-based index or a layer name"
    )
    eps: float = Field(0.07, ge=0.0, le=1.0, description="distillation L-inf radius")
    alpha: float = Field(0.007, ge=0.0, le=1.0, description="distillation step size")
    steps: int = Field(10, ge=0, description="distillation PGD steps")
    mu: float = Field(1.0, ge=0.0, description="momentum of the L1-normalised gradient")
    rand_start: bool = False
    plus_adv: bool = False
    coeff: float = Field(1.0, ge=0.0, description="plus_adv: weight of the cross-training term")
    adv_eps: float = Field(8 / 255, ge=0.0, le=1.0)
    adv_alpha: float = Field(2 / 255, ge=0.0, le=1.0)
    adv_steps: int = Field(10, ge=1)
    optimizer: Literal["per_member", "joint"] = "per_member"
    init_checkpoint: str | None = Field(None, description="start from a baseline ensemble")


class TrainingConfig(Strict):
    epochs: int = Field(2, ge=1)
    strategy: Literal["joint", "bagging", "snapshot", "dverge"] = "joint"
    soft_voting: Literal["uniform", "val_accuracy"] = "uniform"
    adversarial: AdversarialConfig = AdversarialConfig()
    dverge: DvergeConfig = DvergeConfig()

    @model_validator(mode="after")
    def _dverge_only_with_its_strategy(self) -> TrainingConfig:
        if self.strategy != "dverge" and self.dverge != DvergeConfig():
            raise ValueError(
                "training.dverge settings are read by strategy 'dverge' only: set"
                f" training.strategy: dverge or remove them (strategy is {self.strategy!r})"
            )
        return self
    on_nonfinite: Literal["stop", "skip"] = "stop"
    grad_clip: float | None = Field(None, gt=0.0)
    device: str = "auto"
    threads: int | None = Field(None, ge=1, le=1024)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        """A device torch can name (whether this machine has it is checked when training)."""
        if v != "auto":
            try:
                parse_device(v)
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return v


class ExperimentConfig(Strict):
    name: str = "experiment"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    objective: str = "ce"
    terms: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="keyword arguments per objective term"
    )
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    training: TrainingConfig = TrainingConfig()
    output_dir: str = "runs/experiment"
    _notes: list[str] = PrivateAttr(default_factory=list)

    @field_validator("output_dir")
    @classmethod
    def _path_text(cls, v: str) -> str:
        return check_path_text(v)

    @field_validator("name")
    @classmethod
    def _name_text(cls, v: str) -> str:  # the default output folder is runs/<name>
        return check_path_text(v, allow_empty=True)

    @model_validator(mode="after")
    def _complete_snapshot(self) -> ExperimentConfig:
        """Snapshot ensembling takes one snapshot per cosine cycle (Huang et al. 2017): the
        default constant schedule becomes ``cyclic_cosine`` with ``cycles = members``; any
        other schedule must already be that one."""
        if self.training.strategy != "snapshot":
            return self
        m, sched = self.model.members, self.schedule
        if sched.name == "constant":
            self.schedule = sched.model_copy(update={"name": "cyclic_cosine", "cycles": m})
            self._notes.append(f"snapshot strategy: schedule set to cyclic_cosine with {m} cycles")
        else:
            check_snapshot_schedule(sched, m)
        return self

    @property
    def notes(self) -> list[str]:
        """What validation completed (one line each), for the trainer to echo."""
        return list(self._notes)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def check_snapshot_schedule(schedule: ScheduleConfig, members: int) -> None:
    """Raise :class:`ConfigError` unless ``schedule`` is cyclic cosine with one cycle a member."""
    if schedule.name != "cyclic_cosine" or schedule.cycles != members:
        raise ConfigError(
            f"strategy 'snapshot' takes one snapshot per cosine cycle: set schedule.name:"
            f" cyclic_cosine and schedule.cycles: {members} (= model.members), got"
            f" {schedule.name} with {schedule.cycles} cycle(s)"
        )


def _format_validation_error(exc: ValidationError, source: str, kind: str = "config") -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {key}: {msg}")
    return f"invalid {kind} {source}:\n" + "\n".join(lines)


def validate_schema(schema: type[M], data: Any, source: str = "", kind: str = "config") -> M:
    """Validate ``data`` (``None`` = empty) into the pydantic ``schema``; a non-mapping or an
    invalid value raises :class:`ConfigError` naming the ``kind``, the source and each key."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{kind} {source} must be a mapping of keys, got {type(data).__name__}")
    try:
        return schema.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source, kind)) from None


def validate_config(data: Any, source: str = "") -> ExperimentConfig:
    """Validate a mapping into an :class:`ExperimentConfig`; errors name the offending key."""
    return validate_schema(ExperimentConfig, data, source)


def load_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file safely (no Python objects); errors say where."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML in {path}: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file") from None


def check_not_empty(data: Any, path: str | os.PathLike) -> None:
    """An empty config file is a mistake, not a request for every default."""
    if data is None or data == {}:
        raise ConfigError(
            f"config {path} is empty; write the keys to set (start from configs/main.yaml, or"
            " pass flags without a config file)"
        )


def load_config(
    path: str | os.PathLike, overrides: dict[str, Any] | None = None
) -> ExperimentConfig:
    """Load a YAML experiment config and apply dotted-key overrides."""
    data = load_yaml(path)
    check_not_empty(data, path)
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of keys, got {type(data).__name__}")
    return validate_config(apply_overrides(data, overrides or {}), source=str(path))


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``optimizer.lr``) in a nested mapping (copied)."""
    import copy

    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"cannot set {dotted}: {part} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def parse_set_option(item: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value read as YAML: numbers, booleans, lists)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key, value


def dump_config(config: ExperimentConfig) -> str:
    """The config as YAML text."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
