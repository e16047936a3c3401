"""theory/quadratic.py: spectra, exact iterates, least squares, condition numbers (T5 numerics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from theory.errors import AssumptionError
from theory.quadratic import (
    FloatArray,
    ModalQuadratic,
    condition_number,
    feature_hessian,
    first_step_at_or_below,
    ill_conditioning_regularizer,
    iterate_at_step,
    least_squares_loss,
    least_squares_quadratic,
    loss_at_step,
    mode_coefficients,
    quadratic_loss,
    relative_immunization_ratio,
    singular_values,
    spectral_decomposition,
    top_singular_vector_angle,
    well_conditioning_regularizer,
)

seeds = st.integers(min_value=0, max_value=2**32 - 1)
eigenvalue_lists = st.lists(
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False), min_size=1, max_size=6
).filter(lambda values: max(values) > 1e-3)


def rotation(seed: int, size: int) -> FloatArray:
    """A random orthogonal matrix (QR of a Gaussian matrix)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(size, size)))
    return np.asarray(q)


def psd(eigenvalues: list[float], seed: int) -> FloatArray:
    """``Q diag(λ) Qᵀ`` for a random rotation Q, symmetrised."""
    q = rotation(seed, len(eigenvalues))
    matrix = q @ np.diag(eigenvalues) @ q.T
    return np.asarray((matrix + matrix.T) / 2.0)


def with_singular_values(values: list[float], seed: int, rows: int) -> FloatArray:
    """A ``rows × p`` matrix (rows ≥ p) with the given singular values."""
    p = len(values)
    left = rotation(seed, rows)[:, :p]
    right = rotation(seed + 1, p)
    return np.asarray(left @ np.diag(values) @ right.T)


# --------------------------------------------------------------------------- spectrum
@given(eigenvalue_lists, seeds)
def test_spectral_decomposition_reconstructs_hessian(eigenvalues: list[float], seed: int) -> None:
    hessian = psd(eigenvalues, seed)
    spectrum = spectral_decomposition(hessian)
    v = spectrum.eigenvectors
    rebuilt = v @ np.diag(spectrum.eigenvalues) @ v.T
    assert np.allclose(rebuilt, hessian, atol=1e-12 * max(1.0, max(eigenvalues)))
    assert np.allclose(v.T @ v, np.eye(len(eigenvalues)), atol=1e-12)
    assert np.all(spectrum.eigenvalues >= 0.0)
    assert np.allclose(np.sort(eigenvalues), spectrum.eigenvalues, atol=1e-10 * max(eigenvalues))


@pytest.mark.parametrize(
    ("matrix", "assumption"),
    [
        ([[1.0, 2.0], [0.0, 1.0]], "hessian_symmetric"),
        ([[1.0, 0.0], [0.0, -1.0]], "hessian_positive_semidefinite"),
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "hessian_square"),
        ([[1.0, float("nan")], [float("nan"), 1.0]], "hessian_finite"),
        ([1.0, 2.0], "hessian_is_matrix"),
    ],
)
def test_spectral_decomposition_rejects_bad_hessians(
    matrix: list[list[float]], assumption: str
) -> None:
    with pytest.raises(AssumptionError) as caught:
        spectral_decomposition(matrix)
    assert caught.value.assumption == assumption


def test_modal_quadratic_rejects_bad_inputs() -> None:
    with pytest.raises(AssumptionError, match="eigenvalues_nonnegative"):
        ModalQuadratic(np.array([-1.0]), np.array([1.0]))
    with pytest.raises(AssumptionError, match="shapes_agree"):
        ModalQuadratic(np.array([1.0, 2.0]), np.array([1.0]))
    with pytest.raises(AssumptionError, match="coefficients_finite"):
        ModalQuadratic(np.array([1.0]), np.array([math.inf]))
    with pytest.raises(AssumptionError, match="shapes_agree"):
        ModalQuadratic.from_hessian(np.eye(2), [1.0, 2.0, 3.0], [0.0, 0.0, 0.0])


# --------------------------------------------------------------------------- exact iterate
@given(
    eigenvalue_lists,
    seeds,
    st.floats(min_value=0.05, max_value=2.0),
    st.integers(min_value=0, max_value=60),
)
def test_exact_iterate_equals_iterated_recurrence(
    eigenvalues: list[float], seed: int, step_ratio: float, steps: int
) -> None:
    """``θ_t = θ* + (I − ηH)^t (θ_0 − θ*)`` equals t steps of ``θ ← θ − ηH(θ − θ*)``."""
    hessian = psd(eigenvalues, seed)
    rng = np.random.default_rng(seed + 7)
    theta_star = rng.normal(size=len(eigenvalues)) * 3.0
    theta_0 = theta_star + rng.normal(size=len(eigenvalues))
    eta = step_ratio / max(eigenvalues)
    theta = theta_0.copy()
    for _ in range(steps):
        theta = theta - eta * hessian @ (theta - theta_star)
    exact = iterate_at_step(hessian, theta_0, theta_star, eta, steps)
    scale = np.linalg.norm(theta_0 - theta_star) + np.linalg.norm(theta_star)
    assert np.linalg.norm(exact - theta) <= 1e-9 * scale
    loss = quadratic_loss(hessian, theta, theta_star, 1.5)
    assert loss_at_step(hessian, theta_0, theta_star, eta, steps, 1.5) == pytest.approx(
        loss, rel=1e-9, abs=1e-9 * quadratic_loss(hessian, theta_0, theta_star)
    )


def test_iterate_rejects_bad_parameters() -> None:
    with pytest.raises(AssumptionError, match="eta_positive"):
        iterate_at_step(np.eye(2), [1.0, 1.0], [0.0, 0.0], 0.0, 3)
    with pytest.raises(AssumptionError, match="t_nonnegative_integer"):
        iterate_at_step(np.eye(2), [1.0, 1.0], [0.0, 0.0], 0.5, -1)
    with pytest.raises(AssumptionError, match="t_nonnegative_integer"):
        iterate_at_step(np.eye(2), [1.0, 1.0], [0.0, 0.0], 0.5, 1.5)  # type: ignore[arg-type]


def test_mode_coefficients_project_the_start_offset() -> None:
    spectrum = spectral_decomposition(np.diag([3.0, 1.0]))
    coefficients = mode_coefficients(spectrum, [2.0, 5.0], [1.0, 1.0])
    # eigh sorts ascending: the first eigenvector is ±e_2 (λ = 1), the second ±e_1 (λ = 3).
    assert np.allclose(np.abs(coefficients), [4.0, 1.0])


# --------------------------------------------------------------------------- search
@given(
    st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=40), st.integers(-5, 60)
)
def test_first_step_search_equals_linear_scan(decrements: list[int], threshold: int) -> None:
    values = [100 - sum(decrements[: index + 1]) for index in range(len(decrements))]

    def loss_at(step: int) -> float:
        return float(values[min(step, len(values) - 1)])

    expected = next((step for step, value in enumerate(values) if value <= threshold), None)
    found = first_step_at_or_below(loss_at, float(threshold), limit=2**20)
    if expected is None:
        assert found is None
    else:
        assert found == expected


# --------------------------------------------------------------------------- least squares
@given(seeds, st.integers(min_value=1, max_value=12), st.integers(min_value=1, max_value=5))
def test_least_squares_quadratic_matches_lstsq(seed: int, samples: int, dimension: int) -> None:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(samples, dimension))
    targets = rng.normal(size=samples)
    problem = least_squares_quadratic(features, targets)
    assert np.allclose(problem.hessian, features.T @ features / samples, atol=1e-12)
    solution = np.linalg.lstsq(features, targets, rcond=None)[0]
    assert np.allclose(problem.theta_star, solution, atol=1e-10)
    assert problem.loss_star == pytest.approx(least_squares_loss(features, targets, solution))
    # (1/2n)‖Xw − y‖² = L* + ½ (w − θ*)ᵀ H (w − θ*) for every w, also when n < d.
    for _ in range(3):
        w = rng.normal(size=dimension) * 2.0
        direct = least_squares_loss(features, targets, w)
        via_quadratic = quadratic_loss(problem.hessian, w, problem.theta_star, problem.loss_star)
        assert via_quadratic == pytest.approx(direct, rel=1e-9, abs=1e-12)


def test_least_squares_rejects_mismatched_shapes() -> None:
    with pytest.raises(AssumptionError, match="shapes_agree"):
        least_squares_quadratic(np.ones((3, 2)), np.ones(4))


# --------------------------------------------------------------------------- condition numbers
@given(st.lists(st.floats(min_value=0.01, max_value=100.0), min_size=1, max_size=6), seeds)
def test_condition_number_of_nonsingular_matrix(values: list[float], seed: int) -> None:
    matrix = with_singular_values(values, seed, rows=len(values) + 1)
    assert condition_number(matrix) == pytest.approx(max(values) / min(values), rel=1e-8)
    assert condition_number(matrix) == pytest.approx(float(np.linalg.cond(matrix)), rel=1e-8)


def test_condition_number_is_pseudo_inverse_form_for_singular_matrices() -> None:
    hessian = psd([0.0, 2.0, 8.0], seed=3)
    pinv_norm = np.linalg.norm(np.linalg.pinv(hessian), 2)
    assert condition_number(hessian) == pytest.approx(np.linalg.norm(hessian, 2) * pinv_norm)
    assert condition_number(hessian) == pytest.approx(4.0)
    with pytest.raises(AssumptionError, match="matrix_nonzero"):
        condition_number(np.zeros((2, 2)))


def _well_conditioning_property(regularizer: object, values: list[float], seed: int) -> bool:
    """R ≥ 0, and R = 0 exactly when all singular values are equal (up to rounding)."""
    assert callable(regularizer)
    matrix = with_singular_values(values, seed, rows=len(values))
    value = float(regularizer(matrix))
    scale = max(values) ** 2
    all_equal = max(values) - min(values) <= 1e-9 * max(values)
    if value < -1e-12 * scale:
        return False
    return (abs(value) <= 1e-9 * scale) == all_equal


distinct_or_equal = st.one_of(
    st.lists(st.floats(min_value=0.1, max_value=10.0), min_size=1, max_size=5),
    st.tuples(st.floats(min_value=0.1, max_value=10.0), st.integers(1, 5)).map(
        lambda pair: [pair[0]] * pair[1]
    ),
)


@given(distinct_or_equal, seeds)
def test_well_conditioning_regularizer_nonnegative_zero_iff_equal(
    values: list[float], seed: int
) -> None:
    spread = max(values) - min(values)
    assume(spread == 0.0 or spread > 1e-6 * max(values))
    assert _well_conditioning_property(well_conditioning_regularizer, values, seed)
    expected = 0.5 * max(values) ** 2 - sum(v**2 for v in values) / (2 * len(values))
    matrix = with_singular_values(values, seed, rows=len(values))
    assert well_conditioning_regularizer(matrix) == pytest.approx(
        expected, abs=1e-10 * max(values) ** 2
    )


@pytest.mark.negative_control
def test_well_conditioning_property_catches_missing_one_over_p() -> None:
    """``½‖S‖₂² − ½‖S‖_F²`` (the 1/p dropped) is ≤ 0: the same property must reject it."""

    def wrong(matrix: FloatArray) -> float:
        sigma = singular_values(matrix)
        return float(0.5 * sigma[0] ** 2 - np.sum(sigma**2) / 2.0)

    assert not _well_conditioning_property(wrong, [1.0, 2.0, 3.0], seed=5)
    assert not _well_conditioning_property(wrong, [2.0, 2.0], seed=6)


def test_ill_conditioning_regularizer() -> None:
    matrix = with_singular_values([3.0, 1.0], seed=11, rows=3)
    # (1/2k)‖S‖_F² − ½σ_min² = (9 + 1)/4 − 1/2 = 2.
    assert ill_conditioning_regularizer(matrix) == pytest.approx(0.5)
    equal = with_singular_values([2.0, 2.0, 2.0], seed=1, rows=3)
    assert ill_conditioning_regularizer(equal) == math.inf


@given(st.lists(st.floats(min_value=0.1, max_value=10.0), min_size=2, max_size=5), seeds)
def test_ill_conditioning_regularizer_decreases_as_spectrum_spreads(
    values: list[float], seed: int
) -> None:
    assume(max(values) - min(values) > 1e-3)
    base = ill_conditioning_regularizer(with_singular_values(values, seed, rows=len(values)))
    spread = sorted(values)
    spread[0] /= 2.0  # a smaller σ_min: a more ill-conditioned matrix
    wider = ill_conditioning_regularizer(with_singular_values(spread, seed, rows=len(values)))
    assert 0.0 < wider < base


# --------------------------------------------------------------------------- RIR and angle
@given(seeds, st.integers(min_value=2, max_value=5))
def test_relative_immunization_ratio_is_one_for_identity(seed: int, size: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, size + 3, size))
    harmful, pretraining = a.T @ a, b.T @ b
    assert relative_immunization_ratio(np.eye(size), harmful, pretraining) == pytest.approx(1.0)
    # κ is scale-invariant, so RIR(cθ) = RIR(θ).
    theta = rng.normal(size=(size, size))
    assert relative_immunization_ratio(3.0 * theta, harmful, pretraining) == pytest.approx(
        relative_immunization_ratio(theta, harmful, pretraining), rel=1e-6
    )


def test_relative_immunization_ratio_of_a_separating_extractor() -> None:
    """K_H = diag(1, .01), K_P = diag(.01, 1), θ = diag(1, .1): κ_H 100 → 10⁴, κ_P 100 → 1."""
    harmful, pretraining = np.diag([1.0, 0.01]), np.diag([0.01, 1.0])
    theta = np.diag([1.0, 0.1])
    assert condition_number(feature_hessian(theta, harmful)) == pytest.approx(1e4)
    assert condition_number(feature_hessian(theta, pretraining)) == pytest.approx(1.0)
    assert relative_immunization_ratio(theta, harmful, pretraining) == pytest.approx(1e4)


@given(st.floats(min_value=0.0, max_value=math.pi / 2))
def test_top_singular_vector_angle_recovers_a_rotation(angle: float) -> None:
    rotate = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    first = np.diag([2.0, 1.0])
    second = rotate @ first @ rotate.T
    assert top_singular_vector_angle(first, second) == pytest.approx(angle, abs=1e-7)
    assert top_singular_vector_angle(first, first) == pytest.approx(0.0, abs=1e-7)


def test_top_singular_vector_angle_needs_a_simple_top_value() -> None:
    with pytest.raises(AssumptionError, match="top_singular_value_simple"):
        top_singular_vector_angle(np.eye(2), np.diag([2.0, 1.0]))
