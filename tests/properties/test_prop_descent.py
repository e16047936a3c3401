"""T1, T2 and T3's path-length bound on real torch (stochastic-free) descent with known constants.

Quadratics, least squares and the non-convex Σ x_i² + 3 sin²(x_i) have a known global
smoothness β, so the checks of ``empirical.certify`` can run with exact constants on runs of
``torch.optim.SGD`` (float64, with momentum and gradient clipping drawn too): T1 on every step,
T2's cumulative envelope with G the largest gradient norm at the iterates and C the clipping
norm or the largest gradient norm, and T3's path-length bound with G measured on points along
the segments. The estimators are checked against the same known constants: Lanczos β along the
path never exceeds the global β (and equals it on quadratics), the measured PL ratio is never
below the quadratic's μ. Negative controls: T1 with β halved, T2 with G halved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from empirical import certify
from empirical.estimators import pl_ratios_from
from empirical.testing import GradientProblem, QuadraticProblem, descend
from empirical.testing import strategies as hst
from theory.theorems import clipped_sgd_progress
from theory.theorems import smoothness_sandwich as sandwich

PROBLEMS = st.one_of(
    hst.quadratic_problems(), hst.least_squares_problems(), hst.sinusoidal_pl_problems()
)
MOMENTA = st.sampled_from([0.0, 0.5, 0.9])
CLIPPING = st.one_of(st.none(), st.floats(0.05, 5.0))


def _well_above(loss: float, floor: float, start: float) -> bool:
    """L − L* is a reliable float64 number: above 10⁻⁶ of the start's excess and of |L| + |L*|
    (below that, L − L* and ‖∇L‖ are dominated by the cancellation in θ − θ*)."""
    excess = loss - floor
    return excess > 1e-6 * (start - floor) and excess > 1e-6 * (abs(loss) + abs(floor))


def _half_beta(side: Callable[..., float]) -> Callable[..., float]:
    def mutated(**values: float) -> float:
        return side(**{**values, "beta": values["beta"] / 2.0})

    return mutated


def sandwich_property(
    lower: Callable[..., float] | None = None, upper: Callable[..., float] | None = None
) -> Callable[[], None]:
    @given(problem=PROBLEMS, steps=st.integers(1, 30), momentum=MOMENTA, clip=CLIPPING)
    def prop(problem: GradientProblem, steps: int, momentum: float, clip: float | None) -> None:
        note(repr(problem))
        run = descend(problem, steps, momentum=momentum, max_grad_norm=clip)
        check = certify.check_step_sandwich(
            run.trajectory,
            problem.smoothness,
            theta0_norm=float(np.linalg.norm(problem.theta_0)),
            lower=lower,
            upper=upper,
        )
        note(check.summary())
        assert check.violations == 0, check.summary()

    return prop


def test_t1_holds_on_every_step_with_the_global_beta() -> None:
    sandwich_property()()


@pytest.mark.negative_control
def test_t1_with_beta_halved_is_refuted(expect_falsified: Callable[..., None]) -> None:
    expect_falsified(
        sandwich_property(
            lower=_half_beta(sandwich.THEOREM.evaluate), upper=_half_beta(sandwich.THEOREM.upper)
        )
    )


def sgd_property(envelope: Callable[..., Any] | None = None) -> Callable[[], None]:
    @given(
        problem=PROBLEMS,
        steps=st.integers(1, 30),
        momentum=MOMENTA,
        clip=CLIPPING,
        position=st.floats(0.0, 1.0),
    )
    def prop(
        problem: GradientProblem,
        steps: int,
        momentum: float,
        clip: float | None,
        position: float,
    ) -> None:
        note(repr(problem))
        trajectory = descend(problem, steps, momentum=momentum, max_grad_norm=clip).trajectory
        constants = certify.constants_from_trajectory(trajectory)
        assert constants.G_iterates is not None
        losses = [float(v) for v in trajectory.probe_loss or [] if v is not None]
        threshold = min(losses) + position * (losses[0] - min(losses))
        check = certify.check_sgd_progress(
            trajectory,
            constants.G_iterates,
            problem.smoothness,
            threshold=threshold,
            envelope=envelope,
        )
        note(check.summary())
        assert check.violations == 0, check.summary()
        assert check.certified_steps is not None and check.measured_steps is not None
        assert check.measured_steps >= check.certified_steps

    return prop


def test_t2_envelope_holds_on_every_step() -> None:
    sgd_property()()


@pytest.mark.negative_control
def test_t2_with_g_halved_is_refuted(expect_falsified: Callable[..., None]) -> None:
    def halved(**values: Any) -> Any:
        return clipped_sgd_progress.envelope(**{**values, "G": values["G"] / 2.0})

    expect_falsified(sgd_property(halved))


@given(problem=PROBLEMS, steps=st.integers(1, 12), momentum=MOMENTA)
def test_t3_path_length_and_estimators_agree_with_known_constants(
    problem: GradientProblem, steps: int, momentum: float
) -> None:
    """Constants measured along the path (``certify.descent_constants``: Lanczos β, G on 4
    points per segment) against the known ones, then T3's path-length bound with them."""
    note(repr(problem))
    run = descend(problem, steps, momentum=momentum)
    constants = certify.descent_constants(run.trajectory, problem.loss, run.iterate_tensors())
    assert constants.beta is not None and constants.G_path is not None
    tolerance = certify.LANCZOS_TOLERANCE
    assert constants.beta.value <= problem.smoothness * (1 + tolerance) ** 2 + 1e-9
    if isinstance(problem, QuadraticProblem) or hasattr(problem, "as_quadratic"):
        # a quadratic's Hessian is H everywhere: Lanczos finds λ_max at every point
        assert constants.beta.value >= problem.smoothness * (1 - tolerance)
    check = certify.check_path_length(run.trajectory, constants.G_path)
    note(check.summary())
    assert check.violations == 0, check.summary()


@given(problem=hst.quadratic_problems(step="pl"), steps=st.integers(1, 30))
def test_measured_pl_ratio_is_never_below_the_quadratics_mu(
    problem: QuadraticProblem, steps: int
) -> None:
    """½‖H e‖² / (½ eᵀHe) ≥ λ_min for every e: the estimator's μ̂ (``pl_ratios_from``) is an
    upper estimate of the true μ, as its docstring says (at iterates whose excess loss is not
    lost to cancellation, ``_well_above``)."""
    trajectory = descend(problem, steps).trajectory
    losses = [float(v) for v in trajectory.probe_loss or []]
    norms = [float(v) for v in trajectory.probe_grad_norm or []]
    floor = problem.loss_star
    keep = [s for s, v in enumerate(losses) if _well_above(v, floor, losses[0])]
    mu = problem.pl_constant
    assert mu is not None
    if not keep:  # every excess is below the cancellation level: nothing to measure
        return
    estimate = pl_ratios_from([losses[s] for s in keep], [norms[s] for s in keep], floor)
    assert estimate.value >= mu * (1 - 1e-6)
