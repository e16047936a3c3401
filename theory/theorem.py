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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import sympy as sp

from theory.errors import AssumptionError

AssumptionKind = Literal["parameter", "hypothesis"]
StepsKind = Literal["minimum", "maximum", "exact"]


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
        for key, value in values.items():
            if isinstance(value, float | int) and not math.isfinite(float(value)):
                raise AssumptionError(self.label, f"{key}_finite", f"{key} = {value}")
        for a in self.assumptions:
            if a.kind != "parameter":
                continue
            names = {s.name for s in a.statement.free_symbols}  # type: ignore[attr-defined]
            if not names <= values.keys():
                continue
            truth = a.statement.subs(_by_name(a.statement, values))
            if truth is not sp.true and not bool(truth):
                shown = ", ".join(f"{n} = {values[n]:g}" for n in sorted(names))
                detail = f"{sp.sstr(a.statement)} fails at {shown}"
                raise AssumptionError(self.label, a.name, detail)

    def evaluate(self, **values: float) -> float:
        """The numeric value of ``bound`` after checking the parameter assumptions."""
        self.check_assumptions(**values)
        missing = [s.name for s in self.parameters if s.name not in values]
        if missing:
            raise AssumptionError(self.label, "inputs_given", f"missing values for {missing}")
        fn = _lambdified(self.bound, self.parameters)
        result = float(fn(*(values[s.name] for s in self.parameters)))
        if not math.isfinite(result):
            raise AssumptionError(self.label, "finite_bound", f"bound evaluates to {result}")
        return result

    def holds(self, **values: float) -> bool:
        """Evaluate ``conclusion`` on numbers (the measured and the assumed ones)."""
        self.check_assumptions(**values)
        return bool(self.conclusion.subs(_by_name(self.conclusion, values)))


    def steps_to_threshold(self, threshold: float, **values: float) -> float:
        """Steps for the loss to reach ``threshold`` as certified by this theorem.

        Returns an integer-valued float, or ``math.inf`` when the theorem certifies the
        threshold is never reached. Theorems without a solver raise ``AssumptionError``.
        """
        raise AssumptionError(self.label, "has_steps_solver", f"{self.name} has no steps solver")


_LAMBDA_CACHE: dict[tuple[sp.Expr, tuple[sp.Symbol, ...]], Callable[..., Any]] = {}


def _lambdified(expr: sp.Expr, args: tuple[sp.Symbol, ...]) -> Callable[..., Any]:
    key = (expr, args)
    fn = _LAMBDA_CACHE.get(key)
    if fn is None:
        fn = sp.lambdify(args, expr, modules="math")
        _LAMBDA_CACHE[key] = fn
    return fn


def _by_name(expr: sp.Basic, values: Mapping[str, float]) -> dict[sp.Basic, float]:
    """Substitution map from the free symbols of ``expr`` to the values given by name."""
    return {s: values[s.name] for s in expr.free_symbols if s.name in values}  # type: ignore[attr-defined]
