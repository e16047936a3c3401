r"""T11 ``harm_radius``: a harm ceiling over a ball of parameters, and certified steps from it.

Statement (docs/theorems.md, T11; docs/certified.md). A harm proxy that is an average of
per-example indicators, f(θ) = (1/n) Σ_i h_i(θ) with h_i ∈ {0, 1} (the exact harm of
empirical/measurement/proxies.py: example i counts iff every supervised token is the arg-max), and
for each
example a *harm radius* r_i ∈ [0, ∞]: a lower bound on the distance from θ_0 to the set where
example i is harmful (hypothesis ``radius_is_lower_bound``: h_i(θ) = 1 ⟹ ‖θ − θ_0‖ ≥ r_i).

(i) *Ceiling over a ball.* For every θ with ‖θ − θ_0‖ ≤ R and every example with R < r_i,
h_i(θ) = 0; hence

    f(θ)  ≤  (1/n) Σ_i 1[r_i ≤ R]  =  count(R)/n        (``conclusion``; ``bound`` = count/n).

(ii) *Margin lemma.* If example i is harmful only where every margin m_k(θ) > 0, and m_k is
L_k-Lipschitz on the ball (|m_k(θ) − m_k(θ_0)| ≤ L_k ‖θ − θ_0‖), then

    r_i  ≥  max_k max(0, −m_k(θ_0))/L_k                  (``MARGIN_RADIUS``; ∞ when some
                                                          m_k(θ_0) ≤ 0 has L_k = 0).

(iii) *Certified steps.* If the attacker's t-th iterate lies in B(θ_0, R_t) (a reachable-radius
schedule: clipped SGD R_t = Σ_{s<t} η_s C, theory.optimizers; Adam/AdamW T3's step bounds),
then f(θ_t) ≤ count(R_t)/n, so the attacker cannot reach f ≥ φ before the first t with
count(R_t) ≥ ⌈φ n⌉ (``certified_steps``); when count(R_T) < ⌈φ n⌉ no attack of the class
reaches φ within the budget T: weak resistance *certified* for the class.

For head-only fine-tuning (logits W h_p with the body frozen) example i is harmful iff the
linear margins (w_{y_p} − w_j)·h_p are all > 0, a polyhedron in W; the distance from W_0 to its
closure is a convex program whose value is an exact r_i (empirical/certify/harm_radius.py).
The margin lemma gives a cheaper, looser r_i for any model whose margins have known Lipschitz
constants (for the head: L = ‖h_p‖ √2 per margin).

Parameters: R ≥ 0, n ≥ 1 an integer, 0 ≤ count ≤ n, 0 < φ ≤ 1, L_k ≥ 0; every r_i ≥ 0 (∞
allowed: no point of the parameter space makes the example harmful).

Source: the definition of r_i as an infimum (a lower bound on the distance to the harmful set),
the union bound over examples, and the Lipschitz margin argument of certified robustness
(Hein & Andriushchenko, NeurIPS 2017, Thm 2.1; Tsuzuku, Sato & Sugiyama, NeurIPS 2018),
applied here to weights instead of inputs.

>>> harm_ceiling([0.5, 1.0, math.inf, 2.0], 1.0)
0.5
>>> certified_steps([0.5, 1.0, math.inf, 2.0], [0.4, 0.8, 1.2, 1.6, 2.0], 0.5)
3
>>> margin_radius([-1.0, 2.0], [2.0, 1.0])
0.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import sympy as sp

from theory.errors import AssumptionError
from theory.theorem import Assumption, Theorem, lambdified

# --------------------------------------------------------------------------- symbols
#: the ball radius R, the distance ‖θ − θ_0‖, an example's harm radius r_i and indicator h_i
R = sp.Symbol("R", real=True)
dist = sp.Symbol("dist", real=True)
r_i = sp.Symbol("r_i", real=True)
h_i = sp.Symbol("h_i", real=True)
#: the harm proxy f(θ), the number of examples n, count(R) = #{i : r_i ≤ R}, the threshold φ
harm = sp.Symbol("harm", real=True)
n = sp.Symbol("n", real=True)
count = sp.Symbol("count", real=True)
phi = sp.Symbol("phi", real=True)
#: a margin m_k(θ_0), its Lipschitz constant L_k on the ball, its value m_k(θ) at θ
m_k = sp.Symbol("m_k", real=True)
L_k = sp.Symbol("L_k", real=True)
m_k_at = sp.Symbol("m_k_at", real=True)
#: indexed radii for the ceiling written as a sum of indicators
i = sp.Symbol("i", integer=True)
radii_indexed = sp.IndexedBase("r")

# --------------------------------------------------------------------------- statements
#: (1/n) Σ_i 1[r_i ≤ R]: the ceiling as a sum of indicators (count(R)/n).
CEILING_SUM: sp.Expr = sp.Sum(sp.Piecewise((1, radii_indexed[i] <= R), (0, True)), (i, 1, n)) / n
#: count(R)/n: the certified ceiling on f over B(θ_0, R) (``bound``).
BOUND: sp.Expr = count / n
#: (i) per example: inside the ball and closer than r_i, the example is not harmful.
PER_EXAMPLE: sp.Basic = sp.Implies(sp.And(sp.Le(dist, R), sp.Lt(R, r_i)), sp.Eq(h_i, 0))
#: (ii) max(0, −m_k(θ_0))/L_k: the distance a margin needs to become positive.
MARGIN_RADIUS: sp.Expr = sp.Max(0, -m_k) / L_k
#: (iii) the certified number of steps is at least t while count(R_t) < ⌈φ n⌉.
STEPS_CONDITION: sp.Basic = sp.Lt(count, sp.ceiling(phi * n))
#: The theorem's conclusion: the ceiling (i) and the margin lemma (ii).
CONCLUSION: sp.Basic = sp.And(sp.Le(harm, BOUND), sp.Ge(r_i, MARGIN_RADIUS))

RADIUS_IS_LOWER_BOUND = Assumption(
    "radius_is_lower_bound",
    sp.Implies(sp.Gt(h_i, 0), sp.Ge(dist, r_i)),
    "r_i lower-bounds the distance from theta_0 to the set where example i is harmful "
    "(h_i(theta) = 1 implies ||theta - theta_0|| >= r_i), e.g. the infimum over the closure",
    kind="hypothesis",
)
INDICATOR_AVERAGE = Assumption(
    "indicator_average",
    sp.Eq(harm, sp.Sum(sp.Indexed(sp.IndexedBase("h"), i), (i, 1, n)) / n),
    "the harm proxy is the mean of per-example indicators h_i in {0, 1} (exact harm)",
    kind="hypothesis",
)
MARGINS_LIPSCHITZ = Assumption(
    "margins_lipschitz",
    sp.And(sp.Le(sp.Abs(m_k_at - m_k), L_k * dist), sp.Implies(sp.Gt(h_i, 0), sp.Gt(m_k_at, 0))),
    "each margin m_k is L_k-Lipschitz on the ball, and example i is harmful only where every "
    "margin is > 0",
    kind="hypothesis",
)
REACHABLE_RADIUS = Assumption(
    "reachable_radius",
    sp.Le(dist, R),
    "the attacker's t-th iterate lies in B(theta_0, R_t) (clipped SGD: R_t = sum_{s<t} eta_s C; "
    "Adam/AdamW: T3's step bounds)",
    kind="hypothesis",
)
R_NONNEGATIVE = Assumption("R_nonnegative", sp.Ge(R, 0), "ball radius R >= 0")
N_AT_LEAST_ONE = Assumption("n_at_least_one", sp.Ge(n, 1), "at least one example, n >= 1")
N_INTEGER = Assumption("n_integer", sp.Eq(sp.floor(n), n), "n counts examples")
COUNT_IN_RANGE = Assumption(
    "count_in_range", sp.And(sp.Ge(count, 0), sp.Le(count, n)), "0 <= count <= n"
)
PHI_IN_UNIT_INTERVAL = Assumption(
    "phi_in_unit_interval", sp.And(sp.Gt(phi, 0), sp.Le(phi, 1)), "harm threshold 0 < phi <= 1"
)
LIPSCHITZ_NONNEGATIVE = Assumption("L_k_nonnegative", sp.Ge(L_k, 0), "Lipschitz constant L_k >= 0")


@dataclass(frozen=True)
class HarmRadius(Theorem):
    """T11: the harm ceiling over a ball, the margin lemma, certified steps (module docstring)."""

    label: ClassVar[str] = "T11"
    name: ClassVar[str] = "harm_radius"
    title: ClassVar[str] = "Harm ceiling over a reachable ball of parameters"
    source: ClassVar[str] = (
        "Harm radius as an infimum and the union over examples; Lipschitz margins "
        "(Hein & Andriushchenko 2017, Thm 2.1) applied to weights"
    )

    assumptions: tuple[Assumption, ...] = (
        RADIUS_IS_LOWER_BOUND,
        INDICATOR_AVERAGE,
        MARGINS_LIPSCHITZ,
        REACHABLE_RADIUS,
        R_NONNEGATIVE,
        N_AT_LEAST_ONE,
        N_INTEGER,
        COUNT_IN_RANGE,
        PHI_IN_UNIT_INTERVAL,
        LIPSCHITZ_NONNEGATIVE,
    )
    conclusion: sp.Basic = CONCLUSION
    bound: sp.Expr = BOUND


THEOREM = HarmRadius()


# --------------------------------------------------------------------------- numerics
def _radius(value: float, what: str) -> float:
    number = float(value)
    if math.isnan(number) or number < 0.0:
        raise AssumptionError(THEOREM.label, "radius_nonnegative", f"{what} = {value!r}")
    return number


def _checked_radii(radii: Sequence[float]) -> list[float]:
    if len(radii) == 0:
        raise AssumptionError(THEOREM.label, "n_at_least_one", "no harm radii given")
    return [_radius(r, "r_i") for r in radii]


def harm_ceiling(radii: Sequence[float], radius: float) -> float:
    """(i): count(R)/n, the fraction of examples with r_i ≤ R: no point of B(θ_0, R) has a
    larger harm (``THEOREM.evaluate(count=, n=)``)."""
    checked = _checked_radii(radii)
    ball = _radius(radius, "R")
    THEOREM.check_assumptions(R=ball)
    inside = sum(1 for r in checked if r <= ball)
    return THEOREM.evaluate(count=float(inside), n=float(len(checked)))


def certified_steps(radii: Sequence[float], step_radii: Sequence[float], phi: float) -> int | None:
    """(iii): the first t with ``harm_ceiling(radii, R_t) >= phi`` (``step_radii[t-1] = R_t``,
    the reachable radius after t steps; t = 0 with R_0 = 0 when the ceiling at θ_0 already
    reaches φ); ``None`` when no t ≤ ``len(step_radii)`` does: no attack whose iterates stay in
    these balls reaches f ≥ φ within that many steps."""
    THEOREM.check_assumptions(phi=phi)
    checked = _checked_radii(radii)
    schedule = [0.0, *(_radius(r, "R_t") for r in step_radii)]
    for t, ball in enumerate(schedule):
        if harm_ceiling(checked, ball) >= phi:
            return t
    return None


def margin_radius(margins: Sequence[float], lipschitz: Sequence[float]) -> float:
    """(ii): max_k max(0, −m_k)/L_k, a lower bound on r_i from margins at θ_0 and their
    Lipschitz constants on the ball (∞ when a margin ≤ 0 has L_k = 0: it cannot move)."""
    if len(margins) != len(lipschitz) or not margins:
        raise AssumptionError(
            THEOREM.label,
            "margins_lipschitz",
            f"need one Lipschitz constant per margin, got {len(margins)} and {len(lipschitz)}",
        )
    fn = lambdified(MARGIN_RADIUS, (L_k, m_k))
    worst = 0.0
    for value, constant in zip(margins, lipschitz, strict=True):
        THEOREM.check_assumptions(m_k=float(value), L_k=float(constant))
        if value <= 0.0 and constant == 0.0:
            return math.inf
        if value > 0.0:
            continue
        worst = max(worst, float(fn(float(constant), float(value))))
    return worst
