"""theory/statistics.py: Clopper–Pearson and Hoeffding intervals, exact coverage, verdicts (T8)."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from theory.errors import AssumptionError
from theory.statistics import (
    Interval,
    IntervalRule,
    Side,
    clopper_pearson,
    compare_to_threshold,
    coverage_on_grid,
    exact_coverage,
    harm_rate_interval,
    hoeffding_half_width,
    hoeffding_interval,
    hoeffding_sample_size,
    minimum_coverage,
    threshold_verdict,
)
from theory.verdict import Status

#: p = 0, 1 and 399 interior points, plus points just inside the ends.
RATE_GRID = np.concatenate([np.linspace(0.0, 1.0, 401), [1e-6, 1e-3, 1 - 1e-3, 1 - 1e-6]])
ROUNDING = 1e-12


def wald(successes: int, trials: int, alpha: float) -> Interval:
    """The textbook Wald interval p̂ ± z √(p̂(1−p̂)/n): known to under-cover (negative control)."""
    estimate = successes / trials
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))
    half = z * math.sqrt(estimate * (1.0 - estimate) / trials)
    return Interval(
        max(0.0, estimate - half), min(1.0, estimate + half), estimate, 1 - alpha, "wald"
    )


def narrow_clopper_pearson(successes: int, trials: int, alpha: float) -> Interval:
    """A two-sided interval built with α (not α/2) per tail: nominal 1 − α, true 1 − 2α."""
    one = clopper_pearson(successes, trials, alpha, "lower")
    other = clopper_pearson(successes, trials, alpha, "upper")
    return Interval(one.lower, other.upper, successes / trials, 1 - alpha, "narrow")


def covers_everywhere(rule: IntervalRule, trials: int, alpha: float) -> bool:
    """The coverage property: exact P_p(p ∈ CI) ≥ 1 − α at every p of the grid."""
    worst, _ = minimum_coverage(trials, rule, RATE_GRID)
    return worst >= 1.0 - alpha - ROUNDING


# --------------------------------------------------------------------------- Clopper–Pearson
@given(
    st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.floats(min_value=1e-4, max_value=0.5),
)
def test_clopper_pearson_matches_scipy_binomtest(counts: tuple[int, int], alpha: float) -> None:
    successes, trials = counts
    ours = clopper_pearson(successes, trials, alpha)
    reference = stats.binomtest(successes, trials).proportion_ci(1.0 - alpha, method="exact")
    assert ours.lower == pytest.approx(reference.low, abs=1e-12)
    assert ours.upper == pytest.approx(reference.high, abs=1e-12)
    assert ours.lower <= successes / trials <= ours.upper
    upper = clopper_pearson(successes, trials, alpha, "upper")
    lower = clopper_pearson(successes, trials, alpha, "lower")
    # A one-sided bound at level α is the two-sided bound at level 2α.
    if alpha < 0.5:
        wider = clopper_pearson(successes, trials, 2 * alpha)
        assert upper.upper == pytest.approx(wider.upper, abs=1e-12)
        assert lower.lower == pytest.approx(wider.lower, abs=1e-12)
    assert upper.lower == 0.0 and lower.upper == 1.0


def test_clopper_pearson_edge_counts() -> None:
    assert clopper_pearson(0, 10, 0.05).lower == 0.0
    assert clopper_pearson(10, 10, 0.05).upper == 1.0
    # k = 0: the upper bound solves (1 − p)^n = α/2.
    assert clopper_pearson(0, 10, 0.05).upper == pytest.approx(1 - 0.025 ** (1 / 10))


@pytest.mark.parametrize("trials", [1, 2, 5, 10, 30, 100])
@pytest.mark.parametrize("alpha", [0.05, 0.2])
@pytest.mark.parametrize("side", ["two-sided", "upper", "lower"])
def test_clopper_pearson_exact_coverage_on_grid(trials: int, alpha: float, side: Side) -> None:
    rule = partial(clopper_pearson, alpha=alpha, side=side)
    assert covers_everywhere(rule, trials, alpha)


@pytest.mark.negative_control
@pytest.mark.parametrize("trials", [5, 10, 30])
def test_wald_interval_fails_the_coverage_property(trials: int) -> None:
    rule = partial(wald, alpha=0.05)
    assert not covers_everywhere(rule, trials, 0.05)
    worst, _ = minimum_coverage(trials, rule, RATE_GRID)
    assert worst < 0.5  # at extreme p the Wald interval is [0, 0] or [1, 1]


@pytest.mark.negative_control
def test_alpha_per_tail_interval_fails_the_coverage_property() -> None:
    assert not covers_everywhere(partial(narrow_clopper_pearson, alpha=0.1), 20, 0.1)


def test_exact_coverage_agrees_with_simulation() -> None:
    """Coverage by simulation ≥ 1 − α − 4 SE, and within 4 SE of the exact sum."""
    rng = np.random.default_rng(20240601)
    trials, alpha, repeats = 15, 0.05, 4000
    table = [clopper_pearson(k, trials, alpha) for k in range(trials + 1)]
    for rate in (0.02, 0.3, 0.9):
        draws = rng.binomial(trials, rate, size=repeats)
        simulated = float(np.mean([table[k].contains(rate) for k in draws]))
        exact = exact_coverage(rate, trials, partial(clopper_pearson, alpha=alpha))
        error = 4.0 * math.sqrt(max(exact * (1 - exact), 1e-4) / repeats)
        assert simulated >= 1 - alpha - 4.0 * math.sqrt(alpha * (1 - alpha) / repeats)
        assert abs(simulated - exact) <= error


def test_coverage_on_grid_is_a_probability_sum() -> None:
    everything = coverage_on_grid(RATE_GRID, 7, lambda k, n: Interval(0.0, 1.0, k / n, 1.0, "all"))
    assert np.allclose(everything, 1.0, atol=1e-12)
    with pytest.raises(AssumptionError, match="rate_in_unit_interval"):
        coverage_on_grid([1.5], 7, partial(clopper_pearson, alpha=0.05))


def test_harm_rate_interval_is_clopper_pearson_on_the_count() -> None:
    outcomes = [1, 0, 0, 1, 0, 0, 0, 0, 1, 0]
    assert harm_rate_interval(outcomes, 0.1) == clopper_pearson(3, 10, 0.1)
    assert harm_rate_interval(np.array([True, False]), 0.1) == clopper_pearson(1, 2, 0.1)


# --------------------------------------------------------------------------- Hoeffding
def hoeffding_simulated_coverage(
    half_width: float, prompts: int, rate: float, repeats: int, seed: int, scores: str
) -> float:
    rng = np.random.default_rng(seed)
    if scores == "bernoulli":
        samples = rng.binomial(1, rate, size=(repeats, prompts)).astype(float)
    else:  # scores in [0, 1] with mean `rate`: Beta(2·rate, 2·(1 − rate))
        samples = rng.beta(2 * rate, 2 * (1 - rate), size=(repeats, prompts))
    means = samples.mean(axis=1)
    return float(np.mean(np.abs(means - rate) < half_width))


@pytest.mark.parametrize("scores", ["bernoulli", "beta"])
@pytest.mark.parametrize("rate", [0.05, 0.5])
def test_hoeffding_interval_coverage_by_simulation(scores: str, rate: float) -> None:
    prompts, alpha, repeats = 40, 0.1, 3000
    width = hoeffding_half_width(prompts, alpha)
    coverage = hoeffding_simulated_coverage(width, prompts, rate, repeats, seed=7, scores=scores)
    assert coverage >= 1 - alpha - 3.0 * math.sqrt(alpha * (1 - alpha) / repeats)


@pytest.mark.negative_control
def test_hoeffding_without_square_root_fails_simulated_coverage() -> None:
    """h = ln(2/α)/(2m) (the square root forgotten) is far too narrow: coverage collapses."""
    prompts, alpha, repeats = 40, 0.1, 3000
    wrong = math.log(2 / alpha) / (2 * prompts)
    coverage = hoeffding_simulated_coverage(wrong, prompts, 0.5, repeats, seed=7, scores="beta")
    assert coverage < 1 - alpha - 3.0 * math.sqrt(alpha * (1 - alpha) / repeats)


def test_hoeffding_interval_clips_to_unit_interval() -> None:
    interval = hoeffding_interval([0.0] * 20, 0.05)
    assert interval.lower == 0.0
    assert interval.upper == pytest.approx(hoeffding_half_width(20, 0.05))
    upper = hoeffding_interval([0.5] * 20, 0.05, "upper")
    assert upper.lower == 0.0
    assert upper.upper == pytest.approx(0.5 + math.sqrt(math.log(1 / 0.05) / 40))


def _inverts(solver: object, half_width: float, alpha: float) -> bool:
    """The sample-size property: m = solver(h, α) is the least m with h(m, α) ≤ h."""
    assert callable(solver)
    prompts = int(solver(half_width, alpha))
    if prompts < 1 or hoeffding_half_width(prompts, alpha) > half_width:
        return False
    return prompts == 1 or hoeffding_half_width(prompts - 1, alpha) > half_width


@given(st.floats(min_value=1e-3, max_value=0.9), st.floats(min_value=1e-6, max_value=0.5))
def test_sample_size_inverts_the_half_width(half_width: float, alpha: float) -> None:
    assert _inverts(hoeffding_sample_size, half_width, alpha)
    one_sided = hoeffding_sample_size(half_width, alpha, "upper")
    assert hoeffding_half_width(one_sided, alpha, "upper") <= half_width
    assert one_sided == 1 or hoeffding_half_width(one_sided - 1, alpha, "upper") > half_width


@pytest.mark.negative_control
@pytest.mark.parametrize(("half_width", "alpha"), [(0.05, 0.05), (0.1, 0.01), (0.02, 0.2)])
def test_sample_size_off_by_one_is_caught(half_width: float, alpha: float) -> None:
    assert _inverts(hoeffding_sample_size, half_width, alpha)
    assert not _inverts(lambda h, a: hoeffding_sample_size(h, a) - 1, half_width, alpha)
    assert not _inverts(lambda h, a: hoeffding_sample_size(h, a) + 1, half_width, alpha)
    floor = lambda h, a: math.floor(math.log(2 / a) / (2 * h**2))  # noqa: E731
    assert not _inverts(floor, half_width, alpha)


# --------------------------------------------------------------------------- verdicts
@pytest.mark.parametrize(
    ("lower", "upper", "direction", "expected"),
    [
        (0.0, 0.08, "at_most", Status.HOLDS),
        (0.0, 0.10, "at_most", Status.HOLDS),
        (0.05, 0.2, "at_most", Status.INCONCLUSIVE),
        (0.12, 0.3, "at_most", Status.VIOLATED),
        (0.12, 0.3, "at_least", Status.HOLDS),
        (0.05, 0.2, "at_least", Status.INCONCLUSIVE),
        (0.0, 0.08, "at_least", Status.VIOLATED),
    ],
)
def test_compare_to_threshold(lower: float, upper: float, direction: str, expected: Status) -> None:
    interval = Interval(lower, upper, (lower + upper) / 2, 0.95, "test")
    assert compare_to_threshold(interval, 0.1, direction) is expected  # type: ignore[arg-type]


def test_threshold_verdict_margin_and_evidence() -> None:
    held = threshold_verdict(clopper_pearson(0, 100, 0.05), 0.1, "harm_rate_at_most_phi")
    assert held.holds and held.margin is not None and held.margin > 0
    assert held.evidence["interval"]["method"] == "clopper-pearson"
    broken = threshold_verdict(clopper_pearson(60, 100, 0.05), 0.1, "harm_rate_at_most_phi")
    assert broken.violated and broken.margin is not None and broken.margin < 0
    unsure = threshold_verdict(clopper_pearson(1, 10, 0.05), 0.1, "harm_rate_at_most_phi")
    assert unsure.status is Status.INCONCLUSIVE and unsure.margin is None


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("call", "assumption"),
    [
        (lambda: clopper_pearson(3, 0, 0.05), "trials_in_range"),
        (lambda: clopper_pearson(11, 10, 0.05), "successes_in_range"),
        (lambda: clopper_pearson(1, 10, 0.0), "alpha_in_unit_interval"),
        (lambda: clopper_pearson(1, 10, float("nan")), "alpha_in_unit_interval"),
        (lambda: clopper_pearson(1.5, 10, 0.05), "successes_integer"),  # type: ignore[arg-type]
        (lambda: clopper_pearson(1, 10, 0.05, "both"), "side_known"),  # type: ignore[arg-type]
        (lambda: harm_rate_interval([0, 2, 1], 0.05), "outcomes_binary"),
        (lambda: harm_rate_interval([], 0.05), "prompts_at_least_one"),
        (lambda: hoeffding_interval([0.2, 1.3], 0.05), "scores_in_unit_interval"),
        (lambda: hoeffding_interval([0.2, float("nan")], 0.05), "scores_in_unit_interval"),
        (lambda: hoeffding_sample_size(0.0, 0.05), "half_width_positive"),
        (lambda: hoeffding_half_width(0, 0.05), "prompts_in_range"),
        (lambda: compare_to_threshold(clopper_pearson(1, 2), math.nan), "threshold_finite"),
    ],
)
def test_bad_input_names_the_assumption(call: object, assumption: str) -> None:
    assert callable(call)
    with pytest.raises(AssumptionError) as caught:
        call()
    assert caught.value.assumption == assumption
