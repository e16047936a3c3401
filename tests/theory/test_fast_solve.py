"""The steps solvers' fast ``sympy.solve`` options (``theory.theorem.FAST_SOLVE``) give the
same closed-form root as ``sympy.solve`` with its defaults (simplification and the
substitution check on), for every theorem with a steps solver."""

from __future__ import annotations

import pytest
import sympy as sp

import theory
from theory import symbols as sym
from theory.theorem import Theorem

SOLVED = [t for t in theory.catalogue() if t.steps_symbol is not None]


def _default_root(thm: Theorem) -> sp.Expr:
    assert thm.steps_symbol is not None
    roots = sp.solve(sp.Eq(thm.bound, sym.tau), getattr(sym, thm.steps_symbol))
    assert len(roots) == 1
    root: sp.Expr = roots[0]
    return root


@pytest.mark.parametrize("thm", SOLVED, ids=[t.label for t in SOLVED])
def test_fast_root_equals_default_root(thm: Theorem) -> None:
    assert sp.simplify(thm.steps_solution - _default_root(thm)) == 0


@pytest.mark.parametrize("thm", SOLVED, ids=[t.label for t in SOLVED])
def test_a_moved_root_is_told_apart(thm: Theorem) -> None:
    """Negative control: the comparison above fails for a root off by 1%."""
    moved = sp.Rational(101, 100) * thm.steps_solution
    assert sp.simplify(moved - _default_root(thm)) != 0
