r"""Proof of T4 ``pl_convergence`` (Karimi, Nutini, Schmidt 2016, Theorem 1).

0. *hypotheses* (z3): theory's ``gradient_descent_step`` follows from Δ = −η∇L by
   bilinearity and homogeneity. Theory's ``mu_pl`` (½‖∇L‖² ≥ μ(L − L*)) is the defining
   hypothesis, cited by name; the necessity audit checks "one step" needs it.
1. *one step* (z3): T1's upper side at (θ_s, Δ_s) (the proved lemma, from theory's T1
   conclusion), theory's hypotheses ``gradient_descent_step`` (⟨∇L, Δ⟩ = −η‖∇L‖²,
   ‖Δ‖ = η‖∇L‖), ``mu_pl``, and the parameter assumptions (ηβ ≤ 1 in particular) ⇒ theory's
   ``STEP_CONCLUSION`` L_{s+1} − L* ≤ (1 − ημ)(L_s − L*).
2. *t steps* (z3, induction): theory's ``conclusion`` L_t ≤ L* + (1 − ημ)^t (L_0 − L*), with
   (1 − ημ)^t carried as a power (q^{n+1} = q·q^n) and 0 ≤ 1 − ημ derived from μ ≤ β, ηβ ≤ 1.
3. *bound non-increasing* (z3): the bound at t+1 is at most the bound at t, so once it is
   below τ it stays there: t_max certifies every t ≥ t_max.
4. *certified maximum steps* (z3 + exp/log axioms): for ημ < 1, L_0 > τ > L*, at
   t = ⌈steps_solution⌉ (theory's ``sympy.solve``) the bound is ≤ τ; for ημ = 1 one step
   reaches L* ≤ τ.

Controls: the step without ηβ ≤ 1 (an assumption dropped), T4 without PL (``mu_pl``
dropped), the induction with (1 − 2ημ)^t (a constant perturbed), and t_max rounded down
instead of up.
"""

from __future__ import annotations

import sympy as sp
import z3

from proofs.axioms import EXP_MONOTONE, INNER_SELF, LOG_SIGN, NORM_HOMOGENEOUS, POWERS
from proofs.induction import Induction, State
from proofs.obligation import Budget, Obligation, Outcome, Proof
from proofs.solver import Fact, premise, probe_claim, z3_obligation
from proofs.statements import assumption_fact, mutate, opaque_logs, parameter_facts, var
from proofs.translate import formula, term
from theory import symbols as sym
from theory.theorems import pl_convergence as t4
from theory.theorems import smoothness_sandwich as t1

POWER = sp.Symbol("contraction_pow_t", real=True)  # (1 − ημ)^t


def _with_power(expr: sp.Basic, contraction: sp.Expr | None = None) -> sp.Basic:
    """``expr`` with (1 − ημ)^t (theory's ``CONTRACTION`` unless given) replaced by a symbol."""
    base = t4.CONTRACTION if contraction is None else contraction
    return expr.xreplace({base**sym.t: POWER})


def _step() -> tuple[list[Obligation], list[Obligation]]:
    thm = t4.THEOREM
    L_s, L_next, grad_norm = var(sym.L_s), var(sym.L_next), var(sym.grad_norm)
    eta = var(sym.eta)
    gdot, delta_norm = var(sym.gdot), var(sym.delta_norm)
    t1_upper = formula(t1.THEOREM.conclusion, {"L0": L_s, "L1": L_next})
    descent_step = assumption_fact(thm, t4.GRADIENT_DESCENT_STEP.name)
    pl_definition = [
        assumption_fact(thm, t4.MU_PL.name),
        assumption_fact(thm, t4.LOSS_ABOVE_MINIMUM.name),
    ]
    hypotheses: list[Fact] = [
        premise("T1 smoothness_sandwich", t1_upper),
        descent_step,
        *pl_definition,
        grad_norm >= 0,
    ]
    # Δ = −η∇L: ⟨∇L, Δ⟩ = −η‖∇L‖² (bilinearity) and ‖Δ‖ = η‖∇L‖ (homogeneity, η > 0)
    descent_identities = z3_obligation(
        "gradient-descent step identities (theory's gradient_descent_step)",
        sp.sstr(t4.GRADIENT_DESCENT_STEP.statement),
        descent_step,
        [
            *parameter_facts(thm, only=["eta_positive"]),
            INNER_SELF(gdot, -eta, grad_norm),
            NORM_HOMOGENEOUS(delta_norm, -eta, grad_norm),
        ],
        uses=("inner_self", "norm_homogeneous"),
    )
    timing = ["t_nonnegative", "t_integer", "threshold_above_minimum", "start_above_minimum"]
    goal = formula(t4.STEP_CONCLUSION)
    step = z3_obligation(
        "one step",
        sp.sstr(t4.STEP_CONCLUSION),
        goal,
        [*parameter_facts(thm, without=timing), *hypotheses],
        uses=(
            "T1 smoothness_sandwich",
            "gradient-descent step identities",
            "mu_pl",
        ),
    )
    no_pl = z3_obligation(
        "T4 without PL",
        "the step contraction with theory's mu_pl hypothesis dropped",
        goal,
        [
            *parameter_facts(thm, without=timing),
            *[h for h in hypotheses if h is not pl_definition[0]],
        ],
        kind="control",
    )
    large_step = z3_obligation(
        "one step without eta <= 1/beta",
        "the step contraction with the assumption eta*beta <= 1 dropped",
        goal,
        [*parameter_facts(thm, without=[*timing, "eta_at_most_inverse_beta"]), *hypotheses],
        kind="control",
    )
    return [descent_identities, step], [large_step, no_pl]


def _induction(contraction: sp.Expr, lemma: str) -> Induction:
    thm = t4.THEOREM
    L_n, L_n1, P_n, P_n1 = (z3.Real(x) for x in ("L_n", "L_n_plus_1", "pow_n", "pow_n_plus_1"))
    invariant_expr = _with_power(
        thm.conclusion.xreplace({t4.CONTRACTION: contraction}), contraction
    )

    def invariant(state: State) -> Fact:
        return formula(invariant_expr, {"L_t": state["L"], POWER.name: state["P"]})

    factor = term(contraction).value
    return Induction(
        lemma,
        sp.sstr(thm.conclusion.xreplace({t4.CONTRACTION: contraction})),
        invariant=invariant,
        initial={"L": var(sym.L0), "P": z3.RealVal(1)},
        current={"L": L_n, "P": P_n},
        successor={"L": L_n1, "P": P_n1},
        given=parameter_facts(
            thm, without=["t_nonnegative", "t_integer", "threshold_above_minimum"]
        ),
        transition=[
            formula(t4.STEP_CONCLUSION, {"L_s": L_n, "L_next": L_n1}),
            POWERS(P_n1, factor, P_n),
        ],
        uses=("one step", "powers"),
    )


def _monotone_and_steps() -> tuple[list[Obligation], list[Obligation]]:
    thm = t4.THEOREM
    params = parameter_facts(thm, without=["t_integer"])
    P = var(POWER)
    q = term(t4.CONTRACTION).value
    bound_now = term(_with_power(thm.bound))
    bound_next = term(_with_power(thm.bound), {POWER.name: q * P})
    monotone = z3_obligation(
        "bound non-increasing in t",
        "bound(t+1) <= bound(t)  ((1 - eta mu)^(t+1) = (1 - eta mu)(1 - eta mu)^t)",
        bound_next.value <= bound_now.value,
        [*params, P >= 0],
        uses=("powers",),
    )

    # t_max: t >= log(r)/log(q) with log q < 0 gives t log q <= log r, so q^t <= r
    solution, logs = opaque_logs(thm.steps_solution)
    (log_q, q_arg), (log_r, r_arg) = _logs_in_order(logs, t4.CONTRACTION)
    t_max = z3.ToReal(z3.Int("t_max"))
    sol = term(solution)
    q_t, r = z3.Real("q_pow_t_max"), term(r_arg)
    facts: list[Fact] = [
        *parameter_facts(thm, without=["t_integer", "t_nonnegative"]),
        var(sym.tau) < var(sym.L0),
        var(sym.eta) * var(sym.mu) < 1,
        *sol.definitions,
        *r.definitions,
        LOG_SIGN(term(q_arg).value, var(log_q)),
        LOG_SIGN(r.value, var(log_r)),
        EXP_MONOTONE(t_max * var(log_q), var(log_r), q_t, r.value),  # q^t = exp(t log q)
    ]
    at_t_max = term(_with_power(thm.bound), {POWER.name: q_t})
    certificate = z3_obligation(
        "certified maximum steps",
        f"t_max = ceil({sp.sstr(thm.steps_solution)}) => bound(t_max) <= tau",
        z3.And(at_t_max.value <= var(sym.tau), *sol.domain, *r.domain),
        [*facts, t_max - 1 < sol.value, sol.value <= t_max],
        uses=("exp_monotone", "log_sign", "t steps (theory's conclusion)"),
    )
    rounded_down = _rounded_down_control()
    one_step_to_minimum = z3_obligation(
        "eta mu = 1: one step reaches L*",
        "bound(1) = L* <= tau when eta*mu = 1",
        term(_with_power(thm.bound), {POWER.name: q}).value <= var(sym.tau),
        [*params, var(sym.eta) * var(sym.mu) == 1],
    )
    return [monotone, certificate, one_step_to_minimum], [rounded_down]


def _rounded_down_control() -> Obligation:
    """bound(⌊steps_solution⌋) ≤ τ, evaluated exactly at parameter points (log included)."""
    thm = t4.THEOREM
    floor_steps = sp.floor(thm.steps_solution)
    claim = sp.Le(thm.bound.subs(sym.t, floor_steps), sym.tau)
    half, third = sp.Rational(1, 2), sp.Rational(1, 3)
    points = [
        {sym.L0: 1, sym.L_star: 0, sym.eta: eta, sym.mu: 1, sym.beta: 1, sym.tau: tau}
        for eta in (half, third)
        for tau in (sp.Rational(3, 10), sp.Rational(1, 5), sp.Rational(1, 10))
    ]
    valid = sp.And(*(a.statement for a in thm.parameter_assumptions if a.name != "t_integer"))
    valid = valid.xreplace({sym.t: 0})

    def discharge(budget: Budget) -> Outcome:
        return probe_claim(claim, points, valid=sp.And(valid, sym.tau < sym.L0))

    return Obligation(
        "certified maximum steps rounded down",
        f"bound(floor({sp.sstr(thm.steps_solution)})) <= tau (exact evaluation)",
        "sympy",
        discharge,
        kind="control",
    )


def _logs_in_order(
    logs: dict[sp.Symbol, sp.Expr], contraction: sp.Expr
) -> tuple[tuple[sp.Symbol, sp.Expr], tuple[sp.Symbol, sp.Expr]]:
    """((log q, q), (log r, r)): the logarithm of the contraction factor and the other one."""
    if len(logs) != 2:
        raise ValueError(f"expected two logarithms in the steps solution, got {logs}")
    (a, x), (b, y) = logs.items()
    if sp.simplify(x - contraction) == 0:
        return (a, x), (b, y)
    if sp.simplify(y - contraction) == 0:
        return (b, y), (a, x)
    raise ValueError(f"neither logarithm argument is the contraction {contraction}: {logs}")


def proof() -> Proof:
    step, step_controls = _step()
    induction = _induction(t4.CONTRACTION, "t steps (theory's conclusion)")
    doubled = _induction(
        mutate(t4.CONTRACTION, {sym.eta: 2 * sym.eta}), "t steps with (1 - 2 eta mu)^t"
    )
    steps, steps_controls = _monotone_and_steps()
    return Proof(
        t4.THEOREM,
        (
            *step,
            *induction.obligations(),
            *steps,
            *step_controls,
            doubled.step("control"),
            *steps_controls,
        ),
        summary="T1 upper side + PL per step, geometric decay by induction",
        defining=(("one step", t4.MU_PL.name),),
    )
