r"""Proof of T11 ``harm_radius``: a harm ceiling over a ball, the margin lemma, certified steps.

1. *one example* (z3): theory's ``radius_is_lower_bound`` (h_i = 1 ⟹ ‖θ − θ_0‖ ≥ r_i, what
   r_i means as an infimum over the harmful set) and h_i ∈ {0, 1} ⇒ theory's ``PER_EXAMPLE``:
   ‖θ − θ_0‖ ≤ R < r_i ⟹ h_i = 0.
2. *one indicator* (z3): with ‖θ − θ_0‖ ≤ R (theory's ``reachable_radius``), h_i ≤ 1[r_i ≤ R]
   (the summand of theory's ``CEILING_SUM``), from 1.
3. *ceiling* (induction on the number of examples, proofs/induction.py): S_m ≤ C_m for the
   partial sums S_m = Σ_{i≤m} h_i and C_m = Σ_{i≤m} 1[r_i ≤ R], each step by 2.
4. *harm ≤ count/n* (z3): theory's ``indicator_average`` (f = S_n/n), count = C_n, n ≥ 1 and
   3 ⇒ the first part of theory's ``conclusion``.
5. *margin lemma* (z3): theory's ``margins_lipschitz`` (|m(θ) − m(θ_0)| ≤ L‖θ − θ_0‖, harmful
   only where m(θ) > 0), L > 0 ⇒ ``radius_is_lower_bound`` with r_i = ``MARGIN_RADIUS``: the
   margin radius is a harm radius (the second part of the conclusion, r_i being the largest
   such lower bound); and with L = 0 and m(θ_0) ≤ 0 the example is never harmful (r_i = ∞).
6. *certified steps* (z3): f ≤ count/n, count an integer and theory's ``STEPS_CONDITION``
   count < ⌈φn⌉ ⇒ f < φ.
7. *curvature lemma* (z3): theory's ``margin_curvature`` (the Taylor bound of the combined
   margin D_i, Cauchy–Schwarz, harmful only where D_i > 0), a_i > 0, ‖g_i‖ + β_i > 0 (else
   D_i ≤ −a_i < 0 everywhere: r_i = ∞) and theory's ``curvature_parameters`` ⇒
   ``radius_is_lower_bound`` with r_i = ``CURVATURE_RADIUS``.
8. *joint lemma* (z3): theory's ``joint_curvature`` (the Taylor bounds summed over a set S,
   Cauchy–Schwarz with U_S ≥ ‖g_S‖) and ``joint_parameters`` ⇒ theory's ``JOINT_LEMMA``: in
   B(θ_0, R) with ``JOINT_SLACK`` ≤ 0 not every example of S is harmful.

9. *floor lemma* (vi) (z3, as T1's sandwich): theory's ``loss_smooth`` (∇CE_i β_i-Lipschitz on
   the ball), Cauchy–Schwarz and homogeneity establish the premise of Coq's
   ``descent_sandwich`` at a point s of [0, 1], whose conclusion |CE_i(θ) − CE_i(θ_0) −
   ⟨g_i, Δ⟩| ≤ β_i ‖Δ‖²/2, with ⟨g_i, Δ⟩ ≥ −‖g_i‖ ‖Δ‖ (Cauchy–Schwarz) and ‖Δ‖ ≤ R, gives
   theory's ``FLOOR_LEMMA``: CE_i(θ) ≥ ``LOSS_FLOOR`` on B(θ_0, R).
10. *sampled ceiling* (z3): the floor lemma, CE_i ≥ 0 and ``exp_monotone`` ⇒ T10's
   ``EXAMPLE_CEILING_RELATION`` with l_i = ``LOSS_FLOOR``: exp(−CE_i) ≤ exp(−max(l_i(R), 0)),
   the hypothesis ``per_example_floors`` of T10 (a), which sums it into the cap on f_s.
11. *LoRA reach* (vii): one adapter (z3, theory's ``lora_factors``): ‖s B_j A_j‖_F² ≤
   s² (a_0 + x)² ‖B_j‖_F²; summed over the adapters by induction (Σ_{j≤m} ‖s B_j A_j‖_F² ≤
   s² (a_0 + x)² Σ_{j≤m} ‖B_j‖_F²); then with theory's ``adapter_radius`` (b² + x² ≤ R²)
   ‖Δθ‖ ≤ ``LORA_REACH`` = s (a_0 R + R²/2) (z3, theory's ``LORA_LEMMA``).

Controls (each must be refuted): the per-example step and the ceiling's indicator with the
strictness turned (R ≤ r_i, 1[r_i < R]); radii ×2 in the indicator (1[2 r_i ≤ R]); the margin
radius with L/2 in place of L; the steps condition with ≤ in place of <; the curvature radius
with the remainder dropped (β_i = 0: the first-order a_i/‖g_i‖); the joint slack with the
remainder dropped (B_S = 0) and with U_S/2 in place of U_S; the loss floor with +β_i R²/2 in
place of −β_i R²/2 and with the gradient term dropped; the LoRA reach without the a_0 term
(s R²/2), without the scaling α/r (a_0 R + R²/2) and first order only (s a_0 R).
"""

from __future__ import annotations

import sympy as sp
import z3

from proofs.axioms import CAUCHY_SCHWARZ, DESCENT_SANDWICH, EXP_MONOTONE, NORM_HOMOGENEOUS
from proofs.induction import Induction
from proofs.obligation import Obligation, Proof
from proofs.solver import Fact, premise, z3_obligation
from proofs.statements import assumption_fact, labelled, mutate, parameter_facts, var
from proofs.translate import formula, term
from theory.theorems import harm_from_loss as t10
from theory.theorems import harm_radius as t11

#: the names of the obligations of (vi) and (vii) whose defining hypotheses the audit checks
FLOOR = "floor lemma: CE_i >= CE_i(theta_0) - ||g_i|| R - beta_i R^2/2 in the ball"
ONE_ADAPTER = "LoRA: one adapter, ||s B_j A_j||^2 <= s^2 (a_0 + x)^2 ||B_j||^2"
SUMMED = "LoRA: summed over the adapters"
REACH = "LoRA reach: ||merged - theta_0|| <= s (a_0 R + R^2/2)"


def _indicator(statement: sp.Basic) -> sp.Expr:
    """The summand of theory's ``CEILING_SUM`` with the indexed radius r[i] read as r_i."""
    summand: sp.Expr = statement.xreplace({t11.radii_indexed[t11.i]: t11.r_i})
    return summand


def _floor() -> tuple[list[Obligation], list[Obligation]]:
    """(vi): the floor lemma from Coq's descent lemma, and T10's per-example ceiling from it."""
    thm = t11.THEOREM
    dist, s, beta = var(t11.dist), var(t11.s_point), var(t11.beta_i)
    gdot, gdot_s, gap, segment = (var(x) for x in (t11.gdot, t11.gdot_s, t11.grad_gap,
                                                     t11.segment))
    inner = z3.Real("inner_grad_gap_delta")  # ⟨∇CE_i(θ_0 + sΔ) − ∇CE_i(θ_0), Δ⟩
    facts: list[Fact] = [
        *parameter_facts(thm, only=["curvature_parameters", "R_nonnegative"]),
        dist >= 0,
        inner == gdot_s - gdot,  # linearity of ⟨·, Δ⟩
        gap >= 0,
        premise("cauchy_schwarz", CAUCHY_SCHWARZ(inner, gap, dist)),
        assumption_fact(thm, t11.LOSS_SMOOTH.name),
        premise("norm_homogeneous", NORM_HOMOGENEOUS(segment, s, dist)),
        premise("cauchy_schwarz at theta_0", CAUCHY_SCHWARZ(gdot, var(t11.g_i), dist)),
        premise(
            "descent_sandwich",
            DESCENT_SANDWICH(s, gdot_s, gdot, beta, dist * dist, var(t11.a_i), var(t11.ce_at)),
        ),
    ]
    uses = ("descent_sandwich", "cauchy_schwarz", "norm_homogeneous", t11.LOSS_SMOOTH.name)
    floor = z3_obligation(FLOOR, sp.sstr(t11.FLOOR_LEMMA), formula(t11.FLOOR_LEMMA), facts,
                          uses=uses)
    curvature = t11.beta_i * t11.R**2 / 2
    controls = [
        z3_obligation(
            f"floor lemma with {label}",
            sp.sstr(wrong),
            formula(wrong),
            facts,
            kind="control",
        )
        for label, wrong in (
            ("+beta R^2/2 in place of -beta R^2/2",
             mutate(t11.FLOOR_LEMMA, {t11.LOSS_FLOOR: t11.LOSS_FLOOR + 2 * curvature})),
            ("the gradient term dropped",
             mutate(t11.FLOOR_LEMMA, {t11.LOSS_FLOOR: t11.LOSS_FLOOR + t11.g_i * t11.R})),
        )
    ]
    # T10's per-example ceiling with l_i = LOSS_FLOOR: exp(-CE_i) <= exp(-max(l_i(R), 0))
    substitution = {t10.ce: t11.ce_at, t10.loss_floor: t11.LOSS_FLOOR}
    relation = t10.EXAMPLE_CEILING_RELATION.xreplace(substitution)
    e_ce, e_ceiling = sp.Symbol("exp_minus_ce_at", real=True), sp.Symbol("exp_ceiling", real=True)
    opaque = relation.xreplace(
        {t10.SEQUENCE_PROBABILITY.xreplace(substitution): e_ce,
         t10.EXAMPLE_CEILING.xreplace(substitution): e_ceiling}
    )
    low, high = term(-t11.ce_at), term(-sp.Max(t11.LOSS_FLOOR, 0))
    ceiling = z3_obligation(
        "sampled ceiling: the floor discharges T10's per-example ceiling",
        sp.sstr(relation) + " in the ball",
        formula(opaque),
        [
            dist >= 0,
            var(t11.R) >= dist,
            premise(FLOOR, formula(t11.FLOOR_LEMMA)),
            premise("cross-entropy >= 0", var(t11.ce_at) >= 0),
            premise(
                "exp_monotone",
                *low.definitions,
                *high.definitions,
                EXP_MONOTONE(low.value, high.value, var(e_ce), var(e_ceiling)),
            ),
        ],
        uses=(FLOOR, "exp_monotone", "T10 harm_from_loss: losses_nonnegative"),
    )
    return [floor, ceiling], controls


def _lora() -> tuple[list[Obligation], list[Obligation]]:
    """(vii): one adapter, summed over the adapters by induction, the reach."""
    thm = t11.THEOREM
    scale, a0, x_all = var(t11.lora_scale), var(t11.a_0), var(t11.x_all)
    w, b = var(t11.w_j), var(t11.b_j)
    factor = scale * (a0 + x_all)  # s (a_0 + x): the same for every adapter
    lora_parameters = parameter_facts(thm, only=["lora_parameters"])
    one = z3_obligation(
        ONE_ADAPTER,
        "lora_factors => w_j^2 <= (s (a_0 + x))^2 b_j^2",
        w * w <= factor * factor * b * b,
        [*lora_parameters, w >= 0, assumption_fact(thm, t11.LORA_FACTORS.name)],
        uses=(t11.LORA_FACTORS.name,),
    )
    P, P1, Q, Q1 = (z3.Real(x) for x in ("P_m", "P_m_next", "Q_m", "Q_m_next"))
    w_next, b_next = z3.Reals("w_next b_next")
    summed = Induction(
        SUMMED,
        "sum_{j<=m} ||s B_j A_j||_F^2 <= (s (a_0 + x))^2 sum_{j<=m} ||B_j||_F^2",
        invariant=lambda state: state["P"] <= factor * factor * state["Q"],
        initial={"P": z3.RealVal(0), "Q": z3.RealVal(0)},
        current={"P": P, "Q": Q},
        successor={"P": P1, "Q": Q1},
        transition=[
            labelled(
                premise(ONE_ADAPTER, w_next * w_next <= factor * factor * b_next * b_next),
                ONE_ADAPTER,
            ),
            P + w_next * w_next == P1,
            Q + b_next * b_next == Q1,
        ],
        uses=(ONE_ADAPTER,),
        counter="m",
    )
    merged, b_all = var(t11.merged), var(t11.b_all)
    facts: list[Fact] = [
        *lora_parameters,
        *parameter_facts(thm, only=["R_nonnegative"]),
        merged >= 0,
        premise(SUMMED, merged * merged <= factor * factor * b_all * b_all),
        assumption_fact(thm, t11.ADAPTER_RADIUS.name),
    ]
    reach = z3_obligation(
        REACH, sp.sstr(t11.LORA_LEMMA), formula(t11.LORA_LEMMA), facts,
        uses=(SUMMED, t11.ADAPTER_RADIUS.name),
    )
    wrong_reaches = (
        ("without the a_0 term (s R^2/2)", mutate(t11.LORA_LEMMA, {t11.a_0: sp.Integer(0)})),
        ("without the scaling alpha/r", mutate(t11.LORA_LEMMA, {t11.lora_scale: sp.Integer(1)})),
        ("first order only (s a_0 R)", sp.Le(t11.merged, t11.lora_scale * t11.a_0 * t11.R)),
    )
    controls = [
        z3_obligation(f"LoRA reach {label}", sp.sstr(wrong), formula(wrong), facts,
                      kind="control")
        for label, wrong in wrong_reaches
    ]
    return [one, *summed.obligations(), reach], controls


def proof() -> Proof:
    thm = t11.THEOREM
    dist, h_i = var(t11.dist), var(t11.h_i)
    indicator_value = premise("indicator", z3.Or(h_i == 0, h_i == 1))
    lower_bound = assumption_fact(thm, t11.RADIUS_IS_LOWER_BOUND.name)
    reachable = assumption_fact(thm, t11.REACHABLE_RADIUS.name)
    example_facts: list[Fact] = [lower_bound, indicator_value, dist >= 0]

    # 1. one example
    per_example = z3_obligation(
        "one example outside its radius is not harmful",
        sp.sstr(t11.PER_EXAMPLE),
        formula(t11.PER_EXAMPLE),
        example_facts,
        uses=(t11.RADIUS_IS_LOWER_BOUND.name,),
    )
    turned = mutate(t11.PER_EXAMPLE, {sp.Lt(t11.R, t11.r_i): sp.Le(t11.R, t11.r_i)})
    turned_control = z3_obligation(
        "one example with R <= r_i in place of R < r_i",
        sp.sstr(turned),
        formula(turned),
        example_facts,
        kind="control",
    )

    # 2. one indicator: h_i <= 1[r_i <= R] inside the ball
    (ceiling_sum,) = t11.CEILING_SUM.atoms(sp.Sum)
    summand = ceiling_sum.function  # the Piecewise 1[r_i <= R]
    indicator = _indicator(summand)
    one = term(indicator)
    ball_facts: list[Fact] = [*example_facts, reachable, *one.definitions]
    one_indicator = z3_obligation(
        "one indicator: h_i <= 1[r_i <= R] in the ball",
        f"h_i <= {sp.sstr(indicator)}",
        h_i <= one.value,
        ball_facts,
        uses=("one example outside its radius is not harmful",),
    )
    inside = summand.args[0].cond  # r[i] <= R
    strict = term(_indicator(mutate(summand, {inside: sp.Lt(t11.r_i, t11.R)})))
    strict_control = z3_obligation(
        "one indicator with 1[r_i < R] in place of 1[r_i <= R]",
        "h_i <= 1[r_i < R]",
        h_i <= strict.value,
        [*example_facts, reachable, *strict.definitions],
        kind="control",
    )
    doubled = term(indicator.xreplace({t11.r_i: 2 * t11.r_i}))
    doubled_control = z3_obligation(
        "one indicator with radii x2",
        "h_i <= 1[2 r_i <= R]",
        h_i <= doubled.value,
        [*example_facts, reachable, *doubled.definitions],
        kind="control",
    )

    # 3. the ceiling: S_m <= C_m by induction on the number m of examples
    S_m, S_next, C_m, C_next = (z3.Real(x) for x in ("S_m", "S_m_next", "C_m", "C_m_next"))
    h_next = z3.Real("h_next")
    next_one = term(indicator, {"h_i": h_next})
    ceiling = Induction(
        "ceiling as a sum of indicators",
        "sum_{i<=m} h_i <= sum_{i<=m} 1[r_i <= R]",
        invariant=lambda state: state["S"] <= state["C"],
        initial={"S": z3.RealVal(0), "C": z3.RealVal(0)},
        current={"S": S_m, "C": C_m},
        successor={"S": S_next, "C": C_next},
        transition=[
            labelled(premise("one indicator", h_next <= next_one.value), "one indicator"),
            S_next == S_m + h_next,
            C_next == C_m + next_one.value,
            *next_one.definitions,
        ],
        uses=("one indicator: h_i <= 1[r_i <= R] in the ball",),
        counter="m",
    )

    # 4. harm <= count/n
    conclusion_ceiling = next(a for a in thm.conclusion.args if t11.harm in a.free_symbols)
    n, count, harm = var(t11.n), var(t11.count), var(t11.harm)
    S_n = z3.Real("S_n")  # theory's sum of indicators over the n examples
    ceiling_facts: list[Fact] = [
        *parameter_facts(thm, only=["n_at_least_one"]),
        labelled(premise(t11.INDICATOR_AVERAGE.name, harm * n == S_n), t11.INDICATOR_AVERAGE.name),
        premise("ceiling as a sum of indicators", S_n <= count),
    ]
    harm_ceiling = z3_obligation(
        "harm <= count/n (theory's conclusion, ceiling)",
        sp.sstr(conclusion_ceiling),
        formula(conclusion_ceiling),
        ceiling_facts,
        uses=("ceiling as a sum of indicators",),
    )

    # 5. margin lemma
    lipschitz_fact = assumption_fact(thm, t11.MARGINS_LIPSCHITZ.name)
    margin_as_radius = t11.RADIUS_IS_LOWER_BOUND.statement.xreplace({t11.r_i: t11.MARGIN_RADIUS})
    L_k = var(t11.L_k)
    margin_facts: list[Fact] = [lipschitz_fact, indicator_value, dist >= 0, L_k > 0]
    margin_lemma = z3_obligation(
        "margin lemma: max(0, -m)/L is a harm radius",
        sp.sstr(margin_as_radius),
        formula(margin_as_radius),
        margin_facts,
        uses=(t11.MARGINS_LIPSCHITZ.name,),
    )
    halved = mutate(margin_as_radius, {t11.L_k: t11.L_k / 2})
    halved_control = z3_obligation(
        "margin lemma with L/2 in place of L",
        sp.sstr(halved),
        formula(halved),
        margin_facts,
        kind="control",
    )
    frozen_margin = z3_obligation(
        "margin lemma at L = 0: a margin <= 0 never becomes positive",
        "L = 0 and m <= 0 => h_i = 0",
        z3.Implies(z3.And(L_k == 0, var(t11.m_k) <= 0), h_i == 0),
        [lipschitz_fact, indicator_value, dist >= 0],
        uses=(t11.MARGINS_LIPSCHITZ.name,),
    )

    # 6. certified steps, in two steps: the integer part with φn read as one real p, then
    #    the ceiling divided by n
    phi_n = sp.Symbol("phi_n", real=True)
    p = var(phi_n)
    whole = z3.ToReal(z3.Int("count_integer"))  # count(R) counts examples: an integer
    integer_condition = formula(
        t11.STEPS_CONDITION.xreplace({t11.phi * t11.n: phi_n}), {"count": whole}
    )
    below_phi_n = z3_obligation(
        "certified steps: count < ceil(phi n) => count < phi n",
        f"{sp.sstr(t11.STEPS_CONDITION)} => count < phi n (count an integer)",
        z3.Implies(z3.And(integer_condition.value, *integer_condition.definitions), whole < p),
        [],
    )
    loose = formula(
        sp.Le(*t11.STEPS_CONDITION.args).xreplace({t11.phi * t11.n: phi_n}), {"count": whole}
    )
    loose_control = z3_obligation(
        "certified steps with count <= ceil(phi n)",
        "count <= ceil(phi n) => count < phi n (count an integer)",
        z3.Implies(z3.And(loose.value, *loose.definitions), whole < p),
        [],
        kind="control",
    )
    bound = term(thm.bound)
    steps = z3_obligation(
        "certified steps: harm <= count/n < phi",
        "harm <= count/n and count < phi n => harm < phi",
        harm < var(t11.phi),
        [
            *parameter_facts(thm, only=["n_at_least_one", "phi_in_unit_interval"]),
            premise("harm <= count/n (theory's conclusion, ceiling)", harm <= bound.value),
            *bound.definitions,
            premise("certified steps: count < ceil(phi n) => count < phi n", count < p),
            p == var(t11.phi) * n,
        ],
        uses=(
            "harm <= count/n (theory's conclusion, ceiling)",
            "certified steps: count < ceil(phi n) => count < phi n",
        ),
    )
    # 7. curvature lemma
    curvature_fact = assumption_fact(thm, t11.MARGIN_CURVATURE.name)
    curvature_facts: list[Fact] = [
        curvature_fact,
        indicator_value,
        dist >= 0,
        var(t11.a_i) > 0,
        var(t11.g_i) + var(t11.beta_i) > 0,  # both 0: never harmful, r_i = inf (numerics)
        *parameter_facts(thm, only=["curvature_parameters"]),
    ]
    curvature_as_radius = t11.RADIUS_IS_LOWER_BOUND.statement.xreplace(
        {t11.r_i: t11.CURVATURE_RADIUS}
    )
    curvature_lemma = z3_obligation(
        "curvature lemma: 2a/(g + sqrt(g^2 + 2 beta a)) is a harm radius",
        sp.sstr(curvature_as_radius),
        formula(curvature_as_radius),
        curvature_facts,
        uses=(t11.MARGIN_CURVATURE.name,),
    )
    first_order = mutate(curvature_as_radius, {t11.beta_i: sp.Integer(0)})
    first_order_control = z3_obligation(
        "curvature lemma with the remainder dropped (beta = 0)",
        sp.sstr(first_order),
        formula(first_order),
        [*curvature_facts, var(t11.g_i) > 0],  # a/g defined: refuted by the remainder alone
        kind="control",
    )

    # 8. joint lemma
    h_set = var(t11.h_set)
    joint_facts: list[Fact] = [
        assumption_fact(thm, t11.JOINT_CURVATURE.name),
        premise("all of S harmful or not", z3.Or(h_set == 0, h_set == 1)),
        dist >= 0,
        *parameter_facts(thm, only=["joint_parameters"]),
    ]
    joint_lemma = z3_obligation(
        "joint lemma: a non-positive joint slack in the ball leaves S not all harmful",
        sp.sstr(t11.JOINT_LEMMA),
        formula(t11.JOINT_LEMMA),
        joint_facts,
        uses=(t11.JOINT_CURVATURE.name,),
    )
    no_remainder = mutate(t11.JOINT_LEMMA, {t11.B_S: sp.Integer(0)})
    no_remainder_control = z3_obligation(
        "joint lemma with the remainder dropped (B_S = 0 in the slack)",
        sp.sstr(no_remainder),
        formula(no_remainder),
        joint_facts,
        kind="control",
    )
    halved_sum = mutate(t11.JOINT_LEMMA, {t11.U_S: t11.U_S / 2})
    halved_sum_control = z3_obligation(
        "joint lemma with U_S/2 in place of U_S",
        sp.sstr(halved_sum),
        formula(halved_sum),
        joint_facts,
        kind="control",
    )
    floor_lemmas, floor_controls = _floor()
    lora_lemmas, lora_controls = _lora()
    return Proof(
        thm,
        (
            per_example,
            one_indicator,
            *ceiling.obligations(),
            harm_ceiling,
            margin_lemma,
            frozen_margin,
            below_phi_n,
            steps,
            curvature_lemma,
            joint_lemma,
            *floor_lemmas,
            *lora_lemmas,
            turned_control,
            strict_control,
            doubled_control,
            halved_control,
            loose_control,
            first_order_control,
            no_remainder_control,
            halved_sum_control,
            *floor_controls,
            *lora_controls,
        ),
        summary="r_i as a lower bound per example, induction over examples, Lipschitz margins",
        defining=(
            ("one example outside its radius is not harmful", t11.RADIUS_IS_LOWER_BOUND.name),
            ("margin lemma: max(0, -m)/L is a harm radius", t11.MARGINS_LIPSCHITZ.name),
            (
                "curvature lemma: 2a/(g + sqrt(g^2 + 2 beta a)) is a harm radius",
                t11.MARGIN_CURVATURE.name,
            ),
            (
                "joint lemma: a non-positive joint slack in the ball leaves S not all harmful",
                t11.JOINT_CURVATURE.name,
            ),
            (FLOOR, t11.LOSS_SMOOTH.name),
            (ONE_ADAPTER, t11.LORA_FACTORS.name),
            (REACH, t11.ADAPTER_RADIUS.name),
        ),
    )
