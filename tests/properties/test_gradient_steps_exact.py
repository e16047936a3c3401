"""T9 ``gradient_steps_exact`` against real torch gradient descent, at any step size.

T9: for β-smooth L and N ≥ 1 gradient steps θ_{k+1} = θ_k − η∇L(θ_k) with ‖∇L(θ_k)‖ ≤ G at
the iterates, L_N ≥ L_0 − (N(ηG² + βη²G²/4) + βη²G²/4), for every η > 0: the exact worst case.

Real ``torch.optim.SGD`` in float64 without momentum or clipping (``empirical.testing.descend``
is then gradient descent on the loss itself) on quadratics, least squares and the non-convex
Σ x_i² + 3 sin²(x_i), whose global β is known; G the largest gradient norm at the iterates; η
drawn from 0.01/β to 3/β, past the stable range 2/β too (T9 assumes nothing of η). Every
measured loss must lie above T9's bound and no threshold τ may be reached before T9's
certified minimum (``empirical.certify.check_gradient_steps``), also through ``check_all``.

Negative control: the descent lemma's *guaranteed* decrease ηG²/2 per step taken as the
attacker's worst case (T9's bound with β = 0 and G → G/√2: a classic confusion of the two
sides).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sympy as sp
from hypothesis import given, note
from hypothesis import strategies as st

from empirical import certify
from empirical.testing import GradientProblem, descend
from tests.properties._runs import PROBLEMS
from theory import symbols as sym
from theory.theorem import lambdified
from theory.theorems import gradient_steps_exact

Bound = Callable[..., float]
_ARGS = (sym.L0, sym.G, sym.eta, sym.beta, sym.t)


def _bound_from(expression: sp.Expr) -> Bound:
    """A T9-style bound evaluated from a sympy expression in ``L0, G, eta, beta, t``."""
    fn = lambdified(expression, _ARGS)

    def bound(**values: float) -> float:
        return float(fn(*(values[s.name] for s in _ARGS)))

    return bound


#: L_0 − t η G²/2: the descent lemma's guaranteed decrease (at η = 1/β) as the worst case.
GUARANTEED_DECREASE = _bound_from(
    gradient_steps_exact.BOUND.subs({sym.beta: 0, sym.G: sym.G / sp.sqrt(2)})
)


def gd_property(bound: Bound | None = None) -> Callable[[], None]:
    @given(
        problem=PROBLEMS,
        steps=st.integers(1, 30),
        fraction=st.floats(0.01, 3.0),
        position=st.floats(0.0, 1.0),
    )
    def prop(problem: GradientProblem, steps: int, fraction: float, position: float) -> None:
        eta = fraction / problem.smoothness
        note(f"{problem!r}, eta = {eta!r}")
        trajectory = descend(problem, steps, learning_rates=[eta] * steps).trajectory
        constants = certify.constants_from_trajectory(trajectory)
        assert constants.G_iterates is not None
        losses = [v for v in trajectory.probe_loss or [] if v is not None]
        threshold = min(losses) + position * (losses[0] - min(losses))
        check = certify.check_gradient_steps(
            trajectory, constants.G_iterates, problem.smoothness, threshold=threshold, bound=bound
        )
        note(check.summary())
        assert check.applicable, check.reason
        assert check.violations == 0, check.summary()
        if check.steps_kind is not None and check.measured_steps is not None:
            assert check.certified_steps is not None
            assert check.measured_steps >= check.certified_steps

    return prop


def test_gd_never_beats_t9_at_any_step_size() -> None:
    gd_property()()


@pytest.mark.negative_control
def test_t9_with_the_guaranteed_decrease_as_worst_case_is_refuted(
    expect_falsified: Callable[..., None],
) -> None:
    expect_falsified(gd_property(GUARANTEED_DECREASE))


@given(problem=PROBLEMS, steps=st.integers(1, 10))
def test_check_all_applies_t9_to_gradient_descent_only(
    problem: GradientProblem, steps: int
) -> None:
    """``check_all`` runs T9 on a gradient-descent run (with β given) and finds no violation;
    with momentum the run is not gradient descent and T9 is not among the checks."""
    trajectory = descend(problem, steps).trajectory
    base = certify.constants_from_trajectory(trajectory)
    constants = base.model_copy(
        update={"beta": certify.given_constant("beta", problem.smoothness, "global, exact")}
    )
    label = gradient_steps_exact.THEOREM.label
    checks = [c for c in certify.check_all(trajectory, constants) if c.label == label]
    assert len(checks) == 1 and checks[0].status == "holds", [c.summary() for c in checks]
    heavy = descend(problem, steps, momentum=0.9).trajectory
    assert label not in {c.label for c in certify.check_all(heavy, constants)}
