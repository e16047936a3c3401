r"""Proof of T10 ``harm_from_loss``: the harmful loss caps and floors the sampled harm.

z3 has no exp: every exp(x) the proof needs is a real variable e_x, and what is used about it
is stated as a premise: positivity and monotonicity (axiom ``exp_monotone``, with
exp(log x) = x), the tangent line exp(u) ≥ 1 + u (a lemma proved here by sympy's calculus)
and exp(a)·exp(b) = exp(a + b) (an identity proved here by sympy). None of them mentions a
sum over examples, a mean, φ or a token: the conclusions are derived.

0. *lemmas* (sympy): the tangent line, min_u (exp(u) − 1 − u) = 0 over the reals
   (``sympy.calculus.util.minimum``: stationary points and limits at ±∞); the product rule
   exp(−L)·exp(L − CE) = exp(−CE).
(a) *ceiling*: per example (z3, theory's ``EXAMPLE_CEILING_RELATION``): CE ≥ l and CE ≥ 0 ⇒
   exp(−CE) ≤ exp(−max(l, 0)); summed over the examples by induction (Σ_{i<k} P_i ≤
   Σ_{i<k} exp(−max(l_i, 0))); a common floor l > −ln φ certifies f_s < φ; no smaller floor
   does (examples at CE_i = l ≤ −ln φ have f_s ≥ φ).
(b) *Jensen*: per example, theory's ``TANGENT_LINE`` at the mean L; summed by induction
   (Σ_{i<k} P_i ≥ exp(−L)(k − (Σ_{i<k} CE_i − kL))); at k = n, Σ CE_i = nL gives
   f_s ≥ exp(−L); L ≤ −ln φ ⇒ f_s ≥ φ.
(c) *exact match*: CE < ln 2 ⇒ P > 1/2 (exp_monotone at exp(log(1/2)) = 1/2), P = p·R with
   R ∈ [0, 1] (a product of probabilities is in [0, 1], by induction over the tokens) ⇒
   p > 1/2 ⇒ every other token has probability < p (theory's ``ARGMAX``): e_i = 1; counted by
   induction, f_e ≥ (1/n) #{CE_i < ln 2}.

Controls (each must be refuted): the tangent line with slope 2 (exp(u) ≥ 1 + 2u); the
ceiling with the floor on the *mean* loss instead of every example (two examples); Jensen
reversed (f_s ≤ exp(−L)); the exact-match link at threshold 1/3 (CE < ln 3 ⇒ arg-max); the
per-example ceiling without the floor hypothesis is left to the necessity audit.
"""

from __future__ import annotations

import sympy as sp
import z3
from sympy.calculus.util import minimum

from proofs.axioms import EXP_MONOTONE
from proofs.induction import Induction, State
from proofs.obligation import Budget, Kind, Obligation, Outcome, Proof, Status
from proofs.solver import Fact, identity_obligation, premise, z3_obligation
from proofs.statements import assumption_fact, parameter_facts, var
from proofs.translate import formula, term
from theory.theorems import harm_from_loss as t10

#: the real variables standing for exp(·) at the points the proof uses
E_CE = sp.Symbol("exp_minus_ce", real=True)  # exp(−CE)
E_CEIL = sp.Symbol("exp_minus_max_floor", real=True)  # exp(−max(l, 0))
E_L = sp.Symbol("exp_minus_L", real=True)  # exp(−L)
E_FLOOR = sp.Symbol("exp_minus_floor", real=True)  # exp(−l)
LOG_PHI = sp.Symbol("log_phi", real=True)  # ln φ
LOG_2 = sp.Symbol("log_2", real=True)  # ln 2

TANGENT = "exp tangent line"
PRODUCT = "exp product rule"
U = sp.Symbol("u", real=True)


def _opaque(expr: sp.Basic) -> sp.Basic:
    """``expr`` with its exp and log atoms replaced by the proof's real variables."""
    return expr.xreplace(
        {
            t10.SEQUENCE_PROBABILITY: E_CE,
            t10.EXAMPLE_CEILING: E_CEIL,
            t10.JENSEN_FLOOR: E_L,
            t10.COMMON_CEILING: E_FLOOR,
            sp.log(t10.phi): LOG_PHI,
            t10.EXACT_LEVEL: LOG_2,
        }
    )


# --------------------------------------------------------------------------- 0. lemmas
def _tangent(slope: int, kind: Kind) -> Obligation:
    """min over the reals of exp(u) − 1 − slope·u is ≥ 0 (sympy's calculus); a negative
    minimum is refuted at an exact point."""
    gap = sp.exp(U) - 1 - slope * U

    def discharge(budget: Budget) -> Outcome:
        lowest = sp.simplify(minimum(gap, U, sp.S.Reals))
        if lowest.is_nonnegative:
            return Outcome(Status.PROVED, f"sympy: min over the reals of {gap} is {lowest}")
        for point in (sp.Integer(1), sp.log(slope), sp.Integer(-1), sp.Rational(1, 2)):
            value = gap.subs(U, point)
            if value.is_negative:
                return Outcome(
                    Status.FAILED,
                    f"sympy: {gap} < 0 at an exact point",
                    f"u={point}, exp(u) - 1 - {slope}u = {sp.N(value, 6)}",
                )
        return Outcome(Status.FAILED, f"sympy: minimum {lowest} not shown nonnegative")

    name = TANGENT if slope == 1 else f"{TANGENT} with slope {slope}"
    return Obligation(
        name,
        f"exp(u) >= 1 + {slope}*u for every real u",
        "sympy",
        discharge,
        kind,
    )


def _product_rule() -> Obligation:
    return identity_obligation(
        PRODUCT,
        "exp(-L) * exp(L - CE) = exp(-CE)",
        t10.JENSEN_FLOOR * sp.exp(t10.mean_loss - t10.ce),
        t10.SEQUENCE_PROBABILITY,
    )


# --------------------------------------------------------------------------- (a) ceiling
def _exp_monotone(a: sp.Expr, b: sp.Expr, e_a: sp.Expr, e_b: sp.Expr) -> Fact:
    ta, tb = term(a), term(b)
    return premise(
        "exp_monotone",
        *ta.definitions,
        *tb.definitions,
        EXP_MONOTONE(ta.value, tb.value, term(e_a).value, term(e_b).value),
    )


def _ceiling() -> tuple[list[Obligation], list[Obligation]]:
    thm = t10.THEOREM
    example = z3_obligation(
        "ceiling per example (theory's EXAMPLE_CEILING_RELATION)",
        sp.sstr(t10.EXAMPLE_CEILING_RELATION),
        formula(_opaque(t10.EXAMPLE_CEILING_RELATION)),
        [
            assumption_fact(thm, "per_example_floors"),
            assumption_fact(thm, "losses_nonnegative"),
            _exp_monotone(-t10.ce, -sp.Max(t10.loss_floor, 0), E_CE, E_CEIL),
        ],
        uses=("exp_monotone", "per_example_floors", "losses_nonnegative"),
    )
    S, S1, C, C1, p_k, c_k = (
        z3.Real(x) for x in ("S_k", "S_k_plus_1", "C_k", "C_k_plus_1", "P_k", "ceil_k")
    )

    def invariant(state: State) -> Fact:
        return state["S"] <= state["C"]

    summed = Induction(
        "ceiling summed over the examples",
        "sum_{i<k} P_i <= sum_{i<k} exp(-max(l_i, 0))",
        invariant=invariant,
        initial={"S": z3.RealVal(0), "C": z3.RealVal(0)},
        current={"S": S, "C": C},
        successor={"S": S1, "C": C1},
        counter="k",
        transition=[S + p_k == S1, C + c_k == C1, p_k <= c_k],
        uses=("ceiling per example",),
    )
    n, f_s, floor = var(t10.n), var(t10.f_sampled), var(t10.loss_floor)
    e_max, e_l, phi, log_phi = var(E_CEIL), var(E_FLOOR), var(t10.phi), var(LOG_PHI)
    common_facts: list[Fact] = [
        *parameter_facts(thm),
        n * e_max >= S,  # the summed ceiling with one common floor: n exp(-max(l, 0))
        f_s * n == S,
        _exp_monotone(-sp.Max(t10.loss_floor, 0), -t10.loss_floor, E_CEIL, E_FLOOR),
        premise("exp_monotone", EXP_MONOTONE(-floor, log_phi, e_l, phi)),  # exp(log φ) = φ
    ]
    certificate = formula(_opaque(sp.Gt(t10.loss_floor, t10.LOSS_LEVEL)))
    certifies = z3_obligation(
        "a common floor above -ln(phi) certifies f_s < phi",
        "CE_i >= l > -ln(phi) for every i => f_s < phi",
        z3.Implies(z3.And(certificate.value, *certificate.definitions), f_s < phi),
        common_facts,
        uses=("ceiling summed over the examples", "exp_monotone"),
    )
    tight = z3_obligation(
        "no smaller common floor certifies f_s < phi",
        "CE_i = l for every i, 0 <= l <= -ln(phi) => f_s >= phi",
        f_s >= phi,
        [
            *parameter_facts(thm),
            floor >= 0,
            formula(_opaque(sp.Le(t10.loss_floor, t10.LOSS_LEVEL))),
            f_s == e_l,  # every P_i = exp(-l)
            premise("exp_monotone", EXP_MONOTONE(log_phi, -floor, phi, e_l)),  # exp(log φ) = φ
        ],
        uses=("exp_monotone",),
    )
    # control: a floor on the mean loss, (CE_1 + CE_2)/2 >= l, does not cap the mean of P_i
    ce1, ce2, e1, e2 = z3.Reals("ce_1 ce_2 exp_minus_ce_1 exp_minus_ce_2")
    mean_floor = z3_obligation(
        "ceiling with the floor on the mean loss instead of every example",
        "(CE_1 + CE_2)/2 >= l >= 0 => (exp(-CE_1) + exp(-CE_2))/2 <= exp(-l)",
        (e1 + e2) / 2 <= e_l,
        [
            ce1 >= 0,
            ce2 >= 0,
            floor >= 0,
            (ce1 + ce2) / 2 >= floor,
            premise("exp_monotone", EXP_MONOTONE(-ce1, -floor, e1, e_l)),
            premise("exp_monotone", EXP_MONOTONE(-ce2, -floor, e2, e_l)),
            premise("exp_monotone", EXP_MONOTONE(-ce1, -ce2, e1, e2)),
            e1 <= 1,
            e2 <= 1,  # exp(-CE) <= exp(0) = 1
        ],
        kind="control",
    )
    return [example, *summed.obligations(), certifies, tight], [mean_floor]


# --------------------------------------------------------------------------- (b) Jensen
def _jensen() -> tuple[list[Obligation], list[Obligation]]:
    thm = t10.THEOREM
    u = var("u_tangent")
    e_u, e_ce, e_l = z3.Real("exp_L_minus_ce"), var(E_CE), var(E_L)
    ce, L = var(t10.ce), var(t10.mean_loss)
    tangent_facts: list[Fact] = [
        u == L - ce,
        premise(TANGENT, e_u >= 1 + u),  # the tangent-line lemma at u = L - CE
        premise(PRODUCT, e_ce == e_l * e_u),  # exp(-L) exp(L - CE) = exp(-CE)
        premise("exp_monotone", EXP_MONOTONE(-L, -L, e_l, e_l)),  # exp(-L) > 0
    ]
    example = z3_obligation(
        "tangent line at the mean loss (theory's TANGENT_LINE)",
        sp.sstr(t10.TANGENT_LINE),
        formula(_opaque(t10.TANGENT_LINE)),
        tangent_facts,
        uses=(TANGENT, PRODUCT, "exp_monotone"),
    )
    S, S1, C, C1, p_k, ce_k = (
        z3.Real(x) for x in ("S_k", "S_k_plus_1", "C_k", "C_k_plus_1", "P_k", "ce_k")
    )

    def invariant(state: State) -> Fact:
        k = state["k"]
        return state["S"] >= e_l * (k - (state["C"] - k * L))

    summed = Induction(
        "Jensen summed over the examples",
        "sum_{i<k} P_i >= exp(-L) (k - (sum_{i<k} CE_i - k L))",
        invariant=invariant,
        initial={"S": z3.RealVal(0), "C": z3.RealVal(0)},
        current={"S": S, "C": C},
        successor={"S": S1, "C": C1},
        counter="k",
        transition=[S + p_k == S1, C + ce_k == C1, p_k >= e_l * (1 - (ce_k - L))],
        uses=("tangent line at the mean loss",),
    )
    n, f_s, phi = var(t10.n), var(t10.f_sampled), var(t10.phi)
    at_n: list[Fact] = [
        *parameter_facts(thm),
        e_l * (n - (C - n * L)) <= S,  # the induction at k = n
        n * L == C,  # L is the mean of the CE_i
        f_s * n == S,
    ]
    floor = z3_obligation(
        "Jensen floor (theory's JENSEN_FLOOR)",
        sp.sstr(sp.Ge(t10.f_sampled, t10.JENSEN_FLOOR)),
        formula(_opaque(sp.Ge(t10.f_sampled, t10.JENSEN_FLOOR))),
        at_n,
        uses=("Jensen summed over the examples",),
    )
    log_phi = var(LOG_PHI)
    low_loss = formula(_opaque(sp.Le(t10.mean_loss, t10.LOSS_LEVEL)))
    forced = z3_obligation(
        "a mean loss at most -ln(phi) forces f_s >= phi",
        "L <= -ln(phi) => f_s >= phi",
        z3.Implies(z3.And(low_loss.value, *low_loss.definitions), f_s >= phi),
        [
            *at_n,
            premise("exp_monotone", EXP_MONOTONE(log_phi, -L, phi, e_l)),  # exp(log φ) = φ
        ],
        uses=("Jensen floor", "exp_monotone"),
    )
    reversed_ = z3_obligation(
        "Jensen reversed",
        "f_s <= exp(-L)",
        f_s <= e_l,
        [*at_n, e_l > 0],
        kind="control",
    )
    return [example, *summed.obligations(), floor, forced], [reversed_]


# --------------------------------------------------------------------------- (c) exact
def _exact_link(level: int, kind: Kind) -> Obligation:
    """CE < ln(level) ⇒ the response token beats every other token (level 2: theory's
    statement; level 3: the control with threshold 1/3)."""
    thm = t10.THEOREM
    ce, p_seq = var(t10.ce), var(t10.probability)
    log_level = z3.Real(f"log_{level}")
    below = ce < log_level if level != 2 else formula(_opaque(sp.Lt(t10.ce, t10.EXACT_LEVEL)))
    goal = formula(t10.ARGMAX)
    name = (
        "an example with CE < ln 2 is reproduced exactly (theory's ARGMAX)"
        if level == 2
        else f"exact-match link with threshold 1/{level} in place of 1/2"
    )
    return z3_obligation(
        name,
        f"CE < ln {level}, P = exp(-CE) = p * R, R in [0, 1] => every other token < p",
        goal,
        [
            below,
            assumption_fact(thm, "sequence_factorisation"),
            assumption_fact(thm, "token_distribution"),
            # exp(-ln level) = 1/level < exp(-CE) = P
            premise(
                "exp_monotone", EXP_MONOTONE(-log_level, -ce, z3.RealVal(1) / level, p_seq)
            ),
        ],
        uses=(
            "exp_monotone",
            "sequence_factorisation",
            "token_distribution",
            "a product of token probabilities",
        ),
        kind=kind,
    )


def _exact() -> tuple[list[Obligation], list[Obligation]]:
    Q, Q1, q = z3.Reals("Q_j Q_j_plus_1 q_j")

    def product_invariant(state: State) -> Fact:
        return z3.And(state["Q"] >= 0, state["Q"] <= 1)

    product = Induction(
        "a product of token probabilities lies in [0, 1]",
        "0 <= prod_{j'<j} p_j' <= 1",
        invariant=product_invariant,
        initial={"Q": z3.RealVal(1)},
        current={"Q": Q},
        successor={"Q": Q1},
        counter="j",
        transition=[Q * q == Q1, q >= 0, q <= 1],
    )
    E, E1, K, K1, x, b = z3.Reals("E_k E_k_plus_1 K_k K_k_plus_1 e_k b_k")

    def count_invariant(state: State) -> Fact:
        return state["E"] >= state["K"]

    counted = Induction(
        "exact matches counted over the examples",
        "sum_{i<k} e_i >= #{i < k : CE_i < ln 2}",
        invariant=count_invariant,
        initial={"E": z3.RealVal(0), "K": z3.RealVal(0)},
        current={"E": E, "K": K},
        successor={"E": E1, "K": K1},
        counter="k",
        transition=[
            E + x == E1,
            K + b == K1,
            z3.Or(x == 0, x == 1),
            z3.Or(b == 0, b == 1),
            z3.Implies(b == 1, x == 1),  # CE_k < ln 2 ⇒ e_k = 1 (the link above)
        ],
        uses=("an example with CE < ln 2 is reproduced exactly",),
    )
    return (
        [*product.obligations(), _exact_link(2, "obligation"), *counted.obligations()],
        [_exact_link(3, "control")],
    )


def proof() -> Proof:
    ceiling, ceiling_controls = _ceiling()
    jensen, jensen_controls = _jensen()
    exact, exact_controls = _exact()
    return Proof(
        t10.THEOREM,
        (
            _tangent(1, "obligation"),
            _product_rule(),
            *ceiling,
            *jensen,
            *exact,
            _tangent(2, "control"),
            *ceiling_controls,
            *jensen_controls,
            *exact_controls,
        ),
        summary="exp's tangent line and monotonicity, per example, summed by induction",
        defining=(
            ("ceiling per example (theory's EXAMPLE_CEILING_RELATION)", "per_example_floors"),
        ),
    )
