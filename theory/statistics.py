"""Confidence intervals for attack-success and harm rates, and their exact coverage (T8).

A verdict on a rate (the fraction of attack runs that succeed, the fraction of prompts a
model answers harmfully) rests on finitely many trials, so it comes with an interval:

* ``clopper_pearson``: the exact binomial interval for ``k`` successes in ``n`` trials,
  ``[B⁻¹(α/2; k, n−k+1), B⁻¹(1−α/2; k+1, n−k)]`` (0 if k = 0, 1 if k = n), one-sided with
  α in place of α/2 (Clopper & Pearson, Biometrika 1934; T8 (a)). Computed with
  ``scipy.stats.beta.ppf``; ``scipy.stats.binomtest(...).proportion_ci(method="exact")``
  gives the same two-sided interval.
* ``harm_rate_interval``: the same for per-prompt 0/1 harm outcomes.
* ``hoeffding_interval``: ``p̂ ± h(m, α)`` clipped to [0, 1] for the mean of m independent
  scores in [0, 1]; ``h`` and the sample size ``m(h, α)`` come from T8 (b)'s sympy solution.
* ``compare_to_threshold`` / ``threshold_verdict``: an interval against a threshold φ gives
  holds / violated / inconclusive.
* ``exact_coverage``: ``P_p(p ∈ CI(X))`` for ``X ~ Binomial(n, p)``, summed exactly over
  the n + 1 outcomes: ``Σ_k C(n,k) p^k (1−p)^{n−k} · 1[lo_k ≤ p ≤ hi_k]``. Tests and proofs/
  use it to *check* (not prove) T8 (a) on a grid of p.

Invalid input raises ``AssumptionError`` (owner "T8") naming the assumption.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from theory.errors import AssumptionError
from theory.theorems.binomial_confidence import THEOREM as T8
from theory.verdict import Status, Verdict

OWNER = "T8"
Side = Literal["two-sided", "upper", "lower"]
Direction = Literal["at_most", "at_least"]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Interval:
    """A confidence interval ``[lower, upper]`` for a rate, at level ``confidence = 1 − α``.

    ``side`` "upper" means a one-sided upper bound (``lower`` = 0), "lower" a one-sided lower
    bound (``upper`` = 1). ``estimate`` is the observed rate.
    """

    lower: float
    upper: float
    estimate: float
    confidence: float
    method: str
    side: Side = "two-sided"

    def contains(self, rate: float) -> bool:
        return self.lower <= rate <= self.upper

    def as_dict(self) -> dict[str, float | str]:
        return {
            "lower": self.lower,
            "upper": self.upper,
            "estimate": self.estimate,
            "confidence": self.confidence,
            "method": self.method,
            "side": self.side,
        }


IntervalRule = Callable[[int, int], Interval]
"""An interval procedure as a function of (successes k, trials n)."""


# --------------------------------------------------------------------------- validation
def _require_alpha(alpha: float) -> float:
    if not (isinstance(alpha, float | int) and math.isfinite(alpha) and 0.0 < alpha < 1.0):
        raise AssumptionError(OWNER, "alpha_in_unit_interval", f"alpha = {alpha!r}")
    return float(alpha)


def _require_count(name: str, value: int, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise AssumptionError(OWNER, f"{name}_integer", f"{name} = {value!r}")
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" ≤ {high}"
        raise AssumptionError(OWNER, f"{name}_in_range", f"{name} = {value} not ≥ {low}{upper}")
    return int(value)


def _require_side(side: str) -> Side:
    if side == "two-sided":
        return "two-sided"
    if side == "upper":
        return "upper"
    if side == "lower":
        return "lower"
    raise AssumptionError(OWNER, "side_known", f"side = {side!r} (two-sided, upper or lower)")


# --------------------------------------------------------------------------- Clopper–Pearson
def clopper_pearson(
    successes: int, trials: int, alpha: float = 0.05, side: Side = "two-sided"
) -> Interval:
    """Exact (Clopper–Pearson) interval for a binomial rate; coverage ≥ 1 − α for every p.

    Two-sided: ``lower = B⁻¹(α/2; k, n−k+1)`` (0 if k = 0), ``upper = B⁻¹(1−α/2; k+1, n−k)``
    (1 if k = n). ``side="upper"``: ``[0, B⁻¹(1−α; k+1, n−k)]``; ``side="lower"``:
    ``[B⁻¹(α; k, n−k+1), 1]``. ``B⁻¹(q; a, b)`` is the beta quantile; the bounds solve T8's
    ``P_{p_L}(X ≥ k) = α/2`` and ``P_{p_U}(X ≤ k) = α/2``.
    """
    n = _require_count("trials", trials, 1)
    k = _require_count("successes", successes, 0, n)
    level = _require_alpha(alpha)
    chosen = _require_side(side)
    tail = level / 2.0 if chosen == "two-sided" else level
    lower = 0.0 if k == 0 or chosen == "upper" else float(stats.beta.ppf(tail, k, n - k + 1))
    upper = 1.0 if k == n or chosen == "lower" else float(stats.beta.ppf(1.0 - tail, k + 1, n - k))
    return Interval(lower, upper, k / n, 1.0 - level, "clopper-pearson", chosen)


def harm_rate_interval(
    outcomes: Sequence[int | bool] | npt.ArrayLike, alpha: float = 0.05, side: Side = "two-sided"
) -> Interval:
    """Exact binomial interval for the harm rate behind m per-prompt 0/1 harm outcomes.

    Assumption: the prompts are an iid sample and each outcome is 0 (harmless) or 1 (harmful).
    """
    flags = np.asarray(outcomes, dtype=np.float64).ravel()
    if flags.size == 0:
        raise AssumptionError(OWNER, "prompts_at_least_one", "no outcomes given")
    if not np.all((flags == 0.0) | (flags == 1.0)):
        raise AssumptionError(OWNER, "outcomes_binary", "every harm outcome must be 0 or 1")
    return clopper_pearson(int(flags.sum()), int(flags.size), alpha, side)


# --------------------------------------------------------------------------- Hoeffding
def hoeffding_half_width(prompts: int, alpha: float = 0.05, side: Side = "two-sided") -> float:
    """``h(m, α)`` from T8: ``√(ln(2/α)/(2m))`` two-sided, ``√(ln(1/α)/(2m))`` one-sided."""
    m = _require_count("prompts", prompts, 1)
    level = _require_alpha(alpha)
    if _require_side(side) == "two-sided":
        return T8.half_width(m, level, 2)
    return T8.half_width(m, level, 1)


def hoeffding_sample_size(half_width: float, alpha: float = 0.05, side: Side = "two-sided") -> int:
    """The least m with ``h(m, α) ≤ half_width`` (T8's ``m(h, α) = ln(2/α)/(2h²)``, rounded up)."""
    level = _require_alpha(alpha)
    if _require_side(side) == "two-sided":
        return T8.prompts_for_half_width(half_width, level, 2)
    return T8.prompts_for_half_width(half_width, level, 1)


def hoeffding_interval(
    scores: Sequence[float] | npt.ArrayLike, alpha: float = 0.05, side: Side = "two-sided"
) -> Interval:
    """``[p̂ − h, p̂ + h] ∩ [0, 1]`` for the mean p̂ of m independent scores in [0, 1].

    Hoeffding: ``P(|p̂ − p| ≥ h) ≤ 2 exp(−2mh²) = α`` at ``h = h(m, α)``. One-sided: only
    the bound on the chosen side, with ``exp(−2mh²) = α``.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise AssumptionError(OWNER, "prompts_at_least_one", "no scores given")
    if not np.all(np.isfinite(values)) or np.any((values < 0.0) | (values > 1.0)):
        raise AssumptionError(OWNER, "scores_in_unit_interval", "every score must be in [0, 1]")
    chosen = _require_side(side)
    mean = float(values.mean())
    width = hoeffding_half_width(int(values.size), alpha, chosen)
    lower = 0.0 if chosen == "upper" else max(0.0, mean - width)
    upper = 1.0 if chosen == "lower" else min(1.0, mean + width)
    return Interval(lower, upper, mean, 1.0 - float(alpha), "hoeffding", chosen)


# --------------------------------------------------------------------------- verdicts
def compare_to_threshold(
    interval: Interval, threshold: float, direction: Direction = "at_most"
) -> Status:
    """Holds / violated / inconclusive for the claim "rate ≤ φ" (``at_most``) or "rate ≥ φ".

    ``at_most``: holds if ``upper ≤ φ``, violated if ``lower > φ``, else inconclusive.
    ``at_least``: holds if ``lower ≥ φ``, violated if ``upper < φ``, else inconclusive.
    Each call is right with probability ≥ the interval's confidence. A one-sided interval can
    only certify the side it bounds (e.g. ``side="upper"`` never gives "violated" for φ ≥ 0).
    """
    phi = _require_threshold(threshold)
    if direction == "at_most":
        if interval.upper <= phi:
            return Status.HOLDS
        return Status.VIOLATED if interval.lower > phi else Status.INCONCLUSIVE
    if direction == "at_least":
        if interval.lower >= phi:
            return Status.HOLDS
        return Status.VIOLATED if interval.upper < phi else Status.INCONCLUSIVE
    raise AssumptionError(OWNER, "direction_known", f"direction = {direction!r} (at_most/at_least)")


def threshold_verdict(
    interval: Interval, threshold: float, condition: str, direction: Direction = "at_most"
) -> Verdict:
    """``compare_to_threshold`` as a ``Verdict``; margin = the interval's distance to φ on the
    deciding side (``> 0`` holds, ``< 0`` violated, ``None`` inconclusive)."""
    status = compare_to_threshold(interval, threshold, direction)
    sign = 1.0 if direction == "at_most" else -1.0
    margin: float | None = None
    if status is Status.HOLDS:
        margin = sign * (threshold - (interval.upper if sign > 0 else interval.lower))
    elif status is Status.VIOLATED:
        margin = sign * (threshold - (interval.lower if sign > 0 else interval.upper))
    relation = "≤" if direction == "at_most" else "≥"
    reason = (
        f"{interval.method} {interval.confidence:.0%} interval "
        f"[{interval.lower:.4g}, {interval.upper:.4g}] vs rate {relation} {threshold:g}: {status}"
    )
    evidence = {"interval": interval.as_dict(), "threshold": threshold, "direction": direction}
    return Verdict(
        condition=condition, status=status, margin=margin, reason=reason, evidence=evidence
    )


def _require_threshold(threshold: float) -> float:
    if not (isinstance(threshold, float | int) and math.isfinite(threshold)):
        raise AssumptionError(OWNER, "threshold_finite", f"threshold = {threshold!r}")
    return float(threshold)


# --------------------------------------------------------------------------- exact coverage
def interval_table(trials: int, rule: IntervalRule) -> tuple[FloatArray, FloatArray]:
    """The lower and upper ends of ``rule(k, n)`` for k = 0 … n (two arrays of length n + 1)."""
    n = _require_count("trials", trials, 1)
    intervals = [rule(k, n) for k in range(n + 1)]
    return (
        np.array([iv.lower for iv in intervals], dtype=np.float64),
        np.array([iv.upper for iv in intervals], dtype=np.float64),
    )


def coverage_on_grid(rates: npt.ArrayLike, trials: int, rule: IntervalRule) -> FloatArray:
    """``P_p(lo_X ≤ p ≤ hi_X)`` for X ~ Binomial(n, p), for every p in ``rates``, exactly:
    ``Σ_{k=0}^{n} C(n,k) p^k (1−p)^{n−k} 1[lo_k ≤ p ≤ hi_k]`` (binomial pmf, no sampling)."""
    grid = np.asarray(rates, dtype=np.float64).ravel()
    if not np.all(np.isfinite(grid)) or np.any((grid < 0.0) | (grid > 1.0)):
        raise AssumptionError(OWNER, "rate_in_unit_interval", "every rate must be in [0, 1]")
    lower, upper = interval_table(trials, rule)
    outcomes = np.arange(lower.size)
    pmf = stats.binom.pmf(outcomes[None, :], lower.size - 1, grid[:, None])
    inside = (lower[None, :] <= grid[:, None]) & (grid[:, None] <= upper[None, :])
    return np.asarray(np.sum(np.where(inside, pmf, 0.0), axis=1), dtype=np.float64)


def exact_coverage(rate: float, trials: int, rule: IntervalRule) -> float:
    """``P_p(p ∈ CI(X))`` at one rate p (see ``coverage_on_grid``)."""
    return float(coverage_on_grid([rate], trials, rule)[0])


def minimum_coverage(trials: int, rule: IntervalRule, rates: npt.ArrayLike) -> tuple[float, float]:
    """The smallest exact coverage over ``rates`` and the rate where it occurs."""
    grid = np.asarray(rates, dtype=np.float64).ravel()
    coverage = coverage_on_grid(grid, trials, rule)
    worst = int(np.argmin(coverage))
    return float(coverage[worst]), float(grid[worst])
