"""Translate theory's sympy statements into z3 real arithmetic.

This is what ties a proof to theory's statement: a proof module translates
``THEOREM.conclusion`` / ``THEOREM.bound`` / the parameter assumptions instead of retyping
them, so a change in theory changes what is proved.

Supported: symbols (one z3 ``Real`` per name), exact numbers (floats become the exact binary
rational they denote), ``+``, ``*``, integer powers, square roots, ``Abs``, ``Max``, ``Min``,
``ceiling``, ``floor``, ``Piecewise``, relations and boolean connectives. Everything else
(``exp``, ``log``, powers with a symbolic exponent) must be replaced by the caller with a
symbol first (e.g. ``(1 - eta*mu)**t`` by ``q_t``) and the replacement's properties stated as
facts; an unsupported node raises ``TranslationError`` rather than being guessed.

Partial operations are handled soundly:

* ``sqrt(a)`` becomes a fresh ``r`` with the *definition* ``a >= 0 ⇒ (r >= 0 ∧ r² = a)``;
* ``x / y`` is z3's total division (unspecified at ``y = 0``);
* ``ceiling(x)`` becomes a fresh integer ``n`` with ``n - 1 < x ≤ n`` (always defined).

Each translation records *domain conditions* (``a >= 0`` under a root, ``y ≠ 0`` under a
division). ``proofs.solver.prove`` adds the goal's domain conditions to what it must prove, so
a goal is never established through an undefined value; in a hypothesis an undefined value
only weakens the hypothesis, which is sound.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

import sympy as sp
import z3


class TranslationError(ValueError):
    """A sympy node the translator does not support (replace it by a symbol first)."""


@dataclass
class Translation:
    """A translated term or formula with the definitions and domain conditions it needs.

    ``label`` names the fact when it is a *premise* of a proof (a theory hypothesis, an axiom
    instance): the necessity audit drops labelled premises one at a time. Parameter
    assumptions (η > 0, ...) are labelled but not ``audited``: the audit is about the
    hypotheses and axioms a proof rests on.
    """

    value: z3.ExprRef
    definitions: list[z3.BoolRef] = field(default_factory=list)
    domain: list[z3.BoolRef] = field(default_factory=list)
    label: str = ""
    audited: bool = True


_fresh = itertools.count()


def real(name: str) -> z3.ArithRef:
    """The z3 real variable for a sympy symbol named ``name``."""
    return z3.Real(name)


def number(value: sp.Basic | int | float) -> z3.ArithRef:
    """An exact z3 rational for a sympy or Python number (a float is the binary rational it is)."""
    if isinstance(value, float | sp.Float):
        rational = sp.Rational(float(value))
    else:
        rational = sp.Rational(value)
    return z3.RealVal(f"{rational.p}/{rational.q}")


class Translator:
    """Translate sympy expressions over named real symbols into z3.

    ``env`` maps symbol names to z3 terms that stand for them (e.g. ``{"L_t": L_next,
    "t": n + 1}`` to read a conclusion at the next step); other symbols become z3 reals of
    the same name.
    """

    def __init__(self, env: Mapping[str, z3.ArithRef] | None = None) -> None:
        self._env = dict(env or {})
        self._definitions: list[z3.BoolRef] = []
        self._domain: list[z3.BoolRef] = []

    # ------------------------------------------------------------------ public
    def term(self, expr: sp.Basic) -> Translation:
        """Translate an arithmetic expression."""
        self._definitions, self._domain = [], []
        value = self._term(sp.sympify(expr))
        return Translation(value, self._definitions, self._domain)

    def formula(self, expr: sp.Basic) -> Translation:
        """Translate a relation or boolean combination of relations."""
        self._definitions, self._domain = [], []
        value = self._formula(sp.sympify(expr))
        return Translation(value, self._definitions, self._domain)

    # ------------------------------------------------------------------ internals
    def _term(self, e: sp.Basic) -> z3.ArithRef:
        if isinstance(e, sp.Symbol):
            return self._env.get(e.name, real(e.name))
        if e.is_Number:
            if not e.is_finite:
                raise TranslationError(f"infinite number {e}")
            return number(e)
        if isinstance(e, sp.NumberSymbol):
            raise TranslationError(f"irrational constant {e}: replace it by a symbol")
        if isinstance(e, sp.Add):
            return z3.Sum([self._term(a) for a in e.args])
        if isinstance(e, sp.Mul):
            return self._mul(e)
        if isinstance(e, sp.Pow):
            return self._pow(e)
        if isinstance(e, sp.Abs):
            x = self._term(e.args[0])
            return z3.If(x >= 0, x, -x)
        if isinstance(e, sp.Max | sp.Min):
            return self._extremum(e)
        if isinstance(e, sp.ceiling | sp.floor):
            return self._integer_part(e)
        if isinstance(e, sp.Piecewise):
            return self._piecewise(e)
        raise TranslationError(f"unsupported term {type(e).__name__}: {sp.sstr(e)}")

    def _mul(self, e: sp.Mul) -> z3.ArithRef:
        numerator: list[z3.ArithRef] = []
        denominator: list[z3.ArithRef] = []
        for factor in e.args:
            if isinstance(factor, sp.Pow) and factor.exp.is_Integer and factor.exp < 0:
                denominator.append(self._term(sp.Pow(factor.base, -factor.exp)))
            else:
                numerator.append(self._term(factor))
        top = _product(numerator)
        if not denominator:
            return top
        bottom = _product(denominator)
        self._domain.append(bottom != 0)
        return top / bottom

    def _pow(self, e: sp.Pow) -> z3.ArithRef:
        base, exp = e.base, e.exp
        if exp.is_Integer:
            n = int(exp)
            if n == 0:
                return z3.RealVal(1)
            power = _product([self._term(base)] * abs(n))
            if n > 0:
                return power
            self._domain.append(power != 0)
            return 1 / power
        if exp.is_Rational and exp.q == 2:
            root = self._sqrt(self._term(base))
            return self._term_power(root, int(exp.p))
        raise TranslationError(f"power with exponent {exp}: replace {sp.sstr(e)} by a symbol")

    def _term_power(self, x: z3.ArithRef, n: int) -> z3.ArithRef:
        if n == 0:
            return z3.RealVal(1)
        power = _product([x] * abs(n))
        if n > 0:
            return power
        self._domain.append(power != 0)
        return 1 / power

    def _sqrt(self, radicand: z3.ArithRef) -> z3.ArithRef:
        root = z3.Real(f"sqrt!{next(_fresh)}")
        self._definitions.append(
            z3.Implies(radicand >= 0, z3.And(root >= 0, root * root == radicand))
        )
        self._domain.append(radicand >= 0)
        return root

    def _extremum(self, e: sp.Basic) -> z3.ArithRef:
        values = [self._term(a) for a in e.args]
        result = values[0]
        for v in values[1:]:
            if isinstance(e, sp.Max):
                result = z3.If(result >= v, result, v)
            else:
                result = z3.If(result <= v, result, v)
        return result

    def _integer_part(self, e: sp.Basic) -> z3.ArithRef:
        x = self._term(e.args[0])
        n = z3.ToReal(z3.Int(f"{type(e).__name__}!{next(_fresh)}"))
        if isinstance(e, sp.ceiling):
            self._definitions.append(z3.And(n - 1 < x, x <= n))
        else:
            self._definitions.append(z3.And(n <= x, x < n + 1))
        return n

    def _piecewise(self, e: sp.Piecewise) -> z3.ArithRef:
        pieces = list(e.args)
        *guarded, (last_value, last_cond) = pieces
        result = self._term(last_value)
        if last_cond is not sp.true:
            self._domain.append(self._formula(sp.Or(*(c for _, c in pieces))))
        for value, cond in reversed(guarded):
            result = z3.If(self._formula(cond), self._term(value), result)
        return result

    def _formula(self, e: sp.Basic) -> z3.BoolRef:
        if e is sp.true:
            return z3.BoolVal(True)
        if e is sp.false:
            return z3.BoolVal(False)
        if isinstance(e, sp.Rel):
            lhs, rhs = self._term(e.lhs), self._term(e.rhs)
            relations = {
                sp.Ge: lambda a, b: a >= b,
                sp.Gt: lambda a, b: a > b,
                sp.Le: lambda a, b: a <= b,
                sp.Lt: lambda a, b: a < b,
                sp.Eq: lambda a, b: a == b,
                sp.Ne: lambda a, b: a != b,
            }
            for cls, make in relations.items():
                if isinstance(e, cls):
                    return make(lhs, rhs)  # type: ignore[no-untyped-call]
        if isinstance(e, sp.And):
            return z3.And(*(self._formula(a) for a in e.args))
        if isinstance(e, sp.Or):
            return z3.Or(*(self._formula(a) for a in e.args))
        if isinstance(e, sp.Not):
            return z3.Not(self._formula(e.args[0]))
        if isinstance(e, sp.Implies):
            return z3.Implies(self._formula(e.args[0]), self._formula(e.args[1]))
        raise TranslationError(f"unsupported formula {type(e).__name__}: {sp.sstr(e)}")


def _product(factors: list[z3.ArithRef]) -> z3.ArithRef:
    if not factors:
        return z3.RealVal(1)
    result = factors[0]
    for f in factors[1:]:
        result = result * f
    return result


def term(expr: sp.Basic, env: Mapping[str, z3.ArithRef] | None = None) -> Translation:
    """Translate an arithmetic sympy expression (see ``Translator``)."""
    return Translator(env).term(expr)


def formula(expr: sp.Basic, env: Mapping[str, z3.ArithRef] | None = None) -> Translation:
    """Translate a sympy relation or boolean formula (see ``Translator``)."""
    return Translator(env).formula(expr)


def symbol_assumptions(expr: sp.Basic) -> list[z3.BoolRef]:
    """The sign assumptions sympy symbols of ``expr`` carry, as z3 facts.

    ``Symbol("beta", nonnegative=True)`` yields ``beta >= 0``: part of theory's statement.
    Integrality is not translated (proving a claim for all reals is stronger, hence sound).
    """
    facts: list[z3.BoolRef] = []
    for s in sorted(expr.free_symbols, key=lambda s: s.name):  # type: ignore[attr-defined]
        x = real(s.name)
        if s.is_positive:
            facts.append(x > 0)
        elif s.is_nonnegative:
            facts.append(x >= 0)
        elif s.is_negative:
            facts.append(x < 0)
        elif s.is_nonpositive:
            facts.append(x <= 0)
    return facts
