r"""T10 ``harm_from_loss``: from the harmful loss to a harm proxy.

Every certificate of the catalogue bounds the harmful *loss* (cross-entropy); every
immunization condition compares a *harm proxy* f with a threshold φ. This theorem links the
two (docs/science.md, section 4, "From loss to harm").

Setting (docs/theorems.md, T10). There are n ≥ 1 harmful examples. For example i let
CE_i ≥ 0 be the summed token cross-entropy of its harmful response (and the closing EOS)
given its prompt, teacher-forced, and

    P_i = exp(−CE_i) = Π_j p_ij,

the probability that ancestral sampling at temperature 1 produces exactly that response and
stops (p_ij: the model's probability of the response's j-th token given the prompt and the
earlier tokens). The *sampled harm* is f_s = (1/n) Σ_i P_i
(``empirical.measurement.proxies.sampled_harm``,
computed exactly from the sequence probabilities, not sampled); the *exact-match harm* is
f_e = (1/n) Σ_i e_i with e_i = 1 when every response token is the arg-max of its
distribution (``empirical.measurement.proxies.exact_harm``).

(a) *ceiling from per-example floors*. If CE_i ≥ l_i for every i, then
    f_s ≤ (1/n) Σ_i exp(−max(l_i, 0)); with one common floor l, f_s ≤ exp(−max(l, 0)) ≤
    exp(−l) (``bound``), so a floor l > −ln φ certifies f_s < φ, and no smaller floor does
    (n examples at CE_i = l ≥ 0 have f_s = exp(−l) ≥ φ when l ≤ −ln φ).
(b) *floor from the mean loss* (Jensen; exp(−x) is convex): f_s ≥ exp(−L) with
    L = (1/n) Σ_i CE_i. A mean harmful loss L ≤ −ln φ therefore forces f_s ≥ φ: a theorem
    bounding *when* the loss falls below −ln φ bounds the steps after which the sampled harm
    exceeds φ (a maximum-steps statement).
(c) *link to exact match*. If P_i > 1/2 every token has p_ij ≥ P_i > 1/2 (the other factors
    are at most 1), so it is the arg-max (every other token has probability < 1 − p_ij < 1/2)
    and e_i = 1. Hence f_e ≥ (1/n) #{i : CE_i < ln 2}.

Statements are per example (scalar symbols ``ce``, ``loss_floor``, ...) where the proofs read
them, and over all examples (``IndexedBase``) in ``conclusion``:
``f_s <= Σ exp(−max(l_i, 0))/n ∧ f_s >= exp(−L) ∧ f_e >= #{CE_i < ln 2}/n``. ``bound`` is the
common-floor ceiling exp(−max(l, 0)). No steps solver (``steps_kind`` None).

Numeric helpers (numpy, no torch): ``sequence_probabilities`` (P_i, the formula the
sampled-harm proxy calls), ``sampled_harm``, ``sampled_harm_ceiling``, ``loss_floor_for``,
``sampled_harm_floor``, ``exact_match_floor``.

Proof (proofs/theorems/harm_from_loss.py): exp's tangent line exp(u) ≥ 1 + u (sympy's
calculus: the minimum of exp(u) − 1 − u over the reals is 0), exp's monotonicity (axiom
``exp_monotone``), sums over examples and products over tokens by induction.

Source: exp(−CE) is the probability of the sequence under the model's factorisation
(chain rule); Jensen's inequality for the convex exp(−x) (Jensen, Acta Math. 1906) via the
tangent line; the arg-max link is elementary. The statement is this project's.

>>> round(THEOREM.evaluate(loss_floor=2.0), 6)
0.135335
>>> round(loss_floor_for(0.1), 6)
2.302585
>>> round(sampled_harm_floor(2.302585092994046), 6)
0.1
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import sympy as sp

from theory.errors import AssumptionError
from theory.theorem import Assumption, StepsKind, Theorem, lambdified

FloatArray = npt.NDArray[np.float64]

# --------------------------------------------------------------------------- symbols
#: one example: its sequence cross-entropy CE_i, its floor l_i, its probability P_i
ce = sp.Symbol("ce", real=True)
loss_floor = sp.Symbol("loss_floor", real=True)
probability = sp.Symbol("P_seq", real=True)
#: one token of the response: its probability, another token's, the rest of the vocabulary's
token_probability = sp.Symbol("p_token", real=True)
other_token = sp.Symbol("p_other", real=True)
rest_of_vocabulary = sp.Symbol("p_rest", real=True)
#: the product of the other tokens' probabilities of the same response
other_factors = sp.Symbol("other_factors", real=True)
#: the mean sequence cross-entropy L, the proxies f_s and f_e, the threshold φ, n
mean_loss = sp.Symbol("L_mean", real=True)
f_sampled = sp.Symbol("f_s", real=True)
f_exact = sp.Symbol("f_e", real=True)
phi = sp.Symbol("phi", real=True)
n = sp.Symbol("n", real=True)
#: the examples, for the statements over all of them
i = sp.Symbol("i", integer=True)
CE = sp.IndexedBase("CE", real=True)
FLOOR = sp.IndexedBase("l", real=True)
EXACT = sp.IndexedBase("e", real=True)

# --------------------------------------------------------------------------- per example
#: P_i = exp(−CE_i): the probability that ancestral sampling produces the response.
SEQUENCE_PROBABILITY: sp.Expr = sp.exp(-ce)
#: exp(−max(l_i, 0)): the ceiling one floor puts on P_i (CE_i ≥ 0 as well).
EXAMPLE_CEILING: sp.Expr = sp.exp(-sp.Max(loss_floor, 0))
#: (a) per example: CE_i ≥ l_i and CE_i ≥ 0 ⇒ P_i ≤ exp(−max(l_i, 0)).
EXAMPLE_CEILING_RELATION: sp.Basic = sp.Le(SEQUENCE_PROBABILITY, EXAMPLE_CEILING)
#: exp(−l): the common floor's ceiling without the max (a floor below 0 certifies nothing).
COMMON_CEILING: sp.Expr = sp.exp(-loss_floor)
#: −ln φ: a common floor above it certifies f_s < φ; a mean loss at most it forces f_s ≥ φ.
LOSS_LEVEL: sp.Expr = -sp.log(phi)
#: (b) the tangent line of exp(−x) at the mean loss L, the step of the Jensen argument.
TANGENT_LINE: sp.Basic = sp.Ge(SEQUENCE_PROBABILITY, sp.exp(-mean_loss) * (1 - (ce - mean_loss)))
#: (b) exp(−L): the floor the mean loss puts on f_s.
JENSEN_FLOOR: sp.Expr = sp.exp(-mean_loss)
#: (c) ln 2: an example with CE_i below it is reproduced exactly (P_i > 1/2).
EXACT_LEVEL: sp.Expr = sp.log(2)
#: (c) the probability level behind ln 2.
EXACT_PROBABILITY: sp.Expr = sp.Rational(1, 2)
#: (c) per token: P_i = p_ij · (product of the other factors), so p_ij ≥ P_i > 1/2 ...
TOKEN_ABOVE_SEQUENCE: sp.Basic = sp.Ge(token_probability, probability)
#: ... and a token above 1/2 beats every other token: p_other < p_ij.
ARGMAX: sp.Basic = sp.Lt(other_token, token_probability)

# --------------------------------------------------------------------------- all examples
SAMPLED_HARM: sp.Expr = sp.Sum(sp.exp(-CE[i]), (i, 1, n)) / n
CEILING: sp.Expr = sp.Sum(sp.exp(-sp.Max(FLOOR[i], 0)), (i, 1, n)) / n
EXACT_MATCH_HARM: sp.Expr = sp.Sum(EXACT[i], (i, 1, n)) / n
#: #{i : CE_i < ln 2} / n, with the indicator written as a Piecewise.
EXACT_MATCH_FLOOR: sp.Expr = (
    sp.Sum(sp.Piecewise((1, CE[i] < EXACT_LEVEL), (0, True)), (i, 1, n)) / n
)
CONCLUSION: sp.Basic = sp.And(
    sp.Le(f_sampled, CEILING),
    sp.Ge(f_sampled, JENSEN_FLOOR),
    sp.Ge(f_exact, EXACT_MATCH_FLOOR),
)

# --------------------------------------------------------------------------- assumptions
N_AT_LEAST_ONE = Assumption("n_at_least_one", sp.Ge(n, 1), "at least one harmful example")
PHI_POSITIVE = Assumption("phi_positive", sp.Gt(phi, 0), "threshold phi > 0")
LOSSES_NONNEGATIVE = Assumption(
    "losses_nonnegative",
    sp.Ge(ce, 0),
    "every CE_i >= 0 (a sum of token cross-entropies -log p, p <= 1)",
    kind="hypothesis",
)
PER_EXAMPLE_FLOORS = Assumption(
    "per_example_floors",
    sp.Ge(ce, loss_floor),
    "CE_i >= l_i for every example i (a certified floor on each example's loss)",
    kind="hypothesis",
)
SEQUENCE_FACTORISATION = Assumption(
    "sequence_factorisation",
    sp.And(
        sp.Eq(probability, token_probability * other_factors),
        other_factors >= 0,
        other_factors <= 1,
    ),
    "P_i = prod_j p_ij (chain rule; temperature 1): one token's probability times the "
    "product of the other tokens', each in [0, 1]",
    kind="hypothesis",
)
TOKEN_DISTRIBUTION = Assumption(
    "token_distribution",
    sp.And(
        sp.Eq(token_probability + other_token + rest_of_vocabulary, 1),
        other_token >= 0,
        rest_of_vocabulary >= 0,
    ),
    "each token's distribution sums to 1 over the vocabulary (the token, any other one, the "
    "rest), all probabilities >= 0",
    kind="hypothesis",
)
SAMPLED_HARM_DEFINITION = Assumption(
    "sampled_harm_definition",
    sp.Eq(f_sampled, SAMPLED_HARM),
    "f_s = (1/n) sum_i exp(-CE_i), the mean probability of sampling the harmful response",
    kind="hypothesis",
)
MEAN_LOSS_DEFINITION = Assumption(
    "mean_loss_definition",
    sp.Eq(mean_loss, sp.Sum(CE[i], (i, 1, n)) / n),
    "L = (1/n) sum_i CE_i",
    kind="hypothesis",
)
EXACT_MATCH_DEFINITION = Assumption(
    "exact_match_definition",
    sp.Eq(f_exact, EXACT_MATCH_HARM),
    "f_e = (1/n) sum_i e_i, e_i = 1 when every response token is the arg-max (else 0)",
    kind="hypothesis",
)


@dataclass(frozen=True)
class HarmFromLoss(Theorem):
    """T10: the harmful loss caps and floors the sampled harm (see the module docstring)."""

    label: ClassVar[str] = "T10"
    name: ClassVar[str] = "harm_from_loss"
    title: ClassVar[str] = "From the harmful loss to a harm proxy (sampled and exact-match harm)"
    source: ClassVar[str] = (
        "P(response) = exp(-CE) (chain rule); Jensen's inequality for exp(-x) via its "
        "tangent line; the arg-max link is elementary (this project's statement)"
    )
    steps_kind: ClassVar[StepsKind | None] = None

    assumptions: tuple[Assumption, ...] = (
        LOSSES_NONNEGATIVE,
        PER_EXAMPLE_FLOORS,
        SEQUENCE_FACTORISATION,
        TOKEN_DISTRIBUTION,
        SAMPLED_HARM_DEFINITION,
        MEAN_LOSS_DEFINITION,
        EXACT_MATCH_DEFINITION,
        N_AT_LEAST_ONE,
        PHI_POSITIVE,
    )
    conclusion: sp.Basic = CONCLUSION
    bound: sp.Expr = EXAMPLE_CEILING


THEOREM = HarmFromLoss()


# --------------------------------------------------------------------------- numerics
def _vector(values: Sequence[float] | FloatArray, name: str) -> FloatArray:
    """``values`` as a non-empty finite float64 vector (``AssumptionError`` otherwise)."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise AssumptionError(THEOREM.label, "n_at_least_one", f"no {name} given")
    if not np.isfinite(array).all():
        raise AssumptionError(THEOREM.label, f"{name}_finite", f"a {name} is not finite")
    return array


def _losses(losses: Sequence[float] | FloatArray) -> FloatArray:
    array = _vector(losses, "loss")
    if (array < 0).any():
        worst = float(array.min())
        raise AssumptionError(THEOREM.label, LOSSES_NONNEGATIVE.name, f"CE_i = {worst} < 0")
    return array


def _per_example(expr: sp.Expr, symbol: sp.Symbol, values: FloatArray) -> FloatArray:
    """``expr`` (one example's formula in ``symbol``) at every value, vectorised."""
    result = lambdified(expr, (symbol,), "numpy")(values)
    return np.asarray(np.broadcast_to(result, values.shape), dtype=np.float64)


def sequence_probabilities(losses: Sequence[float] | FloatArray) -> FloatArray:
    """P_i = exp(−CE_i) for each example's sequence cross-entropy (nats, ≥ 0)."""
    return _per_example(SEQUENCE_PROBABILITY, ce, _losses(losses))


def sampled_harm(losses: Sequence[float] | FloatArray) -> float:
    """f_s = (1/n) Σ_i exp(−CE_i)."""
    values = sequence_probabilities(losses)
    return float(math.fsum(values) / values.size)


def sampled_harm_ceiling(floors: Sequence[float] | FloatArray) -> float:
    """(a): (1/n) Σ_i exp(−max(l_i, 0)), the ceiling on f_s of floors CE_i ≥ l_i."""
    values = _per_example(EXAMPLE_CEILING, loss_floor, _vector(floors, "floor"))
    return float(math.fsum(values) / values.size)


def loss_floor_for(phi_value: float) -> float:
    """(a): −ln φ; a common floor l > −ln φ on every CE_i certifies f_s < φ (and a mean loss
    L ≤ −ln φ forces f_s ≥ φ, (b))."""
    THEOREM.check_assumptions(phi=phi_value)
    return THEOREM.evaluate_expression(LOSS_LEVEL, phi=phi_value)


def sampled_harm_floor(mean_loss_value: float) -> float:
    """(b): exp(−L), the floor the mean sequence cross-entropy L (≥ 0) puts on f_s."""
    if not math.isfinite(mean_loss_value) or mean_loss_value < 0:
        detail = f"L = {mean_loss_value} (a mean of CE_i >= 0)"
        raise AssumptionError(THEOREM.label, LOSSES_NONNEGATIVE.name, detail)
    return THEOREM.evaluate_expression(JENSEN_FLOOR, L_mean=mean_loss_value)


def exact_match_floor(losses: Sequence[float] | FloatArray) -> float:
    """(c): (1/n) #{i : CE_i < ln 2}, the floor on the exact-match harm."""
    array = _losses(losses)
    level = float(EXACT_LEVEL)
    return float(np.count_nonzero(array < level) / array.size)
