"""One registry helper for everything that comes in kinds (docs/architecture.md).

Models, objective terms, attacks, strategies, datasets, suite units, figures and recipe
summaries each keep one :class:`Registry`; adding a kind is one file plus one
``@REGISTRY.register("name")``. Lookups of unknown names raise :class:`~robens.errors.InputError`
listing the registered names, and the CLI's help reads :meth:`Registry.names`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from robens.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object (a class, factory or spec), with aliases and a lazy loader.

    ``loader`` is called once, before the first lookup, to import the modules that register
    the built-in entries (so importing the registry itself stays cheap and cycle-free).
    """

    def __init__(self, kind: str, loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._loader = loader
        self._loaded = loader is None

    # ------------------------------------------------------------------ writing
    def register(
        self, name: str, obj: T | None = None, *, aliases: tuple[str, ...] = (),
        replace: bool = False,
    ) -> Any:
        """Register ``obj`` under ``name`` (and ``aliases``); without ``obj``, a decorator."""
        key = self._norm(name)

        def add(value: T) -> T:
            if key in self._items and not replace and self._items[key] is not value:
                raise InputError(f"{self.kind} {name!r} is already registered")
            self._items[key] = value
            for alias in aliases:
                self._aliases[self._norm(alias)] = key
            return value

        if obj is not None:
            return add(obj)
        return add

    def alias(self, alias: str, name: str) -> None:
        """Let ``alias`` resolve to the registered ``name``."""
        self._aliases[self._norm(alias)] = self._norm(name)

    # ------------------------------------------------------------------ reading
    def _ensure(self) -> None:
        if not self._loaded:
            self._loaded = True
            assert self._loader is not None
            self._loader()

    @staticmethod
    def _norm(name: str) -> str:
        return str(name).strip().lower()

    def canonical(self, name: str) -> str:
        """The registered name that ``name`` (or an alias) stands for; unknown -> InputError."""
        self._ensure()
        key = self._norm(name)
        key = self._aliases.get(key, key)
        if key not in self._items:
            raise InputError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return key

    def get(self, name: str) -> T:
        """The entry registered as ``name`` (or an alias of it)."""
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        """Registered names, sorted (aliases not included)."""
        self._ensure()
        return sorted(self._items)

    def aliases(self) -> dict[str, str]:
        """``{alias: name}``."""
        self._ensure()
        return dict(self._aliases)

    def items(self) -> list[tuple[str, T]]:
        self._ensure()
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        self._ensure()
        key = self._norm(str(name))
        return self._aliases.get(key, key) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure()
        return len(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def choices(self) -> str:
        """``"a, b, c"``: the names for help texts."""
        return ", ".join(self.names())
