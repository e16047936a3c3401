"""T5 ``quadratic_gd`` against real torch gradient descent: quadratics, least squares, linear
feature probing.

A real ``torch.optim.SGD`` in float64 on a torch loss (``empirical.testing.descend``) must
follow T5's closed form L_t = L* + ½ Σ_i λ_i (1 − ηλ_i)^{2t} c_i² to relative error 1e-9 of
the loss scale (T5's ``HOLDS_RTOL``), reach a threshold at exactly the step T5's solver
predicts, and, on linear probing through a feature extractor θ, have the Hessian θᵀKθ of
Zheng et al. (ICML 2025), whose condition number bounds the per-step contraction of the loss.
Negative controls: the exponent t in place of 2t, and (1 − 1/κ) in place of (1 − 1/κ)².
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
import sympy as sp
from hypothesis import assume, given, note
from hypothesis import strategies as st

from empirical.testing import GradientProblem, QuadraticProblem, descend
from empirical.testing import strategies as hst
from tests.properties._runs import recorded
from theory import quadratic
from theory.theorems import quadratic_gd
from theory.theorems.quadratic_gd import (
    EXCESS_LOSS_SUMMAND,
    HOLDS_RTOL,
    THEOREM,
    ExcessLoss,
    compile_excess_loss,
)

#: T5's summand with (1 − ηλ_i)^t in place of (1 − ηλ_i)^{2t}: the iterate's factor used as
#: the loss's (a classic slip).
WRONG_EXPONENT = compile_excess_loss(EXCESS_LOSS_SUMMAND.subs(2 * quadratic_gd.t, quadratic_gd.t))


def _quadratic_of(problem: GradientProblem) -> QuadraticProblem:
    if isinstance(problem, QuadraticProblem):
        return problem
    as_quadratic = getattr(problem, "as_quadratic", None)
    assert as_quadratic is not None, f"{problem.kind} is not a quadratic"
    result: QuadraticProblem = as_quadratic()
    return result


def assert_gd_follows_closed_form(
    problem: GradientProblem, steps: int, excess: ExcessLoss = THEOREM.excess_loss
) -> None:
    """Every measured L_t equals L* + excess(λ, c, η, t) within HOLDS_RTOL of the scale."""
    modal = _quadratic_of(problem).modal()
    run = descend(problem, steps)
    losses = run.trajectory.probe_loss
    assert losses is not None
    scale = max(abs(losses[0] - modal.loss_star), np.finfo(np.float64).tiny)  # type: ignore[operator]
    for t, measured in enumerate(losses):
        assert measured is not None
        predicted = modal.loss_star + excess(
            modal.eigenvalues, modal.coefficients, problem.learning_rate, float(t)
        )
        error = abs(measured - predicted)
        assert error <= HOLDS_RTOL * max(scale, abs(predicted)), (
            f"step {t}: torch {measured!r}, closed form {predicted!r}"
        )


def closed_form_property(excess: ExcessLoss = THEOREM.excess_loss) -> Callable[[], None]:
    @given(problem=hst.quadratic_problems(), steps=st.integers(1, 40))
    def prop(problem: QuadraticProblem, steps: int) -> None:
        note(repr(problem))
        assert_gd_follows_closed_form(problem, steps, excess)

    return prop


def least_squares_property(excess: ExcessLoss = THEOREM.excess_loss) -> Callable[[], None]:
    @given(problem=hst.least_squares_problems(), steps=st.integers(1, 40))
    def prop(problem: GradientProblem, steps: int) -> None:
        note(repr(problem))
        assert_gd_follows_closed_form(problem, steps, excess)

    return prop


def test_torch_gd_on_quadratics_equals_t5_closed_form() -> None:
    closed_form_property()()


def test_torch_gd_on_least_squares_equals_t5_closed_form() -> None:
    least_squares_property()()


@pytest.mark.negative_control
def test_closed_form_with_exponent_t_is_refuted(expect_falsified: Callable[..., None]) -> None:
    expect_falsified(closed_form_property(WRONG_EXPONENT))


@pytest.mark.negative_control
def test_least_squares_with_exponent_t_is_refuted(
    expect_falsified: Callable[..., None],
) -> None:
    expect_falsified(least_squares_property(WRONG_EXPONENT))


@given(
    problem=st.one_of(hst.quadratic_problems(), hst.least_squares_problems()),
    steps=st.integers(2, 40),
    pick=st.integers(0, 10_000),
    position=st.floats(0.05, 0.95),
)
def test_steps_to_threshold_equals_t5_prediction(
    problem: GradientProblem, steps: int, pick: int, position: float
) -> None:
    """τ strictly between two consecutive measured losses L_{k−1} > τ > L_k: torch reaches τ
    first at step k and T5's solver says k."""
    note(repr(problem))
    modal = _quadratic_of(problem).modal()
    losses = recorded(descend(problem, steps).trajectory.probe_loss)
    scale = losses[0] - modal.loss_star
    gaps = [k for k in range(1, len(losses)) if losses[k - 1] - losses[k] > 1e-6 * scale]
    assume(gaps)
    k = gaps[pick % len(gaps)]
    threshold = losses[k] + position * (losses[k - 1] - losses[k])
    measured = next(t for t, v in enumerate(losses) if v <= threshold)
    predicted = THEOREM.steps_to_threshold(
        threshold,
        eigenvalues=modal.eigenvalues,
        coefficients=modal.coefficients,
        eta=problem.learning_rate,
        L_star=modal.loss_star,
    )
    assert measured == k
    assert predicted == float(measured)


def _contraction_property(factor: Callable[[float], float]) -> Callable[[], None]:
    """On linear probing through θ with η = 1/λ_max, every step contracts the excess loss by at
    most ``factor(κ)``, κ the condition number of the probing Hessian θᵀKθ."""

    @given(pair=hst.feature_task_pairs(), steps=st.integers(1, 30))
    def prop(pair: object, steps: int) -> None:
        note(repr(pair))
        for task in (pair.harmful, pair.pretraining):  # type: ignore[attr-defined]
            hessian = quadratic.feature_hessian(task.extractor, task.covariance)
            np.testing.assert_allclose(hessian, task.as_quadratic().hessian, rtol=1e-9, atol=1e-12)
            kappa = quadratic.condition_number(hessian)
            bound = factor(kappa)
            losses = descend(task, steps).trajectory.probe_loss
            assert losses is not None
            floor = task.loss_star
            start = losses[0] - floor  # type: ignore[operator]
            for before, after in itertools.pairwise(losses):
                excess_before = before - floor  # type: ignore[operator]
                excess_after = after - floor  # type: ignore[operator]
                allowance = 1e-9 * max(start, 1e-300)
                assert excess_after <= bound * excess_before + allowance, (
                    f"kappa {kappa:.6g}: excess {excess_before!r} -> {excess_after!r}"
                )

    return prop


def _slowest_mode_loss_factor(kappa: float) -> float:
    """(1 − 1/κ)² from T5's ``slowest_mode_contraction`` (the iterate's factor, squared for
    the loss, which is quadratic in the iterate)."""
    value = THEOREM.slowest_mode_contraction.subs(quadratic_gd.kappa, kappa)
    return float(value) ** 2


def test_condition_number_bounds_the_contraction_of_linear_probing() -> None:
    _contraction_property(_slowest_mode_loss_factor)()


@pytest.mark.negative_control
def test_contraction_with_too_fast_a_rate_is_refuted(
    expect_falsified: Callable[..., None],
) -> None:
    """(1 − 1/κ)⁴ (the squared factor squared again) claims faster convergence than
    gradient descent achieves on the slowest mode."""
    expect_falsified(_contraction_property(lambda kappa: _slowest_mode_loss_factor(kappa) ** 2))


def test_slowest_mode_factor_is_t5_statement() -> None:
    """The factor used above is T5's symbolic 1 − 1/κ (not retyped)."""
    kappa = sp.Symbol("kappa_check", positive=True)
    value = THEOREM.slowest_mode_contraction.subs(quadratic_gd.kappa, kappa)
    assert sp.simplify(value - (1 - 1 / kappa)) == 0
