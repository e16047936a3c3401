r"""Proof of T6 ``contraction_tail``: a contraction tail bounds the loss at every later step.

1. *tail path* (z3, induction on the steps n after K): with U_n = ‖u_{K+n}‖, the partial path
   S_n = Σ_{i<n} U_i and the power P_n = cⁿ,
   U_n ≤ P_n ‖u_K‖, 0 ≤ P_n ≤ 1, and theory's ``PATH_CONCLUSION``
   S_n ≤ ‖u_K‖(1 − cⁿ)/(1 − c) ≤ ‖u_K‖/(1 − c); the step uses theory's ``contraction``
   hypothesis U_{n+1} ≤ c U_n and q^{n+1} = c·cⁿ.
2. *conclusion* (z3): T3's path-length lemma (theory's T3 ``PATH_CONCLUSION``, proved there)
   from L_K over the path S_n, with 1, gives theory's ``conclusion`` (both inequalities).
3. *strong resistance* (z3): if the floor ``bound`` is above τ, every L_{K+n} is.
4. *certified minimum steps* (z3 + exp/log axioms): for 0 < c < 1, G‖u_K‖ > 0 and a floor
   below τ < L_K, every n < theory's ``steps_solution`` (``sympy.solve`` of
   HORIZON_BOUND = τ) has HORIZON_BOUND(n) > τ.

Controls: the path bound with the contraction hypothesis turned (‖u_{s+1}‖ ≥ c‖u_s‖), the
floor without the 1/(1 − c) factor, and the minimum steps claimed one past the solution
(refuted by exact evaluation).
"""

from __future__ import annotations

import sympy as sp
import z3

from proofs.axioms import EXP_MONOTONE, LOG_SIGN, POWERS
from proofs.induction import Induction, State
from proofs.obligation import Budget, Obligation, Outcome, Proof
from proofs.solver import Fact, probe_claim, z3_obligation
from proofs.statements import (
    gradient_bound_is_axiom,
    labelled,
    opaque_logs,
    parameter_facts,
    var,
)
from proofs.translate import formula, term
from theory import symbols as sym
from theory.theorems import contraction_tail as t6
from theory.theorems import path_length_adam as t3

POWER = sp.Symbol("c_pow_n", real=True)  # cⁿ


def _with_power(expr: sp.Basic) -> sp.Basic:
    return expr.xreplace({sym.c**sym.n: POWER})


def _tail_path(contraction: Fact | None, lemma: str) -> Induction:
    thm = t6.THEOREM
    U, U1, S_n, S_n1, P, P1 = (
        z3.Real(x) for x in ("U_n", "U_n_plus_1", "S_n", "S_n_plus_1", "P_n", "P_n_plus_1")
    )
    c, u_K = var(sym.c), var(sym.u_K)
    path = _with_power(t6.PATH_CONCLUSION)

    def invariant(state: State) -> Fact:
        theory_part = formula(path, {"path_length": state["S"], POWER.name: state["P"]})
        return z3.And(
            theory_part.value,  # type: ignore[arg-type]
            *theory_part.definitions,
            state["U"] <= state["P"] * u_K,
            state["P"] >= 0,
            state["P"] <= 1,
        )

    step_contraction: Fact = (
        labelled(formula(t6.CONTRACTION.statement, {"u_next": U1, "u_s": U}), "contraction")
        if contraction is None
        else contraction
    )
    return Induction(
        lemma,
        f"{sp.sstr(t6.PATH_CONCLUSION)} with path_length = S_n, and U_n <= c^n ||u_K||",
        invariant=invariant,
        initial={"U": u_K, "S": z3.RealVal(0), "P": z3.RealVal(1)},
        current={"U": U, "S": S_n, "P": P},
        successor={"U": U1, "S": S_n1, "P": P1},
        given=parameter_facts(thm, only=["c_nonnegative", "c_below_one", "u_K_nonnegative"]),
        transition=[step_contraction, S_n1 == S_n + U, POWERS(P1, c, P), U >= 0],
        uses=("powers", "contraction"),
    )


def _conclusion() -> tuple[list[Obligation], list[Obligation]]:
    thm = t6.THEOREM
    P = var(POWER)
    t3_path = formula(t3.PATH_CONCLUSION, {"L0": var(sym.L_K), "L_t": var(sym.L_Kn)})
    facts: list[Fact] = [
        *parameter_facts(thm, without=["n_integer"]),
        t3_path,
        formula(_with_power(t6.PATH_CONCLUSION)),
        P >= 0,
        P <= 1,
    ]
    conclusion = z3_obligation(
        "conclusion (theory's)",
        sp.sstr(thm.conclusion),
        formula(_with_power(thm.conclusion)),
        facts,
        uses=("T3 path_length_adam (path length)", "tail path"),
    )
    no_geometric_factor = sp.Ge(sym.L_Kn, sym.L_K - sym.G * sym.u_K)
    short_floor = z3_obligation(
        "floor without the 1/(1 - c) factor",
        sp.sstr(no_geometric_factor),
        formula(no_geometric_factor),
        facts,
        kind="control",
    )
    resistance = z3_obligation(
        "strong resistance",
        "bound > tau => L_{K+n} > tau for every n",
        var(sym.L_Kn) > var(sym.tau),
        [*facts, formula(_with_power(thm.conclusion)), term(thm.bound).value > var(sym.tau)],
        uses=("conclusion (theory's)",),
    )
    return [conclusion, resistance], [short_floor]


def _minimum_steps() -> tuple[list[Obligation], list[Obligation]]:
    thm = t6.THEOREM
    solution, logs = opaque_logs(thm.steps_solution)
    c = var(sym.c)
    by_argument = {sp.simplify(arg - sym.c) == 0: (symbol, arg) for symbol, arg in logs.items()}
    if set(by_argument) != {True, False}:
        raise ValueError(f"T6: expected log(c) and one other logarithm, got {logs}")
    log_c, _ = by_argument[True]
    log_r, r_arg = by_argument[False]
    n = var(sym.n)
    sol, r = term(solution), term(r_arg)
    c_n = z3.Real("c_pow_n_real")  # cⁿ = exp(n log c)
    horizon = term(_with_power(t6.HORIZON_BOUND), {POWER.name: c_n})
    facts: list[Fact] = [
        *parameter_facts(thm, without=["n_integer"]),
        c > 0,
        var(sym.G) * var(sym.u_K) > 0,
        term(thm.bound).value < var(sym.tau),
        var(sym.tau) < var(sym.L_K),
        *sol.definitions,
        *r.definitions,
        *horizon.definitions,
        LOG_SIGN(c, var(log_c)),
        LOG_SIGN(r.value, var(log_r)),
        EXP_MONOTONE(var(log_r), n * var(log_c), r.value, c_n),
    ]
    certificate = z3_obligation(
        "certified minimum steps after K",
        f"n < {sp.sstr(thm.steps_solution)} => HORIZON_BOUND(n) > tau",
        z3.Implies(n < sol.value, horizon.value > var(sym.tau)),
        facts,
        uses=("exp_monotone", "log_sign"),
    )
    claim = sp.Gt(t6.HORIZON_BOUND.subs(sym.n, sp.ceiling(thm.steps_solution)), sym.tau)
    half = sp.Rational(1, 2)
    points = [
        {sym.L_K: 2, sym.G: 1, sym.u_K: u, sym.c: half, sym.tau: tau}
        for u in (sp.Rational(1, 2), sp.Rational(3, 4))
        for tau in (sp.Rational(3, 2), sp.Rational(7, 4))
    ]

    def discharge(budget: Budget) -> Outcome:
        return probe_claim(claim, points, valid=sp.Lt(thm.bound, sym.tau))

    one_past = Obligation(
        "minimum steps one past the solution",
        "HORIZON_BOUND(ceil(steps_solution)) > tau (exact evaluation)",
        "sympy",
        discharge,
        kind="control",
    )
    return [certificate], [one_past]


def proof() -> Proof:
    tail = _tail_path(None, "tail path")
    U, U1 = z3.Real("U_n"), z3.Real("U_n_plus_1")
    turned = _tail_path(var(sym.c) * U <= U1, "tail path with the contraction turned")
    conclusion, conclusion_controls = _conclusion()
    steps, steps_controls = _minimum_steps()
    gradient_is_axiom = gradient_bound_is_axiom(
        t6.THEOREM, t6.GRADIENT_BOUNDED_ON_PATH.name, sym.grad_norm, sym.G
    )
    return Proof(
        t6.THEOREM,
        (
            gradient_is_axiom,
            *tail.obligations(),
            *conclusion,
            *steps,
            turned.step("control"),
            *conclusion_controls,
            *steps_controls,
        ),
        summary="geometric tail of the update norms by induction, then T3's path bound",
        defining=((f"{tail.lemma}: inductive step", t6.CONTRACTION.name),),
    )
