"""theory/: the immunization framework stated exactly, and the bounds it relies on.

Pure mathematics (sympy, numpy, scipy); never imports torch or empirical/.

* ``theory.framework``: the harmful-training problem (1) and its symbols.
* ``theory.conditions``: strong / weak resistance, stability, generalization, trainability.
* ``theory.catalogue()``: every theorem (T1 ... T11), each a ``theory.theorem.Theorem``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

from theory.errors import AssumptionError, DataOverlapError, HftaInputError

if TYPE_CHECKING:
    from theory.conditions import (
        Generalization,
        ResistanceCertificate,
        Stability,
        StrongResistance,
        Trainability,
        WeakResistance,
    )
    from theory.curve import Curve
    from theory.framework import AttackSetting, DataSet, HarmfulTrainingProblem, ThreatModel
    from theory.theorem import Assumption, Theorem
    from theory.verdict import Status, Verdict

#: Where each public name lives, imported on first use (PEP 562): ``import theory.errors``
#: (what the CLI needs to start) then costs no sympy import.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        (
            "Generalization",
            "ResistanceCertificate",
            "Stability",
            "StrongResistance",
            "Trainability",
            "WeakResistance",
        ),
        "theory.conditions",
    ),
    "Curve": "theory.curve",
    **dict.fromkeys(
        ("AttackSetting", "DataSet", "HarmfulTrainingProblem", "ThreatModel"), "theory.framework"
    ),
    "Assumption": "theory.theorem",
    "Theorem": "theory.theorem",
    "Status": "theory.verdict",
    "Verdict": "theory.verdict",
}


class _Package(types.ModuleType):
    """The package's module type: importing the submodule ``theory.theorem`` would bind it
    over the function ``theory.theorem`` (the import system sets a package attribute per
    submodule); with the imports lazy that import may come after the function's definition,
    so the function is kept (``import theory.theorem`` and ``from theory.theorem import ...``
    go through ``sys.modules`` and are unaffected)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "theorem" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    """The public name ``name`` from its module (``_LAZY``), or the submodule ``name``,
    imported now."""
    module = _LAZY.get(name)
    if module is None:
        if importlib.util.find_spec(f"theory.{name}") is None:
            raise AttributeError(f"module 'theory' has no attribute {name!r}")
        return importlib.import_module(f"theory.{name}")  # a submodule: theory.conditions
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Assumption",
    "AssumptionError",
    "AttackSetting",
    "Curve",
    "DataOverlapError",
    "DataSet",
    "Generalization",
    "HarmfulTrainingProblem",
    "HftaInputError",
    "ResistanceCertificate",
    "Stability",
    "Status",
    "StrongResistance",
    "Theorem",
    "ThreatModel",
    "Trainability",
    "Verdict",
    "WeakResistance",
    "catalogue",
    "theorem",
]


def catalogue() -> list[Theorem]:
    """Every catalogued theorem, in label order (T1, T2, ...)."""
    from theory.theorems import CATALOGUE_MODULES

    return [
        importlib.import_module(f"theory.theorems.{module}").THEOREM
        for module in CATALOGUE_MODULES
    ]


def theorem(key: str) -> Theorem:
    """The catalogued theorem whose label ("T2") or name ("clipped_sgd_progress") is ``key``."""
    for t in catalogue():
        if key in (t.label, t.name):
            return t
    known = ", ".join(f"{t.label}/{t.name}" for t in catalogue())
    raise HftaInputError(f"unknown theorem '{key}' (known: {known})")
