"""T4 ``pl_convergence`` against real torch gradient descent on Polyak–Łojasiewicz problems.

Strongly convex quadratics, least squares (μ = the smallest positive eigenvalue of XᵀX/n) and
the non-convex Σ x_i² + 3 sin²(x_i) (μ = 1/32, β = 8; Karimi, Nutini, Schmidt 2016), with
η ≤ 1/β: every measured loss must lie under T4's bound L* + (1 − ημ)^t (L_0 − L*), and every
threshold τ > L* must be reached no later than T4's certified maximum t_max
(``empirical.certify.check_pl_convergence``). Also with μ *measured* along the path (the
smallest PL ratio ½‖∇L_s‖²/(L_s − L*) at the iterates, ``empirical.measurement.estimators``): the
one-step argument of T4 needs the PL inequality at the iterates only, so that tighter μ
must hold too, and the measured μ is never below a quadratic's true μ (the estimator is an
upper estimate). Negative controls: the rate (1 − 2ημ), and μ doubled.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from empirical import certify
from empirical.measurement.estimators import pl_ratios_from
from empirical.testing import GradientProblem, QuadraticProblem, descend
from empirical.testing import strategies as hst
from tests.properties._runs import recorded
from theory import symbols as sym
from theory.theorem import lambdified
from theory.theorems import pl_convergence

BoundFn = Callable[..., float]
_ARGS = (sym.L0, sym.L_star, sym.eta, sym.mu, sym.t)


def _bound_from(expression: object) -> BoundFn:
    """A T4-style bound evaluated from a sympy expression in ``L0, L_star, eta, mu, t``."""
    fn = lambdified(expression, _ARGS)  # type: ignore[arg-type]

    def bound(**values: float) -> float:
        return float(fn(*(values[s.name] for s in _ARGS)))

    return bound


#: T4 with the rate (1 − 2ημ): confuses the iterate's contraction with the loss's.
DOUBLE_RATE = _bound_from(
    pl_convergence.BOUND.subs(pl_convergence.CONTRACTION, 1 - 2 * sym.eta * sym.mu)
)


def _measured_mu(problem: GradientProblem, losses: list[float], norms: list[float]) -> float:
    """min over the iterates s < T of ½‖∇L_s‖²/(L_s − L*), skipping iterates whose excess
    loss is below 10⁻⁶ of |L_s| + |L*| (there L_s − L* is mostly cancellation error, and the
    bound holds up to the same rounding)."""
    floor = problem.loss_star
    keep = [
        s
        for s in range(len(losses) - 1)
        if losses[s] - floor > 1e-6 * (abs(losses[s]) + abs(floor))
    ]
    if not keep:
        return problem.smoothness
    estimate = pl_ratios_from([losses[s] for s in keep], [norms[s] for s in keep], floor)
    return min(estimate.value, problem.smoothness)


def pl_property(
    *, measured_mu: bool, bound: BoundFn | None = None, mu_factor: float = 1.0
) -> Callable[[], None]:
    @given(
        problem=hst.pl_problems(),
        steps=st.integers(1, 60),
        depth=st.floats(-8.0, -0.01),
    )
    def prop(problem: GradientProblem, steps: int, depth: float) -> None:
        note(repr(problem))
        run = descend(problem, steps)
        trajectory = run.trajectory
        losses = recorded(trajectory.probe_loss)
        norms = recorded(trajectory.probe_grad_norm)
        mu = _measured_mu(problem, losses, norms) if measured_mu else problem.pl_constant
        assert mu is not None and mu > 0
        mu = min(mu * mu_factor, problem.smoothness)
        threshold = problem.loss_star + 10.0**depth * (losses[0] - problem.loss_star)
        check = certify.check_pl_convergence(
            trajectory, mu, problem.smoothness, problem.loss_star, threshold=threshold, bound=bound
        )
        note(check.summary())
        assert check.applicable, check.reason
        assert check.violations == 0, check.summary()

    return prop


def test_gd_never_exceeds_t4_bound_with_exact_mu() -> None:
    pl_property(measured_mu=False)()


def test_gd_never_exceeds_t4_bound_with_mu_measured_along_the_path() -> None:
    pl_property(measured_mu=True)()


@pytest.mark.negative_control
def test_t4_with_rate_one_minus_two_eta_mu_is_refuted(
    expect_falsified: Callable[..., None],
) -> None:
    expect_falsified(pl_property(measured_mu=True, bound=DOUBLE_RATE))


@pytest.mark.negative_control
def test_t4_with_mu_doubled_is_refuted(expect_falsified: Callable[..., None]) -> None:
    """The measured μ is tight at some iterate; claiming 2μ promises convergence too soon.

    A weaker mutant than the rate change (it needs a run whose tight iterate binds the
    bound), so it gets more examples than the ci default."""
    expect_falsified(pl_property(measured_mu=True, mu_factor=2.0), max_examples=200)


@given(problem=hst.pl_problems(), depth=st.floats(-8.0, -0.01))
def test_certified_maximum_is_the_first_step_under_the_bound(
    problem: GradientProblem, depth: float
) -> None:
    """T4's steps solver returns the first t whose bound is ≤ τ (the certificate is tight in
    t: one step fewer and the bound is still above τ)."""
    mu = problem.pl_constant
    assert mu is not None
    start = problem.loss_at(problem.theta_0)
    values = {
        "L0": start,
        "L_star": problem.loss_star,
        "eta": problem.learning_rate,
        "mu": mu,
    }
    threshold = problem.loss_star + 10.0**depth * (start - problem.loss_star)
    steps = pl_convergence.THEOREM.steps_to_threshold(threshold, beta=problem.smoothness, **values)
    assert math.isfinite(steps)
    assert pl_convergence.THEOREM.evaluate(t=steps, **values) <= threshold
    if steps > 0:
        assert pl_convergence.THEOREM.evaluate(t=steps - 1, **values) > threshold


def _well_above(loss: float, floor: float, start: float) -> bool:
    """L − L* is a reliable float64 number: above 10⁻⁶ of the start's excess and of |L| + |L*|
    (below that, L − L* and ‖∇L‖ are dominated by the cancellation in θ − θ*)."""
    excess = loss - floor
    return excess > 1e-6 * (start - floor) and excess > 1e-6 * (abs(loss) + abs(floor))


@given(problem=hst.quadratic_problems(step="pl"), steps=st.integers(1, 30))
def test_measured_pl_ratio_is_never_below_the_quadratics_mu(
    problem: QuadraticProblem, steps: int
) -> None:
    """½‖H e‖² / (½ eᵀHe) ≥ λ_min for every e: the estimator's μ̂ (``pl_ratios_from``) is an
    upper estimate of the true μ, as its docstring says (at iterates whose excess loss is not
    lost to cancellation, ``_well_above``)."""
    trajectory = descend(problem, steps).trajectory
    losses = recorded(trajectory.probe_loss)
    norms = recorded(trajectory.probe_grad_norm)
    floor = problem.loss_star
    keep = [s for s, v in enumerate(losses) if _well_above(v, floor, losses[0])]
    mu = problem.pl_constant
    assert mu is not None
    if not keep:  # every excess is below the cancellation level: nothing to measure
        return
    estimate = pl_ratios_from([losses[s] for s in keep], [norms[s] for s in keep], floor)
    assert estimate.value >= mu * (1 - 1e-6)
