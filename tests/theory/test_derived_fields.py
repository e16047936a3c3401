"""Derived fields (``theory.theorem.derived``): a theorem's statement that takes a
``sympy.solve`` (T8's Hoeffding half-width and sample sizes) or a matrix expression (T5) is
derived when first read, equals its derivation, and a value given to the constructor is kept.

Listing the catalogue (what ``hfta bounds`` prints before any certificate) therefore solves
and simplifies nothing: checked in a fresh interpreter by counting ``sympy.solve`` and
``sympy.simplify`` calls, not by timing. Negative control: reading T8's ``bound`` in the same
interpreter is counted as a solve.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
import sympy as sp

from theory import symbols as sym
from theory.errors import AssumptionError
from theory.theorem import Derived, Theorem, check_parameter_assumptions, derived
from theory.theorems import CATALOGUE_MODULES
from theory.theorems import binomial_confidence as t8
from theory.theorems import quadratic_gd as t5

#: Counts sympy.solve / sympy.simplify calls (theory looks both up on the sympy module) while
#: the catalogue is listed, then while T8's bound is read.
PROBE = """
import json, sys
import sympy as sp
calls = {"solve": 0, "simplify": 0}
def counting(name, original):
    def wrapper(*args, **kwargs):
        calls[name] += 1
        return original(*args, **kwargs)
    return wrapper
sp.solve = counting("solve", sp.solve)
sp.simplify = counting("simplify", sp.simplify)
import theory
listed = [(t.label, t.name, t.title, t.steps_kind, t.source) for t in theory.catalogue()]
after_listing = dict(calls, physics="sympy.physics" in sys.modules, theorems=len(listed))
theory.theorem("T8").bound
print(json.dumps({"listing": after_listing, "t8_bound": dict(calls)}))
"""


def test_listing_the_catalogue_solves_and_simplifies_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=True
    )
    counts = json.loads(result.stdout)
    listing = {"solve": 0, "simplify": 0, "physics": False, "theorems": len(CATALOGUE_MODULES)}
    assert counts["listing"] == listing
    assert counts["t8_bound"]["solve"] >= 1  # the control: a derivation is seen


def test_t8_derived_fields_equal_their_solutions() -> None:
    fresh = t8.BinomialConfidence()
    assert "bound" not in vars(fresh)  # not derived yet
    two_sided = sp.Eq(t8.HOEFFDING_TAIL, t8.alpha)
    one_sided = sp.Eq(t8.HOEFFDING_ONE_SIDED_TAIL, t8.alpha)
    assert fresh.bound == t8.solve_positive(two_sided, t8.h)
    assert fresh.sample_size == t8.solve_positive(two_sided, t8.m)
    assert fresh.one_sided_half_width == t8.solve_positive(one_sided, t8.h)
    assert fresh.one_sided_sample_size == t8.solve_positive(one_sided, t8.m)
    assert "bound" in vars(fresh)  # kept
    assert fresh.bound != fresh.one_sided_half_width  # the control: the fields differ


def test_t5_derived_fields_are_its_statements() -> None:
    fresh = t5.QuadraticGradientDescent()
    assert fresh.bound == t5.L_star + sp.Sum(
        t5._indexed(t5.EXCESS_LOSS_SUMMAND), (t5.i, 0, t5.n - 1)
    )
    assert fresh.conclusion == sp.Eq(t5.L_t, fresh.bound)
    assert fresh.slowest_mode_contraction == (t5.kappa - 1) / t5.kappa
    assert [a.name for a in fresh.parameter_assumptions] == [
        "eta_positive", "eigenvalues_nonnegative", "t_nonnegative",
        "eta_at_most_two_over_lambda_max",
    ]
    assert fresh.evaluate(eta=0.5, t=1, eigenvalues=[1.0], coefficients=[2.0]) == 0.5


def test_a_value_given_to_the_constructor_is_kept() -> None:
    mutant = dataclasses.replace(t8.THEOREM, bound=t8.h)
    assert mutant.bound == t8.h
    assert mutant.sample_size == t8.THEOREM.sample_size  # the others still derived
    assert t8.BinomialConfidence(bound=t8.m).bound == t8.m
    assert mutant != t8.THEOREM  # the control: equality reads the derived fields


@dataclass(frozen=True)
class _Counted(Theorem):
    """A theorem whose bound counts its derivations."""

    label: ClassVar[str] = "T0"
    name: ClassVar[str] = "counted"
    title: ClassVar[str] = "counts derivations"
    source: ClassVar[str] = "tests"
    derivations: ClassVar[list[int]] = []

    bound: sp.Expr = field(default=derived(lambda _: _Counted._derive()))

    @staticmethod
    def _derive() -> sp.Expr:
        _Counted.derivations.append(1)
        return sp.Symbol("x") + 1


def test_a_field_is_derived_once_per_instance_and_the_class_holds_the_descriptor() -> None:
    _Counted.derivations.clear()
    first, second = _Counted(), _Counted()
    assert _Counted.derivations == []
    assert first.bound == first.bound == sp.Symbol("x") + 1
    assert len(_Counted.derivations) == 1
    assert second.bound == first.bound
    assert len(_Counted.derivations) == 2
    assert isinstance(vars(_Counted)["bound"], Derived)


def test_is_integer_is_the_relation_sympy_would_build_and_is_checked_on_numbers() -> None:
    """``symbols.is_integer`` builds ``Eq(floor(s), s)`` unevaluated (cheaper): the same
    relation sympy returns for a real symbol, and it still refuses a fractional step count."""
    for symbol in (sym.t, sym.n, sym.d):
        assert sym.is_integer(symbol) == sp.Eq(sp.floor(symbol), symbol)
    check_parameter_assumptions("T2", (sym.T_INTEGER,), {"t": 3.0})
    with pytest.raises(AssumptionError, match="t_integer"):  # the control
        check_parameter_assumptions("T2", (sym.T_INTEGER,), {"t": 2.5})
