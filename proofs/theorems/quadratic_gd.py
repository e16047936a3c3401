r"""Proof of T5 ``quadratic_gd``: exact gradient descent on a quadratic.

1. *gradient step* (sympy): the gradient of theory's ``quadratic_loss`` hypothesis,
   coordinate k, is (H(θ − θ*))_k for symmetric H, so theory's ``recurrence`` is gradient
   descent; and it factors as θ_{t+1} − θ* = (I − ηH)(θ_t − θ*).
2. *trajectory* (sympy, induction): theory's ``trajectory`` θ_t − θ* = (I − ηH)^t (θ_0 − θ*)
   holds at t = 0 and is carried from t to t+1 by the factored recurrence.
3. *modes* (z3, induction): in the eigenbasis (spectral theorem) the coordinate
   w_t = v_iᵀ(θ_t − θ*) obeys w_{t+1} = (1 − ηλ_i) w_t, hence w_t = (1 − ηλ_i)^t c_i.
4. *loss* (sympy): ½ λ_i w_t² is theory's ``EXCESS_LOSS_SUMMAND`` and theory's conclusion is
   L* + the sum of it over the modes (L − L* = ½ Σ λ_i w_i², spectral theorem).
5. *monotone* (z3): with λ_i ≥ 0 and ηλ_max ≤ 2 every summand is non-increasing in t, which
   is what makes ``steps_to_threshold``'s bisection exact.
6. *slowest mode* (z3): with η = 1/λ_max every mode factor lies in [0, 1 − 1/κ], theory's
   ``slowest_mode_contraction`` with κ from ``condition_number``.
7. *least squares* (sympy): (1/2n)‖Xw − y‖² = L* + ½ (w − θ*)ᵀ H (w − θ*) with theory's
   ``least_squares_hessian`` H = XᵀX/n, when θ* solves the normal equations.

8. *ties* (exhaustive, exact rationals vs float64): theory/quadratic.py's ``iterate_at_step``
   and ``loss_at_step`` and T5's ``evaluate`` agree with the proved trajectory (sympy's exact
   (I − ηH)^t) on a coupled 2-d and a rank-deficient 3-d quadratic, η ∈ {1/4, 1/2, 1},
   t ∈ {0, 1, 2, 3, 5} (relative tolerance 1e-9): a wrong exponent in the numeric code fails.

Controls: the summand with exponent t instead of 2t, monotonicity without ηλ_max ≤ 2, the
slowest-mode factor with κ/2 in place of κ, and ``iterate_at_step`` at t compared with the
trajectory at t + 1.
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import z3
from sympy.matrices.expressions.matexpr import MatrixElement

from proofs.axioms import POWERS, SPECTRAL_THEOREM
from proofs.induction import ClosedFormInduction, Induction
from proofs.obligation import Budget, Obligation, Outcome, Proof, Status
from proofs.solver import identity_obligation, prove_expression_identity, z3_obligation
from proofs.statements import mutate, parameter_facts, var
from proofs.translate import formula, term
from theory import quadratic
from theory.theorems import quadratic_gd as t5


def _canonical_sums(expr: sp.Expr, index: sp.Symbol) -> sp.Expr:
    """Rename the bound variable of every single sum to ``index`` (so sympy can merge sums)."""
    return expr.replace(
        lambda e: isinstance(e, sp.Sum) and len(e.limits) == 1,
        lambda e: sp.Sum(e.function.subs(e.limits[0][0], index), (index, *e.limits[0][1:])),
    )


def _gradient_step(budget: Budget) -> Outcome:
    """∂L/∂θ_k = (H(θ − θ*))_k for symmetric H, and theory's recurrence is θ − η∇L."""
    loss = t5.THEOREM.assumption("quadratic_loss").statement.rhs
    k, j = sp.Symbol("k", integer=True), sp.Symbol("j", integer=True)
    partial = sp.simplify(sp.diff(loss, t5.theta_t[k, 0]))
    symmetric = partial.replace(
        lambda e: isinstance(e, MatrixElement) and e.parent == t5.H and e.j == k,
        lambda e: t5.H[e.j, e.i],
    )
    expected = (t5.H * (t5.theta_t - t5.theta_star))[k, 0]
    difference = sp.simplify(_canonical_sums(sp.expand(symmetric - expected), j))
    if difference != 0:
        return Outcome(Status.FAILED, f"gradient differs: {sp.sstr(difference)}")
    gradient_descent = t5.theta_t - t5.eta * t5.H * (t5.theta_t - t5.theta_star)
    return prove_expression_identity(t5.THEOREM.recurrence.rhs, gradient_descent)


def _least_squares(budget: Budget) -> Outcome:
    """(1/2n)‖Xw − y‖² = L* + ½ uᵀHu, u = w − θ*, r = Xθ* − y with Xᵀr = 0 (normal eq.)."""
    X, n, d = t5.X, t5.n, t5.d
    u, r = sp.MatrixSymbol("u", d, 1), sp.MatrixSymbol("r", n, 1)
    hessian = t5.THEOREM.least_squares_hessian.rhs
    lhs = sp.expand((X * u + r).T * (X * u + r)) / (2 * n)  # Xw − y = X(w − θ*) + (Xθ* − y)
    normal_equations = {X.T * r: sp.ZeroMatrix(d, 1), r.T * X: sp.ZeroMatrix(1, d)}
    lhs = lhs.subs(normal_equations)
    loss_star = r.T * r / (2 * n)
    rhs = loss_star + sp.Rational(1, 2) * u.T * hessian * u
    return prove_expression_identity(lhs, rhs)


#: exact test problems (H, θ_0, θ*, L*) for the ties between theory/quadratic.py and the
#: proved statement: a coupled 2-d quadratic and a rank-deficient 3-d one
TIE_PROBLEMS: tuple[
    tuple[list[list[int]], list[sp.Rational], list[sp.Rational], sp.Rational], ...
] = (
    (
        [[2, 1], [1, 3]],
        [sp.Integer(1), sp.Integer(-2)],
        [sp.Rational(1, 2), sp.Integer(0)],
        sp.Rational(1, 3),
    ),
    (
        [[4, 0, 0], [0, 1, 0], [0, 0, 0]],
        [sp.Integer(1), sp.Integer(1), sp.Integer(1)],
        [sp.Integer(0), sp.Rational(1, 2), sp.Integer(-1)],
        sp.Integer(0),
    ),
)
#: step sizes (any η > 0: the closed form needs no stability condition) and step counts
TIE_STEPS: tuple[sp.Rational, ...] = (sp.Rational(1, 4), sp.Rational(1, 2), sp.Integer(1))
TIE_COUNTS: tuple[int, ...] = (0, 1, 2, 3, 5)
#: relative tolerance between float64 and the exact rational value
TIE_RTOL = 1e-9


def _exact_trajectory(
    hessian: sp.Matrix, start: sp.Matrix, optimum: sp.Matrix, step: sp.Rational, steps: int
) -> sp.Matrix:
    """θ_t from theory's proved ``trajectory`` θ_t − θ* = (I − ηH)^t (θ_0 − θ*), exactly."""
    thm = t5.THEOREM
    dim = {t5.d: sp.Integer(hessian.shape[0])}
    rhs = thm.trajectory.rhs.xreplace(dim).xreplace(
        {
            t5.H.xreplace(dim): sp.ImmutableMatrix(hessian),
            t5.theta_0.xreplace(dim): sp.ImmutableMatrix(start),
            t5.theta_star.xreplace(dim): sp.ImmutableMatrix(optimum),
            t5.eta: step,
            t5.t: sp.Integer(steps),
            sp.Identity(hessian.shape[0]): sp.ImmutableMatrix(sp.eye(hessian.shape[0])),
        }
    )
    return optimum + sp.Matrix(rhs.doit())


def _close(value: float, exact: sp.Expr) -> bool:
    target = float(exact)
    return abs(value - target) <= TIE_RTOL * max(1.0, abs(target))


def _tie(which: str, shift: int = 0) -> Outcome:
    """Compare theory/quadratic.py's ``iterate_at_step`` / ``loss_at_step`` and T5's
    ``evaluate`` with the proved trajectory at t + ``shift`` on every tie point."""
    checked = 0
    for hessian_rows, start_list, optimum_list, loss_star in TIE_PROBLEMS:
        hessian = sp.Matrix(hessian_rows)
        start, optimum = sp.Matrix(start_list), sp.Matrix(optimum_list)
        as_float = np.array(hessian.tolist(), dtype=np.float64)
        start_f = np.array([float(v) for v in start_list])
        optimum_f = np.array([float(v) for v in optimum_list])
        for step in TIE_STEPS:
            for steps in TIE_COUNTS:
                exact = _exact_trajectory(hessian, start, optimum, step, steps + shift)
                offset = exact - optimum
                exact_loss = loss_star + (offset.T * hessian * offset)[0, 0] / 2
                if which == "iterate":
                    got = quadratic.iterate_at_step(
                        as_float, start_f, optimum_f, float(step), steps
                    )
                    values = list(zip(got.tolist(), list(exact), strict=True))
                elif which == "loss":
                    loss = quadratic.loss_at_step(
                        as_float, start_f, optimum_f, float(step), steps, float(loss_star)
                    )
                    values = [(loss, exact_loss)]
                else:
                    loss = t5.THEOREM.evaluate(
                        hessian=as_float,
                        theta_0=start_f,
                        theta_star=optimum_f,
                        L_star=float(loss_star),
                        eta=float(step),
                        t=steps,
                    )
                    values = [(loss, exact_loss)]
                checked += 1
                for got_value, exact_value in values:
                    if not _close(got_value, exact_value):
                        point = f"H={hessian_rows}, eta={step}, t={steps}"
                        detail = f"{which}: {got_value!r} != {sp.sstr(exact_value)}"
                        return Outcome(Status.FAILED, detail, point)
    return Outcome(
        Status.CHECKED, f"{checked} points agree with the proved trajectory (rtol {TIE_RTOL:g})"
    )


def proof() -> Proof:
    thm = t5.THEOREM
    eta, lam, lam_min, lam_max = (
        var(t5.eta),
        var(t5.lambda_i),
        var(t5.lambda_min),
        var(t5.lambda_max),
    )
    parameters = parameter_facts(thm)
    A = sp.Identity(t5.d) - t5.eta * t5.H

    gradient = Obligation(
        "recurrence is a gradient step",
        "dL/dtheta_k = (H(theta - theta*))_k for H = H^T; recurrence = theta - eta grad L",
        "sympy",
        _gradient_step,
    )
    factored = Obligation(
        "recurrence factored",
        "theta_{t+1} - theta* = (I - eta H)(theta_t - theta*)",
        "sympy",
        lambda budget: prove_expression_identity(
            thm.recurrence.rhs - t5.theta_star, A * (t5.theta_t - t5.theta_star)
        ),
    )
    trajectory = ClosedFormInduction(
        "trajectory",
        sp.sstr(thm.trajectory),
        closed_form=lambda steps: t5.theta_star + thm.trajectory.rhs.subs(t5.t, steps),
        initial=t5.theta_0,
        recurrence=lambda state: t5.theta_star + A * (state - t5.theta_star),
        counter=t5.t,
        uses=("recurrence factored",),
    )

    # modes: w_{n+1} = (1 - eta*lambda) w_n, p_n = (1 - eta*lambda)^n, invariant w_n = p_n c
    w, w_next, p, p_next, c = (
        z3.Real(x) for x in ("w_n", "w_next", "q_pow_n", "q_pow_next", "c_i")
    )
    factor = 1 - eta * lam
    modes = Induction(
        "eigen-coordinate",
        "v_i^T(theta_n - theta*) = (1 - eta lambda_i)^n c_i",
        invariant=lambda state: state["w"] == state["p"] * c,
        initial={"w": c, "p": z3.RealVal(1)},
        current={"w": w, "p": p},
        successor={"w": w_next, "p": p_next},
        transition=[
            SPECTRAL_THEOREM(w_next, factor, w),  # v_iᵀ(I − ηH)x = (1 − ηλ_i) v_iᵀx
            POWERS(p_next, factor, p),
        ],
        uses=("spectral_theorem", "powers", "recurrence factored"),
    )

    # loss: ½ λ w_t² with w_t = (1-ηλ)^t c is theory's summand; conclusion sums it over modes
    summand = t5.EXCESS_LOSS_SUMMAND
    derived = sp.Rational(1, 2) * t5.lambda_i * ((1 - t5.eta * t5.lambda_i) ** t5.t * t5.c_i) ** 2
    mode_loss = identity_obligation(
        "mode loss",
        f"1/2 lambda_i ((1 - eta lambda_i)^t c_i)^2 = {sp.sstr(summand)}",
        derived,
        summand,
        uses=("spectral_theorem", "eigen-coordinate"),
    )
    indexed = t5._indexed(derived)
    conclusion_sum = identity_obligation(
        "loss (theory's conclusion)",
        sp.sstr(thm.conclusion),
        thm.conclusion.rhs,
        t5.L_star + sp.Sum(indexed, (t5.i, 0, t5.n - 1)),
        uses=("spectral_theorem", "mode loss"),
    )
    wrong_power = identity_obligation(
        "mode loss with exponent t instead of 2t",
        f"1/2 lambda_i ((1 - eta lambda_i)^t c_i)^2 = {sp.sstr(summand.subs(2 * t5.t, t5.t))}",
        derived,
        summand.subs(2 * t5.t, t5.t),
        kind="control",
    )

    # monotone: summand(t+1) <= summand(t) for lambda_min <= lambda_i <= lambda_max
    even_power = sp.Symbol("q_pow_2t", real=True)  # (1 − ηλ_i)^(2t) = ((1 − ηλ_i)^t)² ≥ 0
    base_power = (1 - t5.eta * t5.lambda_i) ** (2 * t5.t)

    def at(steps: sp.Expr) -> sp.Expr:
        return sp.expand_power_exp(summand.subs(t5.t, steps)).subs(base_power, even_power)

    now, later = term(at(t5.t)), term(at(t5.t + 1))
    spectrum = [lam_min <= lam, lam <= lam_max, var(even_power) >= 0]
    monotone_facts = [*spectrum, *now.definitions, *later.definitions]
    monotone = z3_obligation(
        "loss non-increasing",
        "summand(t+1) <= summand(t) when lambda_min >= 0 and eta lambda_max <= 2",
        later.value <= now.value,
        [*parameters, *monotone_facts],
        uses=("powers",),
    )
    unstable = z3_obligation(
        "loss non-increasing without eta lambda_max <= 2",
        "summand(t+1) <= summand(t) with the step-size assumption dropped",
        later.value <= now.value,
        [*parameter_facts(thm, without=["eta_at_most_two_over_lambda_max"]), *monotone_facts],
        kind="control",
    )

    # slowest mode: with eta = 1/lambda_max every factor is in [0, 1 - 1/kappa]
    contraction = term(thm.slowest_mode_contraction)
    kappa_definition = formula(thm.condition_number)
    slow_facts = [
        lam_min > 0,
        lam_min <= lam,
        lam <= lam_max,
        eta * lam_max == 1,
        kappa_definition,
        *contraction.definitions,
    ]
    mode_factor = 1 - eta * lam
    slowest = z3_obligation(
        "slowest mode contracts by 1 - 1/kappa",
        f"eta = 1/lambda_max: 0 <= 1 - eta lambda_i <= {sp.sstr(thm.slowest_mode_contraction)}",
        z3.And(mode_factor >= 0, mode_factor <= contraction.value),
        slow_facts,
        uses=("spectral_theorem",),
    )
    halved = term(mutate(thm.slowest_mode_contraction, {t5.kappa: t5.kappa / 2}))
    slowest_control = z3_obligation(
        "slowest mode with kappa/2 in place of kappa",
        "eta = 1/lambda_max: 1 - eta lambda_i <= 1 - 2/kappa",
        mode_factor <= halved.value,
        [*slow_facts, *halved.definitions],
        kind="control",
    )

    least_squares = Obligation(
        "least squares is this quadratic",
        "(1/2n)||Xw - y||^2 = L* + 1/2 (w - theta*)^T (X^T X/n) (w - theta*) at the normal eq.",
        "sympy",
        _least_squares,
    )

    ties = (
        Obligation(
            "iterate_at_step is the proved trajectory",
            "theory.quadratic.iterate_at_step(H, theta_0, theta*, eta, t) = theta* + "
            "(I - eta H)^t (theta_0 - theta*) at exact points",
            "exhaustive",
            lambda budget: _tie("iterate"),
            uses=("trajectory",),
        ),
        Obligation(
            "loss_at_step is the loss at the proved trajectory",
            "theory.quadratic.loss_at_step = L* + 1/2 (theta_t - theta*)^T H (theta_t - theta*)"
            " at the proved theta_t",
            "exhaustive",
            lambda budget: _tie("loss"),
            uses=("trajectory",),
        ),
        Obligation(
            "T5 evaluate is the proved loss",
            "THEOREM.evaluate(hessian, theta_0, theta*, L*, eta, t) = loss at the proved theta_t",
            "exhaustive",
            lambda budget: _tie("evaluate"),
            uses=("trajectory", "loss (theory's conclusion)"),
        ),
    )
    tie_control = Obligation(
        "iterate_at_step at t against the trajectory at t + 1",
        "iterate_at_step(..., t) = theta_{t+1} (exponent shifted: must be refuted)",
        "exhaustive",
        lambda budget: _tie("iterate", shift=1),
        kind="control",
    )
    return Proof(
        thm,
        (
            *ties,
            gradient,
            factored,
            *trajectory.obligations(),
            *modes.obligations(),
            mode_loss,
            conclusion_sum,
            monotone,
            slowest,
            least_squares,
            wrong_power,
            unstable,
            slowest_control,
            tie_control,
        ),
        summary="matrix recurrence by induction, modes by the spectral theorem",
    )
