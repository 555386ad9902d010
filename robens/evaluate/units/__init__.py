"""Suite units, one file each, registered by name in :data:`UNITS` (see :mod:`.base`).

Importing this package registers the built-ins, in the order of :data:`BUILTIN`: that is the
order in which a suite's ``metrics:`` run and the order of its schema's fields. A new unit is
one file with one ``@register_unit(...)``, imported before the suite is loaded (for a
built-in: its module name appended to :data:`BUILTIN`).
"""

from __future__ import annotations

import importlib

from robens.evaluate.units.attack import AttackEntry
from robens.evaluate.units.base import UNITS, Strict, Unit, UnitContext, register_unit

#: built-in unit modules, in registration (and metrics) order
BUILTIN = (
    "clean", "attack", "universal",
    "transfer_matrix", "gradients", "gaas", "jacobian", "disagreement", "noise", "rotation",
    "detection",
)
for _name in BUILTIN:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["BUILTIN", "UNITS", "AttackEntry", "Strict", "Unit", "UnitContext", "register_unit"]
