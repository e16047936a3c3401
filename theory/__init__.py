"""theory/: the immunization framework stated exactly, and the bounds it relies on.

Pure mathematics (sympy, numpy, scipy); never imports torch or empirical/.

* ``theory.framework``: the harmful-training problem (1) and its symbols.
* ``theory.conditions``: strong / weak resistance, stability, generalization, trainability.
* ``theory.catalogue()``: every theorem (T1 ... T8), each a ``theory.theorem.Theorem``.
"""

from __future__ import annotations

import importlib

from theory.conditions import (
    Generalization,
    ResistanceCertificate,
    Stability,
    StrongResistance,
    Trainability,
    WeakResistance,
)
from theory.curve import Curve
from theory.errors import AssumptionError, DataOverlapError, HftaInputError
from theory.framework import AttackSetting, DataSet, HarmfulTrainingProblem, ThreatModel
from theory.theorem import Assumption, Theorem
from theory.theorems import CATALOGUE_MODULES
from theory.verdict import Status, Verdict

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
