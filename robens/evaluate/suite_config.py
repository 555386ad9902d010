"""The schema of an attack suite, built from the unit registry (see :mod:`robens.evaluate.suite`).

``metrics:`` has one optional key per registered metric unit (its spec class; ``true`` means
the defaults, ``false``/absent means not computed), so a unit registered before the suite is
loaded is a valid key and an unknown key is an error naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from robens.config import load_yaml, validate_schema
from robens.errors import ConfigError
from robens.evaluate.surrogates import SurrogateSpec
from robens.evaluate.units import UNITS, AttackEntry

THREATS = ("white_box", "transfer", "universal")


class MetricsBase(BaseModel):
    """Optional metrics; ``true`` means the defaults, ``false``/absent means not computed."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _booleans(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {k: ({} if v is True else None if v is False else v) for k, v in data.items()}
        return data


def _metrics_model() -> type[MetricsBase]:
    fields: dict[str, Any] = {u.name: (u.spec | None, None) for u in UNITS.in_order("metric")}
    return create_model("MetricsSpec", __base__=MetricsBase, **fields)


MetricsSpec = _metrics_model()
_BUILT_WITH = tuple((u.name, u.spec) for u in UNITS.in_order("metric"))


def _looks_like_path(s: str) -> bool:
    return Path(s).exists()


class SuiteConfig(BaseModel):
    """An attack suite (see :mod:`robens.evaluate.suite`)."""

    model_config = ConfigDict(extra="forbid")

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
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)  # type: ignore[valid-type]

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
        for key, spec, unit in metric_specs(self):
            src = getattr(spec, unit.surrogate_field) if unit.surrogate_field else None
            if src and src not in self.surrogates and not _looks_like_path(src):
                raise ValueError(
                    f"metrics.{key}.{unit.surrogate_field} {src!r} is not a surrogate name or a"
                    " path"
                )
        return self


def metric_specs(cfg: SuiteConfig) -> list[tuple[str, BaseModel, Any]]:
    """``(key, spec, unit)`` of every metric the suite computes, in registry order."""
    out = []
    for key in type(cfg.metrics).model_fields:
        spec = getattr(cfg.metrics, key)
        if spec is not None:
            out.append((key, spec, UNITS.get(key)))
    return out


_SCHEMAS: dict[tuple, type[SuiteConfig]] = {}


def suite_schema() -> type[SuiteConfig]:
    """:class:`SuiteConfig`, rebuilt when metric units were registered after this import."""
    names = tuple((u.name, u.spec) for u in UNITS.in_order("metric"))
    if names == _BUILT_WITH:
        return SuiteConfig
    if names not in _SCHEMAS:
        metrics = _metrics_model()
        _SCHEMAS[names] = create_model(
            "SuiteConfig", __base__=SuiteConfig,
            metrics=(metrics, Field(default_factory=metrics)),
        )
    return _SCHEMAS[names]


def load_suite(suite: str | os.PathLike | dict | list | SuiteConfig) -> SuiteConfig:
    """Validate a suite given as a YAML path, a mapping, a list of attack entries or a config."""
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
    return validate_schema(suite_schema(), data, source, kind="suite")
