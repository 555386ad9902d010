"""The suite-unit registry and the context a unit runs in.

A unit is a function computing records, registered with its pydantic spec::

    @register_unit("noise", NoiseSpec)
    def noise(ctx: UnitContext, spec: NoiseSpec) -> list[dict]:
        ...
        return [ctx.rec(metric="noise_accuracy", value=acc, ...)]

``kind="metric"`` units (the default) are the keys of a suite's ``metrics:`` section, in
registration order; ``kind="attack"`` units run the ``attacks:`` entries of their threat
model (``fn(ctx, entry, eps)``); the ``clean`` unit runs first in every suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict

from robens.data import ImageDataset, load_dataset
from robens.errors import InputError
from robens.evaluate.storage import UnitStore
from robens.evaluate.surrogates import Surrogates
from robens.progress import Progress
from robens.records import make_record
from robens.registry import Registry
from robens.validation import parse_eps

Echo = Callable[[str], None]
Records = list[dict[str, Any]]
UnitKind = Literal["clean", "attack", "metric"]


class Strict(BaseModel):
    """Base of unit specs: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def as_list(v: Any) -> Any:
    """A lone number as a one-element list (``eps: 0.1`` -> ``[0.1]``); a fraction string
    (``"8/255"``, alone or in the list) as its number."""
    if isinstance(v, (int, float, str)) and not isinstance(v, bool):
        v = [v]
    return [_fraction(i) for i in v] if isinstance(v, list) else v


def _fraction(item: Any) -> Any:
    if isinstance(item, str) and "/" in item:
        try:
            return parse_eps(item)
        except InputError:
            return item  # the schema reports it, naming the key
    return item


#: a list of numbers that a spec also accepts as one number (``sigmas: 0.1``)
FloatList = Annotated[list[float], BeforeValidator(as_list)]
IntList = Annotated[list[int], BeforeValidator(as_list)]


@dataclass(frozen=True)
class Unit:
    """A registered suite unit: its ``spec`` class and the function ``run`` computing records.

    ``surrogate_field`` names the spec field that refers to a surrogate (validated against the
    suite's surrogates and hashed into the unit id).
    """

    name: str
    spec: type[BaseModel]
    run: Callable[..., Records]
    kind: UnitKind = "metric"
    surrogate_field: str | None = None


class UnitRegistry(Registry[Unit]):
    """A :class:`~robens.registry.Registry` of units that also lists them in registration order."""

    def in_order(self, kind: UnitKind | None = None) -> list[Unit]:
        self._ensure()
        return [u for u in self._items.values() if kind is None or u.kind == kind]


#: name -> :class:`Unit`; the built-ins register when :mod:`robens.evaluate.units` is imported
UNITS = UnitRegistry("suite unit")


def register_unit(
    name: str, spec: type[BaseModel], *, kind: UnitKind = "metric",
    surrogate_field: str | None = None, aliases: tuple[str, ...] = (),
) -> Callable[[Callable[..., Records]], Callable[..., Records]]:
    """Decorator registering a unit function under ``name`` with its ``spec`` class."""

    def add(fn: Callable[..., Records]) -> Callable[..., Records]:
        UNITS.register(name, Unit(name, spec, fn, kind, surrogate_field), aliases=aliases)
        return fn

    return add


@dataclass
class UnitContext:
    """What a unit may use: the model, data access, records, output, surrogates, progress."""

    suite: Any  # the SuiteConfig
    model: Any
    meta: dict[str, Any]
    device: torch.device
    full_test: ImageDataset
    base: dict[str, Any]
    store: UnitStore
    surrogates: Surrogates
    progress: Progress
    echo: Echo
    data_root: str | None = None
    uid: str = ""
    extras: dict[str, Any] = field(default_factory=dict)
    #: a unit whose transfer examples another process is crafting raises LockBusy (to be run
    #: again later) instead of waiting for them
    defer_busy: bool = False

    def for_unit(self, uid: str) -> UnitContext:
        """This context for the unit ``uid`` (sample files are named after it)."""
        return replace(self, uid=uid)

    # ------------------------------------------------------------------ records
    def rec(self, **fields: Any) -> dict[str, Any]:
        """A record: the checkpoint's identifying fields plus ``fields``."""
        return make_record(**{**self.base, **fields})

    @property
    def members(self) -> int:
        return getattr(self.model, "num_members", 1)

    def track(self, items: Iterable, desc: str) -> Iterator:
        return self.progress.track(items, desc)

    # ------------------------------------------------------------------ data
    def test_indices(self, size: int | None) -> torch.Tensor:
        """Dataset indices of the seeded test subset of ``size`` (nested across sizes)."""
        n = len(self.full_test)
        if size is None or size >= n:
            return torch.arange(n)
        g = torch.Generator().manual_seed(int(self.suite.seed))
        return torch.randperm(n, generator=g)[:size].sort().values

    def test_data(self, size: int | None = None) -> tuple[ImageDataset, torch.Tensor]:
        """``(subset, indices)``: the suite's test subset (``size`` overrides its size)."""
        idx = self.test_indices(size if size is not None else self.suite.test_size)
        return self.full_test.indices(idx), idx

    def train_data(self, size: int) -> ImageDataset:
        """A seeded subset of ``size`` images of the training split."""
        cfg = self.meta.get("config", {}).get("data", {})
        return load_dataset(
            self.full_test.name, "train", root=self.data_root or cfg.get("root"), size=size,
            seed=self.suite.seed,
        )

    def batches(
        self, samples: int | None, batch_size: int | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``samples`` images of the test subset, in batches (default size: the
        suite's)."""
        data, _ = self.test_data(None)
        if samples is not None and samples < len(data):
            data = data.indices(torch.arange(samples))
        return list(data.batches(batch_size or self.suite.batch_size))

    # ------------------------------------------------------------------ attacks
    def build_attack(
        self, name: str, model: Any, eps: float, combine: str | None, params: dict[str, Any]
    ) -> Any:
        """A registered attack on ``model`` (the suite's seed where it takes one)."""
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
