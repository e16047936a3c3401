r"""Proof of T3 ``path_length_adam``: path-length bound and the exact Adam/AdamW step bound.

Path length.

1. *segment* (Coq + z3): Coq's ``segment_bound`` (proofs/coq/Segment.v: φ differentiable on
   [0, 1] and |φ'(τ)| ≤ M for every τ ⇒ |φ(1) − φ(0)| ≤ M, by the mean value theorem) with
   φ(τ) = L(θ_s + τΔ_s) and M = G‖Δ_s‖; its premise at a point of the segment comes from
   Cauchy–Schwarz and theory's ``gradient_bounded_on_path``, so L_{s+1} ≥ L_s − G‖Δ_s‖.
2. *path* (z3, induction): theory's ``PATH_CONCLUSION`` L_t ≥ L_0 − G Σ_{s<t}‖Δ_s‖.

Adam (per coordinate, counter k; A_k = Σ_j β1^{k−j} g_j, B_k = Σ_j β2^{k−j} g_j²,
W_k = Σ_j γ^{k−j}, γ = theory's ``GAMMA``). Cauchy–Schwarz for these weighted sums is *proved*,
not assumed:

3. *moments* (z3, induction): PyTorch's m_k = β1 m_{k−1} + (1−β1) g_k, v_k likewise, are
   m_k = (1−β1) A_k and v_k = (1−β2) B_k.
4. *weighted Cauchy–Schwarz* (z3, induction): A_k² ≤ W_k B_k. The step is
   (β1A + g)² ≤ (γW + 1)(β2B + g²), true because β1² = γβ2 and 2|β1Ag| ≤ γWg² + β2B.
5. *powers* (z3, induction): β1^k, β2^k, γ^k lie in [0, 1) for k ≥ 1 and γ^k β2^k = (β1^k)².
6. *geometric sum* (z3, induction): W_k (1 − γ) = 1 − γ^k.
7. *coordinate bound* (z3): 3–6 imply theory's ``COORDINATE_STEP_BOUND``
   |m̂_k|/(√v̂_k + ε) ≤ a_k (when the update is defined: v̂_k > 0 or ε > 0).
8. *uniform bound* (z3): a_k ≤ a_∞ (theory's ``ADAM_COORDINATE_BOUND_LIMIT``) for every
   k ≥ 1, because (β1^k − β2^k)² ≥ 0.
9. *Euclidean norm* (z3, induction over coordinates + final step): d coordinates each at most
   M in magnitude have norm at most √d M, which is theory's ``adam_update`` hypothesis shape.
10. *Adam step norm* (z3): theory's ``adam_update`` hypothesis with 7 and 8 gives
    ‖Δ_s‖ ≤ η a_∞ √d; *Adam path* (z3, induction) and *conclusion* (z3):
    Σ_{s<t}‖Δ_s‖ ≤ t η a_∞ √d (theory's ``ADAM_PATH_LENGTH``), hence theory's ``conclusion``.
11. *AdamW* (z3): ‖θ_{s+1}‖ ≤ (1 − ηλ)‖θ_s‖ + η a √d and ‖Δ_s‖ ≤ η(a√d + λ‖θ_s‖) (triangle
    inequality, homogeneity), so by induction ‖θ_s‖ ≤ R_s under theory's
    ``ADAMW_NORM_RECURSION`` and ‖Δ_s‖ ≤ theory's ``ADAMW_STEP_BOUND``.

Controls: the segment without the gradient bound (z3), and in Coq the segment lemma without
its premise (false for φ(τ) = τ²); the weighted Cauchy–Schwarz step with
γ = β1² (the division by β2 dropped); a_2 without the geometric-sum factor, refuted by an explicit
two-gradient Adam run; AdamW's norm recursion without ηλ ≤ 1.
"""

from __future__ import annotations

import sympy as sp
import z3

from proofs import coq
from proofs.axioms import (
    CAUCHY_SCHWARZ,
    EUCLIDEAN_COORDINATES,
    NORM_HOMOGENEOUS,
    POWERS,
    SEGMENT_BOUND,
    TRIANGLE,
)
from proofs.induction import Induction, State
from proofs.obligation import Obligation, Proof
from proofs.solver import Fact, premise, z3_obligation
from proofs.statements import (
    assumption_fact,
    gradient_bound_is_axiom,
    parameter_facts,
    var,
)
from proofs.translate import formula, term
from theory import optimizers as opt
from theory import symbols as sym
from theory.theorems import path_length_adam as t3

# symbols standing for the powers β1^k, β2^k, γ^k inside theory's a_k
P1, P2, PG = (sp.Symbol(name, real=True) for name in ("beta1_pow_k", "beta2_pow_k", "gamma_pow_k"))
COORDINATE_SYMBOL = sp.Symbol("a_k", real=True)
#: the main obligation of the path bound (its defining hypothesis: gradient_bounded_on_path)
SEGMENT = "segment L_{s+1} >= L_s - G ||Delta_s||"


def powers_replaced(expr: sp.Basic) -> sp.Basic:
    """``expr`` with β1^k, β2^k, γ^k replaced by the symbols the power lemmas are about."""
    return expr.xreplace({sym.beta1**sym.k: P1, sym.beta2**sym.k: P2, opt.GAMMA**sym.k: PG})


def _adam_parameters() -> list[Fact]:
    names = [
        "beta1_nonnegative",
        "beta1_below_one",
        "beta2_positive",
        "beta2_below_one",
        "beta1_squared_below_beta2",
        "adam_eps_nonnegative",
    ]
    return list(parameter_facts(t3.THEOREM, only=names))


def _path_obligations() -> tuple[list[Obligation], list[Obligation]]:
    thm = t3.THEOREM
    L_s, L_next, G = var(sym.L_s), var(sym.L_next), var(sym.G)
    delta, grad_norm, gdot_s = var(sym.delta_norm), var(sym.grad_norm), var(sym.gdot_s)
    s_point = var(sym.s)  # a point of [0, 1] on the segment θ_s + τΔ_s
    gradient_bound = assumption_fact(thm, t3.GRADIENT_BOUNDED_ON_PATH.name)
    cauchy_schwarz = premise("cauchy_schwarz", CAUCHY_SCHWARZ(gdot_s, grad_norm, delta))
    # Coq's segment_bound at s: if |L_{s+1} − L_s| > G‖Δ_s‖ then |φ'(s)| > G‖Δ_s‖ there
    calculus = premise("segment_bound", SEGMENT_BOUND(s_point, gdot_s, G * delta, L_s, L_next))
    segment_facts: list[Fact] = [
        *parameter_facts(thm, only=["G_nonnegative"]),
        delta >= 0,
        cauchy_schwarz,
        gradient_bound,
        calculus,
    ]
    one_step = sp.Ge(sym.L_next, sym.L_s - sym.G * sym.delta_norm)
    pointwise_ok = z3_obligation(
        "segment integrand |<grad L(theta_s + u Delta), Delta>| <= G ||Delta||",
        "Cauchy-Schwarz and ||grad L|| <= G on the segment",
        z3.If(gdot_s >= 0, gdot_s, -gdot_s) <= G * delta,
        [cauchy_schwarz, gradient_bound],
        uses=("cauchy_schwarz", "gradient_bound"),
    )
    segment = z3_obligation(
        SEGMENT,
        sp.sstr(one_step),
        formula(one_step),
        segment_facts,
        uses=("segment_bound", "cauchy_schwarz", "gradient_bound"),
    )
    no_gradient_bound = z3_obligation(
        "segment without the gradient bound",
        "L_{s+1} >= L_s - G ||Delta_s|| with ||grad L|| <= G on the segment dropped",
        formula(one_step),
        [f for f in segment_facts if f is not gradient_bound],
        kind="control",
    )
    L_n, L_n1, P_n, P_n1, norm_n = (
        z3.Real(x) for x in ("L_n", "L_n_plus_1", "path_n", "path_n_plus_1", "step_norm_n")
    )
    path = Induction(
        "path length (theory's PATH_CONCLUSION)",
        sp.sstr(t3.PATH_CONCLUSION),
        invariant=lambda st: formula(t3.PATH_CONCLUSION, {"L_t": st["L"], "path_length": st["P"]}),
        initial={"L": var(sym.L0), "P": z3.RealVal(0)},
        current={"L": L_n, "P": P_n},
        successor={"L": L_n1, "P": P_n1},
        given=parameter_facts(thm, only=["G_nonnegative"]),
        transition=[
            formula(one_step, {"L_s": L_n, "L_next": L_n1, "delta_norm": norm_n}),
            P_n1 == P_n + norm_n,
            norm_n >= 0,
        ],
        uses=("segment L_{s+1} >= L_s - G ||Delta_s||",),
    )
    gradient_is_axiom = gradient_bound_is_axiom(
        thm, t3.GRADIENT_BOUNDED_ON_PATH.name, sym.grad_norm, sym.G
    )
    obligations = [
        coq.lemma_obligation("segment_bound"),
        gradient_is_axiom,
        pointwise_ok,
        segment,
        *path.obligations(),
    ]
    return obligations, [
        no_gradient_bound,
        coq.control_obligation("segment_without_gradient_bound_is_false"),
    ]


def _adam_lemma() -> tuple[list[Obligation], list[Obligation]]:
    beta1, beta2 = var(sym.beta1), var(sym.beta2)
    gamma = term(opt.GAMMA)
    parameters = [*_adam_parameters(), *gamma.definitions]
    g = z3.Real("g_n_plus_1")  # the gradient coordinate of the next step

    A, A1, B, B1, W, W1, m, m1, v, v1 = (
        z3.Real(x)
        for x in (
            "A_n",
            "A_next",
            "B_n",
            "B_next",
            "W_n",
            "W_next",
            "m_n",
            "m_next",
            "v_n",
            "v_next",
        )
    )
    sums = {"A": A, "B": B, "W": W}
    sums_next = {"A": A1, "B": B1, "W": W1}
    sum_recursions = [beta1 * A + g == A1, beta2 * B + g * g == B1, gamma.value * W + 1 == W1]
    zeros = {"A": z3.RealVal(0), "B": z3.RealVal(0), "W": z3.RealVal(0)}

    moments = Induction(
        "moments are weighted sums",
        "m_n = (1 - beta1) A_n and v_n = (1 - beta2) B_n",
        invariant=lambda st: z3.And(
            st["m"] == (1 - beta1) * st["A"], st["v"] == (1 - beta2) * st["B"]
        ),
        initial={**zeros, "m": z3.RealVal(0), "v": z3.RealVal(0)},
        current={**sums, "m": m, "v": v},
        successor={**sums_next, "m": m1, "v": v1},
        given=parameters,
        transition=[
            *sum_recursions,
            m1 == beta1 * m + (1 - beta1) * g,  # PyTorch Adam's first moment
            v1 == beta2 * v + (1 - beta2) * g * g,  # and second moment
        ],
    )

    def weighted_cs(st: State) -> z3.BoolRef:
        return z3.And(st["A"] * st["A"] <= st["W"] * st["B"], st["W"] >= 0, st["B"] >= 0)

    cauchy_schwarz = Induction(
        "weighted Cauchy-Schwarz",
        "A_n^2 <= W_n B_n (with W_n, B_n >= 0)",
        invariant=weighted_cs,
        initial=zeros,
        current=sums,
        successor=sums_next,
        given=parameters,
        transition=sum_recursions,
    )
    wrong_gamma = Induction(
        "weighted Cauchy-Schwarz with gamma = beta1^2",
        "A_n^2 <= W_n B_n when W_n sums powers of beta1^2 (the /beta2 dropped)",
        invariant=weighted_cs,
        initial=zeros,
        current=sums,
        successor=sums_next,
        given=_adam_parameters(),
        transition=[beta1 * A + g == A1, beta2 * B + g * g == B1, (beta1 * beta1) * W + 1 == W1],
    )

    p1, p2, pg = var(P1), var(P2), var(PG)
    p1n, p2n, pgn = z3.Real("beta1_pow_next"), z3.Real("beta2_pow_next"), z3.Real("gamma_pow_next")

    def power_facts(st: State) -> z3.BoolRef:
        a, b, c, k = st["p1"], st["p2"], st["pg"], st["n"]
        return z3.And(
            c * b == a * a,
            a >= 0,
            a <= 1,
            b > 0,
            b <= 1,
            c >= 0,
            c <= 1,
            z3.Implies(k >= 1, z3.And(a < 1, b < 1, c < 1)),
        )

    powers = Induction(
        "powers",
        "gamma^n beta2^n = (beta1^n)^2; beta1^n, beta2^n, gamma^n in [0, 1], < 1 for n >= 1",
        invariant=power_facts,
        initial={"p1": z3.RealVal(1), "p2": z3.RealVal(1), "pg": z3.RealVal(1)},
        current={"p1": p1, "p2": p2, "pg": pg},
        successor={"p1": p1n, "p2": p2n, "pg": pgn},
        given=parameters,
        transition=[POWERS(p1n, beta1, p1), POWERS(p2n, beta2, p2), POWERS(pgn, gamma.value, pg)],
        uses=("powers",),
    )
    geometric = Induction(
        "geometric sum",
        "W_n (1 - gamma) = 1 - gamma^n",
        invariant=lambda st: st["W"] * (1 - gamma.value) == 1 - st["pg"],
        initial={"W": z3.RealVal(0), "pg": z3.RealVal(1)},
        current={"W": W, "pg": pg},
        successor={"W": W1, "pg": pgn},
        given=parameters,
        transition=[gamma.value * W + 1 == W1, POWERS(pgn, gamma.value, pg)],
        uses=("powers",),
    )

    # 7. the coordinate bound at a counter k >= 1, from the lemmas above
    m_hat, v_hat, eps = var(sym.m_hat), var(sym.v_hat), var(sym.adam_eps)
    k = var(sym.k)
    lemma_facts: list[Fact] = [
        *parameters,
        k >= 1,
        weighted_cs({"A": A, "B": B, "W": W}),
        power_facts({"p1": p1, "p2": p2, "pg": pg, "n": k}),
        W * (1 - gamma.value) == 1 - pg,
        m == (1 - beta1) * A,
        v == (1 - beta2) * B,
        m_hat * (1 - p1) == m,  # bias correction
        v_hat * (1 - p2) == v,
        z3.Or(v_hat > 0, eps > 0),  # the update m_hat/(sqrt(v_hat) + eps) is defined
    ]
    bound_goal = formula(powers_replaced(t3.COORDINATE_STEP_BOUND))
    coordinate = z3_obligation(
        "Adam coordinate bound (theory's COORDINATE_STEP_BOUND)",
        sp.sstr(t3.COORDINATE_STEP_BOUND),
        bound_goal,
        lemma_facts,
        uses=("weighted Cauchy-Schwarz", "moments are weighted sums", "powers", "geometric sum"),
    )

    a_k = term(powers_replaced(opt.ADAM_COORDINATE_BOUND))
    a_limit = term(opt.ADAM_COORDINATE_BOUND_LIMIT)
    uniform = z3_obligation(
        "a_k <= a_infinity",
        f"{sp.sstr(opt.ADAM_COORDINATE_BOUND)} <= {sp.sstr(opt.ADAM_COORDINATE_BOUND_LIMIT)}",
        z3.And(a_k.value <= a_limit.value, *a_k.domain, *a_limit.domain),
        [
            *parameters,
            k >= 1,
            power_facts({"p1": p1, "p2": p2, "pg": pg, "n": k}),
            *a_k.definitions,
            *a_limit.definitions,
        ],
        uses=("powers",),
    )
    obligations = [
        *moments.obligations(),
        *cauchy_schwarz.obligations(),
        *powers.obligations(),
        *geometric.obligations(),
        coordinate,
        uniform,
    ]
    return obligations, [wrong_gamma.step("control"), _two_step_adam_control()]


def _two_step_adam_control() -> Obligation:
    """a_2 without its geometric-sum factor, against an explicit Adam run on gradients g1, g2."""
    beta1, beta2 = var(sym.beta1), var(sym.beta2)
    g1, g2 = z3.Real("g1"), z3.Real("g2")
    m1, v1 = (1 - beta1) * g1, (1 - beta2) * g1 * g1
    m2, v2 = beta1 * m1 + (1 - beta1) * g2, beta2 * v1 + (1 - beta2) * g2 * g2
    m_hat, v_hat = z3.Real("m_hat_2"), z3.Real("v_hat_2")
    mutant = powers_replaced(opt.ADAM_COORDINATE_BOUND).subs(PG, opt.GAMMA)  # (1-γ)/(1-γ) = 1
    mutant_k2 = mutant.subs({P1: sym.beta1**2, P2: sym.beta2**2})
    bound = term(mutant_k2)
    root = z3.Real("sqrt_v_hat_2")
    return z3_obligation(
        "a_2 without the geometric-sum factor (explicit two-step Adam run)",
        "|m_hat_2|/sqrt(v_hat_2) <= (1-beta1) sqrt(1-beta2^2)/((1-beta1^2) sqrt(1-beta2))",
        z3.If(m_hat >= 0, m_hat, -m_hat) <= bound.value * root,
        [
            *_adam_parameters(),
            m_hat * (1 - beta1 * beta1) == m2,
            v_hat * (1 - beta2 * beta2) == v2,
            root >= 0,
            root * root == v_hat,
            v_hat > 0,
            *bound.definitions,
        ],
        kind="control",
    )


def _euclidean_obligations() -> list[Obligation]:
    """‖x‖ ≤ √d M when each of the d coordinates is at most M in magnitude."""
    Q, Q1, x_i, M = z3.Real("sq_norm_i"), z3.Real("sq_norm_next"), z3.Real("x_i"), z3.Real("M")
    coordinates = Induction(
        "squared norm of bounded coordinates",
        "sum_{j<i} x_j^2 <= i M^2",
        invariant=lambda st: st["Q"] <= st["i"] * M * M,
        initial={"Q": z3.RealVal(0)},
        current={"Q": Q},
        successor={"Q": Q1},
        given=[M >= 0],
        transition=[EUCLIDEAN_COORDINATES(Q1, Q, x_i), z3.If(x_i >= 0, x_i, -x_i) <= M],
        uses=("euclidean_coordinates",),
        counter="i",
    )
    d, norm = var(sym.d), z3.Real("norm_x")
    root = term(sp.sqrt(sym.d))
    final = z3_obligation(
        "norm of d bounded coordinates",
        "||x||^2 = sum_{j<d} x_j^2 <= d M^2  =>  ||x|| <= sqrt(d) M",
        z3.And(norm <= root.value * M, *root.domain),
        [d >= 1, M >= 0, norm >= 0, norm * norm <= d * M * M, *root.definitions],
        uses=("squared norm of bounded coordinates",),
    )
    return [*coordinates.obligations(), final]


def _conclusion_obligations() -> list[Obligation]:
    thm = t3.THEOREM
    eta, G = var(sym.eta), var(sym.G)
    a_limit = term(opt.ADAM_COORDINATE_BOUND_LIMIT)
    root_d = term(sp.sqrt(sym.d))
    P_n, P_n1, norm_n = z3.Real("path_n"), z3.Real("path_n_plus_1"), z3.Real("step_norm_n")
    adam_path = Induction(
        "Adam path length",
        "sum_{s<n} ||Delta_s|| <= n eta a_infinity sqrt(d)",
        invariant=lambda st: st["P"] <= st["n"] * eta * a_limit.value * root_d.value,
        initial={"P": z3.RealVal(0)},
        current={"P": P_n},
        successor={"P": P_n1},
        given=[*parameter_facts(thm), *a_limit.definitions, *root_d.definitions],
        transition=[P_n1 == P_n + norm_n, norm_n <= eta * a_limit.value * root_d.value],
        uses=("Adam step norm",),
    )
    path_length = term(t3.ADAM_PATH_LENGTH)
    P = var(sym.path_length)
    conclusion = z3_obligation(
        "conclusion (theory's)",
        sp.sstr(thm.conclusion),
        formula(thm.conclusion),
        [
            *parameter_facts(thm),
            formula(t3.PATH_CONCLUSION),
            path_length.value >= P,
            *path_length.definitions,
            G >= 0,
        ],
        uses=("path length (theory's PATH_CONCLUSION)", "Adam path length"),
    )
    return [_adam_step_norm(), *adam_path.obligations(), conclusion]


def _adam_step_norm() -> Obligation:
    """Theory's ``adam_update`` hypothesis, the coordinate bound and a_k ≤ a_∞ compose to
    ‖Δ‖ ≤ η a_∞ √d for every step counter k ≥ 1 (the lemmas enter through symbols for the
    coordinate ratio |m̂|/(√v̂+ε), a_k and a_∞, so z3 sees only their composition)."""
    thm = t3.THEOREM
    ratio, a_k, a_limit = (sp.Symbol(n, real=True) for n in ("coordinate_ratio", "a_k", "a_inf"))
    ratio_expr = t3.COORDINATE_STEP_BOUND.lhs
    update = t3.ADAM_UPDATE.statement.subs(ratio_expr, ratio)
    coordinate = t3.COORDINATE_STEP_BOUND.subs({ratio_expr: ratio, opt.ADAM_COORDINATE_BOUND: a_k})
    if ratio not in update.free_symbols or a_k not in coordinate.free_symbols:
        raise ValueError("T3: could not isolate the coordinate ratio in theory's statements")
    root_d = term(sp.sqrt(sym.d))
    facts: list[Fact] = [
        *parameter_facts(thm, only=["eta_positive", "d_positive"]),
        formula(update),
        formula(coordinate),  # the Adam coordinate bound (proved above)
        var(a_k) <= var(a_limit),  # a_k <= a_infinity (proved above)
        *root_d.definitions,
    ]
    goal = term(sym.eta * a_limit * sp.sqrt(sym.d))
    return z3_obligation(
        "Adam step norm",
        f"{sp.sstr(t3.ADAM_UPDATE.statement)} => ||Delta|| <= eta a_infinity sqrt(d)",
        z3.And(var(sym.delta_norm) <= goal.value, *goal.domain),
        [*facts, *goal.definitions],
        uses=(
            "adam_update",
            "Adam coordinate bound (theory's COORDINATE_STEP_BOUND)",
            "a_k <= a_infinity",
            "norm of d bounded coordinates",
        ),
    )


def _adamw_obligations() -> tuple[list[Obligation], list[Obligation]]:
    """AdamW: θ_{s+1} = (1 − ηλ)θ_s − η u_s with ‖u_s‖ ≤ a√d (u_s the Adam direction)."""
    thm = t3.THEOREM
    eta, lam, R = var(sym.eta), var(sym.lam), var(sym.R_s)
    a = var(COORDINATE_SYMBOL)
    theta_norm, theta_next_norm, u_norm = (
        z3.Real("theta_s_norm"),
        z3.Real("theta_next_norm"),
        z3.Real("u_norm"),
    )
    decayed, scaled_u, decay_part = (
        z3.Real("decayed_norm"),
        z3.Real("eta_u_norm"),
        z3.Real("decay_norm"),
    )
    delta_norm = var(sym.delta_norm)
    recursion = term(opt.ADAMW_NORM_RECURSION.subs(opt.ADAM_COORDINATE_BOUND, COORDINATE_SYMBOL))
    step_bound = term(opt.ADAMW_STEP_BOUND.subs(opt.ADAM_COORDINATE_BOUND, COORDINATE_SYMBOL))
    root_d = term(sp.sqrt(sym.d))
    parameters = [
        *parameter_facts(
            thm, only=["eta_positive", "lam_nonnegative", "eta_lam_at_most_one", "d_positive"]
        ),
        a >= 0,
    ]
    geometry = [
        NORM_HOMOGENEOUS(decayed, 1 - eta * lam, theta_norm),  # ‖(1 − ηλ)θ_s‖
        NORM_HOMOGENEOUS(scaled_u, eta, u_norm),  # ‖η u_s‖
        TRIANGLE(theta_next_norm, decayed, scaled_u),
        NORM_HOMOGENEOUS(decay_part, eta * lam, theta_norm),  # ‖ηλ θ_s‖ (Δ = −ηλθ − ηu)
        TRIANGLE(delta_norm, decay_part, scaled_u),
        u_norm <= a * root_d.value,
        *root_d.definitions,
        *recursion.definitions,
        *step_bound.definitions,
    ]
    norm_step = Induction(
        "AdamW parameter norm (theory's ADAMW_NORM_RECURSION)",
        f"||theta_n|| <= R_n, R_(n+1) = {sp.sstr(opt.ADAMW_NORM_RECURSION)}",
        invariant=lambda st: st["norm"] <= st["R"],
        initial={"norm": var(sym.theta0_norm), "R": var(sym.theta0_norm)},
        current={"norm": theta_norm, "R": R},
        successor={"norm": theta_next_norm, "R": z3.Real("R_next")},
        given=parameters,
        base_given=[var(sym.theta0_norm) >= 0],
        transition=[*geometry, z3.Real("R_next") == recursion.value],
        uses=("norm_homogeneous", "triangle", "norm of d bounded coordinates"),
    )
    step = z3_obligation(
        "AdamW step (theory's ADAMW_STEP_BOUND)",
        f"||Delta_s|| <= {sp.sstr(opt.ADAMW_STEP_BOUND)}",
        delta_norm <= step_bound.value,
        [*parameters, *geometry, theta_norm <= R],
        uses=("AdamW parameter norm (theory's ADAMW_NORM_RECURSION)", "triangle"),
    )
    without_decay_limit = Induction(
        "AdamW parameter norm without eta lambda <= 1",
        "||theta_n|| <= R_n with the assumption eta*lambda <= 1 dropped",
        invariant=lambda st: st["norm"] <= st["R"],
        initial={"norm": var(sym.theta0_norm), "R": var(sym.theta0_norm)},
        current={"norm": theta_norm, "R": R},
        successor={"norm": theta_next_norm, "R": z3.Real("R_next")},
        given=[
            *parameter_facts(thm, only=["eta_positive", "lam_nonnegative", "d_positive"]),
            a >= 0,
        ],
        transition=[*geometry, z3.Real("R_next") == recursion.value],
    )
    return [*norm_step.obligations(), step], [without_decay_limit.step("control")]


def proof() -> Proof:
    path, path_controls = _path_obligations()
    adam, adam_controls = _adam_lemma()
    adamw, adamw_controls = _adamw_obligations()
    return Proof(
        t3.THEOREM,
        (
            *path,
            *adam,
            *_euclidean_obligations(),
            *_conclusion_obligations(),
            *adamw,
            *path_controls,
            *adam_controls,
            *adamw_controls,
        ),
        summary="path length by Coq's segment bound; Adam's from a proved weighted Cauchy-Schwarz",
        defining=((SEGMENT, t3.GRADIENT_BOUNDED_ON_PATH.name),),
    )
