r"""Proof (b) and check (a) of T8 ``binomial_confidence``.

(b) Hoeffding, proved. The inequality P(|p̂ − p| ≥ h) ≤ 2 exp(−2mh²) is an axiom
(``hoeffding``); the algebra on top of it is proved:

1. *solved forms* (sympy): theory's ``bound`` h(m, α) and ``sample_size`` m(h, α) (and the
   one-sided forms) make theory's tail exactly α.
2. *confidence* (z3): Hoeffding's axiom at h = h(m, α) gives P(|p̂ − p| ≥ h(m, α)) ≤ α.
3. *rounding is safe* (z3 + exp axiom): m ≥ m(h, α) (e.g. ⌈m(h, α)⌉, what
   ``prompts_for_half_width`` returns) and h ≥ h(m, α) keep the tail ≤ α.

(a) Clopper–Pearson, *checked* (never "proved"): the exact coverage
P_p(p_L ≤ p ≤ p_U) = Σ_k C(n,k) pᵏ(1−p)ⁿ⁻ᵏ 1[p ∈ CI(k)] (``theory.statistics``) is ≥ 1 − α
for every n ≤ ``MAX_TRIALS``, at every p of a grid and just inside and outside every interval
end point (where the coverage jumps), two-sided and one-sided, at α in ``ALPHAS``.

Controls: the two-sided interval computed with α in place of α/2 (coverage falls below
1 − α), the Wald interval p̂ ± z√(p̂(1−p̂)/n) (a deliberately wrong formula, defined only
here), and h(m, α) with ln(1/α) in place of ln(2/α).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sympy as sp
import z3
from scipy import stats

from proofs.axioms import EXP_MONOTONE, HOEFFDING
from proofs.obligation import Budget, Obligation, Outcome, Proof, Status
from proofs.solver import Fact, identity_obligation, z3_obligation
from proofs.statements import parameter_facts, var
from proofs.translate import term
from theory import statistics
from theory.theorems import binomial_confidence as t8

#: trials n = 1 ... MAX_TRIALS are checked exhaustively
MAX_TRIALS = 40
#: the levels α checked
ALPHAS: tuple[float, ...] = (0.05, 0.1)
#: grid of rates p (plus the points next to every interval end point)
GRID_SIZE = 201
#: floating-point slack of the exact coverage sum (a sum of n+1 binomial terms)
COVERAGE_TOLERANCE = 1e-9

Rule = Callable[[int, int], statistics.Interval]


def _rates(trials: int, rule: Rule) -> np.ndarray:  # type: ignore[type-arg]
    """Grid points and the points just inside/outside every interval end point."""
    lower, upper = statistics.interval_table(trials, rule)
    ends = np.concatenate([lower, upper])
    near = np.concatenate([ends - 1e-9, ends, ends + 1e-9])
    grid = np.linspace(0.0, 1.0, GRID_SIZE)
    rates = np.concatenate([grid, near])
    return np.unique(rates[(rates >= 0.0) & (rates <= 1.0)])


def coverage_check(rule_for: Callable[[float], Rule], label: str) -> Callable[[Budget], Outcome]:
    """Check coverage ≥ 1 − α of the rule for every n ≤ MAX_TRIALS, α in ALPHAS."""

    def discharge(budget: Budget) -> Outcome:
        worst = (1.0, 0.0, 0, 0.0)  # (margin, coverage, n, p)
        points = 0
        for alpha in ALPHAS:
            rule = rule_for(alpha)
            for trials in range(1, MAX_TRIALS + 1):
                rates = _rates(trials, rule)
                coverage = statistics.coverage_on_grid(rates, trials, rule)
                points += rates.size
                i = int(np.argmin(coverage))
                margin = float(coverage[i]) - (1.0 - alpha)
                if margin < worst[0]:
                    worst = (margin, float(coverage[i]), trials, float(rates[i]))
                if margin < -COVERAGE_TOLERANCE:
                    shown = (
                        f"{label}: n={trials}, p={rates[i]:.6g}, alpha={alpha}, "
                        f"coverage={coverage[i]:.6f} < {1 - alpha:g}"
                    )
                    return Outcome(Status.FAILED, "exact coverage below 1 - alpha", shown)
        margin, cov, trials, rate = worst
        detail = (
            f"{points} (n, p) points, alphas {ALPHAS}: min coverage - (1 - alpha) = "
            f"{margin:.3g} (n={trials}, p={rate:.4g}, coverage {cov:.6f})"
        )
        return Outcome(Status.CHECKED, detail)

    return discharge


def wald_control(alpha: float) -> Rule:
    """The Wald interval p̂ ± z_{1−α/2} √(p̂(1−p̂)/n): a known under-covering mutant."""
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))

    def rule(successes: int, trials: int) -> statistics.Interval:
        rate = successes / trials
        half = z * float(np.sqrt(rate * (1.0 - rate) / trials))
        lower, upper = max(0.0, rate - half), min(1.0, rate + half)
        return statistics.Interval(lower, upper, rate, 1.0 - alpha, "wald")

    return rule


def _clopper_pearson(
    side: statistics.Side, level: Callable[[float], float]
) -> Callable[[float], Rule]:
    def rule_for(alpha: float) -> Rule:
        return lambda k, n: statistics.clopper_pearson(k, n, level(alpha), side)

    return rule_for


def _clopper_pearson_obligations() -> list[Obligation]:
    def same(alpha: float) -> float:
        return alpha

    def doubled(alpha: float) -> float:
        return 2.0 * alpha

    checks = [
        ("two-sided", "two-sided", same, "obligation"),
        ("upper", "one-sided upper", same, "obligation"),
        ("lower", "one-sided lower", same, "obligation"),
        ("two-sided", "two-sided with alpha in place of alpha/2", doubled, "control"),
    ]
    obligations = [
        Obligation(
            f"Clopper-Pearson coverage, {name}",
            f"P_p(p in CI) >= 1 - alpha for n <= {MAX_TRIALS}, every grid p, alpha in {ALPHAS}",
            "exhaustive",
            coverage_check(_clopper_pearson(side, level), name),  # type: ignore[arg-type]
            kind,  # type: ignore[arg-type]
        )
        for side, name, level, kind in checks
    ]
    obligations.append(
        Obligation(
            "Wald interval coverage",
            "the normal-approximation interval covers with probability >= 1 - alpha",
            "exhaustive",
            coverage_check(wald_control, "Wald"),
            "control",
        )
    )
    return obligations


def _hoeffding_obligations() -> tuple[list[Obligation], list[Obligation]]:
    thm = t8.THEOREM
    positive = {s: sp.Symbol(s.name, positive=True) for s in (t8.m, t8.h, t8.alpha)}

    def solved(name: str, tail: sp.Expr, unknown: sp.Symbol, root: sp.Expr) -> Obligation:
        return identity_obligation(
            name,
            f"{sp.sstr(tail)} at {unknown} = {sp.sstr(root)} equals alpha",
            tail.subs(unknown, root).xreplace(positive),
            t8.alpha.xreplace(positive),
        )

    identities = [
        solved("half-width h(m, alpha)", t8.HOEFFDING_TAIL, t8.h, thm.bound),
        solved("sample size m(h, alpha)", t8.HOEFFDING_TAIL, t8.m, thm.sample_size),
        solved("one-sided half-width", t8.HOEFFDING_ONE_SIDED_TAIL, t8.h, thm.one_sided_half_width),
        solved(
            "one-sided sample size", t8.HOEFFDING_ONE_SIDED_TAIL, t8.m, thm.one_sided_sample_size
        ),
    ]
    wrong = thm.bound.xreplace({sp.sqrt(2): 1})
    if wrong == thm.bound:  # sympy may write ln(2/α) differently: perturb α instead
        wrong = thm.bound.subs(t8.alpha, 2 * t8.alpha)
    wrong_log = identity_obligation(
        "half-width with ln(1/alpha) in place of ln(2/alpha)",
        f"{sp.sstr(t8.HOEFFDING_TAIL)} at h = {sp.sstr(wrong)} equals alpha",
        t8.HOEFFDING_TAIL.subs(t8.h, wrong).xreplace(positive),
        t8.alpha.xreplace(positive),
        kind="control",
    )

    # confidence: P(|p_hat - p| >= h(m, alpha)) <= 2 exp(-2 m h(m, alpha)^2) = alpha
    deviation, alpha = var(t8.deviation_probability), var(t8.alpha)
    tail_at_solution = z3.Real("tail_at_h_m_alpha")
    parameters = parameter_facts(thm)
    confidence = z3_obligation(
        "confidence of the Hoeffding interval",
        "P(|p_hat - p| >= h(m, alpha)) <= alpha",
        deviation <= alpha,
        [*parameters, HOEFFDING(deviation, tail_at_solution), tail_at_solution == alpha],
        uses=("hoeffding", "half-width h(m, alpha)"),
    )

    # rounding: m >= m(h, alpha) or h >= h(m, alpha) keeps 2 exp(-2 m h^2) <= alpha
    m, h = var(t8.m), var(t8.h)
    m_star, h_star = term(_in_log_terms(thm.sample_size)), term(_in_log_terms(thm.bound))
    exp_here, exp_star = z3.Real("exp_minus_2mh2"), z3.Real("exp_at_solution")
    rounding_facts: list[Fact] = [
        *parameters,
        *m_star.definitions,
        *h_star.definitions,
        var(LOG_TWO_OVER_ALPHA) > 0,  # ln(2/α) > 0 as 2/α > 1 (log_sign)
        2 * exp_star == alpha,  # the solved forms make the tail exactly α (identities above)
    ]
    more_prompts = z3_obligation(
        "more prompts keep the tail <= alpha",
        "m >= m(h, alpha) => 2 exp(-2 m h^2) <= alpha",
        z3.Implies(m >= m_star.value, 2 * exp_here <= alpha),
        [
            *rounding_facts,
            EXP_MONOTONE(-2 * m * h * h, -2 * m_star.value * h * h, exp_here, exp_star),
        ],
        uses=("exp_monotone", "log_sign", "sample size m(h, alpha)"),
    )
    wider = z3_obligation(
        "a wider half-width keeps the tail <= alpha",
        "h >= h(m, alpha) => 2 exp(-2 m h^2) <= alpha",
        z3.Implies(h >= h_star.value, 2 * exp_here <= alpha),
        [
            *rounding_facts,
            EXP_MONOTONE(-2 * m * h * h, -2 * m * h_star.value * h_star.value, exp_here, exp_star),
        ],
        uses=("exp_monotone", "log_sign", "half-width h(m, alpha)"),
    )
    return [*identities, confidence, more_prompts, wider], [wrong_log]


LOG_TWO_OVER_ALPHA = sp.Symbol("log_2_over_alpha", positive=True)


def _in_log_terms(expr: sp.Expr) -> sp.Expr:
    """``expr`` written with ℓ = ln(2/α) (substituting α = 2 exp(−ℓ), m, h > 0)."""
    positive = {s: sp.Symbol(s.name, positive=True) for s in (t8.m, t8.h, t8.alpha)}
    rewritten = expr.xreplace(positive).subs(positive[t8.alpha], 2 * sp.exp(-LOG_TWO_OVER_ALPHA))
    back = {v: k for k, v in positive.items()}
    result: sp.Expr = sp.simplify(sp.expand_log(rewritten, force=True)).xreplace(back)
    if result.atoms(sp.log, sp.exp):
        raise ValueError(f"T8: could not write {expr} in terms of ln(2/alpha): {result}")
    return result


def proof() -> Proof:
    hoeffding, hoeffding_controls = _hoeffding_obligations()
    clopper_pearson = _clopper_pearson_obligations()
    return Proof(
        t8.THEOREM,
        (
            *hoeffding,
            *[o for o in clopper_pearson if o.kind == "obligation"],
            *hoeffding_controls,
            *[o for o in clopper_pearson if o.kind == "control"],
        ),
        summary="Hoeffding's algebra proved; Clopper-Pearson coverage checked exhaustively",
    )
