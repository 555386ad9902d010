"""The attack registry: ``build_attack("pgd", model, eps=0.1)`` looks names up in :data:`ATTACKS`.

Adding an attack is one file and one registration::

    @register_attack("my_alias")
    class MyAttack(Attack):
        name = "my_attack"          # the registered name
        ...

plus an import of that module in ``robens/attacks/__init__.py``. Names are case-insensitive;
``-`` and ``_`` are interchangeable and ``+`` is ignored (``"R+FGSM"`` -> ``rfgsm``).
:func:`preset` makes a registered variant of an attack with other defaults (``pgd_cw``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from robens.attacks.base import Attack
from robens.errors import InputError
from robens.models.variants import variant
from robens.registry import Registry

A = TypeVar("A", bound=type[Attack])


class AttackRegistry(Registry[type[Attack]]):
    """A :class:`~robens.registry.Registry` that also lists names in registration order."""

    def in_order(self) -> list[str]:
        """Registered names in the order they were registered (for error messages)."""
        self._ensure()
        return list(self._items)


#: name -> attack class; ``build_attack`` looks names up here, the CLI lists ``names()``.
ATTACKS = AttackRegistry("attack")


def register_attack(*aliases: str) -> Callable[[A], A]:
    """Class decorator registering an attack under its ``name`` (plus ``aliases``)."""

    def add(cls: A) -> A:
        return ATTACKS.register(cls.name, cls, aliases=aliases)

    return add


def preset(base: A, cls_name: str, name: str, doc: str, **defaults: Any) -> A:
    """A subclass of attack ``base`` called ``name`` whose signature has other ``defaults``."""
    return variant(base, cls_name, doc, defaults=defaults, name=name)


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace("+", "")


def canonical_attack_name(name: object) -> str:
    """Registry key of ``name`` (case-insensitive; ``-`` and ``_`` interchangeable)."""
    if isinstance(name, str) and _key(name) in ATTACKS:
        return ATTACKS.canonical(_key(name))
    raise InputError(
        f"unknown attack {name!r}; available attacks: {', '.join(ATTACKS.in_order())}"
    )


def attack_parameters(name: str) -> list[str]:
    """Keyword parameters attack ``name`` accepts (besides ``model``)."""
    cls = ATTACKS[canonical_attack_name(name)]
    return [p for p in inspect.signature(cls).parameters if p != "model"]


def build_attack(name: str, model: Any, **params: Any) -> Attack:
    """Build a registered attack by name: ``build_attack("pgd", model, eps=0.1, steps=20)``.

    Unknown names and unknown parameters raise :class:`~robens.errors.InputError` listing the
    valid ones.
    """
    key = canonical_attack_name(name)
    accepted = attack_parameters(key)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InputError(
            f"unknown parameter(s) {', '.join(unknown)} for attack {key!r}; it accepts:"
            f" {', '.join(accepted)}"
        )
    try:
        return ATTACKS[key](model, **params)
    except TypeError as exc:
        raise InputError(f"attack {key!r}: {exc}") from None
