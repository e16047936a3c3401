"""PEPit tightness of T2's attacker-progress bound, and the PEP machinery's sanity check."""

from __future__ import annotations

import pytest
import sympy as sp

from proofs import tightness
from theory import symbols as sym
from theory.theorems import clipped_sgd_progress as t2
from theory.theorems import gradient_steps_exact as t9

pytestmark = pytest.mark.slow


def test_t2_bound_is_never_below_the_exact_worst_case() -> None:
    rows = tightness.tightness_table(steps=(1, 2, 4), step_sizes=(0.5, 1.0))
    assert all(row.sound for row in rows)
    for row in rows:
        assert row.ratio >= 1.0 - tightness.RELATIVE_TOLERANCE
        if row.steps == 1:  # one step: T1's lower side is attained, T2 is tight
            assert row.ratio == pytest.approx(1.0, rel=1e-4)
        else:  # later steps: the gradient bound at the iterates makes T2 loose
            assert row.ratio > 1.01


def test_pep_reproduces_the_known_convex_rate() -> None:
    rows = tightness.sanity_table(steps=(1, 2, 3))
    assert all(row.agrees for row in rows)
    assert rows[0].worst_case == pytest.approx(1 / 6, rel=1e-4)


@pytest.mark.negative_control
def test_a_bound_below_the_worst_case_is_caught() -> None:
    """T2 with half its curvature term is a false theorem: the PEP must expose it."""
    wrong = t2.BOUND.xreplace({sym.beta: sym.beta / 2})
    args = (sym.t, sym.beta, sym.G, sym.eta)

    def halved(steps: int, beta: float, gradient_bound: float, eta: float) -> float:
        values = {sym.L0: 0, sym.C: gradient_bound}
        return -float(
            wrong.subs(values).subs(
                dict(zip(args, (steps, beta, gradient_bound, eta), strict=True))
            )
        )

    rows = tightness.tightness_table(steps=(1,), step_sizes=(1.0,), bound=halved)
    assert not rows[0].sound
    assert rows[0].ratio < 1.0
    assert sp.Rational(rows[0].worst_case).limit_denominator(100) == sp.Rational(3, 2)


def test_t9_equals_the_exact_worst_case_with_the_same_dual_certificate() -> None:
    rows = tightness.exactness_table(steps=(1, 2, 5), step_sizes=(0.5, 3.0))
    for row in rows:
        assert row.exact, (row.steps, row.eta_beta, row.ratio)
        assert row.multipliers_agree, (row.multipliers, row.closed_form)


@pytest.mark.negative_control
def test_t9_without_its_last_step_extra_is_caught() -> None:
    """N c alone (the last step's extra βη²G²/4 dropped) is below the worst case."""

    def smaller(steps: int, beta: float, gradient_bound: float, eta: float) -> float:
        return float(
            (sym.t * t9.STEP_WORST).subs(
                {sym.t: steps, sym.beta: beta, sym.G: gradient_bound, sym.eta: eta}
            )
        )

    rows = tightness.exactness_table(steps=(2,), step_sizes=(1.0,), bound=smaller)
    assert not rows[0].exact and rows[0].ratio < 1.0
