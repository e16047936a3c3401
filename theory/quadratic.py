"""Quadratic losses and least squares, numerically: the objects theorem T5 is about.

A quadratic loss ``L(θ) = L* + ½ (θ − θ*)ᵀ H (θ − θ*)`` with H symmetric positive
semi-definite, and the least-squares loss ``L(w) = (1/2n)‖Xw − y‖²``, which is such a
quadratic with ``H = XᵀX/n``, ``θ*`` any solution of the normal equations and
``L* = L(θ*)``. Gradient descent with constant step η follows
``θ_{t+1} = θ_t − η H (θ_t − θ*)``.

This module holds the numerics (numpy): the spectral decomposition ``H = V diag(λ) Vᵀ``, the
mode coefficients ``c = Vᵀ(θ_0 − θ*)``, the exact iterate ``θ_t`` (T5's matrix closed form
``θ_t − θ* = (I − ηH)^t (θ_0 − θ*)`` applied in the eigenbasis), the definition of the loss,
the exact search for the first step below a threshold on a non-increasing sequence, the
least-squares reduction, and the condition-number quantities of Zheng, Bai, Bullins, Yeh,
"Model Immunization from a Condition Number Perspective" (ICML 2025): ``κ`` (their Eq. (1),
under two rules for near-zero singular values, ``KappaRule``), ``R_well`` (Eq. (3)), ``R_ill``
(Eq. (12): rank and smallest nonzero singular value), the relative immunization ratio ``RIR``
(Eq. (15)) and the angle between the top singular vectors of two covariances; and the verdict
that judges an immunization by the slowdown the attacker measures rather than by RIR
(``slowdown_verdict``).

The per-mode loss formula ``L_t − L* = ½ Σ_i λ_i (1 − ηλ_i)^{2t} c_i²`` is *not* here: it is
T5's conclusion (``theory.theorems.quadratic_gd``), which evaluates it from its sympy
statement. ``loss_at_step`` below computes ``L(θ_t)`` from the definition of L instead, so
the two can be compared.

Invalid input (non-finite entries, wrong shapes, a non-symmetric or indefinite H) raises
``AssumptionError`` naming the assumption.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from theory.errors import AssumptionError

OWNER = "T5"
FloatArray = npt.NDArray[np.float64]

#: Largest step count the threshold search tries. Far beyond any float64 decay: a factor
#: ``|1 − ηλ| ≤ 1 − 2⁻⁵³`` raised to ``2·2⁶⁴`` underflows to zero.
SEARCH_LIMIT = 2**64


# --------------------------------------------------------------------------- validation
def as_vector(name: str, value: npt.ArrayLike) -> FloatArray:
    """``value`` as a finite float64 vector (shape ``(d,)``), or ``AssumptionError``."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 1:
        raise AssumptionError(OWNER, f"{name}_is_vector", f"{name} has shape {array.shape}")
    _require_finite(name, array)
    return array


def as_matrix(name: str, value: npt.ArrayLike) -> FloatArray:
    """``value`` as a finite float64 matrix (2-D, non-empty), or ``AssumptionError``."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise AssumptionError(OWNER, f"{name}_is_matrix", f"{name} has shape {array.shape}")
    _require_finite(name, array)
    return array


def _require_finite(name: str, array: FloatArray) -> None:
    if not np.all(np.isfinite(array)):
        raise AssumptionError(OWNER, f"{name}_finite", f"{name} has a NaN or infinite entry")


def _require_same_length(names: tuple[str, str], a: FloatArray, b: FloatArray) -> None:
    if a.shape != b.shape:
        detail = f"{names[0]} has shape {a.shape}, {names[1]} has shape {b.shape}"
        raise AssumptionError(OWNER, "shapes_agree", detail)


# --------------------------------------------------------------------------- spectrum
@dataclass(frozen=True)
class Spectrum:
    """``H = V diag(λ) Vᵀ``: eigenvalues ascending (shape ``(d,)``), eigenvectors as the
    columns of ``V`` (shape ``(d, d)``, orthonormal)."""

    eigenvalues: FloatArray
    eigenvectors: FloatArray

    @property
    def largest(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def smallest(self) -> float:
        return float(self.eigenvalues[0])


def spectral_decomposition(hessian: npt.ArrayLike) -> Spectrum:
    """Eigen-decomposition of a symmetric positive semi-definite ``H`` (``numpy.linalg.eigh``).

    Assumptions: ``H`` square and symmetric (up to ``1e-10·max(1, ‖H‖_max)``, then
    symmetrised), eigenvalues ``≥ −tol`` with ``tol = 10·d·ε·max|λ|`` (rounding); eigenvalues
    in ``[−tol, 0)`` are set to 0 (they are zero up to rounding).
    """
    matrix = as_matrix("hessian", hessian)
    rows, cols = matrix.shape
    if rows != cols:
        raise AssumptionError(OWNER, "hessian_square", f"hessian has shape {matrix.shape}")
    scale = max(1.0, float(np.max(np.abs(matrix))))
    asymmetry = float(np.max(np.abs(matrix - matrix.T)))
    if asymmetry > 1e-10 * scale:
        raise AssumptionError(OWNER, "hessian_symmetric", f"max |H - Hᵀ| = {asymmetry:g}")
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    tolerance = 10.0 * rows * np.finfo(np.float64).eps * float(np.max(np.abs(eigenvalues)))
    if eigenvalues[0] < -tolerance:
        detail = f"smallest eigenvalue {eigenvalues[0]:g} < 0"
        raise AssumptionError(OWNER, "hessian_positive_semidefinite", detail)
    eigenvalues = np.where(eigenvalues < 0.0, 0.0, eigenvalues)
    return Spectrum(eigenvalues=eigenvalues, eigenvectors=eigenvectors)


@dataclass(frozen=True)
class ModalQuadratic:
    """A quadratic and a start point in eigen-coordinates: ``λ_i``, ``c_i = v_iᵀ(θ_0 − θ*)``
    and ``L*``. ``L(θ_0) = L* + ½ Σ_i λ_i c_i²``."""

    eigenvalues: FloatArray
    coefficients: FloatArray
    loss_star: float = 0.0

    def __post_init__(self) -> None:
        eigenvalues = as_vector("eigenvalues", self.eigenvalues)
        coefficients = as_vector("coefficients", self.coefficients)
        _require_same_length(("eigenvalues", "coefficients"), eigenvalues, coefficients)
        if eigenvalues.size == 0:
            raise AssumptionError(OWNER, "dimension_positive", "no eigenvalues given")
        if float(np.min(eigenvalues)) < 0.0:
            detail = f"smallest eigenvalue {float(np.min(eigenvalues)):g} < 0"
            raise AssumptionError(OWNER, "eigenvalues_nonnegative", detail)
        if not math.isfinite(self.loss_star):
            raise AssumptionError(OWNER, "L_star_finite", f"L_star = {self.loss_star}")
        object.__setattr__(self, "eigenvalues", eigenvalues)
        object.__setattr__(self, "coefficients", coefficients)
        object.__setattr__(self, "loss_star", float(self.loss_star))

    @classmethod
    def from_hessian(
        cls,
        hessian: npt.ArrayLike,
        theta_0: npt.ArrayLike,
        theta_star: npt.ArrayLike,
        loss_star: float = 0.0,
    ) -> ModalQuadratic:
        """Decompose ``H`` and project the start offset ``θ_0 − θ*`` on its eigenvectors."""
        spectrum = spectral_decomposition(hessian)
        return cls(
            eigenvalues=spectrum.eigenvalues,
            coefficients=mode_coefficients(spectrum, theta_0, theta_star),
            loss_star=loss_star,
        )

    @property
    def largest_eigenvalue(self) -> float:
        return float(np.max(self.eigenvalues))

    @property
    def smallest_eigenvalue(self) -> float:
        return float(np.min(self.eigenvalues))


def mode_coefficients(
    spectrum: Spectrum, theta_0: npt.ArrayLike, theta_star: npt.ArrayLike
) -> FloatArray:
    """``c = Vᵀ(θ_0 − θ*)``, the start offset in the eigenbasis (shape ``(d,)``)."""
    start = as_vector("theta_0", theta_0)
    optimum = as_vector("theta_star", theta_star)
    _require_same_length(("theta_0", "theta_star"), start, optimum)
    if start.shape[0] != spectrum.eigenvectors.shape[0]:
        detail = f"theta_0 has {start.shape[0]} entries, hessian is {spectrum.eigenvectors.shape}"
        raise AssumptionError(OWNER, "shapes_agree", detail)
    return np.asarray(spectrum.eigenvectors.T @ (start - optimum), dtype=np.float64)


# --------------------------------------------------------------------------- trajectory
def quadratic_loss(
    hessian: npt.ArrayLike,
    theta: npt.ArrayLike,
    theta_star: npt.ArrayLike,
    loss_star: float = 0.0,
) -> float:
    """The definition ``L(θ) = L* + ½ (θ − θ*)ᵀ H (θ − θ*)``."""
    matrix = as_matrix("hessian", hessian)
    offset = as_vector("theta", theta) - as_vector("theta_star", theta_star)
    return float(loss_star + 0.5 * offset @ matrix @ offset)


def gradient_descent_step(
    hessian: npt.ArrayLike, theta: npt.ArrayLike, theta_star: npt.ArrayLike, eta: float
) -> FloatArray:
    """One step of the recurrence ``θ ← θ − η H (θ − θ*)`` (the gradient of L is H(θ − θ*))."""
    matrix = as_matrix("hessian", hessian)
    point = as_vector("theta", theta)
    return np.asarray(point - eta * (matrix @ (point - as_vector("theta_star", theta_star))))


def iterate_at_step(
    hessian: npt.ArrayLike,
    theta_0: npt.ArrayLike,
    theta_star: npt.ArrayLike,
    eta: float,
    t: int,
) -> FloatArray:
    """``θ_t = θ* + (I − ηH)^t (θ_0 − θ*) = θ* + V ((1 − ηλ)^t ∘ c)`` exactly (no iteration).

    Parameters: ``η > 0``, integer ``t ≥ 0``. Holds for every η (no stability condition).
    """
    _require_step_size(eta)
    steps = _require_step_count(t)
    spectrum = spectral_decomposition(hessian)
    coefficients = mode_coefficients(spectrum, theta_0, theta_star)
    factors = np.power(1.0 - eta * spectrum.eigenvalues, float(steps))
    return np.asarray(
        as_vector("theta_star", theta_star) + spectrum.eigenvectors @ (factors * coefficients)
    )


def loss_at_step(
    hessian: npt.ArrayLike,
    theta_0: npt.ArrayLike,
    theta_star: npt.ArrayLike,
    eta: float,
    t: int,
    loss_star: float = 0.0,
) -> float:
    """``L(θ_t)`` from the definition of L at the exact iterate ``θ_t``."""
    theta_t = iterate_at_step(hessian, theta_0, theta_star, eta, t)
    return quadratic_loss(hessian, theta_t, theta_star, loss_star)


def _require_step_size(eta: float) -> None:
    if not (math.isfinite(eta) and eta > 0.0):
        raise AssumptionError(OWNER, "eta_positive", f"eta = {eta}")


def _require_step_count(t: int) -> int:
    if isinstance(t, bool) or not isinstance(t, int | np.integer) or t < 0:
        raise AssumptionError(OWNER, "t_nonnegative_integer", f"t = {t!r}")
    return int(t)


# --------------------------------------------------------------------------- threshold search
def first_step_at_or_below(
    loss_at: Callable[[int], float], threshold: float, limit: int = SEARCH_LIMIT
) -> int | None:
    """The smallest integer ``t ≥ 0`` with ``loss_at(t) ≤ threshold``, or ``None`` if none
    up to ``limit``.

    Exact for a non-increasing sequence ``t ↦ loss_at(t)`` (the caller's assumption): doubling
    ``t = 1, 2, 4, …`` brackets the first crossing, then bisection keeps the invariant
    ``loss_at(low) > threshold ≥ loss_at(high)``. ``O(log t*)`` evaluations.
    """
    if loss_at(0) <= threshold:
        return 0
    low, high = 0, 1
    while loss_at(high) > threshold:
        if high >= limit:
            return None
        low, high = high, min(2 * high, limit)
    while high - low > 1:
        middle = (low + high) // 2
        if loss_at(middle) <= threshold:
            high = middle
        else:
            low = middle
    return high


# --------------------------------------------------------------------------- least squares
@dataclass(frozen=True)
class LeastSquaresQuadratic:
    """``(1/2n)‖Xw − y‖² = L* + ½ (w − θ*)ᵀ H (w − θ*)`` with ``H = XᵀX/n`` (shape
    ``(d, d)``), ``θ*`` the minimum-norm least-squares solution (shape ``(d,)``) and
    ``L* = (1/2n)‖Xθ* − y‖²``. The identity holds for any solution of the normal equations
    ``XᵀXθ* = Xᵀy`` because the cross term ``(w − θ*)ᵀXᵀ(Xθ* − y)`` vanishes."""

    hessian: FloatArray
    theta_star: FloatArray
    loss_star: float


def least_squares_quadratic(
    features: npt.ArrayLike, targets: npt.ArrayLike
) -> LeastSquaresQuadratic:
    """The quadratic form of least squares on ``X`` (shape ``(n, d)``) and ``y`` (``(n,)``)."""
    design = as_matrix("features", features)
    response = as_vector("targets", targets)
    if response.shape[0] != design.shape[0]:
        detail = f"features has {design.shape[0]} rows, targets has {response.shape[0]}"
        raise AssumptionError(OWNER, "shapes_agree", detail)
    samples = design.shape[0]
    solution = np.linalg.lstsq(design, response, rcond=None)[0]
    residual = design @ solution - response
    return LeastSquaresQuadratic(
        hessian=np.asarray(design.T @ design / samples),
        theta_star=np.asarray(solution, dtype=np.float64),
        loss_star=float(residual @ residual / (2.0 * samples)),
    )


def least_squares_loss(features: npt.ArrayLike, targets: npt.ArrayLike, w: npt.ArrayLike) -> float:
    """The definition ``(1/2n)‖Xw − y‖²``."""
    design = as_matrix("features", features)
    residual = design @ as_vector("w", w) - as_vector("targets", targets)
    return float(residual @ residual / (2.0 * design.shape[0]))


# --------------------------------------------------------------------------- condition numbers
KappaRule = Literal["pinv", "paper"]
"""How κ treats (near-)zero singular values (``condition_number``'s ``rule``):

* ``"pinv"``: the pseudo-inverse form ``κ(S) = ‖S‖₂ ‖S⁺‖₂`` (Zheng et al. 2025, Eq. (1)) with
  the rank decided by a *relative* tolerance ``max(rows, cols)·ε·σ_max`` (numpy's
  ``matrix_rank`` rule). Scale-invariant: ``κ(cS) = κ(S)``.
* ``"paper"``: what the paper's code computes (``utils/loss.py::condition_number`` of
  github.com/amberyzheng/model-immunization-cond-num, commit dc536a8): the eigenvalues ``μ_i``
  of ``S + δI`` (δ = ``PAPER_SHIFT`` = 1e-6), ``κ = max μ / min{μ_i : μ_i > δ}``, an
  *absolute* cutoff. It needs a symmetric S (a Gram matrix or Hessian) and is not
  scale-invariant; the code applies it to unnormalised Gram matrices ``XᵀX``. A zero
  eigenvalue that rounding makes ``+1e-13`` counts as nonzero, so on rank-deficient data κ is
  ``≈ λ_max/δ`` or ``λ_max/λ_min⁺`` depending on the sign of rounding noise.
"""

KAPPA_RULES: tuple[KappaRule, ...] = ("pinv", "paper")

#: δ of the paper's code: κ is read from the eigenvalues of ``S + δI`` with cutoff δ.
PAPER_SHIFT = 1e-6

#: RIR under the two κ rules differing by more than this factor means the data are
#: (numerically) rank-deficient and RIR is not a property of the extractor alone.
RULE_DISAGREEMENT_FACTOR = 2.0


def singular_values(matrix: npt.ArrayLike) -> FloatArray:
    """Singular values of ``S`` in descending order (``p = min(rows, cols)`` of them)."""
    return np.asarray(np.linalg.svd(as_matrix("matrix", matrix), compute_uv=False))


def _require_rule(rule: str) -> None:
    if rule not in KAPPA_RULES:
        raise AssumptionError(OWNER, "kappa_rule_known", f"rule {rule!r} not in {KAPPA_RULES}")


def nonzero_singular_values(
    matrix: npt.ArrayLike, rule: KappaRule = "pinv", shift: float = PAPER_SHIFT
) -> FloatArray:
    """The singular values of ``S`` that ``rule`` counts as nonzero, descending; their number
    is the rank ``k`` of Zheng et al.'s Eq. (12).

    ``"pinv"``: ``σ_i > max(rows, cols)·ε·σ_max``. ``"paper"``: S symmetric (up to rounding,
    checked as in ``spectral_decomposition``), the eigenvalues ``λ_i`` with ``λ_i + δ > δ`` in
    float64 (the code's test on ``S + δI``), returned as ``|λ_i|`` (for a PSD S its singular
    values).
    """
    _require_rule(rule)
    array = as_matrix("matrix", matrix)
    if rule == "pinv":
        sigma = singular_values(array)
        tolerance = max(array.shape) * np.finfo(np.float64).eps * float(sigma[0])
        return np.asarray(sigma[sigma > tolerance])
    if not (math.isfinite(shift) and shift > 0.0):
        raise AssumptionError(OWNER, "shift_positive", f"shift = {shift}")
    if array.shape[0] != array.shape[1]:
        raise AssumptionError(OWNER, "matrix_square", f"matrix has shape {array.shape}")
    scale = max(1.0, float(np.max(np.abs(array))))
    if float(np.max(np.abs(array - array.T))) > 1e-10 * scale:
        raise AssumptionError(OWNER, "matrix_symmetric", "the paper's κ rule needs S = Sᵀ")
    shifted = np.linalg.eigvalsh((array + array.T) / 2.0 + shift * np.eye(array.shape[0]))
    kept = shifted[shifted > shift] - shift
    return np.asarray(np.sort(np.abs(kept))[::-1], dtype=np.float64)


def condition_number(
    matrix: npt.ArrayLike, rule: KappaRule = "pinv", shift: float = PAPER_SHIFT
) -> float:
    """``κ(S) = ‖S‖₂ ‖S⁺‖₂ = σ_max / σ_min⁺`` (Zheng, Bai, Bullins, Yeh, ICML 2025, Eq. (1)).

    ``σ_min⁺`` is the smallest singular value that ``rule`` counts as nonzero (``KappaRule``):
    ``"pinv"`` (default) uses the relative tolerance ``max(rows, cols)·ε·σ_max``; for a
    nonsingular S this is ``σ_max/σ_min``, for a symmetric PSD Hessian ``λ_max/λ_min⁺`` (the
    eigen-directions with ``λ = 0`` carry no loss, so this is the ratio that sets the speed of
    gradient descent on ``L − L*``). ``"paper"`` is the paper's code:
    ``(λ_max + δ) / min{λ_i + δ : λ_i + δ > δ}`` on the eigenvalues of ``S + δI``.
    ``S = 0`` has no condition number: ``AssumptionError``.
    """
    _require_rule(rule)
    array = as_matrix("matrix", matrix)
    if rule == "pinv":
        sigma = nonzero_singular_values(array, "pinv")
        if sigma.size == 0:
            raise AssumptionError(OWNER, "matrix_nonzero", "κ(0) is undefined")
        return float(sigma[0]) / float(sigma[-1])
    kept = nonzero_singular_values(array, "paper", shift)
    if kept.size == 0:
        raise AssumptionError(OWNER, "matrix_nonzero", "κ(0) is undefined (no eigenvalue > δ)")
    return (float(kept[0]) + shift) / (float(kept[-1]) + shift)


def well_conditioning_regularizer(matrix: npt.ArrayLike) -> float:
    """``R_well(S) = ½‖S‖₂² − (1/2p)‖S‖_F² = ½ σ_max² − (1/2p) Σ_i σ_i²``, ``p = min(rows,
    cols)`` (Nenov et al. 2024, as Zheng et al. 2025 state it in their Eq. (3)).

    ``R_well ≥ 0`` (the mean of the ``σ_i²`` is at most their maximum), with equality iff all
    singular values are equal (κ = 1). Zheng et al. minimise it to keep the pre-training
    Hessian well conditioned.
    """
    sigma = singular_values(matrix)
    return float(0.5 * sigma[0] ** 2 - np.sum(sigma**2) / (2.0 * sigma.size))


IllDivisor = Literal["rank", "dimension"]
"""The ``k`` of R_ill's ``(1/2k)‖S‖_F²``: ``"rank"`` (Zheng et al.'s Eq. (12): k = rank(S)) or
``"dimension"`` (their code, ``models/model.py::reg_loss``: k = the input dimension D, also for
a rank-deficient mini-batch Gram matrix)."""


def ill_conditioning_regularizer(
    matrix: npt.ArrayLike,
    rule: KappaRule = "pinv",
    shift: float = PAPER_SHIFT,
    divisor: IllDivisor = "rank",
) -> float:
    """``R_ill(S) = 1 / ((1/2k)‖S‖_F² − ½ (σ_S^min)²)`` (Zheng et al., ICML 2025, Eq. (12)).

    As the paper defines it (§4.1): ``k = rank(S)`` and ``σ_S^min = σ_k > 0`` the smallest
    *nonzero* singular value of the compact SVD; ``‖S‖_F² = Σ_{i≤k} σ_i²`` (zero singular values
    add nothing). Which singular values count as nonzero is ``rule``'s decision
    (``nonzero_singular_values``). Example: ``S = diag(4, 1, 0)`` has k = 2, ‖S‖_F² = 17,
    σ_min = 1, so ``R_ill = 1/(17/4 − 1/2) = 4/15 ≈ 0.267`` (counting the zero, k = 3 and
    σ_min = 0, would give ``6/17 ≈ 0.353``).

    The denominator is ``½(mean_{i≤k} σ_i² − σ_k²) ≥ 0`` (Theorem 4.1 (1)); minimising R_ill
    spreads the spectrum (ill-conditions the harmful task's Hessian). When the k nonzero
    singular values are equal (κ = 1) the denominator is 0 and ``R_ill = +∞`` (``math.inf``);
    a denominator within rounding of 0 (``≤ 8ε·mean σ_i²``) counts as 0. ``S = 0`` (k = 0) has
    no R_ill: ``AssumptionError``. ``divisor="dimension"`` replaces k by ``min(rows, cols)``
    (what the paper's code computes); its denominator can then be negative for a
    rank-deficient S, and the value is returned as computed (``IllDivisor``).
    """
    sigma = nonzero_singular_values(matrix, rule, shift)
    if sigma.size == 0:
        raise AssumptionError(OWNER, "matrix_nonzero", "R_ill(0) is undefined (rank 0)")
    if divisor not in ("rank", "dimension"):
        raise AssumptionError(OWNER, "divisor_known", f"divisor {divisor!r}")
    k = sigma.size if divisor == "rank" else min(np.shape(matrix))
    mean_square = float(np.sum(sigma**2) / k)
    spread = 0.5 * mean_square - 0.5 * float(sigma[-1]) ** 2
    rounding = 8.0 * np.finfo(np.float64).eps * mean_square
    if divisor == "dimension" and spread < -rounding:
        return 1.0 / spread
    return math.inf if spread <= rounding else 1.0 / spread


def feature_hessian(extractor: npt.ArrayLike, covariance: npt.ArrayLike) -> FloatArray:
    """``θᵀ K θ``: the Hessian of linear probing on features ``θᵀx`` when ``K`` is the data
    covariance (``θ`` shape ``(D, d')``, ``K`` shape ``(D, D)``, result ``(d', d')``)."""
    theta = as_matrix("extractor", extractor)
    kernel = as_matrix("covariance", covariance)
    if kernel.shape != (theta.shape[0], theta.shape[0]):
        detail = f"extractor has shape {theta.shape}, covariance has shape {kernel.shape}"
        raise AssumptionError(OWNER, "shapes_agree", detail)
    return np.asarray(theta.T @ kernel @ theta)


def relative_immunization_ratio(
    extractor: npt.ArrayLike,
    harmful_covariance: npt.ArrayLike,
    pretraining_covariance: npt.ArrayLike,
    rule: KappaRule = "pinv",
    shift: float = PAPER_SHIFT,
) -> float:
    """``RIR = [κ(θᵀK_Hθ)/κ(K_H)] / [κ(θᵀK_Pθ)/κ(K_P)]`` (Zheng et al., ICML 2025, Eq. (15)).

    How much more the extractor θ ill-conditions the harmful task than the pre-training task;
    ``RIR = 1`` for ``θ = I``, ``RIR ≫ 1`` is the paper's mark of a successful immunization
    (not, by itself, evidence that the harmful task got slower: see ``slowdown_verdict``).
    κ under ``rule`` (``KappaRule``).
    """
    return immunization_ratio_of_grams(
        harmful_before=harmful_covariance,
        harmful_after=feature_hessian(extractor, harmful_covariance),
        pretraining_before=pretraining_covariance,
        pretraining_after=feature_hessian(extractor, pretraining_covariance),
        rule=rule,
        shift=shift,
    )


def immunization_ratio_of_grams(
    *,
    harmful_before: npt.ArrayLike,
    harmful_after: npt.ArrayLike,
    pretraining_before: npt.ArrayLike,
    pretraining_after: npt.ArrayLike,
    rule: KappaRule = "pinv",
    shift: float = PAPER_SHIFT,
) -> float:
    """Eq. (15) from the four Hessians: ``[κ(H_H^after)/κ(H_H^before)] /
    [κ(H_P^after)/κ(H_P^before)]``, e.g. the Gram matrices ``FᵀF`` of the features of each task
    with the immunized map (after) and with the identity (before, the raw inputs ``XᵀX``),
    which is how the paper's code evaluates it (also with a bias term in the feature map).
    """
    harmful = condition_number(harmful_after, rule, shift) / condition_number(
        harmful_before, rule, shift
    )
    pretraining = condition_number(pretraining_after, rule, shift) / condition_number(
        pretraining_before, rule, shift
    )
    return harmful / pretraining


def rules_disagree(values: Mapping[str, float], factor: float = RULE_DISAGREEMENT_FACTOR) -> bool:
    """Whether one quantity (e.g. RIR) computed under several κ rules spreads by more than
    ``factor`` (``max/min > factor``); non-finite or non-positive values count as
    disagreement."""
    numbers = list(values.values())
    if not numbers:
        return False
    if not all(math.isfinite(v) and v > 0.0 for v in numbers):
        return True
    return max(numbers) / min(numbers) > factor


def top_singular_vector_angle(first: npt.ArrayLike, second: npt.ArrayLike) -> float:
    """Angle in ``[0, π/2]`` between the top left singular vectors of two covariances.

    ``arccos |u₁ᵀu₂|`` (singular vectors are defined up to sign). Zheng et al. (ICML 2025):
    whether a harmful/pre-training task pair can be immunized depends on this angle.
    Assumption: each top singular value is simple (relative gap ``> 1e-9``), otherwise the
    top singular vector is not defined.
    """
    vectors = []
    for name, value in (("first", first), ("second", second)):
        left, sigma, _ = np.linalg.svd(as_matrix(name, value))
        if sigma[0] == 0.0 or (sigma.size > 1 and sigma[0] - sigma[1] <= 1e-9 * sigma[0]):
            detail = f"{name}: top singular value {sigma[0]:g} is not simple"
            raise AssumptionError(OWNER, "top_singular_value_simple", detail)
        vectors.append(left[:, 0])
    if vectors[0].shape != vectors[1].shape:
        raise AssumptionError(OWNER, "shapes_agree", "covariances of different sizes")
    cosine = min(1.0, abs(float(vectors[0] @ vectors[1])))
    return math.acos(cosine)


# --------------------------------------------------------------------------- judged by slowdown
Verdict = Literal["immunized", "not immunized", "inconclusive"]


def relative_loss_increase(
    loss_star_before: float, loss_star_after: float, zero_loss: float
) -> float:
    """``(L*_after − L*_before) / (L(0) − L*_before)``: how much of the useful task's learnable
    loss range the immunized features give up (Zheng et al.'s Definition 3.1 (c), Eq. (7), asks
    for ``min L_P(θ^I) ≈ min L_P(I)``). ``L(0)`` is the loss of the zero predictor; a range of 0
    (nothing learnable) gives 0 when nothing was lost and ``+∞`` otherwise."""
    scale = zero_loss - loss_star_before
    increase = loss_star_after - loss_star_before
    if scale <= 0.0:
        return 0.0 if increase <= 0.0 else math.inf
    return increase / scale


@dataclass(frozen=True)
class SlowdownVerdict:
    """A condition-number immunization judged by what the attacker experiences.

    ``slowdown``: harmful steps-to-threshold after / before (``inf`` when the attack does not
    reach the threshold within its budget after immunization; ``nan`` when inconclusive).
    ``resistance``: ``slowdown ≥ min_slowdown`` (weak resistance, Rosati et al. 2024, read as a
    slowdown of the attacker's gradient descent at its budget). ``stability``: the useful task's
    best loss rose by at most ``stability_tolerance`` of its learnable range. ``trainability``
    (desirable, not required): the useful task's steps grew by at most
    ``trainability_factor``. ``rir_misleading``: RIR ≥ ``rir_large`` without resistance.
    """

    label: Verdict
    slowdown: float
    resistance: bool
    stability: bool
    trainability: bool
    rir_misleading: bool
    reasons: tuple[str, ...]


def slowdown_verdict(
    *,
    rir: float,
    harmful_steps_before: float,
    harmful_steps_after: float,
    useful_loss_increase: float,
    useful_steps_before: float,
    useful_steps_after: float,
    min_slowdown: float = 2.0,
    stability_tolerance: float = 0.05,
    trainability_factor: float = 2.0,
    rir_large: float = 10.0,
) -> SlowdownVerdict:
    """The verdict in the framework's terms from measured steps-to-threshold (``math.inf``: not
    reached within the attacker's budget).

    ``"immunized"`` iff resistance and stability hold; ``"inconclusive"`` when the attack does
    not reach the threshold on the original features within its budget (or is there at step 0:
    no slowdown can be measured); ``"not immunized"`` otherwise, in particular whenever
    ``RIR ≫ 1`` comes with no harmful slowdown (RIR can grow by making the *useful* task well
    conditioned while the harmful task gets faster too).
    """
    for name, value in (
        ("min_slowdown", min_slowdown),
        ("trainability_factor", trainability_factor),
    ):
        if not (math.isfinite(value) and value >= 1.0):
            raise AssumptionError(OWNER, f"{name}_at_least_one", f"{name} = {value}")
    if not (math.isfinite(stability_tolerance) and stability_tolerance >= 0.0):
        raise AssumptionError(OWNER, "stability_tolerance_nonnegative", f"{stability_tolerance}")
    stability = useful_loss_increase <= stability_tolerance
    trainability = useful_steps_after <= trainability_factor * useful_steps_before
    reasons: list[str] = []
    if not math.isfinite(harmful_steps_before) or harmful_steps_before <= 0:
        reasons.append(
            "the attack is at the threshold from the start"
            if harmful_steps_before == 0
            else "the attack does not reach the threshold on the original features within its "
            "budget: no slowdown can be measured"
        )
        return SlowdownVerdict(
            "inconclusive", math.nan, False, stability, trainability, False, tuple(reasons)
        )
    slowdown = harmful_steps_after / harmful_steps_before
    resistance = slowdown >= min_slowdown
    misleading = rir >= rir_large and not resistance
    if resistance:
        reasons.append(f"the harmful task is {slowdown:.3g}x slower (>= {min_slowdown:g}x)")
    elif slowdown < 1.0:
        reasons.append(f"the harmful task got FASTER ({slowdown:.3g}x the original steps)")
    else:
        reasons.append(f"the harmful task is only {slowdown:.3g}x slower (< {min_slowdown:g}x)")
    if misleading:
        reasons.append(f"RIR = {rir:.3g} >> 1 without a harmful slowdown: RIR misleads here")
    if not stability:
        reasons.append(
            f"the useful task lost {useful_loss_increase:.3g} of its learnable loss range "
            f"(> {stability_tolerance:g})"
        )
    if not trainability:
        reasons.append(
            "the useful task needs more than "
            f"{trainability_factor:g}x its original steps (trainability lost)"
        )
    label: Verdict = "immunized" if resistance and stability else "not immunized"
    return SlowdownVerdict(
        label, slowdown, resistance, stability, trainability, misleading, tuple(reasons)
    )
