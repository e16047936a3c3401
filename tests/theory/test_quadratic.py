"""theory/quadratic.py: spectra, exact iterates, least squares, condition numbers (T5 numerics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from theory.errors import AssumptionError
from theory.quadratic import (
    PAPER_SHIFT,
    FloatArray,
    ModalQuadratic,
    SlowdownVerdict,
    Verdict,
    condition_number,
    feature_hessian,
    first_step_at_or_below,
    ill_conditioning_regularizer,
    immunization_ratio_of_grams,
    iterate_at_step,
    least_squares_loss,
    least_squares_quadratic,
    loss_at_step,
    mode_coefficients,
    nonzero_singular_values,
    quadratic_loss,
    relative_immunization_ratio,
    relative_loss_increase,
    rules_disagree,
    singular_values,
    slowdown_verdict,
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


# --------------------------------------------------------------------------- R_ill as the paper
def test_ill_conditioning_regularizer_uses_rank_and_smallest_nonzero_value() -> None:
    """Zheng et al.'s Eq. (12) on diag(4, 1, 0): k = rank = 2, ‖S‖_F² = 16 + 1 = 17,
    σ_min = 1 (the smallest *nonzero*), so R_ill = 1/(17/4 − 1/2) = 1/3.75 = 4/15 ≈ 0.2667.
    Counting the zero (k = 3, σ_min = 0) would give 1/(17/6) = 6/17 ≈ 0.3529."""
    matrix = np.diag([4.0, 1.0, 0.0])
    assert ill_conditioning_regularizer(matrix) == pytest.approx(4.0 / 15.0, rel=1e-12)
    assert ill_conditioning_regularizer(matrix, rule="paper") == pytest.approx(4.0 / 15.0)
    rotated = psd([4.0, 1.0, 0.0], seed=7)  # the same spectrum, not diagonal
    assert ill_conditioning_regularizer(rotated) == pytest.approx(4.0 / 15.0, rel=1e-9)
    # The code's divisor (k = D = 3, σ_min still the smallest nonzero): 1/(17/6 − 1/2) = 3/7.
    assert ill_conditioning_regularizer(matrix, divisor="dimension") == pytest.approx(3.0 / 7.0)
    assert ill_conditioning_regularizer(matrix) != pytest.approx(6.0 / 17.0)


def _rank_deficient_property(regularizer: object) -> bool:
    """Appending zero singular values (a rank-deficient S) leaves Eq. (12) unchanged."""
    assert callable(regularizer)
    full = float(regularizer(np.diag([5.0, 2.0, 1.0])))
    padded = float(regularizer(np.diag([5.0, 2.0, 1.0, 0.0, 0.0])))
    return bool(full == pytest.approx(padded, rel=1e-12))


def test_ill_conditioning_regularizer_ignores_zero_singular_values() -> None:
    assert _rank_deficient_property(ill_conditioning_regularizer)


@pytest.mark.negative_control
def test_rank_deficient_property_catches_the_all_values_formula() -> None:
    """The formula this module had before (k = all singular values, σ_min possibly 0)."""

    def all_values(matrix: FloatArray) -> float:
        sigma = singular_values(matrix)
        return float(1.0 / (np.mean(sigma**2) / 2.0 - sigma[-1] ** 2 / 2.0))

    assert all_values(np.diag([4.0, 1.0, 0.0])) == pytest.approx(6.0 / 17.0)
    assert not _rank_deficient_property(all_values)


def test_ill_conditioning_regularizer_of_zero_is_undefined() -> None:
    with pytest.raises(AssumptionError, match="matrix_nonzero"):
        ill_conditioning_regularizer(np.zeros((3, 3)))


# --------------------------------------------------------------------------- κ rules
def test_paper_rule_is_an_absolute_cutoff() -> None:
    """diag(4, 1, 1e-16): the relative tolerance (3·ε·4 ≈ 2.7e-15) drops 1e-16, κ = 4; the
    paper's rule keeps it (1e-16 + 1e-6 > 1e-6 in float64): κ = (4 + δ)/(1e-16 + δ) ≈ 4e6."""
    matrix = np.diag([4.0, 1.0, 1e-16])
    assert condition_number(matrix) == pytest.approx(4.0)
    expected = (4.0 + PAPER_SHIFT) / (1e-16 + PAPER_SHIFT)
    assert condition_number(matrix, rule="paper") == pytest.approx(expected, rel=1e-9)
    # A rounding eigenvalue of the other sign is dropped by both.
    negative = np.diag([4.0, 1.0, -1e-16])
    assert condition_number(negative, rule="paper") == pytest.approx(4.0, rel=1e-5)
    assert nonzero_singular_values(matrix, "paper").size == 3
    assert nonzero_singular_values(matrix, "pinv").size == 2


def test_paper_rule_is_not_scale_invariant_and_pinv_is() -> None:
    matrix = np.diag([1.0, 1e-7])
    assert condition_number(1e6 * matrix) == pytest.approx(condition_number(matrix))
    assert condition_number(matrix, rule="paper") == pytest.approx((1 + 1e-6) / 1.1e-6)
    assert condition_number(1e6 * matrix, rule="paper") == pytest.approx(1e7, rel=1e-5)


@given(st.lists(st.floats(min_value=0.01, max_value=100.0), min_size=2, max_size=6), seeds)
def test_rules_agree_on_well_separated_spectra(values: list[float], seed: int) -> None:
    """With every eigenvalue ≥ 0.01 ≫ δ the two rules differ by at most a factor 1 + δ/0.01."""
    hessian = psd(values, seed)
    assert condition_number(hessian, rule="paper") == pytest.approx(
        condition_number(hessian), rel=2e-4
    )


def test_unknown_rule_and_nonsymmetric_paper_rule_are_refused() -> None:
    with pytest.raises(AssumptionError, match="kappa_rule_known"):
        condition_number(np.eye(2), rule="other")  # type: ignore[arg-type]
    with pytest.raises(AssumptionError, match="matrix_symmetric"):
        condition_number(np.array([[1.0, 2.0], [0.0, 1.0]]), rule="paper")


def test_ratio_of_grams_is_rir() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 9, 4))
    harmful, pretraining = a.T @ a, b.T @ b
    theta = rng.normal(size=(4, 4))
    for rule in ("pinv", "paper"):
        assert immunization_ratio_of_grams(
            harmful_before=harmful,
            harmful_after=theta.T @ harmful @ theta,
            pretraining_before=pretraining,
            pretraining_after=theta.T @ pretraining @ theta,
            rule=rule,
        ) == pytest.approx(relative_immunization_ratio(theta, harmful, pretraining, rule=rule))


def test_rules_disagree() -> None:
    assert not rules_disagree({"pinv": 10.0, "paper": 19.9})
    assert rules_disagree({"pinv": 10.0, "paper": 20.1})
    assert rules_disagree({"pinv": 10.0, "paper": math.inf})
    assert not rules_disagree({})


# --------------------------------------------------------------------------- verdict
def test_relative_loss_increase() -> None:
    assert relative_loss_increase(1.0, 1.5, 3.0) == pytest.approx(0.25)
    assert relative_loss_increase(1.0, 0.5, 3.0) == pytest.approx(-0.25)
    assert relative_loss_increase(1.0, 1.0, 1.0) == 0.0
    assert relative_loss_increase(1.0, 2.0, 1.0) == math.inf


MISLEADING = {  # RIR 12.5 and the harmful task faster: digits:0-1:2-3, project variant
    "rir": 12.5,
    "harmful_steps_before": 683.0,
    "harmful_steps_after": 579.0,
    "useful_loss_increase": 0.0,
    "useful_steps_before": 186.0,
    "useful_steps_after": 10.0,
}


def _check_verdict(judge: object) -> None:
    """RIR ≫ 1 with a faster harmful task is "not immunized"; a 10x slowdown with the useful
    loss kept is "immunized"; a lost useful task is "not immunized"."""
    assert callable(judge)
    assert judge(**MISLEADING).label == "not immunized"
    slowed = {**MISLEADING, "rir": 1.5, "harmful_steps_after": 6830.0}
    assert judge(**slowed).label == "immunized"
    unstable = {**slowed, "useful_loss_increase": 0.5}
    assert judge(**unstable).label == "not immunized"


def test_slowdown_verdict() -> None:
    _check_verdict(slowdown_verdict)
    verdict = slowdown_verdict(**MISLEADING)
    assert verdict.rir_misleading and not verdict.resistance and verdict.trainability
    assert verdict.slowdown == pytest.approx(579 / 683)
    assert any("FASTER" in reason for reason in verdict.reasons)
    never = slowdown_verdict(**{**MISLEADING, "harmful_steps_after": math.inf})
    assert never.label == "immunized" and never.slowdown == math.inf
    inconclusive = slowdown_verdict(**{**MISLEADING, "harmful_steps_before": math.inf})
    assert inconclusive.label == "inconclusive" and math.isnan(inconclusive.slowdown)
    slow_useful = slowdown_verdict(**{**MISLEADING, "useful_steps_after": 400.0})
    assert not slow_useful.trainability
    with pytest.raises(AssumptionError, match="min_slowdown"):
        slowdown_verdict(**MISLEADING, min_slowdown=0.5)


@pytest.mark.negative_control
def test_verdict_check_catches_an_rir_only_judge() -> None:
    """Judging by RIR alone (the paper's reading: RIR ≫ 1 means immunized) fails the check."""

    def rir_only(**values: float) -> SlowdownVerdict:
        immunized = values["rir"] >= 10.0
        label: Verdict = "immunized" if immunized else "not immunized"
        return SlowdownVerdict(label, 1.0, immunized, True, True, False, ())

    with pytest.raises(AssertionError):
        _check_verdict(rir_only)
