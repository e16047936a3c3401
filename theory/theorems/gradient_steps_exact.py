r"""T9 ``gradient_steps_exact``: the exact worst-case progress of N gradient steps.

Statement (docs/theorems.md, T9). Let L be β-smooth (not necessarily convex), run N ≥ 1 full
gradient steps θ_{k+1} = θ_k − η∇L(θ_k) with η > 0, and suppose ‖∇L(θ_k)‖ ≤ G at the
iterates θ_0, …, θ_{N−1} (nothing is assumed at θ_N). Then

    L_0 − L_N  ≤  N (η G² + β η² G²/4) + β η² G²/4,

i.e. ``L_t >= L0 - (t*(eta*G**2 + beta*eta**2*G**2/4) + beta*eta**2*G**2/4)`` with t = N
(``conclusion``; ``bound`` is its right side). The range of step sizes is *every* η > 0 (no
stability condition is used), and every β ≥ 0, G ≥ 0, integer N ≥ 1.

The bound is attained, so it is the exact worst case: the one-dimensional β-smooth function
whose derivative equals G at every iterate, rises with slope β to G + βηG/2 half-way
between consecutive iterates θ_k, θ_{k+1} (k < N − 1) and rises with slope β all along the
last step, gives L_0 − L_N = N(ηG² + βη²G²/4) + βη²G²/4. Numerically, PEPit's performance
estimation (Taylor, Hendrickx, Glineur 2017) returns the same value for N ≤ 10
(``python -m proofs.tightness``, notebook 06). T2 with C = G gives N(ηG² + βη²G²/2): the
ratio T2/T9 is 1 at N = 1 and grows with N towards (1 + βη/2)/(1 + βη/4) (1.29 at N = 10,
η = 2/β). Wherever T2 is used for full (or never-clipping, C ≥ G) gradient steps, T9 is the
sharper certificate.

Proof (proofs/theorems/gradient_steps_exact.py), from the dual certificate of the performance
estimation problem read in closed form: its multipliers put weight ½ on each of the two
interpolation inequalities between consecutive iterates (the *trapezoid* inequality),
except on the last step, where the one-sided descent lemma (T1) carries all the weight.

1. *trapezoid step* (Coq's ``trapezoid_bound`` + z3): for β-smooth L and Δ = −η g_k,
   L_{k+1} ≥ L_k − (η/2)‖g_k‖² − (η/2)⟨g_{k+1}, g_k⟩ − β η² ‖g_k‖²/4  (``TRAPEZOID_STEP``).
2. *last step* (T1): L_N ≥ L_{N−1} − (η + βη²/2)‖g_{N−1}‖²  (``LAST_STEP``).
3. *running bound* (induction on m = 1, …, N − 1, with ⟨g_{m+1}, g_m⟩ ≤ (‖g_m‖² + ‖g_{m+1}‖²)/2
   from Cauchy–Schwarz): L_m ≥ L_0 − m c + ηG²/4 − η‖g_m‖²/4 with c = ηG² + βη²G²/4
   (``RUNNING``): the unconstrained gradient g_m enters only through η‖g_m‖²/4.
4. *conclusion*: 3 at m = N − 1 and 2 with ‖g_{N−1}‖ ≤ G (or 2 alone for N = 1).

Source: the performance-estimation method of Drori & Teboulle (Math. Program. 2014) and
Taylor, Hendrickx & Glineur (Math. Program. 2017), Theorem 3.10 (interpolation conditions of
smooth nonconvex functions); the closed form and its proof for every N are this project's.

>>> THEOREM.evaluate(L0=2.0, G=1.0, eta=0.5, beta=2.0, t=2)
0.625
>>> THEOREM.steps_to_threshold(1.0, L0=2.0, G=1.0, eta=0.5, beta=2.0)
2.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import sympy as sp

from theory import symbols as sym
from theory.errors import AssumptionError
from theory.theorem import (
    Assumption,
    StepsKind,
    Theorem,
)
from theory.theorems import smoothness_sandwich as sandwich

#: ‖∇L(θ_k)‖² at the current iterate, and ⟨∇L(θ_{k+1}), ∇L(θ_k)⟩ (auxiliary, for the steps)
grad_sq = sp.Symbol("grad_sq", real=True)
inner_next = sp.Symbol("inner_next", real=True)
#: the number m of steps taken so far in the running bound
m = sp.Symbol("m", real=True)

#: c = η G² + β η² G²/4: the worst-case progress of one step that is not the last.
STEP_WORST: sp.Expr = sym.eta * sym.G**2 + sym.beta * sym.eta**2 * sym.G**2 / 4
#: β η² G²/4: what the last step can gain on top of c (its next gradient is unconstrained).
LAST_STEP_EXTRA: sp.Expr = sym.beta * sym.eta**2 * sym.G**2 / 4
#: N c + β η² G²/4: the exact worst case of L_0 − L_N.
PROGRESS: sp.Expr = sym.t * STEP_WORST + LAST_STEP_EXTRA
#: L_0 − PROGRESS: the certified lower bound on L_N (N ≥ 1).
BOUND: sp.Expr = sym.L0 - PROGRESS
#: The theorem's conclusion.
CONCLUSION: sp.Basic = sp.Ge(sym.L_t, BOUND)

#: Step k < N − 1, from the trapezoid inequality of β-smooth L with Δ = −η g_k:
#: L_{k+1} ≥ L_k − (η/2)‖g_k‖² − (η/2)⟨g_{k+1}, g_k⟩ − βη²‖g_k‖²/4.
TRAPEZOID_STEP: sp.Basic = sp.Ge(
    sym.L_next,
    sym.L_s
    - sym.eta * grad_sq / 2
    - sym.eta * inner_next / 2
    - sym.beta * sym.eta**2 * grad_sq / 4,
)
#: The last step, T1's lower side with ⟨∇L, Δ⟩ = −η‖g‖² and ‖Δ‖² = η²‖g‖²:
#: L_N ≥ L_{N−1} − (η + βη²/2)‖g_{N−1}‖².
LAST_STEP: sp.Basic = sp.Ge(
    sym.L_next,
    sandwich.LOWER_BOUND.subs(
        {
            sym.L0: sym.L_s,
            sym.gdot: -sym.eta * grad_sq,
            sym.delta_norm: sym.eta * sp.sqrt(grad_sq),
        }
    ),
)
#: The running bound after m ≥ 1 steps (L_s = L_m, grad_sq = ‖g_m‖²):
#: L_m ≥ L_0 − m c + ηG²/4 − η‖g_m‖²/4.
RUNNING: sp.Basic = sp.Ge(
    sym.L_s, sym.L0 - m * STEP_WORST + sym.eta * sym.G**2 / 4 - sym.eta * grad_sq / 4
)

#: The dual certificate in closed form: the multiplier of the constraint ‖g_k‖² ≤ G² in the
#: performance estimation problem, for N ≥ 2 (first, middle k = 1..N−2, last k = N−1) and for
#: N = 1 (single). They are the coefficients of ‖g_k‖² the proof accumulates (trapezoid steps,
#: Cauchy–Schwarz with ⟨g_{k+1}, g_k⟩ ≤ (‖g_k‖² + ‖g_{k+1}‖²)/2, the descent lemma on the last
#: step), and Σ_k λ_k G² = ``PROGRESS``; PEPit's numerical duals agree (proofs/tightness.py).
MULTIPLIER_FIRST: sp.Expr = 3 * sym.eta / 4 + sym.beta * sym.eta**2 / 4
MULTIPLIER_MIDDLE: sp.Expr = sym.eta + sym.beta * sym.eta**2 / 4
MULTIPLIER_LAST: sp.Expr = 5 * sym.eta / 4 + sym.beta * sym.eta**2 / 2
MULTIPLIER_SINGLE: sp.Expr = sym.eta + sym.beta * sym.eta**2 / 2


def multipliers(steps: int, *, eta: float, beta: float) -> list[float]:
    """λ_0, …, λ_{N−1}: the closed-form dual multipliers of the gradient-bound constraints."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise AssumptionError("T9", "t_at_least_one", f"steps = {steps!r}")
    THEOREM.check_assumptions(eta=eta, beta=beta)
    values = {"eta": eta, "beta": beta}

    def at(expr: sp.Expr) -> float:
        return float(expr.subs({sym.eta: values["eta"], sym.beta: values["beta"]}))

    if steps == 1:
        return [at(MULTIPLIER_SINGLE)]
    return [at(MULTIPLIER_FIRST), *([at(MULTIPLIER_MIDDLE)] * (steps - 2)), at(MULTIPLIER_LAST)]


GRADIENT_BOUNDED_AT_ITERATES = Assumption(
    "gradient_bounded_at_iterates",
    sp.Le(sym.grad_norm, sym.G),
    "||grad L(theta_k)|| <= G at the iterates theta_0, ..., theta_{N-1} (not at theta_N)",
    kind="hypothesis",
)
GRADIENT_STEP = Assumption(
    "gradient_step",
    sp.And(
        sp.Eq(sym.gdot, -sym.eta * sym.grad_norm**2),
        sp.Eq(sym.delta_norm, sym.eta * sym.grad_norm),
    ),
    "full gradient steps Delta_k = -eta grad L(theta_k): <grad L(theta_k), Delta_k> ="
    " -eta ||grad L(theta_k)||^2 and ||Delta_k|| = eta ||grad L(theta_k)||",
    kind="hypothesis",
)
ETA_POSITIVE = Assumption("eta_positive", sp.Gt(sym.eta, 0), "learning rate eta > 0 (any size)")
T_AT_LEAST_ONE = Assumption("t_at_least_one", sp.Ge(sym.t, 1), "N = t >= 1 gradient steps")
T_INTEGER = sym.T_INTEGER


@dataclass(frozen=True)
class GradientStepsExact(Theorem):
    """T9: the exact worst-case progress of N gradient steps (see the module docstring)."""

    label: ClassVar[str] = "T9"
    name: ClassVar[str] = "gradient_steps_exact"
    title: ClassVar[str] = "Exact worst-case progress of N gradient steps"
    source: ClassVar[str] = (
        "Performance estimation (Drori & Teboulle 2014; Taylor, Hendrickx & Glineur 2017, "
        "Thm 3.10): dual certificate in closed form, proved for every N by induction"
    )
    steps_kind: ClassVar[StepsKind | None] = "minimum"
    steps_symbol: ClassVar[str | None] = "t"
    simplify_steps: ClassVar[bool] = True

    assumptions: tuple[Assumption, ...] = (
        sandwich.BETA_SMOOTH,
        GRADIENT_BOUNDED_AT_ITERATES,
        GRADIENT_STEP,
        ETA_POSITIVE,
        sym.G_NONNEGATIVE,
        sandwich.BETA_NONNEGATIVE,
        T_AT_LEAST_ONE,
        T_INTEGER,
    )
    conclusion: sp.Basic = CONCLUSION
    bound: sp.Expr = BOUND

    def steps_to_threshold(self, threshold: float, **values: float) -> float:
        """Certified minimum number of gradient steps to reach L ≤ τ:
        the smallest integer t ≥ 1 with ``bound(t) <= tau`` (0 when ``threshold >= L0``;
        ``math.inf`` when G = 0, where no gradient step moves).

        Inputs by name: ``L0, G, eta, beta`` (others are ignored).
        """
        inputs = self.require_inputs(values, ("L0", "G", "eta", "beta"))
        self.check_assumptions(tau=threshold, **inputs)
        if threshold >= inputs["L0"]:
            return 0.0
        if self.evaluate_expression(STEP_WORST, **inputs) == 0.0:
            return math.inf
        return self.solved_steps(threshold, inputs, first_step=1)


THEOREM = GradientStepsExact()
