"""Theorems T5 (quadratic_gd) and T8 (binomial_confidence): statements, numerics, controls."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sympy as sp
from hypothesis import assume, given
from hypothesis import strategies as st

from theory.errors import AssumptionError
from theory.quadratic import (
    FloatArray,
    condition_number,
    loss_at_step,
    mode_coefficients,
    spectral_decomposition,
)
from theory.statistics import clopper_pearson
from theory.theorems import binomial_confidence, quadratic_gd
from theory.theorems.binomial_confidence import THEOREM as T8
from theory.theorems.quadratic_gd import EXCESS_LOSS_SUMMAND, ExcessLoss, compile_excess_loss
from theory.theorems.quadratic_gd import THEOREM as T5

seeds = st.integers(min_value=0, max_value=2**32 - 1)
eigenvalue_lists = st.lists(
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False), min_size=1, max_size=6
).filter(lambda values: max(values) > 1e-3)


def psd(eigenvalues: list[float], seed: int) -> FloatArray:
    """``Q diag(λ) Qᵀ`` for a random rotation Q (QR of a Gaussian matrix), symmetrised."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigenvalues),) * 2))
    matrix = q @ np.diag(eigenvalues) @ q.T
    return np.asarray((matrix + matrix.T) / 2.0)


def problem(eigenvalues: list[float], seed: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """A random PSD H with these eigenvalues, a start θ_0 and an optimum θ*."""
    rng = np.random.default_rng(seed + 1)
    theta_star = rng.normal(size=len(eigenvalues)) * 3.0
    theta_0 = theta_star + rng.normal(size=len(eigenvalues))
    return psd(eigenvalues, seed), theta_0, theta_star


def iterated_losses(
    hessian: FloatArray,
    theta_0: FloatArray,
    theta_star: FloatArray,
    eta: float,
    steps: int,
    stop_below: float = -math.inf,
) -> list[float]:
    """Ground truth: ``L(θ_t)``, t = 0 … steps, by iterating ``θ ← θ − ηH(θ − θ*)``; stops
    early once the loss is below ``stop_below``."""
    theta, losses = theta_0.copy(), []
    for _ in range(steps + 1):
        offset = theta - theta_star
        losses.append(float(0.5 * offset @ hessian @ offset))
        if losses[-1] < stop_below:
            break
        theta = theta - eta * hessian @ (theta - theta_star)
    return losses


def closed_form_matches_recurrence(
    excess_loss: ExcessLoss,
    hessian: FloatArray,
    theta_0: FloatArray,
    theta_star: FloatArray,
    eta: float,
    steps: int,
    rtol: float = 1e-9,
) -> bool:
    """The T5 property: the per-mode closed form equals the iterated recurrence at every
    t ≤ steps, to relative error ``rtol`` against the loss scale ``max(L_t, L_0 − L*)``."""
    spectrum = spectral_decomposition(hessian)
    coefficients = mode_coefficients(spectrum, theta_0, theta_star)
    truth = iterated_losses(hessian, theta_0, theta_star, eta, steps)
    for step, iterated in enumerate(truth):
        closed = excess_loss(spectrum.eigenvalues, coefficients, eta, float(step))
        if abs(closed - iterated) > rtol * max(abs(iterated), truth[0]):
            return False
    return True


# --------------------------------------------------------------------------- T5 statement
def test_t5_statement_is_the_per_mode_sum() -> None:
    assert T5.label == "T5" and T5.name == "quadratic_gd" and T5.steps_kind == "exact"
    assert importlib.import_module("theory.theorems.quadratic_gd").THEOREM is T5
    assert T5.bound.has(sp.Sum)
    assert isinstance(T5.conclusion, sp.Eq)
    assert all(s.is_real for s in T5.bound.free_symbols if isinstance(s, sp.Symbol))
    names = {a.name for a in T5.assumptions}
    assert {"eta_positive", "eigenvalues_nonnegative", "eta_at_most_two_over_lambda_max"} <= names
    assert "(I" in sp.sstr(T5.trajectory).replace("(-eta)*H + ", "(I")  # the matrix power form
    assert T5.latex()


def test_t5_per_mode_induction_step_and_start() -> None:
    """Each summand obeys E_i(t+1) = (1 − ηλ_i)² E_i(t) (one GD step on mode i), and at t = 0
    the sum is ½ Σ λ_i c_i², the quadratic loss of θ_0."""
    s = EXCESS_LOSS_SUMMAND
    t = quadratic_gd.t
    factor = (1 - quadratic_gd.eta * quadratic_gd.lambda_i) ** 2
    assert sp.powsimp(sp.expand_power_exp(s.subs(t, t + 1)) - factor * s) == 0
    assert sp.simplify(s.subs(t, 0) - quadratic_gd.lambda_i * quadratic_gd.c_i**2 / 2) == 0


def test_t5_slowest_mode_contracts_by_one_minus_inverse_kappa() -> None:
    assert sp.simplify(T5.slowest_mode_contraction - (1 - 1 / quadratic_gd.kappa)) == 0


# --------------------------------------------------------------------------- T5 closed form
@given(
    eigenvalue_lists,
    seeds,
    st.floats(min_value=0.05, max_value=2.0),
    st.integers(min_value=1, max_value=60),
)
def test_t5_closed_form_equals_iterated_recurrence(
    eigenvalues: list[float], seed: int, step_ratio: float, steps: int
) -> None:
    hessian, theta_0, theta_star = problem(eigenvalues, seed)
    eta = step_ratio / max(eigenvalues)
    assert closed_form_matches_recurrence(T5.excess_loss, hessian, theta_0, theta_star, eta, steps)
    # evaluate() on matrices, on eigen-coordinates, and quadratic.loss_at_step agree.
    spectrum = spectral_decomposition(hessian)
    coefficients = mode_coefficients(spectrum, theta_0, theta_star)
    on_matrix = T5.evaluate(
        eta=eta, t=steps, hessian=hessian, theta_0=theta_0, theta_star=theta_star, L_star=0.25
    )
    on_modes = T5.evaluate(
        eta=eta, t=steps, eigenvalues=spectrum.eigenvalues, coefficients=coefficients, L_star=0.25
    )
    assert on_matrix == on_modes
    definition = loss_at_step(hessian, theta_0, theta_star, eta, steps, 0.25)
    assert T5.holds(
        L_t=definition,
        eta=eta,
        t=steps,
        hessian=hessian,
        theta_0=theta_0,
        theta_star=theta_star,
        L_star=0.25,
    )


def _battery(count: int = 20) -> list[tuple[FloatArray, FloatArray, FloatArray, float]]:
    rng = np.random.default_rng(12345)
    cases = []
    for seed in range(count):
        size = int(rng.integers(1, 6))
        eigenvalues = list(rng.uniform(0.05, 1.0, size=size) * 10 ** rng.uniform(-1, 1))
        hessian, theta_0, theta_star = problem(eigenvalues, seed)
        cases.append(
            (hessian, theta_0, theta_star, float(rng.uniform(0.1, 1.9) / max(eigenvalues)))
        )
    return cases


@pytest.mark.negative_control
def test_closed_form_with_power_t_instead_of_2t_fails_the_recurrence_check() -> None:
    t = quadratic_gd.t
    wrong = compile_excess_loss(EXCESS_LOSS_SUMMAND.subs(2 * t, t))
    assert wrong is not T5.excess_loss
    for hessian, theta_0, theta_star, eta in _battery():
        assert closed_form_matches_recurrence(T5.excess_loss, hessian, theta_0, theta_star, eta, 30)
        assert not closed_form_matches_recurrence(wrong, hessian, theta_0, theta_star, eta, 30)


def test_t5_holds_rejects_a_wrong_measurement() -> None:
    values: dict[str, Any] = {
        "eta": 0.5,
        "t": 2,
        "eigenvalues": [1.0, 0.2],
        "coefficients": [1.0, 3.0],
    }
    exact = T5.evaluate(**values)
    assert T5.holds(L_t=exact, **values)
    assert not T5.holds(L_t=exact * (1 + 1e-6), **values)


# --------------------------------------------------------------------------- T5 steps
StepsSolver = Callable[..., float]


def steps_match_iteration(
    solver: StepsSolver,
    hessian: FloatArray,
    theta_0: FloatArray,
    theta_star: FloatArray,
    eta: float,
    fraction: float,
    horizon: int = 4000,
) -> bool | None:
    """The steps property: ``solver`` returns the first t with L_t ≤ τ found by iterating the
    recurrence, τ = fraction · L_0 (L* = 0). None when iteration finds no crossing within
    ``horizon`` or the crossing is a near-tie (|L_t − τ| ≤ 1e-9 L_0 at the deciding steps)."""
    start = iterated_losses(hessian, theta_0, theta_star, eta, 0)[0]
    threshold = fraction * start
    # Iterate one step past the crossing (a near-tie there is checked below).
    losses = iterated_losses(hessian, theta_0, theta_star, eta, horizon, threshold * (1 - 1e-6))
    first = next((step for step, loss in enumerate(losses) if loss <= threshold), None)
    if first is None:
        return None
    deciding = [losses[first]] + ([losses[first - 1]] if first > 0 else [])
    if any(abs(loss - threshold) <= 1e-9 * losses[0] for loss in deciding):
        return None
    found = solver(threshold, eta=eta, hessian=hessian, theta_0=theta_0, theta_star=theta_star)
    return found == first


@given(
    st.lists(st.floats(min_value=0.05, max_value=1.0), min_size=1, max_size=5),
    seeds,
    st.floats(min_value=0.3, max_value=1.99),
    st.floats(min_value=1e-4, max_value=0.99),
)
def test_t5_steps_to_threshold_is_the_first_crossing(
    eigenvalues: list[float], seed: int, step_ratio: float, fraction: float
) -> None:
    hessian, theta_0, theta_star = problem(eigenvalues, seed)
    eta = step_ratio / max(eigenvalues)
    verdict = steps_match_iteration(
        T5.steps_to_threshold, hessian, theta_0, theta_star, eta, fraction
    )
    assume(verdict is not None)
    assert verdict


@pytest.mark.negative_control
@pytest.mark.parametrize("offset", [1, -1])
def test_steps_solver_off_by_one_is_caught(offset: int) -> None:
    def off_by_one(threshold: float, **values: object) -> float:
        return T5.steps_to_threshold(threshold, **values) + offset  # type: ignore[arg-type]

    checked = 0
    for hessian, theta_0, theta_star, eta in _battery():
        if steps_match_iteration(T5.steps_to_threshold, hessian, theta_0, theta_star, eta, 0.01):
            assert (
                steps_match_iteration(off_by_one, hessian, theta_0, theta_star, eta, 0.01) is False
            )
            checked += 1
    assert checked >= 15


def test_t5_steps_edge_cases() -> None:
    modes = {"eigenvalues": [1.0, 0.0], "coefficients": [2.0, 5.0]}
    assert T5.steps_to_threshold(2.0, eta=0.5, **modes) == 0.0  # L_0 = 2 already ≤ τ
    assert T5.steps_to_threshold(0.0, eta=1.0, **modes) == 1.0  # ηλ = 1: exact in one step
    assert T5.steps_to_threshold(0.0, eta=0.5, **modes) == math.inf  # approached, never reached
    assert T5.steps_to_threshold(-1.0, eta=0.5, **modes) == math.inf  # below L*
    # ηλ_max = 2: the top mode oscillates forever, L_∞ = ½·1·2² = 2.
    assert T5.steps_to_threshold(1.9, eta=2.0, **modes) == math.inf
    assert T5.steps_to_threshold(1e-300, eta=0.5, eigenvalues=[1.0], coefficients=[1.0]) < 600


def test_t5_step_size_beyond_two_over_lambda_max_is_refused() -> None:
    modes = {"eigenvalues": [1.0, 0.1], "coefficients": [1.0, 1.0]}
    losses = [T5.evaluate(eta=2.5, t=t, **modes) for t in range(4)]
    assert losses[3] > losses[0]  # the loss grows: the closed form still holds, monotonicity not
    with pytest.raises(AssumptionError) as caught:
        T5.steps_to_threshold(0.1, eta=2.5, **modes)
    assert caught.value.assumption == "eta_at_most_two_over_lambda_max"


@given(
    st.floats(min_value=0.01, max_value=0.5),
    st.floats(min_value=1.05, max_value=20.0),
    st.floats(min_value=1e-4, max_value=0.5),
    seeds,
)
def test_t5_better_conditioning_reaches_threshold_no_later(
    smallest: float, improvement: float, fraction: float, seed: int
) -> None:
    """Same λ_max = 1, η = 1/λ_max, start on the slowest mode with the same L_0: the
    better-conditioned H (larger λ_min, smaller κ) needs no more steps, and its excess loss
    is exactly (1 − 1/κ)^{2t} L_0."""
    better = min(1.0, smallest * improvement)
    rotation_seed = seed
    steps = []
    for lam_min in (smallest, better):
        eigenvalues = [lam_min, (lam_min + 1.0) / 2.0, 1.0]
        hessian = psd(eigenvalues, rotation_seed)
        spectrum = spectral_decomposition(hessian)
        slowest = spectrum.eigenvectors[:, 0]
        theta_star = np.zeros(3)
        theta_0 = slowest * math.sqrt(2.0 / lam_min)  # L_0 = ½ λ_min a² = 1
        kappa = condition_number(hessian)
        for t in (1, 5):
            loss = T5.evaluate(
                eta=1.0, t=t, hessian=hessian, theta_0=theta_0, theta_star=theta_star
            )
            assert loss == pytest.approx((1 - 1 / kappa) ** (2 * t), rel=1e-8, abs=1e-12)
        steps.append(
            T5.steps_to_threshold(
                fraction, eta=1.0, hessian=hessian, theta_0=theta_0, theta_star=theta_star
            )
        )
    assert steps[1] <= steps[0]


@pytest.mark.parametrize(
    ("values", "assumption"),
    [
        ({"eta": 0.0, "t": 1, "eigenvalues": [1.0], "coefficients": [1.0]}, "eta_positive"),
        ({"eta": math.nan, "t": 1, "eigenvalues": [1.0], "coefficients": [1.0]}, "eta_finite"),
        ({"eta": 0.5, "t": -1, "eigenvalues": [1.0], "coefficients": [1.0]}, "t_nonnegative"),
        ({"eta": 0.5, "t": 1.5, "eigenvalues": [1.0], "coefficients": [1.0]}, "t_nonnegative"),
        (
            {"eta": 0.5, "t": 1, "eigenvalues": [-1.0], "coefficients": [1.0]},
            "eigenvalues_nonnegative",
        ),
        ({"eta": 0.5, "t": 1, "eigenvalues": [1.0]}, "inputs_given"),
        ({"t": 1, "eigenvalues": [1.0], "coefficients": [1.0]}, "inputs_given"),
        ({"eta": 0.5, "eigenvalues": [1.0], "coefficients": [1.0]}, "inputs_given"),
        (
            {
                "eta": 0.5,
                "t": 1,
                "hessian": [[1.0, 0.0], [0.0, -2.0]],
                "theta_0": [1.0, 1.0],
                "theta_star": [0.0, 0.0],
            },
            "hessian_positive_semidefinite",
        ),
    ],
)
def test_t5_bad_input_names_the_assumption(values: dict[str, object], assumption: str) -> None:
    with pytest.raises(AssumptionError) as caught:
        T5.evaluate(**values)  # type: ignore[arg-type]
    assert caught.value.assumption == assumption


# --------------------------------------------------------------------------- T8 statement
def test_t8_solved_forms_are_hoeffding_inverted() -> None:
    m, h, alpha = binomial_confidence.m, binomial_confidence.h, binomial_confidence.alpha
    assert T8.label == "T8" and T8.name == "binomial_confidence" and T8.steps_kind is None
    assert all(s.is_real for s in (m, h, alpha))
    tail = binomial_confidence.HOEFFDING_TAIL
    # Substituting each solved form back into the tail gives α (under the parameter domain).
    assert sp.simplify(tail.subs(h, T8.bound) - alpha) == 0
    assert sp.simplify(tail.subs(m, T8.sample_size) - alpha) == 0
    one = binomial_confidence.HOEFFDING_ONE_SIDED_TAIL
    assert sp.simplify(one.subs(h, T8.one_sided_half_width) - alpha) == 0
    # The textbook forms √(ln(2/α)/(2m)) and ln(2/α)/(2h²), compared at numbers.
    for mv, av in ((1, 0.5), (100, 0.05), (12345, 1e-6)):
        assert T8.evaluate(m=mv, alpha=av) == pytest.approx(math.sqrt(math.log(2 / av) / (2 * mv)))
    assert float(T8.sample_size.subs({h: 0.05, alpha: 0.05})) == pytest.approx(
        math.log(40) / (2 * 0.05**2)
    )


@given(
    st.integers(1, 15).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.floats(min_value=1e-3, max_value=0.5),
)
def test_clopper_pearson_bounds_solve_the_defining_equations(
    counts: tuple[int, int], alpha: float
) -> None:
    """statistics.clopper_pearson (beta quantiles) solves T8's P_{p_L}(X ≥ k) = α/2 and
    P_{p_U}(X ≤ k) = α/2."""
    k, n = counts
    interval = clopper_pearson(k, n, alpha)
    symbols = binomial_confidence
    at = {symbols.n: n, symbols.k: k, symbols.alpha: alpha}
    if k > 0:
        lhs = T8.clopper_pearson_lower_equation.lhs.subs(at).subs(symbols.p_lower, interval.lower)
        assert float(lhs.doit()) == pytest.approx(alpha / 2, rel=1e-7)
    if k < n:
        lhs = T8.clopper_pearson_upper_equation.lhs.subs(at).subs(symbols.p_upper, interval.upper)
        assert float(lhs.doit()) == pytest.approx(alpha / 2, rel=1e-7)


def test_t8_has_a_sample_size_solver_not_a_steps_solver() -> None:
    with pytest.raises(AssumptionError, match="has_steps_solver"):
        T8.steps_to_threshold(0.1, m=10.0, alpha=0.05)
    assert T8.prompts_for_half_width(0.05, 0.05) == 738
    assert T8.prompts_for_half_width(0.05, 0.05, sided=1) == 600
    assert T8.prompts_for_half_width(10.0, 0.5) == 1


@pytest.mark.parametrize(
    ("call", "assumption"),
    [
        (lambda: T8.evaluate(m=0.5, alpha=0.05), "prompts_at_least_one"),
        (lambda: T8.evaluate(m=10, alpha=1.0), "alpha_in_unit_interval"),
        (lambda: T8.evaluate(m=10, alpha=math.inf), "alpha_finite"),
        (lambda: T8.prompts_for_half_width(-0.1, 0.05), "half_width_positive"),
        (lambda: T8.half_width(10, 0.05, sided=3), "sided_is_one_or_two"),  # type: ignore[arg-type]
        (lambda: T8.evaluate(alpha=0.05), "inputs_given"),
    ],
)
def test_t8_bad_input_names_the_assumption(call: Callable[[], object], assumption: str) -> None:
    with pytest.raises(AssumptionError) as caught:
        call()
    assert caught.value.assumption == assumption


def test_t5_accepts_its_parameter_names_with_scalars() -> None:
    """``parameters`` names λ and c; one scalar each is one mode, and t may be 3.0."""
    values: dict[str, Any] = {"lambda": 1.0, "c": 2.0, "eta": 0.5, "t": 3.0, "L_star": 0.0}
    assert {s.name for s in T5.parameters} <= set(values)
    assert T5.evaluate(**values) == T5.evaluate(eta=0.5, t=3, eigenvalues=[1.0], coefficients=[2.0])
    assert T5.evaluate(**values) == pytest.approx(0.5 * 1.0 * 0.5**6 * 4.0)
    assert T5.steps_to_threshold(0.1, **values) == 3.0


# --------------------------------------------------------------------------- linear probing
def _gradient_descent_steps(
    features: FloatArray, targets: FloatArray, eta: float, threshold: float, limit: int
) -> int | None:
    """Ground truth: iterate w ← w − η Xᵀ(Xw − y)/n from 0 until (1/2n)‖Xw − y‖² ≤ τ."""
    weights = np.zeros(features.shape[1])
    for step in range(limit + 1):
        residual = features @ weights - targets
        if float(residual @ residual) / (2 * features.shape[0]) <= threshold:
            return step
        weights = weights - eta * features.T @ residual / features.shape[0]
    return None


@given(seeds, st.integers(min_value=2, max_value=5), st.booleans())
def test_least_squares_steps_predicts_gradient_descent(
    seed: int, size: int, deficient: bool
) -> None:
    """T5's steps for linear probing equal an actual gradient-descent run (± 1 for rounding at
    the threshold), also when XᵀX is singular (a duplicated column)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(3 * size, size)) * np.logspace(0, 1, size)
    if deficient:
        features[:, -1] = features[:, 0]
    targets = rng.normal(size=3 * size)
    prediction = quadratic_gd.least_squares_steps(features, targets, remaining_fraction=0.01)
    assume(prediction.steps < 5_000)
    measured = _gradient_descent_steps(
        features, targets, prediction.eta, prediction.threshold, 5_000
    )
    assert measured is not None and abs(measured - prediction.steps) <= 1
    assert prediction.eta == pytest.approx(
        1 / np.linalg.eigvalsh(features.T @ features / (3 * size))[-1]
    )


@pytest.mark.negative_control
def test_least_squares_check_catches_a_kappa_only_prediction() -> None:
    """The textbook bound ⌈κ ln(1/f)/2⌉ (from (1 − 1/κ)^{2t} ≤ f) is not the exact count: the
    comparison above rejects it on a problem whose slow mode carries little loss."""
    features = np.diag([10.0, 1.0])
    targets = np.array([10.0, 0.01])
    prediction = quadratic_gd.least_squares_steps(features, targets, remaining_fraction=0.01)
    kappa_only = math.ceil(prediction.condition_number * math.log(100) / 2)
    measured = _gradient_descent_steps(
        features, targets, prediction.eta, prediction.threshold, 10_000
    )
    assert measured is not None and abs(measured - prediction.steps) <= 1
    assert abs(measured - kappa_only) > 1


def test_least_squares_steps_rejects_bad_fraction() -> None:
    with pytest.raises(AssumptionError, match="fraction_in_unit_interval"):
        quadratic_gd.least_squares_steps(np.eye(2), np.ones(2), remaining_fraction=1.0)
