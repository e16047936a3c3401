"""The proof machinery: the sympy→z3 translator, the solver wrappers, the induction schema."""

from __future__ import annotations

from fractions import Fraction

import pytest
import sympy as sp
import z3
from hypothesis import given
from hypothesis import strategies as st

from proofs.induction import Induction
from proofs.obligation import Budget, Status
from proofs.solver import probe_claim, prove, prove_identity
from proofs.translate import TranslationError, formula, real, term
from theory import symbols as sym
from theory.theorems import clipped_sgd_progress as t2
from theory.theorems import smoothness_sandwich as t1

BUDGET = Budget(timeout_s=10.0)
x, y = sp.symbols("x y", real=True)

#: expressions of the catalogue whose translation is compared with sympy's own evaluation
EXPRESSIONS = (t2.BOUND, t1.LOWER_BOUND, t1.UPPER_BOUND, t2.STEP_DECREASE)


def _evaluate_z3(expr: sp.Expr, point: dict[sp.Symbol, Fraction]) -> Fraction:
    translated = term(expr)
    solver = z3.Solver()
    for symbol, value in point.items():
        solver.add(real(symbol.name) == z3.RealVal(f"{value.numerator}/{value.denominator}"))
    solver.add(*translated.definitions)
    result = z3.Real("result")
    solver.add(result == translated.value)
    assert solver.check() == z3.sat
    value = solver.model()[result].as_fraction()
    return Fraction(value.numerator, value.denominator)


rationals = st.fractions(min_value=-5, max_value=5, max_denominator=9)


@given(
    values=st.lists(rationals, min_size=7, max_size=7), which=st.integers(0, len(EXPRESSIONS) - 1)
)
def test_translation_agrees_with_sympy(values: list[Fraction], which: int) -> None:
    expr = EXPRESSIONS[which]
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    point = dict(zip(symbols, values, strict=False))
    exact = sp.Rational(
        expr.subs({s: sp.Rational(v.numerator, v.denominator) for s, v in point.items()})
    )
    assert _evaluate_z3(expr, point) == Fraction(int(exact.p), int(exact.q))


@pytest.mark.negative_control
def test_translation_check_catches_a_wrong_constant() -> None:
    """The agreement check above must fail for a mutated expression (β/2 for β)."""
    mutant = t2.STEP_DECREASE.xreplace({sym.beta: sym.beta / 2})
    point = {sym.G: Fraction(1), sym.eta: Fraction(1), sym.C: Fraction(1), sym.beta: Fraction(1)}
    exact = t2.STEP_DECREASE.subs(
        {s: sp.Rational(v.numerator, v.denominator) for s, v in point.items()}
    )
    assert _evaluate_z3(mutant, point) != Fraction(int(exact.p), int(exact.q))


def test_division_needs_a_nonzero_denominator() -> None:
    goal = formula(sp.Ge(x / y, 0))
    assert prove(goal, [real("x") >= 0, real("y") > 0], BUDGET).status is Status.PROVED


@pytest.mark.negative_control
def test_division_by_a_possibly_zero_denominator_is_not_proved() -> None:
    goal = formula(sp.Ge(x / y, 0))
    outcome = prove(goal, [real("x") >= 0, real("y") >= 0], BUDGET)
    assert outcome.status is Status.FAILED
    assert "y=0" in outcome.counterexample


def test_square_root_and_ceiling() -> None:
    assert prove(formula(sp.Ge(sp.sqrt(x**2), x)), [], BUDGET).status is Status.PROVED
    assert prove(formula(sp.Ge(sp.ceiling(x), x)), [], BUDGET).status is Status.PROVED
    assert prove(formula(sp.Lt(sp.ceiling(x) - 1, x)), [], BUDGET).status is Status.PROVED


@pytest.mark.negative_control
def test_square_root_of_a_negative_number_is_not_assumed() -> None:
    outcome = prove(formula(sp.Ge(sp.sqrt(x), 0)), [], BUDGET)
    assert outcome.status is Status.FAILED  # sqrt(x) is undefined for x < 0


def test_unsupported_functions_are_refused() -> None:
    with pytest.raises(TranslationError):
        term(sp.exp(x))
    with pytest.raises(TranslationError):
        term(x**y)


@pytest.mark.negative_control
def test_inconsistent_hypotheses_never_prove() -> None:
    outcome = prove(real("x") > 5, [real("x") > 1, real("x") < 0], BUDGET)
    assert outcome.status is Status.FAILED
    assert "vacuous" in outcome.detail


def test_identity_proved_and_refuted() -> None:
    assert prove_identity((x + y) ** 2, x**2 + 2 * x * y + y**2).status is Status.PROVED
    wrong = prove_identity((x + y) ** 2, x**2 + y**2)
    assert wrong.status is Status.FAILED and wrong.counterexample


def test_probe_claim_finds_exact_counterexamples_but_never_proves() -> None:
    points = [{x: sp.Rational(1, 2)}, {x: sp.Integer(3)}]
    assert probe_claim(sp.Le(x, 1), points).status is Status.FAILED
    assert probe_claim(sp.Le(x, 10), points).status is Status.UNKNOWN


def _geometric(power_factor: int) -> Induction:
    """S_n = Σ_{i<n} q^i with the claim S_n (1 − q) = 1 − q^k · q^n (k = 0 is right)."""
    q, s, s1, p, p1 = (z3.Real(v) for v in ("q", "S", "S1", "P", "P1"))
    factor = q if power_factor == 1 else z3.RealVal(1)
    return Induction(
        "geometric",
        "S_n (1 - q) = 1 - q^n",
        invariant=lambda st: st["S"] * (1 - q) == 1 - factor * st["P"],
        initial={"S": z3.RealVal(0), "P": z3.RealVal(1)},
        current={"S": s, "P": p},
        successor={"S": s1, "P": p1},
        given=[q >= 0, q < 1],
        transition=[s1 == s + p, p1 == q * p],
    )


def test_induction_proves_the_geometric_sum() -> None:
    base, step = _geometric(0).obligations()
    assert base.run(BUDGET).status is Status.PROVED
    assert step.run(BUDGET).status is Status.PROVED


@pytest.mark.negative_control
def test_induction_refutes_a_wrong_closed_form() -> None:
    base, step = _geometric(1).obligations()
    assert base.run(BUDGET).status is Status.FAILED
    refuted = step.run(BUDGET)
    assert refuted.status is Status.FAILED and refuted.counterexample
