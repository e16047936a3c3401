"""T6 ``contraction_tail`` against real torch gradient descent where the updates contract.

Gradient descent on a strongly convex quadratic with η ≤ 1/λ_max has u_{s+1} = (I − ηH)u_s,
so from any step K the update norms contract by c = max_i |1 − ηλ_i| = 1 − ηλ_min < 1, and the
gradient norm along every segment is at most its value at an end (‖H(θ − θ*)‖ is convex along
a line), so G = the largest gradient norm at the iterates from K on is T6's constant exactly.
T6 then says L_{K+n} ≥ L_K − G‖u_K‖(1 − cⁿ)/(1 − c) ≥ L_K − G‖u_K‖/(1 − c) for every n, and no
threshold below that floor is ever reached (``empirical.certify.check_contraction_tail``,
over the rest of the run). The property runs with c from theory (1 − ηλ_min) and with c
measured from the update norms (``empirical.measurement.estimators.contraction``). Negative
control: the
geometric factor 1/(1 − c) replaced by 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from empirical import certify
from empirical.measurement.estimators import contraction
from empirical.testing import QuadraticProblem, descend
from empirical.testing import strategies as hst
from tests.properties._runs import recorded
from theory import symbols as sym
from theory.theorem import lambdified
from theory.theorems import contraction_tail

StepBound = Callable[..., float]
_ARGS = (sym.L_K, sym.G, sym.u_K, sym.c, sym.n)


def _from(expression: object, with_n: bool) -> StepBound:
    args = _ARGS if with_n else _ARGS[:-1]
    fn = lambdified(expression, args)  # type: ignore[arg-type]

    def bound(**values: float) -> float:
        return float(fn(*(values[a.name] for a in args)))

    return bound


#: T6 with the geometric sum's 1/(1 − c) replaced by 1: only the first step's length counted.
NO_GEOMETRIC_HORIZON = _from(contraction_tail.HORIZON_BOUND.subs(1 - sym.c, 1), with_n=True)
NO_GEOMETRIC_FLOOR = _from(contraction_tail.BOUND.subs(1 - sym.c, 1), with_n=False)


def _exact_contraction(problem: QuadraticProblem) -> float:
    """max_i |1 − ηλ_i|: the factor by which (I − ηH) shrinks every update."""
    return float(np.max(np.abs(1.0 - problem.learning_rate * problem.spectrum.eigenvalues)))


def tail_property(
    *, theory_c: bool, horizon: StepBound | None = None, floor: StepBound | None = None
) -> Callable[[], None]:
    @given(
        problem=hst.quadratic_problems(step="pl"),
        steps=st.integers(3, 50),
        pick=st.integers(0, 10_000),
        position=st.floats(0.0, 1.0),
    )
    def prop(problem: QuadraticProblem, steps: int, pick: int, position: float) -> None:
        note(repr(problem))
        trajectory = descend(problem, steps).trajectory
        losses = recorded(trajectory.probe_loss)
        gradients = recorded(trajectory.probe_grad_norm)
        updates = recorded(trajectory.update_norm)
        start = pick % (steps - 1)
        c = _exact_contraction(problem) if theory_c else contraction(updates, start).value
        if not c < 1.0:
            # measured only: once the updates are rounding noise (~1e-16 ‖θ‖) their ratios
            # are ~1 and no contraction is measured; T6 then has nothing to say.
            assert not theory_c
            return
        G = max(gradients[start:])
        threshold = min(losses[start:]) + position * (losses[start] - min(losses[start:]))
        check = certify.check_contraction_tail(
            trajectory,
            start,
            c,
            G,
            threshold=threshold,
            theta0_norm=float(np.linalg.norm(problem.theta_0)),
            horizon=horizon,
            floor=floor,
        )
        note(check.summary())
        assert check.violations == 0, check.summary()
        assert check.measured_steps is None or (
            not check.certified_unreachable
            and check.certified_steps is not None
            and check.measured_steps >= check.certified_steps
        )

    return prop


def test_t6_tail_holds_with_the_theoretical_contraction() -> None:
    tail_property(theory_c=True)()


def test_t6_tail_holds_with_the_measured_contraction() -> None:
    tail_property(theory_c=False)()


@pytest.mark.negative_control
def test_t6_without_the_geometric_factor_is_refuted(
    expect_falsified: Callable[..., None],
) -> None:
    expect_falsified(
        tail_property(theory_c=True, horizon=NO_GEOMETRIC_HORIZON, floor=NO_GEOMETRIC_FLOOR)
    )


@given(problem=hst.quadratic_problems(step="pl"), steps=st.integers(3, 40))
def test_measured_contraction_never_exceeds_theory(problem: QuadraticProblem, steps: int) -> None:
    """The estimator's c (largest ratio of successive update norms) is at most 1 − ηλ_min:
    the measured constant is consistent with the theory it feeds. Updates below 1e-8 of the
    parameter scale S = ‖θ_0‖ + ‖θ*‖ are left out: there a float64 update is a difference of
    parameters rounded to ~1e-16 S, its ratio to the previous one rounding noise (that noise,
    at most 1e-7 relative above the cut, is the allowance)."""
    trajectory = descend(problem, steps).trajectory
    updates = recorded(trajectory.update_norm)
    scale = float(np.linalg.norm(problem.theta_0) + np.linalg.norm(problem.theta_star))
    live = [u for u in updates if u > 1e-8 * scale]
    if len(live) < 2:
        return
    measured = contraction(live, 0).value
    assert measured <= _exact_contraction(problem) + 1e-6
