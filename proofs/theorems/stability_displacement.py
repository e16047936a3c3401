r"""Proof of T7 ``stability_displacement``: a displacement moves a smooth capability loss little.

1. *displacement bound* (z3): T1's sandwich for g (theory's T1 conclusion with β → β_g,
   L → g), Cauchy–Schwarz |⟨∇g(θ), δ⟩| ≤ ‖∇g(θ)‖‖δ‖ and theory's ``gradient_at_origin``
   ⇒ theory's ``conclusion`` |g(θ+δ) − g(θ)| ≤ G_g‖δ‖ + (β_g/2)‖δ‖².
2. *radius* (sympy): theory's evaluated ``radius`` 2ε/(G_g + √(G_g² + 2β_gε)) equals the
   root ``radius_root`` that ``sympy.solve`` found, for β_g > 0.
3. *certified radius* (z3): for G_g, β_g ≥ 0 not both 0 and ε > 0, every ‖δ‖ ≤ radius has
   ``bound`` ≤ ε, hence (with 1) |g(θ+δ) − g(θ)| ≤ ε; and ``bound``(radius) = ε, so no
   larger radius is certified by this bound.
4. *limits* (sympy): radius = ε/G_g at β_g = 0 and √(2ε/β_g) at G_g = 0.

Controls: the bound with β_g/2 in place of β_g, and the radius doubled.
"""

from __future__ import annotations

import sympy as sp
import z3

from proofs.axioms import CAUCHY_SCHWARZ
from proofs.obligation import Proof
from proofs.solver import Fact, identity_obligation, premise, z3_obligation
from proofs.statements import (
    assumption_fact,
    gradient_bound_is_axiom,
    mutate,
    parameter_facts,
    var,
)
from proofs.translate import formula, term
from theory import symbols as sym
from theory.theorems import smoothness_sandwich as t1
from theory.theorems import stability_displacement as t7


def proof() -> Proof:
    thm = t7.THEOREM
    # T1 (proved) for g: its β-smoothness hypothesis is theory's beta_g_smooth
    sandwich_for_g = premise(
        "T1 smoothness_sandwich",
        formula(
            t1.THEOREM.conclusion,
            {"L0": var(sym.g0), "L1": var(sym.g1), "beta": var(sym.beta_g)},
        ),
    )
    facts: list[Fact] = [
        *parameter_facts(thm, without=["eps_positive"]),
        sandwich_for_g,
        premise(
            "cauchy_schwarz",
            CAUCHY_SCHWARZ(var(sym.gdot), var(sym.grad_norm), var(sym.delta_norm)),
        ),
        assumption_fact(thm, t7.GRADIENT_AT_ORIGIN.name),
    ]
    displacement = z3_obligation(
        "displacement bound (theory's conclusion)",
        sp.sstr(thm.conclusion),
        formula(thm.conclusion),
        facts,
        uses=("T1 smoothness_sandwich", "cauchy_schwarz", "gradient_bound"),
    )
    halved = mutate(thm.conclusion, {sym.beta_g: sym.beta_g / 2})
    halved_control = z3_obligation(
        "displacement bound with beta_g/2 in place of beta_g",
        sp.sstr(halved),
        formula(halved),
        facts,
        kind="control",
    )

    positive = {s: sp.Symbol(s.name, positive=True) for s in (sym.G_g, sym.beta_g, sym.eps)}
    same_root = identity_obligation(
        "radius = root of bound = eps",
        f"{sp.sstr(thm.radius)} = {sp.sstr(thm.radius_root)}",
        thm.radius.xreplace(positive),
        thm.radius_root.xreplace(positive),
    )

    radius = term(thm.radius)
    delta, eps = var(sym.delta_norm), var(sym.eps)
    G_g, beta_g = var(sym.G_g), var(sym.beta_g)
    bound_here = term(thm.bound)
    bound_at_radius = term(thm.bound, {"delta_norm": radius.value})
    radius_facts: list[Fact] = [
        *parameter_facts(thm),
        z3.Or(G_g > 0, beta_g > 0),
        *radius.definitions,
        *bound_here.definitions,
        *bound_at_radius.definitions,
    ]
    certified = z3_obligation(
        "certified radius",
        "||delta|| <= radius => bound <= eps, and bound(radius) = eps",
        z3.And(
            z3.Implies(delta <= radius.value, bound_here.value <= eps),
            bound_at_radius.value == eps,
            *radius.domain,
        ),
        radius_facts,
        uses=("displacement bound (theory's conclusion)",),
    )
    doubled = term(2 * thm.radius)
    doubled_control = z3_obligation(
        "radius doubled",
        "||delta|| <= 2 radius => bound <= eps",
        z3.Implies(delta <= doubled.value, bound_here.value <= eps),
        [*radius_facts, *doubled.definitions],
        kind="control",
    )
    no_curvature = identity_obligation(
        "radius at beta_g = 0",
        f"{sp.sstr(thm.radius)} at beta_g = 0 equals eps/G_g",
        thm.radius.subs(sym.beta_g, 0).xreplace(positive),
        (sym.eps / sym.G_g).xreplace(positive),
    )
    no_gradient = identity_obligation(
        "radius at G_g = 0",
        f"{sp.sstr(thm.radius)} at G_g = 0 equals sqrt(2 eps/beta_g)",
        thm.radius.subs(sym.G_g, 0).xreplace(positive),
        sp.sqrt(2 * sym.eps / sym.beta_g).xreplace(positive),
    )
    gradient_is_axiom = gradient_bound_is_axiom(
        thm, t7.GRADIENT_AT_ORIGIN.name, sym.grad_norm, sym.G_g
    )
    return Proof(
        thm,
        (
            gradient_is_axiom,
            displacement,
            same_root,
            certified,
            no_curvature,
            no_gradient,
            halved_control,
            doubled_control,
        ),
        summary="T1 for the capability loss + Cauchy-Schwarz; radius from sympy's root",
    )
