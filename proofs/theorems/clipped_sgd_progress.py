r"""Proof of T2 ``clipped_sgd_progress``: cumulative attacker progress under clipped SGD.

1. *one step* (z3): T1's lower side at (θ_s, Δ_s) (the proved lemma, read from theory's T1
   conclusion), Cauchy–Schwarz ⟨∇L(θ_s), Δ_s⟩ ≥ −‖∇L(θ_s)‖‖Δ_s‖, theory's hypotheses
   ``gradient_bounded_at_iterates`` and ``clipped_step`` ⇒ theory's ``STEP_CONCLUSION``
   L_{s+1} ≥ L_s − (GηC + βη²C²/2).
2. *t steps* (z3, induction on t): P(t) is theory's ``conclusion`` L_t ≥ L_0 − t(GηC + βη²C²/2)
   read at step t; the base is t = 0 and the step is the one-step lemma.
3. *any schedule* (z3, induction): with per-step norms ‖Δ_s‖, L_t ≥ L_0 − Σ_{s<t}
   DECREASE_GIVEN_STEP_NORM(‖Δ_s‖): the envelope ``envelope_from_step_norms`` computes
   (for learning-rate schedules, momentum, any step-norm bound).
4. *certified minimum steps* (z3): with ``steps_solution`` (theory's ``sympy.solve`` of
   bound = τ), every integer t < ⌈steps_solution⌉ has L_t > τ, and the bound at
   t = ⌈steps_solution⌉ is ≤ τ (so the ceiling is the smallest such t).

5. *momentum* (z3, induction): PyTorch's heavy-ball buffer b_k = m b_{k−1} + g_k with
   ‖g_k‖ ≤ C has ‖b_k‖ ≤ C (1 − m^k)/(1 − m) (theory's ``SGD_MOMENTUM_FACTOR``), so one step
   is at most theory's ``SGD_STEP_BOUND``, and a Nesterov step (direction g_k + m b_k) at most
   ``SGD_NESTEROV_STEP_BOUND``: the step norms ``envelope`` uses with momentum.

Controls: the step without Cauchy–Schwarz, the step with β/2 in place of β, the
certificate claimed one step too far (t ≤ steps_solution), and the momentum buffer bounded
by C alone (the momentum factor dropped).
"""

from __future__ import annotations

import sympy as sp
import z3

from proofs.axioms import CAUCHY_SCHWARZ, NORM_HOMOGENEOUS, POWERS, TRIANGLE
from proofs.induction import Induction
from proofs.obligation import Obligation, Proof
from proofs.solver import premise, z3_obligation
from proofs.statements import (
    assumption_fact,
    gradient_bound_is_axiom,
    mutate,
    parameter_facts,
    var,
)
from proofs.translate import formula, term
from theory import optimizers as opt
from theory import symbols as sym
from theory.theorems import clipped_sgd_progress as t2
from theory.theorems import smoothness_sandwich as t1


def proof() -> Proof:
    thm = t2.THEOREM
    parameters = parameter_facts(thm, without=["t_integer", "t_nonnegative"])
    L_s, L_next, gdot = var(sym.L_s), var(sym.L_next), var(sym.gdot)
    grad_norm, delta_norm = var(sym.grad_norm), var(sym.delta_norm)

    # 1. one step, from T1 (lemma) + Cauchy–Schwarz + theory's hypotheses
    t1_lower = premise(
        "T1 smoothness_sandwich", formula(t1.THEOREM.conclusion, {"L0": L_s, "L1": L_next})
    )
    cauchy_schwarz = premise("cauchy_schwarz", CAUCHY_SCHWARZ(gdot, grad_norm, delta_norm))
    gradient_bound = assumption_fact(thm, t2.GRADIENT_BOUNDED_AT_ITERATES.name)
    clipped = assumption_fact(thm, t2.CLIPPED_STEP.name)
    step_hypotheses = [*parameters, t1_lower, cauchy_schwarz, gradient_bound, clipped]
    step_goal = formula(t2.STEP_CONCLUSION)
    one_step = z3_obligation(
        "one step",
        sp.sstr(t2.STEP_CONCLUSION),
        step_goal,
        step_hypotheses,
        uses=("T1 smoothness_sandwich", "cauchy_schwarz", "gradient_bound"),
    )
    no_cauchy_schwarz = z3_obligation(
        "one step without Cauchy-Schwarz",
        "the step bound with <grad L, Delta> unconstrained (axiom dropped)",
        step_goal,
        [*parameters, t1_lower, gradient_bound, clipped],
        kind="control",
    )
    halved_step = mutate(t2.STEP_CONCLUSION, {sym.beta: sym.beta / 2})
    halved_control = z3_obligation(
        "one step with beta/2 in place of beta",
        sp.sstr(halved_step),
        formula(halved_step),
        step_hypotheses,
        kind="control",
    )

    # 2. t steps: theory's conclusion by induction on t
    L_n, L_n1 = z3.Real("L_n"), z3.Real("L_n_plus_1")
    constant_eta = Induction(
        "t steps (theory's conclusion)",
        sp.sstr(thm.conclusion),
        invariant=lambda state: formula(thm.conclusion, {"L_t": state["L"], "t": state["n"]}),
        initial={"L": var(sym.L0)},
        current={"L": L_n},
        successor={"L": L_n1},
        given=parameters,
        transition=[formula(t2.STEP_CONCLUSION, {"L_s": L_n, "L_next": L_n1})],
        uses=("one step",),
    )

    # 3. any schedule: L_n >= L_0 - S_n, S_{n+1} = S_n + decrease(||Delta_n||)
    S_n, S_n1, norm_n = z3.Real("S_n"), z3.Real("S_n_plus_1"), z3.Real("step_norm_n")
    decrease = term(t2.DECREASE_GIVEN_STEP_NORM, {"delta_norm": norm_n})
    per_step_any_norm = formula(
        sp.Ge(sym.L_next, sym.L_s - t2.DECREASE_GIVEN_STEP_NORM),
        {"L_s": L_n, "L_next": L_n1, "delta_norm": norm_n},
    )
    schedule_step = z3_obligation(
        "one step of any norm",
        f"L_next >= L_s - ({sp.sstr(t2.DECREASE_GIVEN_STEP_NORM)})",
        formula(sp.Ge(sym.L_next, sym.L_s - t2.DECREASE_GIVEN_STEP_NORM)),
        [*parameters, t1_lower, cauchy_schwarz, gradient_bound],
        uses=("T1 smoothness_sandwich", "cauchy_schwarz", "gradient_bound"),
    )
    schedule = Induction(
        "any schedule (envelope_from_step_norms)",
        "L_n >= L_0 - sum_{s<n} (G ||Delta_s|| + beta/2 ||Delta_s||^2)",
        invariant=lambda state: state["L"] >= var(sym.L0) - state["S"],
        initial={"L": var(sym.L0), "S": z3.RealVal(0)},
        current={"L": L_n, "S": S_n},
        successor={"L": L_n1, "S": S_n1},
        given=parameters,
        transition=[per_step_any_norm, S_n1 == S_n + decrease.value, *decrease.definitions],
        uses=("one step of any norm",),
    )

    # 4. certified minimum steps
    solution = term(thm.steps_solution)
    t_min = z3.ToReal(z3.Int("t_min"))
    tau, L0, L_t, t = var(sym.tau), var(sym.L0), var(sym.L_t), var(sym.t)
    positive_decrease = term(t2.STEP_DECREASE).value > 0
    certificate_facts = [
        *parameter_facts(thm),
        formula(thm.conclusion),
        *solution.definitions,
        positive_decrease,
        tau < L0,
        t_min - 1 < solution.value,
        solution.value <= t_min,  # t_min = ceiling(steps_solution)
    ]
    at_t_min = term(thm.bound, {"t": t_min})
    certificate = z3_obligation(
        "certified minimum steps",
        "integer t < ceil(steps_solution) => L_t > tau, and bound(ceil(steps_solution)) <= tau",
        z3.And(z3.Implies(t < t_min, L_t > tau), at_t_min.value <= tau),
        certificate_facts,
        uses=("t steps (theory's conclusion)",),
    )
    off_by_one = z3_obligation(
        "certificate one step too far",
        "integer t <= ceil(steps_solution) => L_t > tau",
        z3.Implies(t <= t_min, L_t > tau),
        certificate_facts,
        kind="control",
    )

    momentum, momentum_controls = _momentum_obligations()
    return Proof(
        thm,
        (
            gradient_bound_is_axiom(
                thm, t2.GRADIENT_BOUNDED_AT_ITERATES.name, sym.grad_norm, sym.G
            ),
            one_step,
            *constant_eta.obligations(),
            schedule_step,
            *schedule.obligations(),
            certificate,
            *momentum,
            no_cauchy_schwarz,
            halved_control,
            off_by_one,
            *momentum_controls,
        ),
        summary="T1 lower side + Cauchy-Schwarz per step, summed by induction",
        defining=(("one step", t2.GRADIENT_BOUNDED_AT_ITERATES.name),),
    )


POWER_SYMBOL = sp.Symbol("momentum_pow_k", real=True)


def _momentum_obligations() -> tuple[list[Obligation], list[Obligation]]:
    """‖b_k‖ ≤ C (1 − m^k)/(1 − m) for b_k = m b_{k−1} + g_k, ‖g_k‖ ≤ C; then the step bounds."""
    m, C, eta = var(sym.momentum), var(sym.C), var(sym.eta)
    parameters = [formula(a.statement) for a in opt.SGD_ASSUMPTIONS] + [eta > 0]
    factor = term(opt.SGD_MOMENTUM_FACTOR.xreplace({sym.momentum**sym.k: POWER_SYMBOL}))
    b, b1, p, p1 = (
        z3.Real("buffer_norm_n"),
        z3.Real("buffer_norm_next"),
        var(POWER_SYMBOL),
        z3.Real("momentum_pow_next"),
    )
    g_norm, scaled = z3.Real("grad_norm_next"), z3.Real("momentum_buffer_norm")

    def factor_at(power: z3.ArithRef) -> z3.ArithRef:
        return z3.substitute(factor.value, (p, power))

    transition = [
        NORM_HOMOGENEOUS(scaled, m, b),  # ‖m b_n‖
        TRIANGLE(b1, scaled, g_norm),  # ‖m b_n + g_(n+1)‖
        g_norm <= C,
        POWERS(p1, m, p),
    ]
    buffer = Induction(
        "momentum buffer (theory's SGD_MOMENTUM_FACTOR)",
        f"||b_n|| <= C ({sp.sstr(opt.SGD_MOMENTUM_FACTOR)}) at k = n",
        invariant=lambda st: st["b"] <= C * factor_at(st["p"]),
        initial={"b": z3.RealVal(0), "p": z3.RealVal(1)},
        current={"b": b, "p": p},
        successor={"b": b1, "p": p1},
        given=[*parameters, *factor.definitions],
        transition=transition,
        uses=("norm_homogeneous", "triangle", "powers"),
    )
    naive = Induction(
        "momentum buffer bounded by C alone",
        "||b_n|| <= C for n >= 1 (the momentum factor dropped)",
        invariant=lambda st: z3.Or(st["n"] < 1, st["b"] <= C),
        initial={"b": z3.RealVal(0), "p": z3.RealVal(1)},
        current={"b": b, "p": p},
        successor={"b": b1, "p": p1},
        given=parameters,
        transition=transition,
    )
    step_bound = term(opt.SGD_STEP_BOUND.xreplace({sym.momentum**sym.k: POWER_SYMBOL}))
    nesterov_bound = term(opt.SGD_NESTEROV_STEP_BOUND.xreplace({sym.momentum**sym.k: POWER_SYMBOL}))
    facts = [
        *parameters,
        *factor.definitions,
        *step_bound.definitions,
        *nesterov_bound.definitions,
        b <= C * factor.value,
        g_norm <= C,
    ]
    step_norm, nesterov_norm = var(sym.delta_norm), z3.Real("nesterov_step_norm")
    heavy_ball = z3_obligation(
        "momentum step (theory's SGD_STEP_BOUND)",
        f"||eta b_k|| <= {sp.sstr(opt.SGD_STEP_BOUND)}",
        step_norm <= step_bound.value,
        [*facts, NORM_HOMOGENEOUS(step_norm, eta, b)],
        uses=("momentum buffer (theory's SGD_MOMENTUM_FACTOR)",),
    )
    direction = z3.Real("nesterov_direction_norm")
    nesterov = z3_obligation(
        "Nesterov step (theory's SGD_NESTEROV_STEP_BOUND)",
        f"||eta (g_k + m b_k)|| <= {sp.sstr(opt.SGD_NESTEROV_STEP_BOUND)}",
        nesterov_norm <= nesterov_bound.value,
        [
            *facts,
            NORM_HOMOGENEOUS(scaled, m, b),
            TRIANGLE(direction, g_norm, scaled),
            NORM_HOMOGENEOUS(nesterov_norm, eta, direction),
        ],
        uses=("momentum buffer (theory's SGD_MOMENTUM_FACTOR)", "triangle"),
    )
    return [*buffer.obligations(), heavy_ball, nesterov], [naive.step("control")]
