"""Every fact the proofs take as given, named, in one place.

The proofs work with *real numbers standing for norms, inner products and loss values*
(``‖Δ‖``, ``⟨∇L(θ), Δ⟩``, ``L(θ+Δ)``), not with vectors. What links those numbers is listed
here: the definition of a gradient bound (β-smoothness and μ-PL are theory's hypotheses
``beta_smooth`` and ``mu_pl``, cited by name as premises the necessity audit checks), a few
facts of Euclidean geometry (Cauchy–Schwarz, the triangle inequality, homogeneity of the
norm), three one-dimensional calculus lemmas *with their premises* that are machine-checked
in Coq (proofs/coq/Segment.v: the descent-lemma sandwich, the segment bound, the trapezoid
bound), monotonicity of exp and log, the induction principle, the spectral theorem, and
Hoeffding's inequality.
Everything else (every inequality of every theorem, every geometric sum, the Adam step bound,
Cauchy–Schwarz for the weighted sums inside Adam) is *proved* by the obligations of
``proofs.theorems``.

Each ``Axiom`` has a name (cited in the ``uses`` of the obligations that rest on it), its
statement in words and symbols, a source, and ``instantiate(...)``: the z3 fact it yields for
particular real terms. A reader can audit the whole foundation by reading this file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import z3

Term: TypeAlias = z3.ArithRef | float | int


@dataclass(frozen=True)
class Axiom:
    """A named fact taken as given, and how it is instantiated on real terms."""

    name: str
    statement: str
    source: str
    instantiate: Callable[..., z3.BoolRef]

    def __call__(self, *terms: Term) -> z3.BoolRef:
        return self.instantiate(*terms)


def _abs(x: Term) -> z3.ArithRef:
    value = x if isinstance(x, z3.ArithRef) else z3.RealVal(x)
    return z3.If(value >= 0, value, -value)


GRADIENT_BOUND = Axiom(
    "gradient_bound",
    "‖∇L‖ ≤ G where the theorem assumes it (at the iterates, or on the segments of the path).",
    "hypothesis of T2, T3, T6, T7 (measured by empirical/)",
    lambda grad_norm, bound: z3.And(grad_norm >= 0, grad_norm <= bound),
)

CAUCHY_SCHWARZ = Axiom(
    "cauchy_schwarz",
    "|⟨u, v⟩| ≤ ‖u‖ ‖v‖ for vectors u, v (norms are ≥ 0).",
    "Cauchy–Schwarz inequality in a real inner-product space",
    lambda inner, norm_u, norm_v: z3.And(norm_u >= 0, norm_v >= 0, _abs(inner) <= norm_u * norm_v),
)

INNER_SELF = Axiom(
    "inner_self",
    "⟨v, v⟩ = ‖v‖² and ⟨a u, v⟩ = a ⟨u, v⟩ (bilinearity of the inner product).",
    "definition of the Euclidean norm",
    # (inner <a v, v>, a, norm v)
    lambda inner, a, norm_v: z3.And(norm_v >= 0, inner == a * norm_v * norm_v),
)

NORM_HOMOGENEOUS = Axiom(
    "norm_homogeneous",
    "‖a v‖ = |a| ‖v‖.",
    "definition of a norm",
    lambda norm_av, a, norm_v: z3.And(norm_v >= 0, norm_av == _abs(a) * norm_v),
)

TRIANGLE = Axiom(
    "triangle",
    "‖u + v‖ ≤ ‖u‖ + ‖v‖.",
    "definition of a norm",
    lambda norm_sum, norm_u, norm_v: z3.And(
        norm_sum >= 0, norm_u >= 0, norm_v >= 0, norm_sum <= norm_u + norm_v
    ),
)

EUCLIDEAN_COORDINATES = Axiom(
    "euclidean_coordinates",
    "‖x‖₂² = Σ_i x_i² over the d coordinates (so a bound on each |x_i| bounds ‖x‖₂).",
    "definition of the Euclidean norm",
    # (squared norm of the first i+1 coordinates, of the first i, coordinate i)
    lambda next_sum, sum_so_far, coordinate: next_sum == sum_so_far + coordinate * coordinate,
)


def _within_unit(s: Term) -> z3.BoolRef:
    return z3.And(s >= 0, s <= 1)


# The three calculus lemmas below are *proved*, with their premises, in Coq
# (proofs/coq/Segment.v, compiled by ``python -m proofs``: rows "Coq: <name>"). With
# φ(τ) = L(θ + τΔ) and φ'(τ) = ⟨∇L(θ + τΔ), Δ⟩ each has the form "premise for every τ in
# [0, 1] ⇒ conclusion". z3 has no ∀ over a function here, so each is instantiated
# contrapositively at a Skolem point s: "if the conclusion fails, the premise fails at s,
# some s in [0, 1]", and the caller states its other facts (Cauchy–Schwarz, smoothness, ...)
# at that same s, for an arbitrary s. A proof therefore has to *establish the premise at an
# arbitrary point* from its hypotheses: drop β-smoothness and the premise, hence the
# conclusion, is no longer available.

DESCENT_SANDWICH = Axiom(
    "descent_sandwich",
    "Premises: φ differentiable on [0, 1] with derivative φ', and |φ'(τ) − φ'(0)| ≤ β τ D for "
    "every τ in [0, 1] (D = ‖Δ‖²). Conclusion: |φ(1) − φ(0) − φ'(0)| ≤ β D / 2.",
    "proofs/coq/Segment.v, Theorem descent_sandwich (mean value theorem MVT_cor2 on "
    "ψ(τ) = φ(τ) − φ'(0) τ ∓ β D τ²/2; Nesterov 2004, Lemma 1.2.3)",
    # (s, phi'(s), phi'(0), beta, D, phi(0), phi(1))
    lambda s, gdot_s, gdot, beta, d2, phi0, phi1: z3.Implies(
        z3.Not(_abs(phi1 - phi0 - gdot) <= beta * d2 / 2),
        z3.And(_within_unit(s), z3.Not(_abs(gdot_s - gdot) <= beta * s * d2)),
    ),
)

SEGMENT_BOUND = Axiom(
    "segment_bound",
    "Premises: φ differentiable on [0, 1] with derivative φ', and |φ'(τ)| ≤ M for every τ in "
    "[0, 1]. Conclusion: |φ(1) − φ(0)| ≤ M.",
    "proofs/coq/Segment.v, Theorem segment_bound (mean value theorem MVT_cor2)",
    # (s, phi'(s), M, phi(0), phi(1))
    lambda s, gdot_s, bound, phi0, phi1: z3.Implies(
        z3.Not(_abs(phi1 - phi0) <= bound),
        z3.And(_within_unit(s), z3.Not(_abs(gdot_s) <= bound)),
    ),
)

TRAPEZOID_BOUND = Axiom(
    "trapezoid_bound",
    "Premises: φ differentiable on [0, 1] with derivative φ', |φ'(τ) − φ'(0)| ≤ K τ and "
    "|φ'(τ) − φ'(1)| ≤ K (1 − τ) for every τ in [0, 1] (K = β‖Δ‖²). Conclusion: "
    "|φ(1) − φ(0) − (φ'(0) + φ'(1))/2| ≤ K/4.",
    "proofs/coq/Segment.v, Theorem trapezoid_bound (the descent-lemma argument on [0, 1/2] "
    "from the left end and on [1/2, 1] from the right end)",
    # (s, phi'(s), phi'(0), phi'(1), K, phi(0), phi(1))
    lambda s, gdot_s, gdot_0, gdot_1, k, phi0, phi1: z3.Implies(
        z3.Not(_abs(phi1 - phi0 - (gdot_0 + gdot_1) / 2) <= k / 4),
        z3.And(
            _within_unit(s),
            z3.Or(
                z3.Not(_abs(gdot_s - gdot_0) <= k * s),
                z3.Not(_abs(gdot_s - gdot_1) <= k * (1 - s)),
            ),
        ),
    ),
)

#: the Coq theorem (in proofs/coq/Segment.v) that proves each calculus axiom
COQ_THEOREMS: dict[str, str] = {
    "descent_sandwich": "descent_sandwich",
    "segment_bound": "segment_bound",
    "trapezoid_bound": "trapezoid_bound",
}

EXP_MONOTONE = Axiom(
    "exp_monotone",
    "exp is positive and strictly increasing; log is its inverse on (0, ∞) (exp(log x) = x) "
    "and q^t = exp(t log q) for q > 0. Instantiated on (a, b, e_a, e_b) with e_a = exp(a), "
    "e_b = exp(b): e_a, e_b > 0, a ≤ b ⇒ e_a ≤ e_b, a < b ⇒ e_a < e_b.",
    "properties of exp and log on the reals",
    lambda a, b, exp_a, exp_b: z3.And(
        exp_a > 0, exp_b > 0, z3.Implies(a <= b, exp_a <= exp_b), z3.Implies(a < b, exp_a < exp_b)
    ),
)

LOG_SIGN = Axiom(
    "log_sign",
    "For x > 0: log x < 0 if x < 1, log 1 = 0, log x > 0 if x > 1 (log is increasing, log 1 = 0).",
    "properties of log on the reals",
    lambda x, log_x: z3.Implies(
        x > 0,
        z3.And(
            z3.Implies(x < 1, log_x < 0),
            z3.Implies(x == 1, log_x == 0),
            z3.Implies(x > 1, log_x > 0),
        ),
    ),
)

POWERS = Axiom(
    "powers",
    "q^0 = 1, q^(n+1) = q · q^n for natural n (definition of a natural power).",
    "definition of exponentiation",
    lambda q_next, q, q_n: q_next == q * q_n,
)

INDUCTION = Axiom(
    "induction",
    "If P(0) and, for every natural n, P(n) ⇒ P(n+1), then P(n) for every natural n.",
    "Peano's induction axiom (the schema is applied in proofs/induction.py)",
    lambda base, step: z3.And(base, step),
)

SPECTRAL_THEOREM = Axiom(
    "spectral_theorem",
    "A real symmetric H = V Λ Vᵀ with V orthogonal: in the coordinates c = Vᵀx, xᵀHx = Σ λ_i c_i² "
    "and Hx has coordinates λ_i c_i.",
    "spectral theorem for real symmetric matrices",
    lambda coordinate_image, eigenvalue, coordinate: coordinate_image == eigenvalue * coordinate,
)

HOEFFDING = Axiom(
    "hoeffding",
    "For m independent [0, 1]-valued X_i with mean p and p̂ their average: "
    "P(|p̂ − p| ≥ h) ≤ 2 exp(−2 m h²).",
    "Hoeffding, JASA 1963, Theorem 1 (two-sided)",
    lambda probability, bound: probability <= bound,
)

#: every axiom, by name: the complete list of what the proofs take as given
AXIOMS: dict[str, Axiom] = {
    a.name: a
    for a in (
        GRADIENT_BOUND,
        CAUCHY_SCHWARZ,
        INNER_SELF,
        NORM_HOMOGENEOUS,
        TRIANGLE,
        EUCLIDEAN_COORDINATES,
        DESCENT_SANDWICH,
        SEGMENT_BOUND,
        TRAPEZOID_BOUND,
        EXP_MONOTONE,
        LOG_SIGN,
        POWERS,
        INDUCTION,
        SPECTRAL_THEOREM,
        HOEFFDING,
    )
}
