"""The ``Theorem`` object: named assumptions, a symbolic conclusion, and its numeric evaluation.

A theorem of the catalogue is stated once, symbolically (sympy), and every number the toolkit
derives from it (a certified bound, a number of steps) comes from that statement by
substitution or by ``sympy.solve``, never from a second hand-typed formula.

Each theorem has

* ``label`` ("T2") and ``name`` ("clipped_sgd_progress"), the key of its proof module
  ``proofs/theorems/<name>.py``;
* ``assumptions``: named sympy relations. *Parameter* assumptions (``eta > 0``,
  ``eta <= 1/beta``) are checked on every numeric evaluation and a violation raises
  ``AssumptionError`` naming it; *hypotheses* (``L`` is beta-smooth, ``||grad L|| <= G``) are
  properties of the loss that numbers cannot check here; estimators measure them and proofs/
  takes them as axioms;
* ``conclusion``: a sympy relation, e.g. ``L_t >= L_0 - t*(G*eta*C + beta*eta**2*C**2/2)``;
* ``bound``: the side of the conclusion that the toolkit evaluates (the certified quantity);
* ``source``: where the statement comes from.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import sympy as sp

from theory.errors import AssumptionError

AssumptionKind = Literal["parameter", "hypothesis"]
StepsKind = Literal["minimum", "maximum", "exact"]

_Value = TypeVar("_Value")


class Derived(Generic[_Value]):
    """A dataclass field of a theorem derived from the instance on first read, then kept.

    Written ``bound: sp.Expr = field(default=derived(fn))``: a data descriptor as the field's
    default (dataclasses' descriptor-typed fields). ``__init__`` passes the default, the
    descriptor itself, to ``__set__``, which leaves the field to be derived; a value given to
    ``__init__`` (``dataclasses.replace``, a test's mutant) is kept as given. So a
    ``sympy.solve`` that only some callers read runs once, for them, not on import:
    ``hfta bounds`` lists the catalogue without solving T8's Hoeffding equations. ``repr``,
    ``==`` and ``hash`` read every field, so they derive it.
    """

    def __init__(self, derive: Callable[[Any], _Value]) -> None:
        self._derive = derive
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name  # forwarded by ``dataclasses.Field.__set_name__``

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        cache = instance.__dict__
        if self._name not in cache:
            cache[self._name] = self._derive(instance)
        return cache[self._name]

    def __set__(self, instance: object, value: object) -> None:
        if value is not self:  # the default: derive on first read
            instance.__dict__[self._name] = value


def derived(derive: Callable[[Any], Any]) -> Any:
    """The default of a field computed as ``derive(self)`` on first read (``Derived``); typed
    ``Any`` so that the field's annotation states its type."""
    return Derived(derive)


@dataclass(frozen=True)
class Assumption:
    """One named assumption of a theorem.

    ``statement`` is a sympy relation (or boolean). For ``kind="parameter"`` all its free
    symbols are numeric inputs, and ``Theorem.check_assumptions`` evaluates it.
    """

    name: str
    statement: sp.Basic
    description: str
    kind: AssumptionKind = "parameter"

    def latex(self) -> str:
        return str(sp.latex(self.statement))


@dataclass(frozen=True)
class Theorem:
    """Base class of every catalogued theorem (see module docstring).

    Subclasses set the class variables and build ``assumptions``, ``conclusion`` and ``bound``
    in ``__post_init__`` or as fields; they may add named solvers (``steps_to_threshold``).
    """

    label: ClassVar[str]
    name: ClassVar[str]
    title: ClassVar[str]
    source: ClassVar[str]
    #: what ``steps_to_threshold`` certifies: "minimum" (the attacker needs at least that many
    #: steps: a resistance certificate), "maximum" (it succeeds within that many: a
    #: vulnerability or trainability certificate), "exact", or None (no solver).
    steps_kind: ClassVar[StepsKind | None] = None
    #: the symbol (a name in ``theory.symbols``) that ``steps_solution`` solves ``bound = tau``
    #: for; None: no closed-form steps solver
    steps_symbol: ClassVar[str | None] = None
    #: whether ``steps_solution`` is simplified (the form the proofs of T2 and T9 read)
    simplify_steps: ClassVar[bool] = False

    assumptions: tuple[Assumption, ...] = field(default=())
    conclusion: sp.Basic = field(default=sp.true)
    bound: sp.Expr = field(default=sp.Integer(0))

    # ----------------------------------------------------------------- rendering
    def latex(self) -> str:
        """``assumptions ⟹ conclusion`` as one LaTeX string."""
        hyps = r",\; ".join(a.latex() for a in self.assumptions)
        return rf"{hyps} \;\Longrightarrow\; {sp.latex(self.conclusion)}"

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary (used by ``hfta bounds`` and reports)."""
        return {
            "label": self.label,
            "name": self.name,
            "title": self.title,
            "source": self.source,
            "assumptions": [
                {"name": a.name, "kind": a.kind, "latex": a.latex(), "description": a.description}
                for a in self.assumptions
            ],
            "conclusion": sp.latex(self.conclusion),
            "bound": sp.latex(self.bound),
        }

    @property
    def parameter_assumptions(self) -> tuple[Assumption, ...]:
        """The assumptions checked on numbers (``kind == "parameter"``)."""
        return tuple(a for a in self.assumptions if a.kind == "parameter")

    @property
    def hypotheses(self) -> tuple[Assumption, ...]:
        """The properties of the loss taken as given (``kind == "hypothesis"``)."""
        return tuple(a for a in self.assumptions if a.kind == "hypothesis")

    def assumption(self, name: str) -> Assumption:
        """The assumption called ``name`` (``KeyError`` if there is none)."""
        for a in self.assumptions:
            if a.name == name:
                return a
        raise KeyError(f"{self.label} has no assumption '{name}'")

    # ----------------------------------------------------------------- numerics
    @property
    def parameters(self) -> tuple[sp.Symbol, ...]:
        """The free symbols of ``bound``, sorted by name: the inputs of ``evaluate``."""
        return tuple(sorted(self.bound.free_symbols, key=lambda s: s.name))  # type: ignore[attr-defined]

    def check_assumptions(self, **values: float) -> None:
        """Raise ``AssumptionError`` for the first parameter assumption that ``values`` break.

        Assumptions mentioning a symbol absent from ``values`` are skipped; values that are
        NaN or infinite are rejected outright (a silent NaN is never a bound).
        """
        check_parameter_assumptions(self.label, self.assumptions, values)

    def evaluate(self, **values: float) -> float:
        """The numeric value of ``bound`` after checking the parameter assumptions."""
        return self.evaluate_expression(self.bound, **values)

    def evaluate_expression(self, expr: sp.Expr, **values: float) -> float:
        """The numeric value of ``expr`` (one of this theorem's expressions: ``bound``, the
        other side of the conclusion, a derived quantity) after checking the parameter
        assumptions; missing inputs and a non-finite result raise ``AssumptionError``."""
        self.check_assumptions(**values)
        args = tuple(sorted(expr.free_symbols, key=lambda s: s.name))
        missing = [s.name for s in args if s.name not in values]
        if missing:
            raise AssumptionError(self.label, "inputs_given", f"missing values for {missing}")
        fn = _lambdified(expr, args)
        try:
            result = float(fn(*(values[s.name] for s in args)))
        except (ZeroDivisionError, ValueError, OverflowError) as exc:
            raise AssumptionError(self.label, "finite_bound", f"cannot evaluate: {exc}") from None
        if not math.isfinite(result):
            raise AssumptionError(self.label, "finite_bound", f"bound evaluates to {result}")
        return result

    def holds(self, **values: float) -> bool:
        """Evaluate ``conclusion`` on numbers (the measured and the assumed ones)."""
        self.check_assumptions(**values)
        return bool(self.conclusion.subs(_by_name(self.conclusion, values)))

    def require_inputs(
        self, values: Mapping[str, float], names: tuple[str, ...]
    ) -> dict[str, float]:
        """The entries ``names`` of ``values`` (others dropped); ``AssumptionError``
        (``inputs_given``) lists the missing ones."""
        missing = [name for name in names if name not in values]
        if missing:
            raise AssumptionError(self.label, "inputs_given", f"missing values for {missing}")
        return {name: values[name] for name in names}

    @cached_property
    def steps_solution(self) -> sp.Expr:
        """The real root of ``bound = tau`` in ``steps_symbol``, by ``sympy.solve`` on the
        conclusion's bound: the one steps solver every theorem with a closed form shares
        (derived, never typed a second time)."""
        from theory import symbols as sym

        if self.steps_symbol is None:
            raise AssumptionError(
                self.label, "has_steps_solver", f"{self.name} has no closed-form steps solver"
            )
        unknown = getattr(sym, self.steps_symbol)
        roots = sp.solve(sp.Eq(self.bound, sym.tau), unknown, **FAST_SOLVE)
        if len(roots) != 1:
            raise RuntimeError(
                f"{self.label}: expected one root in {self.steps_symbol}, got {roots}"
            )
        root: sp.Expr = roots[0]
        return sp.simplify(root) if self.simplify_steps else root

    def solved_steps(
        self, threshold: float, inputs: Mapping[str, float], *, first_step: int = 0
    ) -> float:
        """``steps_solution`` at these numbers, made exact: the first integer step, at least
        ``first_step`` (a bound stated for t ≥ 1 starts there), whose bound is at most
        ``threshold`` (``first_step_at_or_below``, started at the real root)."""
        solution = self.steps_solution
        args = tuple(sorted(solution.free_symbols, key=lambda s: s.name))
        values = {**inputs, "tau": threshold}
        estimate = float(lambdified(solution, args)(*(values[a.name] for a in args)))
        found = first_step_at_or_below(
            lambda t: self.evaluate(t=max(t, first_step), **inputs),
            threshold,
            max(estimate, float(first_step)),
        )
        return max(found, float(first_step))

    def steps_to_threshold(self, threshold: float, **values: float) -> float:
        """Steps for the loss to reach ``threshold`` as certified by this theorem.

        Returns an integer-valued float, or ``math.inf`` when the theorem certifies the
        threshold is never reached. Theorems without a solver raise ``AssumptionError``.
        """
        raise AssumptionError(self.label, "has_steps_solver", f"{self.name} has no steps solver")


def check_parameter_assumptions(
    owner: str, assumptions: tuple[Assumption, ...], values: Mapping[str, float]
) -> None:
    """Raise ``AssumptionError`` (owner ``owner``) for the first parameter assumption in
    ``assumptions`` that ``values`` break; see ``Theorem.check_assumptions``.

    Usable outside a ``Theorem`` (e.g. by ``theory.optimizers`` for the Adam parameters).
    """
    for key, value in values.items():
        if isinstance(value, numbers.Real) and not math.isfinite(float(value)):
            raise AssumptionError(owner, f"{key}_finite", f"{key} = {value}")
    for a in assumptions:
        if a.kind != "parameter":
            continue
        names = {s.name for s in a.statement.free_symbols}
        if not names <= values.keys():
            continue
        if not _assumption_holds(a.statement, values):
            shown = ", ".join(f"{n} = {values[n]:g}" for n in sorted(names))
            detail = f"{sp.sstr(a.statement)} fails at {shown}"
            raise AssumptionError(owner, a.name, detail)


#: ``sympy.solve`` options for the closed-form steps solvers: no simplification of the roots
#: (``simplify_steps`` asks for it where wanted), no substitution check (the one root is then
#: required, and ``solved_steps`` re-evaluates the bound itself at the integer steps it
#: returns), floats kept as floats. The roots equal the checked default's (tests/theory);
#: ``hfta bounds`` answers about 1 s sooner.
FAST_SOLVE: dict[str, bool] = {"simplify": False, "check": False, "rational": False}


_CHECK_CACHE: dict[sp.Basic, tuple[tuple[str, ...], Callable[..., Any]]] = {}


def _assumption_holds(statement: sp.Basic, values: Mapping[str, float]) -> bool:
    """Truth of a parameter assumption at ``values``: compiled once with ``lambdify`` (fast,
    called on every evaluation), falling back to exact ``subs`` where the compiled form
    cannot decide (a division by zero, an unusual value type)."""
    compiled = _CHECK_CACHE.get(statement)
    if compiled is None:
        symbols = tuple(sorted(statement.free_symbols, key=lambda s: s.name))
        compiled = (tuple(s.name for s in symbols), sp.lambdify(symbols, statement, "math"))
        _CHECK_CACHE[statement] = compiled
    names, fn = compiled
    try:
        result = fn(*(values[n] for n in names))
        if isinstance(result, bool | np.bool_):
            return bool(result)
    except (ArithmeticError, TypeError, ValueError):
        pass
    truth = statement.subs(_by_name(statement, values))
    return truth is sp.true or bool(truth)


def first_step_at_or_below(
    bound_at: Callable[[int], float], threshold: float, estimate: float, *, max_moves: int = 8
) -> float:
    """The smallest integer ``t >= 0`` with ``bound_at(t) <= threshold``, near ``estimate``.

    For a bound non-increasing in ``t``, ``estimate`` is the real root of
    ``bound(t) = threshold`` (from ``sympy.solve`` on a theorem's conclusion) and its ceiling
    is the answer in exact arithmetic. Rounding in the closed form can move the ceiling by one
    step either way, which for a certificate is the difference between sound and unsound, so
    the ceiling is corrected by evaluating the bound itself at neighbouring integers (at most
    ``max_moves`` moves; beyond 2**52 steps integers are not exact floats and the ceiling is
    returned as is). ``math.inf`` in, ``math.inf`` out.
    """
    if math.isnan(estimate):
        raise AssumptionError("steps", "finite_estimate", "the steps solver returned NaN")
    if estimate == math.inf:
        return math.inf
    step = max(0, math.ceil(estimate))
    if step > 2**52:
        return float(step)
    for _ in range(max_moves):
        if step > 0 and bound_at(step - 1) <= threshold:
            step -= 1
        elif bound_at(step) > threshold:
            step += 1
        else:
            break
    return float(step)


_LAMBDA_CACHE: dict[tuple[sp.Expr, tuple[sp.Symbol, ...], str], Callable[..., Any]] = {}


def lambdified(
    expr: sp.Expr, args: tuple[sp.Symbol, ...], modules: str = "math"
) -> Callable[..., Any]:
    """``sympy.lambdify(args, expr, modules)``, compiled once per (expr, args, modules).

    ``modules="math"`` for scalars (used by ``evaluate``), ``"numpy"`` for arrays (the
    theorems' envelopes over a learning-rate schedule).
    """
    key = (expr, args, modules)
    fn = _LAMBDA_CACHE.get(key)
    if fn is None:
        fn = sp.lambdify(args, expr, modules=modules)
        _LAMBDA_CACHE[key] = fn
    return fn


def _lambdified(expr: sp.Expr, args: tuple[sp.Symbol, ...]) -> Callable[..., Any]:
    return lambdified(expr, args, "math")


def _by_name(expr: sp.Basic, values: Mapping[str, float]) -> dict[sp.Basic, float]:
    """Substitution map from the free symbols of ``expr`` to the values given by name."""
    return {s: values[s.name] for s in expr.free_symbols if s.name in values}  # type: ignore[attr-defined]
