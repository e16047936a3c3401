r"""Proof of T1 ``smoothness_sandwich`` (Nesterov 2004, Lemma 1.2.3).

With φ(τ) = L(θ + τΔ), φ'(τ) = ⟨∇L(θ + τΔ), Δ⟩, ``gdot`` = φ'(0) and ``gdot_s`` = φ'(s):

1. *Coq* (coqc): the one-dimensional lemma ``descent_sandwich`` of proofs/coq/Segment.v,
   premises stated: φ differentiable on [0, 1] and |φ'(τ) − φ'(0)| ≤ β τ ‖Δ‖² for every τ
   in [0, 1] ⇒ |φ(1) − φ(0) − φ'(0)| ≤ β‖Δ‖²/2 (mean value theorem, no integral).
2. *pointwise* (z3): for s in [0, 1], φ'(s) − φ'(0) = ⟨∇L(θ+sΔ) − ∇L(θ), Δ⟩ is at most
   ‖∇L(θ+sΔ) − ∇L(θ)‖ ‖Δ‖ (Cauchy–Schwarz) ≤ β ‖sΔ‖ ‖Δ‖ (theory's ``beta_smooth``)
   = β s ‖Δ‖² (homogeneity) in magnitude: theory's ``directional_derivative_lipschitz``.
3. *sandwich* (z3): the same facts at a point s of [0, 1], with the Coq lemma instantiated
   there (``proofs.axioms.DESCENT_SANDWICH``: if the conclusion fails, its premise fails at
   some s), imply theory's ``conclusion``. The premise has to be *established* from
   β-smoothness: the necessity audit finds ``beta_smooth`` needed, and the control "T1
   without beta-smoothness" is refuted.
4. *curvature* (z3): the conclusion implies |κ| ≤ β for theory's ``CURVATURE`` when ‖Δ‖ > 0.

Controls: T1 without β-smoothness; the conclusion with β/2 in place of β; the pointwise
bound without Cauchy–Schwarz; the curvature bound turned around (|κ| ≥ β); in Coq, the
sandwich without its smoothness premise and with β‖Δ‖²/4 (both proved false by φ(τ) = τ²).
"""

from __future__ import annotations

import sympy as sp
import z3

from proofs import coq
from proofs.axioms import CAUCHY_SCHWARZ, DESCENT_SANDWICH, NORM_HOMOGENEOUS
from proofs.obligation import Proof
from proofs.solver import Fact, premise, z3_obligation
from proofs.statements import assumption_fact, labelled, mutate, parameter_facts, var
from proofs.translate import formula, term
from theory import symbols as sym
from theory.theorems import smoothness_sandwich as t1

#: the name of the main obligation (its defining hypothesis is theory's beta_smooth)
MAIN = "sandwich (theory's conclusion)"


def proof() -> Proof:
    thm = t1.THEOREM
    beta, delta, s = var(sym.beta), var(sym.delta_norm), var(sym.s)
    L0, L1, gdot, gdot_s = var(sym.L0), var(sym.L1), var(sym.gdot), var(sym.gdot_s)
    grad_diff_norm = z3.Real("grad_diff_norm")  # ‖∇L(θ + sΔ) − ∇L(θ)‖
    step_norm = z3.Real("s_delta_norm")  # ‖sΔ‖
    inner = z3.Real("inner_grad_diff_delta")  # ⟨∇L(θ + sΔ) − ∇L(θ), Δ⟩
    parameters = parameter_facts(thm)

    # theory's beta_smooth hypothesis, read on the norms ‖∇L(θ+sΔ) − ∇L(θ)‖ and ‖sΔ‖
    smooth = labelled(
        formula(
            t1.BETA_SMOOTH.statement,
            {"grad_x": grad_diff_norm, "grad_y": z3.RealVal(0), "x": step_norm, "y": z3.RealVal(0)},
        ),
        t1.BETA_SMOOTH.name,
    )
    geometry: list[Fact] = [
        inner == gdot_s - gdot,  # ⟨∇L(θ+sΔ), Δ⟩ − ⟨∇L(θ), Δ⟩: linearity of ⟨·, Δ⟩
        grad_diff_norm >= 0,  # a norm
        premise("cauchy_schwarz", CAUCHY_SCHWARZ(inner, grad_diff_norm, delta)),
        smooth,
        premise("norm_homogeneous", NORM_HOMOGENEOUS(step_norm, s, delta)),
    ]

    # 1. the pointwise bound: theory's hypothesis directional_derivative_lipschitz
    directional = assumption_fact(thm, t1.DIRECTIONAL_LIPSCHITZ.name)
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
        [*parameters, geometry[0], geometry[1], geometry[3], geometry[4]],
        uses=pointwise_uses[1:],
        kind="control",
    )

    # 2. the sandwich: the Coq lemma at a point s of [0, 1], its premise from the geometry
    calculus = premise(
        "descent_sandwich", DESCENT_SANDWICH(s, gdot_s, gdot, beta, delta * delta, L0, L1)
    )
    conclusion = formula(thm.conclusion)
    main_uses = ("descent_sandwich", "cauchy_schwarz", "beta_smooth", "norm_homogeneous")
    sandwich = z3_obligation(
        MAIN,
        sp.sstr(thm.conclusion),
        conclusion,
        [*parameters, *geometry, calculus],
        uses=main_uses,
    )
    no_smoothness = z3_obligation(
        "T1 without beta-smoothness",
        "the sandwich with theory's beta_smooth hypothesis dropped",
        conclusion,
        [*parameters, geometry[0], geometry[1], geometry[2], geometry[4], calculus],
        kind="control",
    )
    halved = formula(mutate(thm.conclusion, {sym.beta: sym.beta / 2}))
    halved_control = z3_obligation(
        "sandwich with beta/2 in place of beta",
        sp.sstr(mutate(thm.conclusion, {sym.beta: sym.beta / 2})),
        halved,
        [*parameters, *geometry, calculus],
        kind="control",
    )

    # 3. curvature along the segment
    curvature = term(t1.CURVATURE)
    kappa = curvature.value
    curvature_goal = z3.If(kappa >= 0, kappa, -kappa) <= beta
    curvature_facts = [*parameters, conclusion, delta > 0, *curvature.definitions]
    curvature_bound = z3_obligation(
        "curvature |kappa| <= beta",
        f"|{sp.sstr(t1.CURVATURE)}| <= beta for delta_norm > 0",
        curvature_goal,
        curvature_facts,
        uses=(MAIN,),
    )
    curvature_turned = z3_obligation(
        "curvature |kappa| >= beta (inequality turned)",
        f"|{sp.sstr(t1.CURVATURE)}| >= beta",
        z3.If(kappa >= 0, kappa, -kappa) >= beta,
        curvature_facts,
        kind="control",
    )
    return Proof(
        thm,
        (
            coq.lemma_obligation("descent_sandwich"),
            pointwise,
            sandwich,
            curvature_bound,
            no_smoothness,
            no_cauchy_schwarz,
            halved_control,
            curvature_turned,
            coq.control_obligation("sandwich_without_smoothness_is_false"),
            coq.control_obligation("sandwich_with_a_quarter_is_false"),
        ),
        summary="Coq's descent lemma on the segment, its premise from beta-smoothness (z3)",
        defining=((MAIN, t1.BETA_SMOOTH.name),),
    )
