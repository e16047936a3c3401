"""Estimators of the constants the theorems assume: β, G, μ, c (docs/theorems.md T1–T7).

The theorems of theory/ take properties of the loss as hypotheses (L is β-smooth, ‖∇L‖ ≤ G,
μ-PL, the attacker's updates contract by c). Numbers for those constants come from here,
measured on a real model and batch, and every estimate says how it was obtained (method,
counts of losses / gradients / Hessian-vector products, iterations, tolerance, convergence,
seconds), so a report can state the provenance of each constant next to the bound it feeds.

What each estimate is, honestly:

* ``smoothness`` — the extreme eigenvalues λ_max, λ_min of the Hessian ∇²L(θ) at one point
  and β(θ) = ‖∇²L(θ)‖₂ = max(|λ_max|, |λ_min|). β-smoothness on a region means
  ‖∇²L‖₂ ≤ β there, so β(θ) is a *lower* estimate of the β of any region containing θ.
  Upper bounds on the loss (T4, T7) need the most positive curvature λ_max; lower bounds
  (T1, T2) need the magnitude of the most negative one, |λ_min|. Immunized models have
  strong negative curvature (docs/science.md), so the dominant eigenvalue (what plain power
  iteration returns) may be λ_min, and reporting it as "the largest eigenvalue" would be
  wrong: both ends are always computed. Two methods:

  - power iteration (``method="power"``): v ← Hv/‖Hv‖ until the Rayleigh residual
    ‖Hv − λv‖ ≤ tol·|λ|; this finds the dominant eigenvalue λ_d; the same iteration on the
    shifted operator H − λ_d I finds the other end (its dominant eigenvalue is
    λ_other − λ_d). Golub & Van Loan, Matrix Computations (4th ed.), §8.2.1.
  - Lanczos (``method="lanczos"``, default): ARPACK's implicitly restarted Lanczos
    (``scipy.sparse.linalg.eigsh``, ``which="BE"``, k = 2: one eigenvalue from each end of
    the spectrum) on a ``LinearOperator`` of HVPs. Lehoucq, Sorensen & Yang, ARPACK Users'
    Guide (1998). Converges much faster than power iteration when |λ_max| ≈ |λ_min|.

* ``curvature_along_segment`` — κ = 2(L(θ+Δ) − L(θ) − ⟨∇L(θ),Δ⟩)/‖Δ‖², computed by
  theory's T1 ``segment_curvature``: the curvature the attacker actually met on one step;
  T1 gives |κ| ≤ β, so max |κ| over the steps is a lower estimate of β along the path.
* ``directional_curvature`` — ΔᵀH(θ)Δ/‖Δ‖², the exact second derivative along Δ at θ.
* ``gradient_bound`` — G = max ‖∇L‖ over given points (the iterates, or points sampled along
  the segments between them); a lower estimate of the G of T2, T3, T6.
* ``pl_ratios`` — ½‖∇L(θ)‖² / (L(θ) − L*) at points; its minimum is an empirical μ (an
  *upper* estimate of the μ that holds on a region containing the points).
* ``contraction`` — r_s = ‖u_{s+1}‖ / ‖u_s‖ of successive update norms; the maximum from
  step K on is the empirical c of the contraction hypothesis.

The last two ratios are not typed here: each is the *tightest constant* of a hypothesis that
theory states, obtained by ``sympy.solve`` of that hypothesis at equality for its constant
(T4's ``MU_PL`` solved for μ, T6's ``CONTRACTION`` solved for c): ``PL_RATIO`` and
``CONTRACTION_RATIO`` below.

All of them are measurements, not certificates: they feed theory's bounds with the caveat
that the hypotheses are checked only where they were measured.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import sympy as sp
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import Tensor, nn

from empirical.measurement.hvp import (
    CostCounter,
    HessianOperator,
    HvpMethod,
    LossLandscape,
    model_landscape,
)
from theory import symbols as sym
from theory.errors import HftaInputError
from theory.theorem import Assumption, lambdified
from theory.theorems import contraction_tail, pl_convergence
from theory.theorems.smoothness_sandwich import segment_curvature

SmoothnessMethod = Literal["lanczos", "power"]


def tightest_constant(hypothesis: Assumption, constant: sp.Symbol) -> sp.Expr:
    """The value of ``constant`` at which a theory hypothesis holds with equality.

    For a hypothesis ``lhs ≥ k·rhs`` (or ``≤``) measured at one point, this is the largest
    (or smallest) constant the measurement allows, e.g. μ = ½‖∇L‖²/(L − L*) from μ-PL.
    """
    statement = hypothesis.statement
    roots = sp.solve(sp.Eq(statement.lhs, statement.rhs), constant)  # type: ignore[attr-defined]
    if len(roots) != 1:  # pragma: no cover - both hypotheses are linear in their constant
        raise RuntimeError(f"{hypothesis.name}: expected one root in {constant}, got {roots}")
    root: sp.Expr = roots[0]
    return root


#: ½‖∇L‖²/(L − L*): T4's μ-PL hypothesis solved for μ (``grad_norm, L_s, L_star``).
PL_RATIO: sp.Expr = tightest_constant(pl_convergence.MU_PL, sym.mu)
#: ‖u_{s+1}‖/‖u_s‖: T6's contraction hypothesis solved for c (``u_next, u_s``).
CONTRACTION_RATIO: sp.Expr = tightest_constant(contraction_tail.CONTRACTION, sym.c)
_PL_ARGS = (sym.grad_norm, sym.L_s, sym.L_star)
_CONTRACTION_ARGS = (sym.u_next, sym.u_s)


def pl_ratio(*, loss: float, loss_floor: float, gradient_norm: float) -> float:
    """``PL_RATIO`` at one point (requires loss > loss_floor)."""
    return float(lambdified(PL_RATIO, _PL_ARGS)(gradient_norm, loss, loss_floor))


def contraction_ratio(*, update_norm: float, next_update_norm: float) -> float:
    """``CONTRACTION_RATIO`` of one pair of steps; 0 if both norms are 0, inf if only ‖u_s‖ is.

    (With ‖u_s‖ = 0 < ‖u_{s+1}‖ no c satisfies the hypothesis at that step.)
    """
    if update_norm == 0.0:
        return 0.0 if next_update_norm == 0.0 else math.inf
    return float(lambdified(CONTRACTION_RATIO, _CONTRACTION_ARGS)(next_update_norm, update_norm))


DEFAULT_TOLERANCE = 1e-3
"""Relative tolerance of eigenvalue estimates (float32 HVPs carry ~1e-6 relative noise)."""


class Estimate(BaseModel):
    """One estimated constant with its provenance (JSON-serialisable).

    Attributes:
        quantity: what was estimated ("beta", "G", "mu", "c", "segment_curvature", ...).
        value: the estimate.
        method: how ("lanczos", "power_iteration", "max_gradient_norm", ...).
        losses, gradients, hvps, graphs: oracle calls consumed (see ``CostCounter``).
        iterations: iterations of an iterative method (0 if none); for Lanczos, the number
            of operator applications ARPACK asked for.
        tolerance: its stopping tolerance (None if none).
        converged: whether it met that tolerance.
        points: how many parameter points the estimate looked at.
        seconds: wall-clock time.
        details: the numbers behind the value (per-point values, arg-max ...).
    """

    model_config = ConfigDict(frozen=True)

    quantity: str
    value: float
    method: str
    losses: int = 0
    gradients: int = 0
    hvps: int = 0
    graphs: int = 0
    iterations: int = 0
    tolerance: float | None = None
    converged: bool = True
    points: int = 1
    seconds: float = 0.0
    details: dict[str, Any] = Field(default_factory=dict)


class SmoothnessEstimate(Estimate):
    """The Hessian's extreme eigenvalues at one point and β = max(|λ_max|, |λ_min|)."""

    lambda_max: float
    lambda_min: float
    beta: float


# ---------------------------------------------------------------------- bookkeeping
class _Clock:
    """Counts the oracle calls and the time spent between construction and ``fields``."""

    def __init__(self, counter: CostCounter) -> None:
        self.counter = counter
        self.start_counts = counter.snapshot()
        self.started = time.perf_counter()

    def fields(self) -> dict[str, Any]:
        used = self.counter.since(self.start_counts)
        return {
            "losses": used.losses,
            "gradients": used.gradients,
            "hvps": used.hvps,
            "graphs": used.graphs,
            "seconds": time.perf_counter() - self.started,
        }


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HftaInputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _tolerance(value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0 < value < 1):
        raise HftaInputError(f"tolerance must lie in (0, 1), got {value!r}")
    return float(value)


# ---------------------------------------------------------------------- eigenvalues
MatVec = Callable[[Tensor], Tensor]


def _single_threaded_blas() -> contextlib.AbstractContextManager[object]:
    """Limit BLAS to one thread while ARPACK runs (``threadpoolctl``, when installed).

    ARPACK's re-orthogonalisation calls BLAS; with several BLAS threads on a busy machine
    those calls cost as much as the Hessian-vector products themselves (measured: 0.71 s vs
    0.10 s for 22 calls at d ≈ 10⁵ on 2 shared cores). Without ``threadpoolctl`` the
    estimate is the same, only slower.
    """
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - performance only
        return contextlib.nullcontext()
    limits: contextlib.AbstractContextManager[object] = threadpool_limits(limits=1, user_api="blas")
    return limits


def _power_iteration(
    matvec: MatVec,
    start: Tensor,
    *,
    max_iterations: int,
    tolerance: float,
    scale: float | None = None,
) -> tuple[float, int, bool]:
    """Dominant eigenvalue of a symmetric operator: (λ, iterations used, converged).

    Stops when the Rayleigh residual ‖Av − λv‖ ≤ tol·s with s = ``scale`` (default |λ|):
    for a symmetric A some eigenvalue then lies within that residual of the Rayleigh
    quotient λ (Golub & Van Loan, Thm 8.1.4 / Weyl).
    """
    vector = start / torch.linalg.vector_norm(start)
    eigenvalue = 0.0
    for iteration in range(1, max_iterations + 1):
        image = matvec(vector)
        eigenvalue = float(torch.dot(vector, image))
        residual = float(torch.linalg.vector_norm(image - eigenvalue * vector))
        reference = abs(eigenvalue) if scale is None else scale
        if residual <= tolerance * reference or residual == 0.0:
            return eigenvalue, iteration, True
        norm = torch.linalg.vector_norm(image)
        if float(norm) == 0.0:  # v in the null space: λ = 0 is exact for this start
            return 0.0, iteration, True
        vector = image / norm
    return eigenvalue, max_iterations, False


def hessian_extremes_power(
    operator: HessianOperator,
    *,
    max_iterations: int = 200,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    advance: Callable[[int, int], None] | None = None,
) -> SmoothnessEstimate:
    """λ_max and λ_min of the Hessian by power iteration plus one shifted power iteration.

    First pass: the dominant eigenvalue λ_d (largest |λ|). Second pass on H − λ_d I, whose
    eigenvalues λ_i − λ_d all have the sign of −λ_d, so its dominant one is λ_other − λ_d,
    with λ_other the opposite end of the spectrum (λ_min if λ_d > 0, λ_max if λ_d < 0).
    ``iterations`` counts both passes; ``converged`` requires both to converge.
    ``advance(products, 0)`` is called after every Hessian-vector product (progress; how
    many the passes need is not known in advance).
    """
    _positive_int(max_iterations, "max_iterations")
    tol = _tolerance(tolerance)
    clock = _Clock(operator.landscape.counter)
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(operator.dimension, generator=generator, dtype=operator.landscape.dtype)
    start = start.to(operator.landscape.device)  # drawn on the CPU's generator: same values
    products = 0

    def matvec(vector: Tensor) -> Tensor:
        nonlocal products
        image = operator.matvec(vector)
        products += 1
        if advance is not None:
            advance(products, 0)
        return image

    dominant, first_iterations, first_ok = _power_iteration(
        matvec, start, max_iterations=max_iterations, tolerance=tol
    )

    def shifted(vector: Tensor) -> Tensor:
        return matvec(vector) - dominant * vector

    # The shifted pass is judged against the spectrum's scale |λ_d|, not its own eigenvalue
    # (which is ~0 when the spectrum is nearly a single point).
    gap, second_iterations, second_ok = _power_iteration(
        shifted,
        torch.randn(
            operator.dimension, generator=generator, dtype=operator.landscape.dtype
        ).to(operator.landscape.device),
        max_iterations=max_iterations,
        tolerance=tol,
        scale=abs(dominant),
    )
    other = dominant + gap
    lambda_max, lambda_min = max(dominant, other), min(dominant, other)
    beta = max(abs(lambda_max), abs(lambda_min))
    return SmoothnessEstimate(
        quantity="beta",
        value=beta,
        method=f"power_iteration+shifted ({operator.method} HVP)",
        iterations=first_iterations + second_iterations,
        tolerance=tol,
        converged=first_ok and second_ok,
        lambda_max=lambda_max,
        lambda_min=lambda_min,
        beta=beta,
        details={"dominant_eigenvalue": dominant, "dimension": operator.dimension},
        **clock.fields(),
    )


def hessian_extremes_lanczos(
    operator: HessianOperator,
    *,
    max_iterations: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    advance: Callable[[int, int], None] | None = None,
) -> SmoothnessEstimate:
    """λ_max and λ_min of the Hessian by implicitly restarted Lanczos (ARPACK ``eigsh``).

    ``which="BE"`` with k = 2 asks for one eigenvalue from each end of the spectrum in one
    Krylov space; ``tolerance`` is ARPACK's relative accuracy of the Ritz values;
    ``max_iterations`` its restart limit (None: ARPACK's default 10·d). For d ≤ 2 the Hessian
    is formed exactly from d products with the basis vectors (method "dense").
    ``advance(products, 0)`` is called after every Hessian-vector product (progress; ARPACK
    decides how many it needs; ``advance(i, d)`` for the dense case).
    """
    tol = _tolerance(tolerance)
    if max_iterations is not None:
        _positive_int(max_iterations, "max_iterations")
    clock = _Clock(operator.landscape.counter)
    dimension = operator.dimension
    dtype = operator.landscape.dtype
    iterations = 0
    converged = True
    if dimension <= 2:
        basis = torch.eye(dimension, dtype=dtype)
        rows = []
        for i in range(dimension):
            rows.append(operator.matvec(basis[i]))
            if advance is not None:
                advance(i + 1, dimension)
        dense = torch.stack(rows).double()
        eigenvalues = np.linalg.eigvalsh(((dense + dense.T) / 2).cpu().numpy())
        method = "dense"
    else:

        def matvec(x: np.ndarray) -> np.ndarray:
            nonlocal iterations
            iterations += 1
            product = operator.matvec(torch.from_numpy(np.asarray(x).reshape(-1)).to(dtype))
            if advance is not None:
                advance(iterations, 0)
            return product.double().cpu().numpy()

        linear = LinearOperator((dimension, dimension), matvec=matvec, dtype=np.float64)
        start = np.random.default_rng(seed).standard_normal(dimension)
        with _single_threaded_blas():
            try:
                eigenvalues = eigsh(
                    linear,
                    k=2,
                    which="BE",
                    tol=tol,
                    v0=start,
                    maxiter=max_iterations,
                    return_eigenvectors=False,
                )
            except ArpackNoConvergence as exc:
                found = np.asarray(exc.eigenvalues, dtype=np.float64)
                if found.size < 2:
                    raise HftaInputError(
                        f"Lanczos did not converge within {max_iterations} restarts "
                        f"(tolerance {tol}); raise max_iterations or the tolerance"
                    ) from None
                eigenvalues, converged = found, False
        method = "lanczos"
    lambda_max, lambda_min = float(np.max(eigenvalues)), float(np.min(eigenvalues))
    beta = max(abs(lambda_max), abs(lambda_min))
    return SmoothnessEstimate(
        quantity="beta",
        value=beta,
        method=f"{method} ({operator.method} HVP)",
        iterations=iterations,
        tolerance=tol,
        converged=converged,
        lambda_max=lambda_max,
        lambda_min=lambda_min,
        beta=beta,
        details={"dimension": dimension},
        **clock.fields(),
    )


def smoothness_of(
    landscape: LossLandscape,
    theta: Tensor | None = None,
    *,
    method: SmoothnessMethod = "lanczos",
    hvp_method: HvpMethod = "reuse_graph",
    max_iterations: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    advance: Callable[[int, int], None] | None = None,
) -> SmoothnessEstimate:
    """β(θ) = ‖∇²L(θ)‖₂ with both extreme eigenvalues, at θ (default: the landscape's origin);
    ``advance(products, 0)`` after every Hessian-vector product (``empirical.progress``)."""
    operator = landscape.hessian_at(theta, method=hvp_method)
    try:
        if method == "lanczos":
            return hessian_extremes_lanczos(
                operator,
                max_iterations=max_iterations,
                tolerance=tolerance,
                seed=seed,
                advance=advance,
            )
        if method == "power":
            return hessian_extremes_power(
                operator,
                max_iterations=200 if max_iterations is None else max_iterations,
                tolerance=tolerance,
                seed=seed,
                advance=advance,
            )
        raise HftaInputError(f"unknown smoothness method {method!r}; use 'lanczos' or 'power'")
    finally:
        operator.release()


def smoothness(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    *,
    method: SmoothnessMethod = "lanczos",
    trainable_only: bool = True,
    hvp_method: HvpMethod = "reuse_graph",
    max_iterations: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> SmoothnessEstimate:
    """Local smoothness of the model's loss on ``batch`` at its current parameters.

    Returns ``SmoothnessEstimate(lambda_max, lambda_min, beta = max(|λ_max|, |λ_min|))``
    over the trainable parameters (all of them with ``trainable_only=False``).
    """
    landscape = model_landscape(model, batch, trainable_only=trainable_only)
    return smoothness_of(
        landscape,
        method=method,
        hvp_method=hvp_method,
        max_iterations=max_iterations,
        tolerance=tolerance,
        seed=seed,
    )


# ---------------------------------------------------------------------- curvature along Δ
def directional_curvature(
    landscape: LossLandscape,
    direction: Tensor,
    theta: Tensor | None = None,
    *,
    hvp_method: HvpMethod = "reuse_graph",
) -> Estimate:
    """ΔᵀH(θ)Δ / ‖Δ‖², the exact second derivative of L along Δ at θ (one HVP)."""
    clock = _Clock(landscape.counter)
    norm = float(torch.linalg.vector_norm(direction))
    if not norm > 0:
        raise HftaInputError("directional curvature needs a non-zero direction")
    operator = landscape.hessian_at(theta, method=hvp_method)
    value = operator.quadratic_form(direction) / norm**2
    operator.release()
    return Estimate(
        quantity="directional_curvature",
        value=value,
        method=f"rayleigh_quotient ({hvp_method} HVP)",
        details={"direction_norm": norm},
        **clock.fields(),
    )


def curvature_along_segment(landscape: LossLandscape, start: Tensor, end: Tensor) -> Estimate:
    """κ over the segment [start, end] by theory's T1 ``segment_curvature``.

    Measures L(θ), ⟨∇L(θ), Δ⟩ (one gradient) and L(θ+Δ) (one loss) with θ = start,
    Δ = end − start; κ = 2(L(θ+Δ) − L(θ) − ⟨∇L(θ),Δ⟩)/‖Δ‖² is the mean curvature the
    segment saw (exactly ΔᵀHΔ/‖Δ‖² on a quadratic).
    """
    clock = _Clock(landscape.counter)
    delta = end.to(landscape.dtype) - start.to(landscape.dtype)
    loss_start, gradient = landscape.gradient(start)
    loss_end = landscape.loss(end)
    gdot = float(torch.dot(gradient, delta))
    delta_norm = float(torch.linalg.vector_norm(delta))
    kappa = segment_curvature(L0=loss_start, L1=loss_end, gdot=gdot, delta_norm=delta_norm)
    return Estimate(
        quantity="segment_curvature",
        value=kappa,
        method="T1 segment_curvature (losses at both ends, gradient at the start)",
        points=2,
        details={"L0": loss_start, "L1": loss_end, "gdot": gdot, "delta_norm": delta_norm},
        **clock.fields(),
    )


def segment_curvatures(landscape: LossLandscape, points: Sequence[Tensor]) -> Estimate:
    """κ_s of each segment [θ_s, θ_{s+1}] of a path; value = max_s |κ_s| (≤ β by T1).

    ``details`` holds every κ_s and the index of the largest |κ_s|; segments of zero length
    are skipped (their curvature is undefined) and counted in ``details["skipped"]``.
    """
    if len(points) < 2:
        raise HftaInputError("segment curvatures need at least two points")
    clock = _Clock(landscape.counter)
    kappas: list[float] = []
    indices: list[int] = []
    for index, (start, end) in enumerate(itertools.pairwise(points)):
        if float(torch.linalg.vector_norm(end - start)) == 0.0:
            continue
        kappas.append(curvature_along_segment(landscape, start, end).value)
        indices.append(index)
    if not kappas:
        raise HftaInputError("every segment of the path has zero length")
    worst = int(np.argmax(np.abs(kappas)))
    return Estimate(
        quantity="max_abs_segment_curvature",
        value=abs(kappas[worst]),
        method="T1 segment_curvature on each segment, max |kappa|",
        points=len(points),
        details={
            "curvatures": kappas,
            "segments": indices,
            "argmax_segment": indices[worst],
            "max_curvature": max(kappas),
            "min_curvature": min(kappas),
            "skipped": len(points) - 1 - len(kappas),
        },
        **clock.fields(),
    )


# ---------------------------------------------------------------------- gradient bound G
def path_points(points: Sequence[Tensor], samples_per_segment: int = 1) -> list[Tensor]:
    """The points plus ``samples_per_segment − 1`` evenly spaced interior points per segment.

    With m = ``samples_per_segment``: θ_s + (j/m)(θ_{s+1} − θ_s) for j = 0..m−1 on every
    segment, then the last point (m = 1 returns the points themselves).
    """
    _positive_int(samples_per_segment, "samples_per_segment")
    if not points:
        raise HftaInputError("a path needs at least one point")
    sampled: list[Tensor] = []
    for start, end in itertools.pairwise(points):
        for j in range(samples_per_segment):
            sampled.append(start + (j / samples_per_segment) * (end - start))
    sampled.append(points[-1])
    return sampled


def gradient_bound(
    landscape: LossLandscape,
    points: Sequence[Tensor],
    advance: Callable[[int, int], None] | None = None,
    known: Mapping[int, float] | None = None,
) -> Estimate:
    """G = max ‖∇L(θ)‖ over the given points (a lower estimate of any valid G there);
    ``advance(i, n)`` after the i-th of the n points (progress). ``known``: ‖∇L‖ already
    measured at some points, by index (e.g. an attack's recorded probe-gradient norms at its
    iterates, ``empirical.certify.constants``), used instead of a gradient there
    (``details["known_points"]`` counts them)."""
    if not points:
        raise HftaInputError("a gradient bound needs at least one point")
    given = dict(known or {})
    if any(not 0 <= index < len(points) for index in given):
        raise HftaInputError("a known gradient norm names a point that is not given")
    clock = _Clock(landscape.counter)
    norms: list[float] = []
    for index, point in enumerate(points):
        norm = given.get(index)
        if norm is None:
            norm = float(torch.linalg.vector_norm(landscape.gradient(point)[1]))
        norms.append(norm)
        if advance is not None:
            advance(len(norms), len(points))
    worst = int(np.argmax(norms))
    return Estimate(
        quantity="G",
        value=norms[worst],
        method="max_gradient_norm",
        points=len(points),
        details={"gradient_norms": norms, "argmax_point": worst, "known_points": len(given)},
        **clock.fields(),
    )


def gradient_bound_along_path(
    landscape: LossLandscape,
    points: Sequence[Tensor],
    samples_per_segment: int = 4,
    advance: Callable[[int, int], None] | None = None,
    known: Mapping[int, float] | None = None,
) -> Estimate:
    """G along the segments of a path: ``gradient_bound`` on ``path_points(points, m)``;
    ``known``: ‖∇L‖ at some of the given ``points`` (by their index in ``points``: point s is
    ``path_points``' index s·m)."""
    sampled = path_points(points, samples_per_segment)
    at = {s * samples_per_segment: norm for s, norm in (known or {}).items()}
    estimate = gradient_bound(landscape, sampled, advance, at)
    return estimate.model_copy(
        update={
            "method": f"max_gradient_norm on {samples_per_segment} samples per segment",
            "details": {**estimate.details, "samples_per_segment": samples_per_segment},
        }
    )


# ---------------------------------------------------------------------- PL constant μ
def pl_ratios_from(
    losses: Sequence[float], gradient_norms: Sequence[float], loss_floor: float = 0.0
) -> Estimate:
    """μ̂ = min_i ½‖∇L_i‖² / (L_i − L*) from measured losses and gradient norms (T4's ratio).

    ``loss_floor`` is L* (a lower estimate: 0 for a cross-entropy, or below the best loss
    seen). Points with L_i = L* are skipped (the PL inequality holds there trivially);
    L_i < L* raises: the floor was not a lower bound.
    """
    if len(losses) != len(gradient_norms) or not losses:
        raise HftaInputError("PL ratios need as many gradient norms as losses (at least one)")
    ratios: list[float] = []
    used: list[int] = []
    for index, (loss, norm) in enumerate(zip(losses, gradient_norms, strict=True)):
        if not (math.isfinite(loss) and math.isfinite(norm)) or norm < 0:
            raise HftaInputError(f"point {index}: loss {loss} or gradient norm {norm} invalid")
        if loss < loss_floor:
            raise HftaInputError(
                f"point {index}: loss {loss} is below the floor L* = {loss_floor}; "
                "pass a lower loss_floor"
            )
        if loss == loss_floor:
            continue
        ratios.append(pl_ratio(loss=loss, loss_floor=loss_floor, gradient_norm=norm))
        used.append(index)
    if not ratios:
        raise HftaInputError("every point sits at the loss floor; the PL ratio is undefined")
    worst = int(np.argmin(ratios))
    return Estimate(
        quantity="mu",
        value=ratios[worst],
        method="min PL ratio (T4 mu_pl solved for mu)",
        points=len(losses),
        details={
            "ratios": ratios,
            "points_used": used,
            "argmin_point": used[worst],
            "loss_floor": loss_floor,
        },
    )


def pl_ratios(
    landscape: LossLandscape, points: Sequence[Tensor], loss_floor: float = 0.0
) -> Estimate:
    """μ̂ at the given points: one gradient each, then ``pl_ratios_from``."""
    if not points:
        raise HftaInputError("PL ratios need at least one point")
    clock = _Clock(landscape.counter)
    losses: list[float] = []
    norms: list[float] = []
    for point in points:
        loss, gradient = landscape.gradient(point)
        losses.append(loss)
        norms.append(float(torch.linalg.vector_norm(gradient)))
    estimate = pl_ratios_from(losses, norms, loss_floor)
    return estimate.model_copy(
        update={
            **clock.fields(),
            "details": {**estimate.details, "losses": losses, "gradient_norms": norms},
        }
    )


# ---------------------------------------------------------------------- contraction c
def contraction(update_norms: Sequence[float], start_step: int = 0) -> Estimate:
    """c = max_{s ≥ K} ‖u_{s+1}‖ / ‖u_s‖ from a sequence of update norms (T6's ratio).

    ``start_step`` is K. ``details["ratios"]`` lists every r_s (s = 0 … n−2) so a reader
    can pick another K; ``value`` < 1 means the tail contracted over the measured steps.
    """
    norms = [float(u) for u in update_norms]
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
        raise HftaInputError(f"start_step must be a non-negative integer, got {start_step!r}")
    if len(norms) < start_step + 2:
        raise HftaInputError(
            f"contraction from step {start_step} needs at least {start_step + 2} update norms, "
            f"got {len(norms)}"
        )
    if any(not (math.isfinite(u) and u >= 0) for u in norms):
        raise HftaInputError("update norms must be finite and non-negative")
    ratios = [
        contraction_ratio(update_norm=current, next_update_norm=following)
        for current, following in itertools.pairwise(norms)
    ]
    tail = ratios[start_step:]
    worst = start_step + int(np.argmax(tail))
    return Estimate(
        quantity="c",
        value=ratios[worst],
        method="max ratio of successive update norms (T6 contraction solved for c)",
        points=len(norms),
        details={"ratios": ratios, "start_step": start_step, "argmax_step": worst},
    )
