r"""Proof of T1 ``smoothness_sandwich`` (Nesterov 2004, Lemma 1.2.3).

With φ(s) = L(θ + sΔ) and ``gdot_s`` = φ'(s) = ⟨∇L(θ + sΔ), Δ⟩:

1. *pointwise* (z3): for s in [0, 1], ``gdot_s − gdot = ⟨∇L(θ+sΔ) − ∇L(θ), Δ⟩`` is at most
   ``‖∇L(θ+sΔ) − ∇L(θ)‖ ‖Δ‖`` (Cauchy–Schwarz) ``≤ β ‖sΔ‖ ‖Δ‖`` (β-smooth) ``= β s ‖Δ‖²``
   (homogeneity) in magnitude. The goal is theory's own hypothesis
   ``directional_derivative_lipschitz``, so that hypothesis is proved, not assumed.
2. *integral* (sympy): ∫₀¹ β s ‖Δ‖² ds equals the half-width of theory's sandwich,
   (UPPER_BOUND − LOWER_BOUND)/2.
3. *sandwich* (z3): the remainder L1 − L0 − gdot = ∫₀¹ (gdot_s − gdot) ds (fundamental theorem
   of calculus) is at most that integral in magnitude (monotonicity of the integral), which
   with theory's parameter assumptions implies theory's ``conclusion``.
4. *curvature* (z3): the conclusion implies |κ| ≤ β for theory's ``CURVATURE`` when ‖Δ‖ > 0.

Controls: the conclusion with β/2 in place of β (the constant perturbed), the pointwise
bound without Cauchy–Schwarz (an axiom dropped), the integral with the ½ lost, and the
curvature bound turned around (|κ| ≥ β).
"""

from __future__ import annotations

import sympy as sp
import z3

from proofs.axioms import (
    BETA_SMOOTH,
    CAUCHY_SCHWARZ,
    FUNDAMENTAL_THEOREM,
    INTEGRAL_MONOTONE,
    NORM_HOMOGENEOUS,
)
from proofs.obligation import Proof
from proofs.solver import identity_obligation, z3_obligation
from proofs.statements import (
    assumption_fact,
    hypothesis_is_axiom,
    mutate,
    parameter_facts,
    var,
)
from proofs.translate import formula, term
from theory import symbols as sym
from theory.theorems import smoothness_sandwich as t1


def _abs(value: z3.ArithRef) -> z3.ArithRef:
    return z3.If(value >= 0, value, -value)


def proof() -> Proof:
    thm = t1.THEOREM
    beta, delta, s = var(sym.beta), var(sym.delta_norm), var(sym.s)
    L0, L1, gdot, gdot_s = var(sym.L0), var(sym.L1), var(sym.gdot), var(sym.gdot_s)
    grad_diff_norm = z3.Real("grad_diff_norm")  # ‖∇L(θ + sΔ) − ∇L(θ)‖
    step_norm = z3.Real("s_delta_norm")  # ‖sΔ‖
    inner = z3.Real("inner_grad_diff_delta")  # ⟨∇L(θ + sΔ) − ∇L(θ), Δ⟩
    parameters = parameter_facts(thm)

    # 1. pointwise: theory's hypothesis directional_derivative_lipschitz, from the axioms
    directional = assumption_fact(thm, t1.DIRECTIONAL_LIPSCHITZ.name)
    geometry = [
        inner == gdot_s - gdot,  # ⟨∇L(θ+sΔ), Δ⟩ − ⟨∇L(θ), Δ⟩: linearity of ⟨·, Δ⟩
        CAUCHY_SCHWARZ(inner, grad_diff_norm, delta),
        BETA_SMOOTH(grad_diff_norm, beta, step_norm),
        NORM_HOMOGENEOUS(step_norm, s, delta),
    ]
    pointwise_uses = ("cauchy_schwarz", "beta_smooth", "norm_homogeneous")
    pointwise = z3_obligation(
        "pointwise bound |gdot_s - gdot| <= beta s ||Delta||^2",
        sp.sstr(t1.DIRECTIONAL_LIPSCHITZ.statement),
        directional,
        [*parameters, *geometry],
        uses=pointwise_uses,
    )
    no_cauchy_schwarz = z3_obligation(
        "pointwise bound without Cauchy-Schwarz",
        "the pointwise bound from beta-smoothness alone (axiom dropped)",
        directional,
        [*parameters, geometry[0], geometry[2], geometry[3]],
        uses=pointwise_uses[1:],
        kind="control",
    )

    # 2. integral of the pointwise bound = half-width of theory's sandwich
    integrand = t1.DIRECTIONAL_LIPSCHITZ.statement.args[1].rhs  # beta*s*delta_norm**2
    integral = sp.integrate(integrand, (sym.s, 0, 1))
    half_width = (t1.UPPER_BOUND - t1.LOWER_BOUND) / 2
    integral_identity = identity_obligation(
        "integral of the pointwise bound",
        f"∫₀¹ {sp.sstr(integrand)} ds = (UPPER_BOUND - LOWER_BOUND)/2",
        integral,
        half_width,
        uses=("integral_monotone",),
    )
    half_lost = identity_obligation(
        "integral with the 1/2 lost",
        f"∫₀¹ {sp.sstr(integrand)} ds = UPPER_BOUND - LOWER_BOUND (constant perturbed)",
        integral,
        2 * half_width,
        kind="control",
    )

    # 3. the sandwich: theory's conclusion from FTC + monotonicity of the integral
    remainder = z3.Real("remainder_integral")  # ∫₀¹ (gdot_s − gdot) ds
    bound = term(integral)
    calculus = [
        FUNDAMENTAL_THEOREM(remainder, L1 - L0 - gdot),
        INTEGRAL_MONOTONE(remainder, bound.value),
        *bound.definitions,
    ]
    conclusion = formula(thm.conclusion)
    sandwich = z3_obligation(
        "sandwich (theory's conclusion)",
        sp.sstr(thm.conclusion),
        conclusion,
        [*parameters, *calculus],
        uses=("fundamental_theorem_of_calculus", "integral_monotone", "pointwise bound"),
    )
    halved = formula(mutate(thm.conclusion, {sym.beta: sym.beta / 2}))
    halved_control = z3_obligation(
        "sandwich with beta/2 in place of beta",
        sp.sstr(mutate(thm.conclusion, {sym.beta: sym.beta / 2})),
        halved,
        [*parameters, *calculus],
        kind="control",
    )

    # 4. curvature along the segment
    curvature = term(t1.CURVATURE)
    kappa = curvature.value
    curvature_goal = z3.If(kappa >= 0, kappa, -kappa) <= beta
    curvature_facts = [*parameters, conclusion, delta > 0, *curvature.definitions]
    curvature_bound = z3_obligation(
        "curvature |kappa| <= beta",
        f"|{sp.sstr(t1.CURVATURE)}| <= beta for delta_norm > 0",
        curvature_goal,
        curvature_facts,
        uses=("sandwich (theory's conclusion)",),
    )
    curvature_turned = z3_obligation(
        "curvature |kappa| >= beta (inequality turned)",
        f"|{sp.sstr(t1.CURVATURE)}| >= beta",
        z3.If(kappa >= 0, kappa, -kappa) >= beta,
        curvature_facts,
        kind="control",
    )

    gx, gy, x, y = var(sym.grad_x), var(sym.grad_y), var(sym.x), var(sym.y)
    smooth_is_axiom = hypothesis_is_axiom(
        thm,
        t1.BETA_SMOOTH.name,
        "beta_smooth",
        BETA_SMOOTH(_abs(gx - gy), beta, _abs(x - y)),  # |·| is the norm in one dimension
    )
    return Proof(
        thm,
        (
            smooth_is_axiom,
            pointwise,
            integral_identity,
            sandwich,
            curvature_bound,
            no_cauchy_schwarz,
            half_lost,
            halved_control,
            curvature_turned,
        ),
        summary="FTC along the segment + Cauchy-Schwarz + beta-smoothness, integrated",
    )
