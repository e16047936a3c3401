r"""Proof of T9 ``gradient_steps_exact``: the exact worst case of N gradient steps, every N.

Notation: g_k = ∇L(θ_k), h_k = ‖g_k‖², Δ_k = −η g_k, φ(τ) = L(θ_k + τΔ_k),
c = theory's ``STEP_WORST`` = ηG² + βη²G²/4.

The dual certificate of the performance estimation problem (read numerically from PEPit for
N ≤ 10, see proofs/tightness.py) weights the two interpolation inequalities between
consecutive iterates by ½ each, which is the *trapezoid* inequality; the last step gets the
one-sided descent lemma. In closed form:

1. *Coq* (coqc): ``trapezoid_bound`` of proofs/coq/Segment.v, premises stated: φ
   differentiable on [0, 1], |φ'(τ) − φ'(0)| ≤ Kτ and |φ'(τ) − φ'(1)| ≤ K(1 − τ) ⇒
   |φ(1) − φ(0) − (φ'(0) + φ'(1))/2| ≤ K/4.
2. *trapezoid step* (z3): at a point s of [0, 1], Cauchy–Schwarz, theory's ``beta_smooth``
   (between θ_k + sΔ and θ_k, and between θ_k + sΔ and θ_{k+1}) and homogeneity give both
   premises with K = β‖Δ_k‖²; with theory's ``gradient_step`` (φ'(0) = −ηh_k,
   φ'(1) = −η⟨g_{k+1}, g_k⟩, ‖Δ_k‖ = η‖g_k‖) the lemma gives theory's ``TRAPEZOID_STEP``.
3. *last step* (z3): T1's conclusion (the proved lemma) with theory's ``gradient_step`` gives
   theory's ``LAST_STEP``.
4. *running bound* (z3, induction on n = m − 1 ≥ 0): theory's ``RUNNING`` after m = n + 1
   steps, from ``TRAPEZOID_STEP``, Cauchy–Schwarz (⟨g_{m+1}, g_m⟩ ≤ ‖g_m‖‖g_{m+1}‖) and the
   gradient bound at θ_m (m ≤ N − 1).
5. *conclusion* (z3): N = 1 from ``LAST_STEP`` alone; N ≥ 2 from ``RUNNING`` at m = N − 1 and
   ``LAST_STEP``, with h_{N−1} ≤ G².
6. *dual certificate* (sympy): theory's closed-form multipliers λ_k of ‖g_k‖² ≤ G² (the
   coefficients of h_k accumulated by 2–4) sum to PROGRESS: Σ_k λ_k G² = N c + βη²G²/4.

Controls: T9 without β-smoothness (the trapezoid step); the conclusion without the last-step
extra βη²G²/4 (N c alone: false, so the extra term is needed); the running bound's step with
βη²G²/8 in place of βη²G²/4 in c; the dual certificate with βη²/4 on the last step.
"""

from __future__ import annotations

import sympy as sp
import z3

from proofs import coq
from proofs.axioms import CAUCHY_SCHWARZ, NORM_HOMOGENEOUS, TRAPEZOID_BOUND
from proofs.induction import Induction, State
from proofs.obligation import Kind, Obligation, Proof
from proofs.solver import Fact, identity_obligation, premise, z3_obligation
from proofs.statements import labelled, mutate, parameter_facts, var
from proofs.translate import formula
from theory import symbols as sym
from theory.theorems import gradient_steps_exact as t9
from theory.theorems import smoothness_sandwich as t1

#: the main obligation (its defining hypothesis: beta_smooth)
TRAPEZOID = "trapezoid step (theory's TRAPEZOID_STEP)"


def _gradient_step(grad_norm: z3.ArithRef, gdot: z3.ArithRef, delta: z3.ArithRef) -> Fact:
    """Theory's ``gradient_step`` hypothesis on the given norm, inner product, step norm."""
    return labelled(
        formula(
            t9.GRADIENT_STEP.statement,
            {"grad_norm": grad_norm, "gdot": gdot, "delta_norm": delta},
        ),
        t9.GRADIENT_STEP.name,
    )


def _trapezoid() -> tuple[list[Obligation], list[Obligation]]:
    thm = t9.THEOREM
    beta, eta = var(sym.beta), var(sym.eta)
    s, delta = var(sym.s), var(sym.delta_norm)
    L_s, L_next = var(sym.L_s), var(sym.L_next)
    gn = z3.Real("grad_norm_k")  # ‖g_k‖
    inner = var(t9.inner_next)  # ⟨g_{k+1}, g_k⟩
    gdot_0, gdot_1, gdot_s = z3.Real("phi_prime_0"), z3.Real("phi_prime_1"), var(sym.gdot_s)
    diff_0, diff_1 = z3.Real("grad_diff_norm_0"), z3.Real("grad_diff_norm_1")
    step_0, step_1 = z3.Real("s_delta_norm"), z3.Real("one_minus_s_delta_norm")
    inner_0, inner_1 = z3.Real("inner_diff_0"), z3.Real("inner_diff_1")

    def smooth(diff: z3.ArithRef, dist: z3.ArithRef) -> Fact:
        return formula(
            t1.BETA_SMOOTH.statement,
            {"grad_x": diff, "grad_y": z3.RealVal(0), "x": dist, "y": z3.RealVal(0)},
        )

    smoothness = premise(t1.BETA_SMOOTH.name, smooth(diff_0, step_0), smooth(diff_1, step_1))
    geometry: list[Fact] = [
        inner_0 == gdot_s - gdot_0,  # ⟨∇L(θ+sΔ) − ∇L(θ), Δ⟩: linearity of ⟨·, Δ⟩
        inner_1 == gdot_s - gdot_1,  # ⟨∇L(θ+sΔ) − ∇L(θ+Δ), Δ⟩
        diff_0 >= 0,
        diff_1 >= 0,
        premise(
            "cauchy_schwarz",
            CAUCHY_SCHWARZ(inner_0, diff_0, delta),
            CAUCHY_SCHWARZ(inner_1, diff_1, delta),
        ),
        smoothness,
        premise(
            "norm_homogeneous",
            NORM_HOMOGENEOUS(step_0, s, delta),
            NORM_HOMOGENEOUS(step_1, 1 - s, delta),
        ),
    ]
    step_facts: list[Fact] = [
        gn >= 0,
        _gradient_step(gn, gdot_0, delta),
        gdot_1 == -eta * inner,  # ⟨g_{k+1}, −η g_k⟩ = −η⟨g_{k+1}, g_k⟩ (bilinearity)
    ]
    calculus = premise(
        "trapezoid_bound",
        TRAPEZOID_BOUND(s, gdot_s, gdot_0, gdot_1, beta * delta * delta, L_s, L_next),
    )
    parameters = parameter_facts(thm, only=["eta_positive", "beta_nonnegative"])
    goal = formula(t9.TRAPEZOID_STEP, {t9.grad_sq.name: gn * gn})
    trapezoid = z3_obligation(
        TRAPEZOID,
        sp.sstr(t9.TRAPEZOID_STEP),
        goal,
        [*parameters, *geometry, *step_facts, calculus],
        uses=(
            "trapezoid_bound",
            "cauchy_schwarz",
            "beta_smooth",
            "norm_homogeneous",
            "gradient_step",
        ),
    )
    no_smoothness = z3_obligation(
        "T9 without beta-smoothness",
        "the trapezoid step with theory's beta_smooth hypothesis dropped",
        goal,
        [*parameters, *(f for f in geometry if f is not smoothness), *step_facts, calculus],
        kind="control",
    )

    # the last step: T1's lower side with the gradient-step identities
    t1_here = premise(
        "T1 smoothness_sandwich", formula(t1.THEOREM.conclusion, {"L0": L_s, "L1": L_next})
    )
    last = z3_obligation(
        "last step (theory's LAST_STEP)",
        sp.sstr(t9.LAST_STEP),
        formula(t9.LAST_STEP, {t9.grad_sq.name: gn * gn}),
        [
            *parameters,
            t1_here,
            gn >= 0,
            _gradient_step(gn, var(sym.gdot), delta),
            delta >= 0,
        ],
        uses=("T1 smoothness_sandwich", "gradient_step"),
    )
    return [coq.lemma_obligation("trapezoid_bound"), trapezoid, last], [no_smoothness]


def _running(step_worst: sp.Expr, lemma: str) -> Induction:
    """Theory's ``RUNNING`` after m = n + 1 steps, with c = ``step_worst``."""
    thm = t9.THEOREM
    eta, G = var(sym.eta), var(sym.G)
    running = t9.RUNNING.xreplace({t9.STEP_WORST: step_worst})
    L1, L_n, L_n1 = z3.Real("L_1"), z3.Real("L_m"), z3.Real("L_m_plus_1")
    g0, g1, g_n, g_n1 = (z3.Real(x) for x in ("gn_0", "gn_1", "gn_m", "gn_m_plus_1"))
    i0, i_n = z3.Real("inner_1_0"), z3.Real("inner_m_plus_1_m")

    def invariant(state: State) -> Fact:
        return formula(
            running,
            {"L_s": state["L"], t9.grad_sq.name: state["g"] * state["g"], "m": state["n"] + 1},
        )

    def trapezoid(L_a: z3.ArithRef, L_b: z3.ArithRef, g: z3.ArithRef, i: z3.ArithRef) -> Fact:
        return formula(
            t9.TRAPEZOID_STEP,
            {"L_s": L_a, "L_next": L_b, t9.grad_sq.name: g * g, t9.inner_next.name: i},
        )

    def bounded(g: z3.ArithRef) -> Fact:
        return labelled(
            formula(t9.GRADIENT_BOUNDED_AT_ITERATES.statement, {"grad_norm": g}),
            t9.GRADIENT_BOUNDED_AT_ITERATES.name,
        )

    return Induction(
        lemma,
        sp.sstr(running),
        invariant=invariant,
        initial={"L": L1, "g": g1},
        current={"L": L_n, "g": g_n},
        successor={"L": L_n1, "g": g_n1},
        given=[*parameter_facts(thm, only=["eta_positive", "beta_nonnegative"]), G >= 0],
        base_given=[  # the first step, k = 0: from L_0 to L_1
            trapezoid(var(sym.L0), L1, g0, i0),
            premise("cauchy_schwarz", CAUCHY_SCHWARZ(i0, g1, g0)),
            g0 >= 0,
            bounded(g0),
        ],
        transition=[  # step k = m ≤ N − 2: θ_m still has a bounded gradient
            trapezoid(L_n, L_n1, g_n, i_n),
            premise("cauchy_schwarz", CAUCHY_SCHWARZ(i_n, g_n1, g_n)),
            g_n >= 0,
            bounded(g_n),
            eta > 0,
        ],
        uses=(TRAPEZOID, "cauchy_schwarz", "gradient_bound"),
        base_uses=(TRAPEZOID, "cauchy_schwarz", "gradient_bound"),
    )


def _conclusion(progress_goal: sp.Basic, name: str, kind: Kind) -> Obligation:
    """N = 1 from the last step alone; N ≥ 2 from the running bound at m = N − 1."""
    thm = t9.THEOREM
    t, L_prev, g = var(sym.t), z3.Real("L_N_minus_1"), z3.Real("gn_N_minus_1")
    running_at = formula(t9.RUNNING, {"L_s": L_prev, t9.grad_sq.name: g * g, "m": t - 1})
    last = formula(t9.LAST_STEP, {"L_s": L_prev, "L_next": var(sym.L_t), t9.grad_sq.name: g * g})
    bounded = labelled(
        formula(t9.GRADIENT_BOUNDED_AT_ITERATES.statement, {"grad_norm": g}),
        t9.GRADIENT_BOUNDED_AT_ITERATES.name,
    )
    facts: list[Fact] = [
        *parameter_facts(thm, without=["t_integer"]),
        z3.Or(
            z3.And(t == 1, L_prev == var(sym.L0)),
            z3.And(t >= 2, running_at.value, *running_at.definitions),  # type: ignore[arg-type]
        ),
        last,
        g >= 0,
        bounded,
    ]
    return z3_obligation(
        name,
        sp.sstr(progress_goal),
        formula(progress_goal),
        facts,
        uses=("running bound (theory's RUNNING)", "last step (theory's LAST_STEP)"),
        kind=kind,
    )


def _multipliers() -> tuple[list[Obligation], list[Obligation]]:
    """The dual certificate's value: Σ_k λ_k G² = theory's PROGRESS (weak duality)."""
    G2 = sym.G**2
    many = (t9.MULTIPLIER_FIRST + (sym.t - 2) * t9.MULTIPLIER_MIDDLE + t9.MULTIPLIER_LAST) * G2
    total = identity_obligation(
        "dual certificate value, N >= 2",
        "(lambda_first + (t - 2) lambda_middle + lambda_last) G^2 = PROGRESS",
        many,
        t9.PROGRESS,
    )
    single = identity_obligation(
        "dual certificate value, N = 1",
        "lambda_single G^2 = PROGRESS at t = 1",
        t9.MULTIPLIER_SINGLE * G2,
        t9.PROGRESS.subs(sym.t, 1),
    )
    wrong_last = mutate(t9.MULTIPLIER_LAST, {sym.beta: sym.beta / 2})
    control = identity_obligation(
        "dual certificate with beta eta^2/4 on the last step",
        "(lambda_first + (t - 2) lambda_middle + lambda_last') G^2 = PROGRESS",
        (t9.MULTIPLIER_FIRST + (sym.t - 2) * t9.MULTIPLIER_MIDDLE + wrong_last) * G2,
        t9.PROGRESS,
        kind="control",
    )
    return [total, single], [control]


def proof() -> Proof:
    thm = t9.THEOREM
    steps, step_controls = _trapezoid()
    running = _running(t9.STEP_WORST, "running bound (theory's RUNNING)")
    eighth = _running(
        mutate(t9.STEP_WORST, {sym.beta: sym.beta / 2}),
        "running bound with beta eta^2 G^2/8 in c",
    )
    conclusion = _conclusion(thm.conclusion, "conclusion (theory's)", "obligation")
    no_extra = sp.Ge(sym.L_t, sym.L0 - sym.t * t9.STEP_WORST)
    without_extra = _conclusion(no_extra, "conclusion without the last-step extra", "control")
    duals, dual_controls = _multipliers()
    return Proof(
        thm,
        (
            *steps,
            *running.obligations(),
            conclusion,
            *duals,
            *step_controls,
            *dual_controls,
            eighth.step("control"),
            without_extra,
        ),
        summary="trapezoid inequality (Coq) per step, descent lemma on the last, induction",
        defining=((TRAPEZOID, t1.BETA_SMOOTH.name),),
    )
