"""Warm certificate evaluations do no symbolic work: no ``lambdify``, no ``solve``.

Every number of a theorem comes from its sympy statement by ``lambdify`` (compiled once per
expression in ``theory.theorem``) and, for the steps solvers, ``sympy.solve`` (once per
theorem, ``steps_solution``). After one evaluation of each example certificate of
``hfta bounds`` a second evaluation must compile nothing and solve nothing: that is what keeps
certificates at thousands per second. Counted by wrapping ``sympy.lambdify`` and
``sympy.solve`` where theory looks them up, not by timing.

Negative control: with the compile caches emptied, the same evaluation does call
``lambdify`` (so the counter can see a miss).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sympy as sp

import theory
from theory.theorem import Theorem

EXAMPLES: dict[str, dict[str, float]] = {
    "T1": {"L0": 2.5, "gdot": -0.02, "beta": 50.0, "delta_norm": 0.01, "L1": 2.48},
    "T2": {"L0": 2.5, "eta": 1e-2, "C": 1.0, "G": 2.0, "beta": 50.0, "t": 50},
    "T3": {"L0": 2.5, "eta": 3e-4, "G": 2.0, "beta1": 0.9, "beta2": 0.999, "d": 108_000,
           "t": 50},
    "T4": {"L0": 2.5, "L_star": 0.0, "mu": 0.05, "beta": 50.0, "eta": 0.02, "t": 50},
    "T6": {"L_K": 2.0, "G": 2.0, "c": 0.9, "u_K": 0.02},
    "T7": {"G_g": 0.5, "beta_g": 50.0, "delta_norm": 0.01},
}
THRESHOLD = 0.5


def _evaluate_all(theorems: list[Theorem]) -> None:
    for t in theorems:
        t.evaluate(**EXAMPLES[t.label])
        if t.steps_kind is not None:
            t.steps_to_threshold(THRESHOLD, **EXAMPLES[t.label])


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Calls of ``sympy.lambdify`` and ``sympy.solve`` made while the fixture is active."""
    calls = {"lambdify": 0, "solve": 0}

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(sp, "lambdify", counting("lambdify", sp.lambdify))
    monkeypatch.setattr(sp, "solve", counting("solve", sp.solve))
    yield calls


def _theorems() -> list[Theorem]:
    found = [t for t in theory.catalogue() if t.label in EXAMPLES]
    assert {t.label for t in found} == set(EXAMPLES)
    return found


def test_a_warm_evaluation_compiles_and_solves_nothing(counted: dict[str, int]) -> None:
    theorems = _theorems()
    _evaluate_all(theorems)  # warm (may compile: counted, not judged)
    counted["lambdify"] = counted["solve"] = 0
    for _ in range(3):
        _evaluate_all(theorems)
    assert counted == {"lambdify": 0, "solve": 0}


def test_negative_control_an_emptied_cache_is_seen_compiling(
    counted: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    theorems = _theorems()
    _evaluate_all(theorems)
    module = sys.modules[Theorem.__module__]  # theory.theorem (the package re-exports a name)
    monkeypatch.setattr(module, "_LAMBDA_CACHE", {})
    monkeypatch.setattr(module, "_CHECK_CACHE", {})
    counted["lambdify"] = 0
    _evaluate_all(theorems)
    assert counted["lambdify"] > 0
