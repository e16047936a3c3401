"""Discharge a claim with z3 (nonlinear real arithmetic) or sympy (algebraic identities).

``prove(goal, hypotheses)`` asks z3 whether ``hypotheses ∧ ¬goal`` is satisfiable:

* ``unsat``: no real numbers satisfy the hypotheses and break the goal: **proved**;
* ``sat``: the model is a counterexample: **failed**, with the assignment shown;
* ``unknown`` (the per-obligation timeout, or an incomplete tactic): **unknown**.

Before that, the hypotheses alone are checked to be satisfiable: inconsistent hypotheses
would prove anything (a vacuous proof), so they make the obligation fail.

A hypothesis may be a labelled ``Translation`` (a *premise*: a theory assumption, an axiom
instance; ``premise(name, ...)``): ``prove(..., drop=...)`` leaves the named premises out,
which is how the necessity audit asks whether a proof really needs each of them.

``prove_identity(lhs, rhs)`` asks sympy to simplify ``lhs - rhs`` to 0 (**proved**); when it
does not, it looks for an exact rational point where the two sides differ (the
counterexample). A sympy failure to simplify a true identity therefore shows up as a failure,
never as a false "proved".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

import sympy as sp
import z3

from proofs.obligation import Budget, Kind, Obligation, Outcome, Status
from proofs.translate import Translation

Fact: TypeAlias = z3.BoolRef | Translation


def _split(facts: Iterable[Fact]) -> tuple[list[z3.BoolRef], list[z3.BoolRef]]:
    """(formulas with their definitions, domain conditions) of a list of facts."""
    formulas: list[z3.BoolRef] = []
    domain: list[z3.BoolRef] = []
    for fact in facts:
        if isinstance(fact, Translation):
            formulas.append(fact.value)
            formulas.extend(fact.definitions)
            domain.extend(fact.domain)
        else:
            formulas.append(fact)
    return formulas, domain


def premise(name: str, *facts: Fact) -> Translation:
    """The conjunction of ``facts`` as one premise labelled ``name`` (an axiom instance, a
    hypothesis): what the necessity audit drops as a unit."""
    formulas, domain = _split(facts)
    return Translation(z3.And(*formulas), [], domain, label=name)


def premise_names(hypotheses: Sequence[Fact]) -> tuple[str, ...]:
    """The labels of the audited premises among ``hypotheses``, in order, once each."""
    names: list[str] = []
    for fact in hypotheses:
        if (
            isinstance(fact, Translation)
            and fact.label
            and fact.audited
            and fact.label not in names
        ):
            names.append(fact.label)
    return tuple(names)


def without(hypotheses: Sequence[Fact], dropped: frozenset[str]) -> list[Fact]:
    """``hypotheses`` minus the premises whose label is in ``dropped``."""
    return [h for h in hypotheses if not (isinstance(h, Translation) and h.label in dropped)]


def prove(
    goal: Fact, hypotheses: Sequence[Fact], budget: Budget, drop: frozenset[str] = frozenset()
) -> Outcome:
    """Prove ``hypotheses ⇒ goal`` over the reals with z3 (see module docstring), leaving
    out the premises named in ``drop``."""
    hyps, _ = _split(without(hypotheses, drop))
    (goal_formula, *goal_definitions), goal_domain = _split([goal])
    timeout_ms = max(1, int(budget.timeout_s * 1000))

    consistency = z3.Solver()
    consistency.set("timeout", timeout_ms)
    consistency.add(*hyps, *goal_definitions)
    answer = consistency.check()
    if answer == z3.unsat:
        return Outcome(Status.FAILED, "hypotheses are inconsistent: the proof would be vacuous")
    if answer == z3.unknown:
        return Outcome(Status.UNKNOWN, f"consistency of hypotheses: {consistency.reason_unknown()}")

    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(*hyps, *goal_definitions)
    solver.add(z3.Not(z3.And(*goal_domain, goal_formula)))
    answer = solver.check()
    if answer == z3.unsat:
        return Outcome(Status.PROVED, "z3: negation unsatisfiable")
    if answer == z3.sat:
        return Outcome(Status.FAILED, "z3: counterexample", show_model(solver.model()))
    return Outcome(Status.UNKNOWN, f"z3: {solver.reason_unknown()}")


def show_model(model: z3.ModelRef) -> str:
    """A readable assignment of the model's user variables (internal ones contain '!')."""
    parts = []
    for decl in sorted(model.decls(), key=lambda d: d.name()):
        if "!" in decl.name() or decl.arity() > 0:
            continue
        parts.append(f"{decl.name()}={show_value(model[decl])}")
    return ", ".join(parts)


def show_value(value: z3.ExprRef) -> str:
    """An exact rational when it is short, else a decimal approximation."""
    if z3.is_rational_value(value):
        text = str(value.as_fraction())  # type: ignore[attr-defined]
        if len(text) <= 12:
            return text
        return str(value.as_decimal(6)).rstrip("?")  # type: ignore[attr-defined]
    if z3.is_algebraic_value(value):
        return str(value.approx(6).as_decimal(6)).rstrip("?")  # type: ignore[attr-defined]
    return str(value)


#: the rational values tried, per symbol, when looking for a counterexample to an identity
PROBE_VALUES: tuple[sp.Rational, ...] = tuple(
    sp.Rational(v) for v in ("1/3", "1/2", "2", "3", "1/7", "5", "2/3", "7/4")
)
#: the values tried for symbols sympy knows to be integers
INTEGER_PROBES: tuple[sp.Rational, ...] = tuple(sp.Integer(v) for v in (1, 2, 3, 0, 5, 4))


def _probes_for(symbol: sp.Symbol) -> tuple[sp.Rational, ...]:
    if symbol.is_integer:
        return tuple(v for v in INTEGER_PROBES if symbol.is_nonnegative is not True or v >= 0)
    return PROBE_VALUES


def prove_identity(
    lhs: sp.Expr,
    rhs: sp.Expr,
    *,
    valid: sp.Basic = sp.true,
    probes: Mapping[sp.Symbol, Sequence[sp.Rational]] | None = None,
) -> Outcome:
    """Prove ``lhs == rhs`` for every value of the free symbols where ``valid`` holds.

    ``valid`` is the domain of the identity (a sympy condition, e.g. ``0 < gamma``); it is
    used only to choose the probe points of a counterexample.
    """
    difference = sp.simplify(sp.expand(lhs - rhs))
    if difference == 0:
        return Outcome(Status.PROVED, "sympy: lhs - rhs simplifies to 0")
    point = _differing_point(lhs - rhs, valid, probes or {})
    if point is None:
        return Outcome(Status.FAILED, f"sympy could not simplify lhs - rhs = {sp.sstr(difference)}")
    shown = ", ".join(f"{k}={v}" for k, v in sorted(point.items(), key=lambda kv: kv[0].name))
    return Outcome(Status.FAILED, "sympy: sides differ at an exact point", shown)


def probe_claim(
    claim: sp.Basic, points: Sequence[Mapping[sp.Symbol, sp.Expr]], *, valid: sp.Basic = sp.true
) -> Outcome:
    """Evaluate ``claim`` exactly at each point where ``valid`` holds; a point where it is
    false is a genuine counterexample. Finding none proves nothing: the answer is then
    ``unknown``. Used by negative controls whose refutation needs transcendental functions
    (``log``) that z3 only knows through axioms.
    """
    tried = 0
    for point in points:
        if sp.simplify(valid.subs(point)) is not sp.true:
            continue
        tried += 1
        value = claim.subs(point)
        if value is not sp.true and value is not sp.false:
            value = sp.simplify(value)
        if value is sp.false:
            shown = ", ".join(
                f"{k}={v}" for k, v in sorted(point.items(), key=lambda kv: str(kv[0]))
            )
            return Outcome(Status.FAILED, "sympy: claim false at an exact point", shown)
        if value is not sp.true:
            return Outcome(Status.UNKNOWN, f"sympy could not decide the claim at {dict(point)}")
    return Outcome(Status.UNKNOWN, f"no counterexample among {tried} probe points (not a proof)")


def prove_expression_identity(lhs: sp.Basic, rhs: sp.Basic) -> Outcome:
    """``prove_identity`` for scalars; for matrix expressions, sympy's matrix algebra must
    reduce ``lhs - rhs`` to the zero matrix (no counterexample search for matrices)."""
    if not isinstance(lhs, sp.MatrixExpr) and not isinstance(rhs, sp.MatrixExpr):
        return prove_identity(sp.sympify(lhs), sp.sympify(rhs))
    difference = sp.simplify(sp.expand((lhs - rhs).doit()))
    if difference == 0 or isinstance(difference, sp.ZeroMatrix):
        return Outcome(Status.PROVED, "sympy: lhs - rhs reduces to the zero matrix")
    return Outcome(Status.FAILED, f"sympy could not reduce lhs - rhs = {sp.sstr(difference)}")


def _differing_point(
    difference: sp.Expr, valid: sp.Basic, probes: Mapping[sp.Symbol, Sequence[sp.Rational]]
) -> dict[sp.Symbol, sp.Rational] | None:
    symbols = sorted(difference.free_symbols | valid.free_symbols, key=lambda s: s.name)
    choices = [tuple(probes.get(s) or _probes_for(s)) for s in symbols]
    for point_values in itertools.islice(itertools.product(*choices), 400):
        point = dict(zip(symbols, point_values, strict=True))
        if valid.subs(point) is not sp.true:
            continue
        value = sp.simplify(difference.subs(point))
        if value.is_number and value.is_finite and value.is_zero is False:
            return point
    return None


# ---------------------------------------------------------------------- obligation builders
def z3_obligation(
    name: str,
    statement: str,
    goal: Fact,
    hypotheses: Sequence[Fact],
    *,
    uses: tuple[str, ...] = (),
    kind: Kind = "obligation",
) -> Obligation:
    """An obligation (or control) discharged by ``prove(goal, hypotheses)``."""

    def discharge(budget: Budget) -> Outcome:
        return prove(goal, hypotheses, budget)

    def attempt_without(dropped: frozenset[str], budget: Budget) -> Outcome:
        return prove(goal, hypotheses, budget, dropped)

    return Obligation(
        name,
        statement,
        "z3",
        discharge,
        kind,
        uses,
        premise_names(hypotheses),
        attempt_without,
    )


def identity_obligation(
    name: str,
    statement: str,
    lhs: sp.Expr,
    rhs: sp.Expr,
    *,
    valid: sp.Basic = sp.true,
    uses: tuple[str, ...] = (),
    kind: Kind = "obligation",
) -> Obligation:
    """An obligation (or control) discharged by ``prove_identity(lhs, rhs, valid=valid)``."""

    def discharge(budget: Budget) -> Outcome:
        return prove_identity(lhs, rhs, valid=valid)

    return Obligation(name, statement, "sympy", discharge, kind, uses)
