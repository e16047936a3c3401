r"""T8 ``binomial_confidence``: exact and concentration bounds for the confidence of a verdict.

Statement (docs/theorems.md, T8).

(a) Clopper–Pearson. For ``k`` successes in ``n`` iid Bernoulli(p) trials, with
``U(p) = P_p(X ≥ k) = Σ_{j=k}^{n} C(n,j) p^j (1−p)^{n−j}`` and
``D(p) = P_p(X ≤ k) = Σ_{j=0}^{k} C(n,j) p^j (1−p)^{n−j}``, the lower bound ``p_L`` solves
``U(p_L) = α/2`` (``p_L = 0`` when k = 0) and the upper bound ``p_U`` solves ``D(p_U) = α/2``
(``p_U = 1`` when k = n); in closed form ``p_L = B⁻¹(α/2; k, n−k+1)`` and
``p_U = B⁻¹(1−α/2; k+1, n−k)``. Then ``P_p(p_L ≤ p ≤ p_U) ≥ 1 − α`` for every p
(one-sided: α in place of α/2). The defining equations are stated here symbolically
(``clopper_pearson_lower_equation`` / ``..._upper_equation``); the numbers come from
``theory.statistics`` (scipy's beta quantiles), and tests check they solve these equations.
Coverage is *checked* by exhaustive computation over a grid of p
(``theory.statistics.exact_coverage``), never called proved.

(b) Hoeffding. For the mean ``p̂`` of m independent scores in [0, 1] with mean p,
``P(|p̂ − p| ≥ h) ≤ 2 exp(−2 m h²)`` (one-sided: ``exp(−2 m h²)``). Setting the tail equal to
α and solving with ``sympy.solve`` gives the half-width ``h(m, α) = √(ln(2/α)/(2m))``
(``bound``) and the number of prompts ``m(h, α) = ln(2/α)/(2h²)``, rounded up by
``prompts_for_half_width``. Both are derived by ``sympy.solve``, not typed, when first read
(``theory.theorem.derived``: listing the catalogue solves nothing).

Numeric interface: ``THEOREM.evaluate(m=, alpha=)`` → two-sided half-width;
``THEOREM.half_width(m, alpha, sided=2)``; ``THEOREM.prompts_for_half_width(h, alpha,
sided=2)`` → the least integer m ≥ 1 with ``h(m, α) ≤ h``. No steps solver (``steps_kind``
None).

Source: Clopper & Pearson, Biometrika 26 (1934); Hoeffding, JASA 58 (1963), Theorem 1.

>>> round(THEOREM.evaluate(m=100, alpha=0.05), 5)
0.13581
>>> THEOREM.prompts_for_half_width(0.05, 0.05)
738
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import sympy as sp

from theory.errors import AssumptionError
from theory.theorem import Assumption, StepsKind, Theorem, _lambdified, derived

# --------------------------------------------------------------------------- symbols
m = sp.Symbol("m", real=True)
h = sp.Symbol("h", real=True)
alpha = sp.Symbol("alpha", real=True)
p = sp.Symbol("p", real=True)
p_hat = sp.Symbol("p_hat", real=True)
n = sp.Symbol("n", integer=True)
k = sp.Symbol("k", integer=True)
j = sp.Symbol("j", integer=True)
p_lower = sp.Symbol("p_L", real=True)
p_upper = sp.Symbol("p_U", real=True)
deviation_probability = sp.Symbol("P_deviation", real=True)
coverage_probability = sp.Symbol("P_coverage", real=True)

#: Two-sided Hoeffding tail 2 exp(−2 m h²) and one-sided tail exp(−2 m h²).
HOEFFDING_TAIL: sp.Expr = 2 * sp.exp(-2 * m * h**2)
HOEFFDING_ONE_SIDED_TAIL: sp.Expr = sp.exp(-2 * m * h**2)

#: P_p(X = j) for X ~ Binomial(n, p).
BINOMIAL_PMF: sp.Expr = sp.binomial(n, j) * p**j * (1 - p) ** (n - j)
#: P_p(X ≥ k) and P_p(X ≤ k).
UPPER_TAIL: sp.Expr = sp.Sum(BINOMIAL_PMF, (j, k, n))
LOWER_TAIL: sp.Expr = sp.Sum(BINOMIAL_PMF, (j, 0, k))

Sided = Literal[1, 2]


def solve_positive(equation: sp.Eq, unknown: sp.Symbol) -> sp.Expr:
    """The unique positive real root of ``equation`` for ``unknown``, by ``sympy.solve``.

    The statement's symbols are only ``real``; on the domain the assumptions fix (m ≥ 1,
    0 < α < 1, h > 0) they are positive, so the equation is solved in positive stand-ins
    (which removes the spurious complex branches of the logarithm) and mapped back.
    """
    symbols = sorted(equation.free_symbols, key=lambda s: s.name)
    positive = {s: sp.Symbol(s.name, positive=True) for s in symbols}
    roots = sp.solve(equation.subs(positive), positive[unknown])
    back = {v: s for s, v in positive.items()}
    probe = {v: sp.Rational(1, 20) if s is alpha else sp.Integer(7) for s, v in positive.items()}
    kept = [r.subs(back) for r in roots if r.subs(probe).is_positive]
    if len(kept) != 1:
        raise RuntimeError(f"expected one positive root for {unknown}, got {roots}")
    root: sp.Expr = kept[0]
    return root


def _solved(tail: sp.Expr, unknown: sp.Symbol) -> Callable[[object], sp.Expr]:
    """The derivation of a field: ``tail = α`` solved for ``unknown`` (``solve_positive``)."""
    return lambda _theorem: solve_positive(sp.Eq(tail, alpha), unknown)


@dataclass(frozen=True)
class BinomialConfidence(Theorem):
    """T8: Clopper–Pearson and Hoeffding confidence statements (see module docstring)."""

    label: ClassVar[str] = "T8"
    name: ClassVar[str] = "binomial_confidence"
    title: ClassVar[str] = "Exact (Clopper–Pearson) and Hoeffding bounds for verdict confidence"
    source: ClassVar[str] = (
        "Clopper & Pearson, Biometrika 26 (1934); Hoeffding, JASA 58 (1963), Theorem 1"
    )
    steps_kind: ClassVar[StepsKind | None] = None

    #: h(m, α) = √(ln(2/α)/(2m)), solved from 2 exp(−2mh²) = α.
    bound: sp.Expr = field(default=derived(_solved(HOEFFDING_TAIL, h)))
    #: m(h, α) = ln(2/α)/(2h²), solved from 2 exp(−2mh²) = α.
    sample_size: sp.Expr = field(default=derived(_solved(HOEFFDING_TAIL, m)))
    #: h(m, α) and m(h, α) for the one-sided tail exp(−2mh²) = α.
    one_sided_half_width: sp.Expr = field(default=derived(_solved(HOEFFDING_ONE_SIDED_TAIL, h)))
    one_sided_sample_size: sp.Expr = field(default=derived(_solved(HOEFFDING_ONE_SIDED_TAIL, m)))
    #: U(p_L) = α/2 and D(p_U) = α/2: the Clopper–Pearson bounds' defining equations.
    clopper_pearson_lower_equation: sp.Basic = field(
        default=derived(lambda _: sp.Eq(UPPER_TAIL.subs(p, p_lower), alpha / 2))
    )
    clopper_pearson_upper_equation: sp.Basic = field(
        default=derived(lambda _: sp.Eq(LOWER_TAIL.subs(p, p_upper), alpha / 2))
    )

    def __post_init__(self) -> None:
        values: dict[str, Any] = {
            "assumptions": (
                Assumption("alpha_in_unit_interval", sp.And(alpha > 0, alpha < 1), "0 < α < 1"),
                Assumption("prompts_at_least_one", m >= 1, "at least one prompt, m ≥ 1"),
                Assumption("half_width_positive", h > 0, "half-width h > 0"),
                Assumption(
                    "independent_bounded_scores",
                    sp.And(p_hat >= 0, p_hat <= 1),
                    "the m scores are independent and lie in [0, 1] (Hoeffding); for "
                    "Clopper–Pearson, n iid Bernoulli(p) trials",
                    kind="hypothesis",
                ),
            ),
            "conclusion": sp.And(
                deviation_probability <= HOEFFDING_TAIL,
                coverage_probability >= 1 - alpha,
            ),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    # ----------------------------------------------------------------- numerics
    def half_width(self, prompts: float, alpha_level: float, sided: Sided = 2) -> float:
        """Hoeffding half-width ``h(m, α)``: two-sided ``√(ln(2/α)/(2m))``, one-sided
        ``√(ln(1/α)/(2m))``."""
        expr = self.bound if sided == 2 else self.one_sided_half_width
        return self._value(expr, _sided(sided, self.label), m=prompts, alpha=alpha_level)

    def prompts_for_half_width(
        self, half_width: float, alpha_level: float, sided: Sided = 2
    ) -> int:
        """The least integer ``m ≥ 1`` with ``h(m, α) ≤ half_width``: ``⌈m(h, α)⌉``, corrected
        by one where float rounding of ``m(h, α)`` crossed an integer."""
        expr = self.sample_size if sided == 2 else self.one_sided_sample_size
        real = self._value(expr, _sided(sided, self.label), h=half_width, alpha=alpha_level)
        prompts = max(1, math.ceil(real))
        while prompts > 1 and self.half_width(prompts - 1, alpha_level, sided) <= half_width:
            prompts -= 1
        while self.half_width(prompts, alpha_level, sided) > half_width:
            prompts += 1
        return prompts

    def _value(self, expr: sp.Expr, sided: int, **values: float) -> float:
        self.check_assumptions(**values)
        arguments = tuple(sorted(expr.free_symbols, key=lambda s: s.name))
        result = float(_lambdified(expr, arguments)(*(values[s.name] for s in arguments)))
        if not math.isfinite(result):
            detail = f"{sided}-sided value {result} at {values}"
            raise AssumptionError(self.label, "finite_bound", detail)
        return result


def _sided(sided: object, owner: str) -> int:
    if sided == 1 and not isinstance(sided, bool):
        return 1
    if sided == 2:
        return 2
    raise AssumptionError(owner, "sided_is_one_or_two", f"sided = {sided!r}")


THEOREM = BinomialConfidence()
