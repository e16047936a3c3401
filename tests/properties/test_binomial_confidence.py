"""T8 ``binomial_confidence``: its intervals reach their nominal coverage, by simulation and
by exact computation.

* Clopper–Pearson (``theory.statistics.clopper_pearson``): in M simulated binomial experiments
  the interval misses p at most a fraction α of the time, and its exact coverage
  (``coverage_on_grid``) is ≥ 1 − α at every p drawn.
* Harm-rate intervals from per-prompt outcomes (``harm_rate_interval``): prompts drawn from a
  population whose prompts are harmful with heterogeneous probabilities (Beta distributed), so
  the per-prompt outcomes are iid Bernoulli(mean harm rate); the interval covers that rate.
* Hoeffding intervals for mean scores in [0, 1] (``hoeffding_interval``).
* Verdicts (``compare_to_threshold``): a model whose true harm rate exceeds φ is declared
  "holds" at most a fraction α of the time.

A simulated miss rate is judged with an exact one-sided test built from the toolkit's own
Clopper–Pearson bound at level 1 − 10⁻⁶: the property fails only if the lower bound on the
miss rate exceeds α (a false alarm has probability ≤ 10⁻⁶ per example). Negative controls: the
Wald interval p̂ ± z√(p̂(1 − p̂)/n), and Clopper–Pearson with α in place of α/2 on each side.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from scipy import stats

from theory.statistics import (
    Interval,
    clopper_pearson,
    compare_to_threshold,
    coverage_on_grid,
    harm_rate_interval,
    hoeffding_interval,
)
from theory.verdict import Status

Rule = Callable[[int, int, float], Interval]
SIMULATIONS = 1000
#: Level of the exact test that judges a simulated miss rate.
JUDGE_ALPHA = 1e-6
ALPHAS = st.sampled_from([0.01, 0.05, 0.1, 0.2])
SEEDS = st.integers(0, 2**32 - 1)
#: Rates in [0, 1]; below 1e-300 flushed to 0 (scipy's binomial pmf overflows at p ≈ 1e-308,
#: a limitation of the coverage computation, reported, not of the interval).
RATES = st.floats(0.0, 1.0).map(lambda p: 0.0 if p < 1e-300 else p)


def assert_miss_rate_at_most(misses: int, trials: int, alpha: float) -> None:
    """Refute "miss rate ≤ α" only when even the 1 − 10⁻⁶ lower Clopper–Pearson bound on the
    miss rate is above α."""
    lower = clopper_pearson(misses, trials, JUDGE_ALPHA, side="lower").lower
    assert lower <= alpha, f"{misses}/{trials} misses: rate ≥ {lower:.4f} > alpha = {alpha}"


def clopper_pearson_rule(k: int, n: int, alpha: float) -> Interval:
    return clopper_pearson(k, n, alpha)


def wald_rule(k: int, n: int, alpha: float) -> Interval:
    """The textbook normal-approximation interval (a negative control: it undercovers)."""
    estimate = k / n
    half = float(stats.norm.ppf(1 - alpha / 2)) * np.sqrt(estimate * (1 - estimate) / n)
    lower, upper = max(0.0, estimate - half), min(1.0, estimate + half)
    return Interval(lower, upper, estimate, 1 - alpha, "wald")


def half_alpha_rule(k: int, n: int, alpha: float) -> Interval:
    """Clopper–Pearson with α on each side instead of α/2 (a negative control)."""
    return clopper_pearson(k, n, min(2 * alpha, 0.999))


def simulated_coverage_property(rule: Rule = clopper_pearson_rule) -> Callable[[], None]:
    @given(n=st.integers(1, 60), p=RATES, alpha=ALPHAS, seed=SEEDS)
    def prop(n: int, p: float, alpha: float, seed: int) -> None:
        draws = np.random.default_rng(seed).binomial(n, p, size=SIMULATIONS)
        table = [rule(k, n, alpha) for k in range(n + 1)]
        misses = sum(not table[int(k)].contains(p) for k in draws)
        note(f"{misses}/{SIMULATIONS} misses")
        assert_miss_rate_at_most(misses, SIMULATIONS, alpha)

    return prop


def test_clopper_pearson_reaches_nominal_coverage_in_simulation() -> None:
    simulated_coverage_property()()


@pytest.mark.negative_control
def test_wald_interval_is_refuted_in_simulation(expect_falsified: Callable[..., None]) -> None:
    expect_falsified(simulated_coverage_property(wald_rule))


def exact_coverage_property(rule: Rule = clopper_pearson_rule) -> Callable[[], None]:
    @given(n=st.integers(1, 80), rates=st.lists(RATES, min_size=1, max_size=20), alpha=ALPHAS)
    def prop(n: int, rates: list[float], alpha: float) -> None:
        coverage = coverage_on_grid(rates, n, lambda k, trials: rule(k, trials, alpha))
        worst = int(np.argmin(coverage))
        note(f"coverage {coverage[worst]:.6f} at p = {rates[worst]}")
        assert coverage[worst] >= 1 - alpha - 1e-12

    return prop


def test_clopper_pearson_exact_coverage_is_at_least_nominal() -> None:
    exact_coverage_property()()


@pytest.mark.negative_control
def test_clopper_pearson_with_alpha_per_side_is_refuted(
    expect_falsified: Callable[..., None],
) -> None:
    expect_falsified(exact_coverage_property(half_alpha_rule))


@given(
    prompts=st.integers(1, 50),
    shape=st.tuples(st.floats(0.2, 5.0), st.floats(0.2, 5.0)),
    alpha=ALPHAS,
    seed=SEEDS,
)
def test_harm_rate_interval_from_per_prompt_outcomes_covers_the_rate(
    prompts: int, shape: tuple[float, float], alpha: float, seed: int
) -> None:
    """Each replicate draws ``prompts`` prompts from a population whose prompt i is answered
    harmfully with probability p_i ~ Beta(a, b); the population harm rate is a/(a+b)."""
    rng = np.random.default_rng(seed)
    a, b = shape
    rate = a / (a + b)
    replicates = 250
    misses = 0
    for _ in range(replicates):
        outcomes = rng.random(prompts) < rng.beta(a, b, size=prompts)
        misses += not harm_rate_interval(outcomes.astype(int), alpha).contains(rate)
    assert_miss_rate_at_most(misses, replicates, alpha)


@given(
    prompts=st.integers(1, 50),
    shape=st.tuples(st.floats(0.2, 5.0), st.floats(0.2, 5.0)),
    alpha=ALPHAS,
    seed=SEEDS,
)
def test_hoeffding_interval_covers_the_mean_score(
    prompts: int, shape: tuple[float, float], alpha: float, seed: int
) -> None:
    """Scores in [0, 1] (Beta distributed, mean a/(a+b)): the Hoeffding interval covers the
    mean in at least 1 − α of the replicates."""
    rng = np.random.default_rng(seed)
    a, b = shape
    replicates = 400
    misses = sum(
        not hoeffding_interval(rng.beta(a, b, size=prompts), alpha).contains(a / (a + b))
        for _ in range(replicates)
    )
    assert_miss_rate_at_most(misses, replicates, alpha)


@given(
    n=st.integers(1, 60),
    threshold=st.floats(0.0, 0.95),
    excess=st.floats(1e-3, 0.5),
    alpha=ALPHAS,
    seed=SEEDS,
)
def test_a_harmful_model_is_declared_safe_at_most_alpha_of_the_time(
    n: int, threshold: float, excess: float, alpha: float, seed: int
) -> None:
    """True harm rate p > φ: the verdict "rate ≤ φ holds" (upper end of the two-sided
    Clopper–Pearson interval ≤ φ) comes out in at most α/2 ≤ α of the experiments."""
    p = min(1.0, threshold + excess)
    draws = np.random.default_rng(seed).binomial(n, p, size=SIMULATIONS)
    table = [compare_to_threshold(clopper_pearson(k, n, alpha), threshold) for k in range(n + 1)]
    wrong = sum(table[int(k)] is Status.HOLDS for k in draws)
    assert_miss_rate_at_most(wrong, SIMULATIONS, alpha)
