r"""T5 ``quadratic_gd``: exact gradient descent on quadratics and least squares.

Statement (docs/theorems.md, T5). ``L(θ) = L* + ½ (θ − θ*)ᵀ H (θ − θ*)`` with H symmetric
PSD, eigenpairs ``(λ_i, v_i)``; least squares ``(1/2n)‖Xw − y‖²`` is the case
``H = XᵀX/n``. Gradient descent with constant step η, ``θ_{t+1} = θ_t − ηH(θ_t − θ*)``, gives

    θ_t − θ* = (I − ηH)^t (θ_0 − θ*),
    L_t − L* = ½ Σ_{i=0}^{n−1} λ_i (1 − ηλ_i)^{2t} c_i²,   c_i = v_iᵀ(θ_0 − θ*).

Parameters: ``η > 0``, ``λ_i ≥ 0`` (stated as ``λ_min ≥ 0``), integer ``t ≥ 0``. The closed
form holds for every η; the loss is non-increasing in t exactly when every
``|1 − ηλ_i| ≤ 1``, i.e. ``ηλ_max ≤ 2``, which ``steps_to_threshold`` requires. With
``η = 1/λ_max`` the slowest mode contracts by ``1 − λ_min/λ_max = 1 − 1/κ`` per step.

Numeric interface (overrides of the base class; the inputs are arrays):

* ``THEOREM.evaluate(eta=, t=, eigenvalues=, coefficients=, L_star=0)`` (``lambda=``,
  ``c=`` are accepted for the arrays, as ``parameters`` names them) or
  ``THEOREM.evaluate(eta=, t=, hessian=, theta_0=, theta_star=, L_star=0)`` → ``L_t``
  (float), from the sympy summand above (lambdified, summed with ``math.fsum``).
* ``THEOREM.steps_to_threshold(tau, <same inputs without t>)`` → the exact smallest t with
  ``L_t ≤ τ`` (``math.inf`` if the loss never gets there), by doubling then bisection on the
  monotone sequence; ``ηλ_max > 2`` raises ``AssumptionError`` (assumption
  ``eta_at_most_two_over_lambda_max``).
* ``THEOREM.holds(L_t=<measured>, <same inputs>)``: the measured loss equals the closed form
  to relative tolerance ``HOLDS_RTOL``.

Arithmetic is float64: a mode whose factor ``1 − ηλ_i`` rounds to ±1 is treated as
non-decaying.

Source: the spectral solution of a linear recurrence (e.g. Nesterov, Introductory Lectures on
Convex Optimization, 2004, §1.2); Zheng, Bai, Bullins, Yeh, "Model Immunization from a
Condition Number Perspective" (ICML 2025) for the condition-number reading; the numerics
(κ, R_well, R_ill, RIR) live in ``theory.quadratic``.

>>> THEOREM.evaluate(eta=0.5, t=1, eigenvalues=[1.0], coefficients=[2.0])
0.5
>>> THEOREM.steps_to_threshold(0.1, eta=0.5, eigenvalues=[1.0], coefficients=[2.0])
3.0
>>> THEOREM.steps_to_threshold(0.0, eta=0.5, eigenvalues=[1.0], coefficients=[2.0])
inf
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import sympy as sp

from theory.errors import AssumptionError
from theory.quadratic import (
    SEARCH_LIMIT,
    FloatArray,
    ModalQuadratic,
    condition_number,
    first_step_at_or_below,
    least_squares_loss,
    least_squares_quadratic,
)
from theory.theorem import Assumption, StepsKind, Theorem, derived

# --------------------------------------------------------------------------- symbols
eta = sp.Symbol("eta", real=True)
t = sp.Symbol("t", integer=True)
n = sp.Symbol("n", integer=True)
i = sp.Symbol("i", integer=True)
d = sp.Symbol("d", integer=True)
L_star = sp.Symbol("L_star", real=True)
L_t = sp.Symbol("L_t", real=True)
lambda_min = sp.Symbol("lambda_min", real=True)
lambda_max = sp.Symbol("lambda_max", real=True)
kappa = sp.Symbol("kappa", real=True)
eigenvalue = sp.IndexedBase("lambda", real=True)
coefficient = sp.IndexedBase("c", real=True)

#: Per-mode scalars used to compile the summand to numpy.
lambda_i = sp.Symbol("lambda_i", real=True)
c_i = sp.Symbol("c_i", real=True)

# Matrix form: θ_{t+1} = θ_t − ηH(θ_t − θ*) and θ_t − θ* = (I − ηH)^t (θ_0 − θ*).
H = sp.MatrixSymbol("H", d, d)
theta_0 = sp.MatrixSymbol("theta_0", d, 1)
theta_t = sp.MatrixSymbol("theta_t", d, 1)
theta_next = sp.MatrixSymbol("theta_{t+1}", d, 1)
theta_star = sp.MatrixSymbol("theta_star", d, 1)
X = sp.MatrixSymbol("X", n, d)

#: One mode's excess loss ½ λ_i (1 − ηλ_i)^{2t} c_i².
EXCESS_LOSS_SUMMAND: sp.Expr = (
    sp.Rational(1, 2) * lambda_i * (1 - eta * lambda_i) ** (2 * t) * c_i**2
)

#: Relative tolerance of ``holds`` (measured loss vs closed form).
HOLDS_RTOL = 1e-9

ExcessLoss = Callable[[FloatArray, FloatArray, float, float], float]


def compile_excess_loss(summand: sp.Expr) -> ExcessLoss:
    """``(λ, c, η, t) ↦ Σ_i summand(λ_i, c_i, η, t)`` in float64 (numpy, then ``math.fsum``).

    T5 compiles ``EXCESS_LOSS_SUMMAND``; tests compile deliberately wrong summands through the
    same path (negative controls). The ``lambdify`` runs at the first call, not here: the
    theorem's field is built on import, and listing the catalogue evaluates nothing.
    """

    @functools.cache
    def per_mode() -> Callable[..., Any]:
        return sp.lambdify((lambda_i, c_i, eta, t), summand, modules="numpy")  # type: ignore[no-any-return]

    def excess(
        eigenvalues: FloatArray, coefficients: FloatArray, step: float, steps: float
    ) -> float:
        values = np.broadcast_to(
            per_mode()(eigenvalues, coefficients, step, steps), eigenvalues.shape
        )
        return math.fsum(values.tolist())

    return excess


def _indexed(expr: sp.Expr) -> sp.Expr:
    """The per-mode scalars λ_i, c_i written as the indexed λ[i], c[i]."""
    return expr.subs({lambda_i: eigenvalue[i], c_i: coefficient[i]})


def _loss_at_t() -> sp.Expr:
    """``L* + Σ_{i=0}^{n−1} ½ λ[i] (1 − ηλ[i])^{2t} c[i]²``: the loss after t steps."""
    excess = sp.Sum(_indexed(EXCESS_LOSS_SUMMAND), (i, 0, n - 1))
    return L_star + excess


def _recurrence() -> sp.Basic:
    """``θ_{t+1} = θ_t − ηH(θ_t − θ*)``."""
    return sp.Eq(theta_next, theta_t - eta * H * (theta_t - theta_star))


def _trajectory() -> sp.Basic:
    """``θ_t − θ* = (I − ηH)^t (θ_0 − θ*)``."""
    return sp.Eq(
        theta_t - theta_star, sp.MatPow(sp.Identity(d) - eta * H, t) * (theta_0 - theta_star)
    )


def _slowest_contraction() -> sp.Expr:
    """``1 − ηλ_min`` at ``η = 1/λ_max``, written in ``κ = λ_max/λ_min``: ``(κ − 1)/κ``."""
    slowest = (1 - eta * lambda_min).subs(eta, 1 / lambda_max)
    in_kappa: sp.Expr = sp.cancel(slowest.subs(lambda_min, lambda_max / kappa))
    return in_kappa


def _assumptions() -> tuple[Assumption, ...]:
    """T5's parameter assumptions and its hypothesis (L is exactly quadratic)."""
    return (
        Assumption("eta_positive", eta > 0, "step size η > 0"),
        Assumption(
            "eigenvalues_nonnegative",
            lambda_min >= 0,
            "H is positive semi-definite: every eigenvalue λ_i ≥ λ_min ≥ 0",
        ),
        Assumption("t_nonnegative", t >= 0, "integer step count t ≥ 0"),
        Assumption(
            "eta_at_most_two_over_lambda_max",
            eta * lambda_max <= 2,
            "ηλ_max ≤ 2, so every |1 − ηλ_i| ≤ 1 and L_t is non-increasing; "
            "needed by steps_to_threshold only (the closed form holds for every η)",
        ),
        Assumption(
            "quadratic_loss",
            sp.Eq(
                sp.Function("L")(theta_t),
                L_star
                + sp.Rational(1, 2) * ((theta_t - theta_star).T * H * (theta_t - theta_star))[0, 0],
            ),
            "L is exactly quadratic with symmetric PSD Hessian H and minimiser θ*",
            kind="hypothesis",
        ),
    )


@dataclass(frozen=True)
class QuadraticGradientDescent(Theorem):
    """T5: exact loss trajectory of gradient descent on a quadratic (see module docstring)."""

    label: ClassVar[str] = "T5"
    name: ClassVar[str] = "quadratic_gd"
    title: ClassVar[str] = "Exact gradient descent on quadratics / least squares; condition number"
    source: ClassVar[str] = (
        "Spectral solution of the gradient-descent recurrence on a quadratic (Nesterov 2004, "
        "§1.2); Zheng, Bai, Bullins, Yeh, ICML 2025 (condition number, R_well, R_ill, RIR)"
    )
    steps_kind: ClassVar[StepsKind | None] = "exact"

    # Every statement is derived when first read (``theory.theorem.derived``): listing the
    # catalogue builds none of the matrix expressions.
    assumptions: tuple[Assumption, ...] = field(default=derived(lambda _: _assumptions()))
    conclusion: sp.Basic = field(default=derived(lambda _: sp.Eq(L_t, _loss_at_t())))
    bound: sp.Expr = field(default=derived(lambda _: _loss_at_t()))
    #: θ_{t+1} = θ_t − ηH(θ_t − θ*).
    recurrence: sp.Basic = field(default=derived(lambda _: _recurrence()))
    #: θ_t − θ* = (I − ηH)^t (θ_0 − θ*).
    trajectory: sp.Basic = field(default=derived(lambda _: _trajectory()))
    #: H = XᵀX/n for least squares (1/2n)‖Xw − y‖².
    least_squares_hessian: sp.Basic = field(default=derived(lambda _: sp.Eq(H, X.T * X / n)))
    #: κ = λ_max/λ_min.
    condition_number: sp.Basic = field(
        default=derived(lambda _: sp.Eq(kappa, lambda_max / lambda_min))
    )
    #: slowest-mode factor 1 − ηλ_min at η = 1/λ_max, written in κ: 1 − 1/κ.
    slowest_mode_contraction: sp.Expr = field(default=derived(lambda _: _slowest_contraction()))
    excess_loss: ExcessLoss = field(default=compile_excess_loss(EXCESS_LOSS_SUMMAND), repr=False)

    # ----------------------------------------------------------------- inputs
    @property
    def parameters(self) -> tuple[sp.Symbol, ...]:
        """Inputs of ``evaluate``: ``L_star``, ``c`` (array), ``eta``, ``lambda`` (array), ``t``."""
        return (L_star, coefficient.label, eta, eigenvalue.label, t)

    def modal_problem(self, values: Mapping[str, Any]) -> ModalQuadratic:
        """The quadratic in eigen-coordinates from ``eigenvalues``/``coefficients`` (also
        accepted under the symbol names ``lambda``/``c``, a scalar meaning one mode) or from
        ``hessian``/``theta_0``/``theta_star``, plus optional ``L_star`` (default 0)."""
        aliases = {"lambda": "eigenvalues", "c": "coefficients"}
        values = {aliases.get(key, key): value for key, value in values.items()}
        loss_star = _scalar(values.get("L_star", 0.0), "L_star")
        modal = {"eigenvalues", "coefficients"}
        matrix = {"hessian", "theta_0", "theta_star"}
        given = set(values) & (modal | matrix)
        if given == modal:
            return ModalQuadratic(
                np.atleast_1d(np.asarray(values["eigenvalues"], dtype=np.float64)),
                np.atleast_1d(np.asarray(values["coefficients"], dtype=np.float64)),
                loss_star,
            )
        if given == matrix:
            return ModalQuadratic.from_hessian(
                values["hessian"], values["theta_0"], values["theta_star"], loss_star
            )
        detail = f"give eigenvalues+coefficients or hessian+theta_0+theta_star, got {sorted(given)}"
        raise AssumptionError(self.label, "inputs_given", detail)

    def _checked(
        self, values: Mapping[str, Any], *, monotone: bool
    ) -> tuple[ModalQuadratic, float]:
        problem = self.modal_problem(values)
        if "eta" not in values:
            raise AssumptionError(self.label, "inputs_given", "missing value for eta")
        step = _scalar(values["eta"], "eta")
        scalars: dict[str, float] = {"eta": step, "lambda_min": problem.smallest_eigenvalue}
        if monotone:
            scalars["lambda_max"] = problem.largest_eigenvalue
        super().check_assumptions(**scalars)
        return problem, step

    # ----------------------------------------------------------------- numerics
    def check_assumptions(self, **values: Any) -> None:
        """Check η > 0, λ_min ≥ 0 and ηλ_max ≤ 2 on array inputs (see ``modal_problem``), or,
        when no arrays are given, on the scalars ``eta``, ``lambda_min``, ``lambda_max``, ``t``
        (the base class's check)."""
        if set(values) & {"eigenvalues", "coefficients", "hessian", "theta_0", "theta_star"}:
            self._checked(values, monotone=True)
        else:
            super().check_assumptions(**values)

    def evaluate(self, **values: npt.ArrayLike) -> float:
        """``L_t = L* + ½ Σ_i λ_i (1 − ηλ_i)^{2t} c_i²`` (inputs: module docstring)."""
        problem, step = self._checked(values, monotone=False)
        if "t" not in values:
            raise AssumptionError(self.label, "inputs_given", "missing value for t")
        steps = _step_count(values["t"], self.label)
        result = problem.loss_star + self.excess_loss(
            problem.eigenvalues, problem.coefficients, step, float(steps)
        )
        if not math.isfinite(result):
            raise AssumptionError(self.label, "finite_bound", f"L_t evaluates to {result}")
        return result

    def holds(self, **values: npt.ArrayLike) -> bool:
        """Whether a measured ``L_t`` equals the closed form (relative tolerance ``HOLDS_RTOL``,
        relative to ``max(|L_t|, L_0 − L*)``)."""
        if "L_t" not in values:
            raise AssumptionError(self.label, "inputs_given", "missing measured value L_t")
        measured = _scalar(values["L_t"], "L_t")
        inputs = {k: v for k, v in values.items() if k != "L_t"}
        predicted = self.evaluate(**inputs)
        start = self.evaluate(**{**inputs, "t": 0})
        problem = self.modal_problem(inputs)
        scale = max(abs(predicted), start - problem.loss_star, np.finfo(np.float64).tiny)
        return abs(measured - predicted) <= HOLDS_RTOL * scale

    def steps_to_threshold(self, threshold: float, **values: npt.ArrayLike) -> float:
        """The exact smallest ``t ≥ 0`` with ``L_t ≤ threshold`` (``math.inf`` if never).

        Requires ``0 < η ≤ 2/λ_max`` (``L_t`` non-increasing): doubling then bisection on the
        closed form (``theory.quadratic.first_step_at_or_below``). Beyond ``t = 2⁶⁴`` every
        decaying mode has underflowed in float64, so not reaching τ by then means never.
        """
        tau = _scalar(threshold, "threshold")
        problem, step = self._checked(values, monotone=True)

        def loss_at(steps: int) -> float:
            excess = self.excess_loss(problem.eigenvalues, problem.coefficients, step, float(steps))
            return problem.loss_star + excess

        # The limit t → ∞ keeps only the modes with |1 − ηλ_i| = 1 (ηλ_i ∈ {0, 2}), whose
        # summand does not depend on t: evaluate it at t = 0.
        factors = np.abs(1.0 - step * problem.eigenvalues)
        persistent = factors == 1.0
        limit = problem.loss_star + self.excess_loss(
            problem.eigenvalues[persistent], problem.coefficients[persistent], step, 0.0
        )
        if tau < limit:
            return math.inf
        decaying = (factors > 0.0) & (factors < 1.0)
        vanishing_modes_only = not np.any(
            problem.eigenvalues[decaying] * problem.coefficients[decaying] != 0.0
        )
        if tau == limit and not vanishing_modes_only:
            return math.inf  # approached but, in exact arithmetic, never reached
        found = first_step_at_or_below(loss_at, tau, limit=SEARCH_LIMIT)
        return math.inf if found is None else float(found)


def _scalar(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AssumptionError("T5", f"{name}_is_number", f"{name} = {value!r}") from None
    if not math.isfinite(number):
        raise AssumptionError("T5", f"{name}_finite", f"{name} = {number}")
    return number


def _step_count(value: Any, owner: str) -> int:
    """``t`` as an int: an integer, or an integral float (``3.0`` from a command line)."""
    integral = isinstance(value, int | np.integer) or (
        isinstance(value, float | np.floating) and float(value).is_integer()
    )
    if isinstance(value, bool) or not integral or value < 0:
        raise AssumptionError(owner, "t_nonnegative", f"t = {value!r} is not an integer ≥ 0")
    return int(value)


THEOREM = QuadraticGradientDescent()


@dataclass(frozen=True)
class LeastSquaresSteps:
    """T5's prediction for gradient descent on least squares ``(1/2n)‖Xw − y‖²`` from ``w_0``.

    ``eta``: the step; ``threshold``: ``τ = L* + f·(L_0 − L*)``; ``steps``: T5's exact smallest
    t with ``L_t ≤ τ`` (``math.inf`` if never); ``condition_number``: ``κ(XᵀX/n)`` (pinv rule).
    """

    eta: float
    threshold: float
    initial_loss: float
    loss_star: float
    steps: float
    condition_number: float


def least_squares_steps(
    features: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    remaining_fraction: float,
    start: npt.ArrayLike | None = None,
    eta: float | None = None,
) -> LeastSquaresSteps:
    """T5 applied to linear probing: the steps gradient descent needs on ``(1/2n)‖Xw − y‖²``
    from ``w_0`` (default 0) until its excess loss is ``remaining_fraction`` (f ∈ (0, 1)) of
    the start's, with step ``η`` (default ``1/λ_max(XᵀX/n)``, the step a well-tuned attacker
    takes: half the largest that keeps ``L_t`` monotone). ``H = XᵀX/n`` and ``θ*`` is the
    minimum-norm solution (``theory.quadratic.least_squares_quadratic``)."""
    if not 0.0 < remaining_fraction < 1.0:
        raise AssumptionError("T5", "fraction_in_unit_interval", f"f = {remaining_fraction}")
    quadratic = least_squares_quadratic(features, targets)
    dimension = quadratic.hessian.shape[0]
    origin = np.zeros(dimension) if start is None else np.asarray(start, dtype=np.float64)
    largest = float(np.linalg.eigvalsh(quadratic.hessian)[-1])
    if largest <= 0.0:
        raise AssumptionError("T5", "features_nonzero", "XᵀX/n = 0: nothing to learn")
    step = 1.0 / largest if eta is None else float(eta)
    initial = least_squares_loss(features, targets, origin)
    threshold = quadratic.loss_star + remaining_fraction * (initial - quadratic.loss_star)
    steps = THEOREM.steps_to_threshold(
        threshold,
        eta=step,
        hessian=quadratic.hessian,
        theta_0=origin,
        theta_star=quadratic.theta_star,
        L_star=quadratic.loss_star,
    )
    return LeastSquaresSteps(
        eta=step,
        threshold=threshold,
        initial_loss=initial,
        loss_star=quadratic.loss_star,
        steps=steps,
        condition_number=condition_number(quadratic.hessian),
    )
