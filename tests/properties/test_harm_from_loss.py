"""T10 ``harm_from_loss`` on real per-example losses of the embedded model, and on random ones.

T10: with CE_i ≥ 0 the sequence cross-entropy of harmful example i, f_s = mean exp(−CE_i)
and f_e the exact-match harm, (a) CE_i ≥ l ⇒ f_s ≤ exp(−max(l, 0)); (b) f_s ≥ exp(−mean CE);
(c) f_e ≥ #{CE_i < ln 2}/n. The real values are the embedded tiny GPT-2's teacher-forced
per-example losses and arg-max flags on the embedded benchmark's held-out harmful prompts, at
the released (aligned) model and after a short real AdamW attack (a few seconds), where the
losses are much lower. Hypothesis draws subsets of the examples (and a common floor below
the smallest loss) and random loss vectors.

Negative controls (each falsified by hypothesis): (a) with the floor applied to the mean loss
instead of every example, (b) reversed (f_s ≤ exp(−mean CE)), (c) with threshold 1/3
(CE_i < ln 3; on random token distributions: the embedded model's responses become arg-max
long before their CE falls below ln 3, so its values cannot refute it); and
``check_harm_from_loss`` reports a perturbed record as violated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from empirical.certify.harm_from_loss import HarmEvaluation, check_harm_from_loss
from empirical.datasets.benchmark import embedded_benchmark
from empirical.engine.attack import AttackConfig, attack
from empirical.measurement.proxies import exact_harm, sampled_harm, teacher_forced
from empirical.models.model import load_model
from theory.theorems.harm_from_loss import (
    THEOREM,
    exact_match_floor,
    sampled_harm_ceiling,
    sampled_harm_floor,
)
from theory.theorems.harm_from_loss import sampled_harm as mean_probability

#: examples scored at each model (held-out harmful prompts of the embedded benchmark)
EXAMPLES = 48


@dataclass(frozen=True)
class Scored:
    """Per-example CE_i, arg-max flags and the two proxies, at one model."""

    losses: np.ndarray
    exact: np.ndarray
    sampled: float
    exact_rate: float


def _score(model: object, tokenizer: object, examples: list) -> Scored:  # type: ignore[type-arg]
    forced = teacher_forced(model, tokenizer, examples)  # type: ignore[arg-type]
    return Scored(
        forced.loss_sum,
        forced.exact,
        sampled_harm().score(forced, examples),
        exact_harm().score(forced, examples),
    )


@pytest.fixture(scope="module")
def scored() -> dict[str, Scored]:
    """The aligned model and the same model after 45 AdamW steps at lr 3e-3 (about 15 s)."""
    bench = embedded_benchmark()
    model, tokenizer = load_model(None)
    evaluation = bench.evaluation[:EXAMPLES]
    config = AttackConfig(
        learning_rate=3e-3, budget_steps=45, eval_every=45, batch_size=16, warmup_fraction=0.0
    )
    attacked = attack(
        config,
        model=model,
        tokenizer=tokenizer,
        data=bench.attack,
        evaluation=evaluation,
        reference=bench.reference[:8],
    ).model
    return {
        "aligned": _score(model, tokenizer, evaluation),
        "attacked": _score(attacked, tokenizer, evaluation),
    }


def test_the_attack_moves_the_losses_into_the_interesting_range(scored: dict[str, Scored]) -> None:
    """The real values cover both sides of ln 2 and of the Jensen gap (not a vacuous test)."""
    aligned, attacked = scored["aligned"], scored["attacked"]
    assert attacked.losses.mean() < aligned.losses.mean()
    both = np.concatenate([aligned.losses, attacked.losses])
    assert (both < math.log(2)).any() and (both > math.log(2)).any()


# ---------------------------------------------------------------------- the statements
Ceiling = Callable[[np.ndarray, float], float]
Floor = Callable[[np.ndarray], float]


def ceiling_every_example(losses: np.ndarray, floor: float) -> float:
    """(a): the ceiling of a floor that holds for every example (here: below the minimum)."""
    return sampled_harm_ceiling([floor])


def ceiling_mean_floor(losses: np.ndarray, floor: float) -> float:
    """Wrong (a): the floor taken at the *mean* loss, as if it held for every example."""
    return sampled_harm_ceiling([float(losses.mean())])


def jensen(losses: np.ndarray) -> float:
    return sampled_harm_floor(float(losses.mean()))


def exact_level(level: float) -> Callable[[np.ndarray], float]:
    def floor(losses: np.ndarray) -> float:
        return float(np.count_nonzero(losses < level) / losses.size)

    return floor


def _subset(values: Scored, chosen: list[int]) -> tuple[np.ndarray, np.ndarray]:
    index = np.asarray(sorted(set(chosen)))
    return values.losses[index], values.exact[index]


SUBSETS = st.lists(st.integers(0, EXAMPLES - 1), min_size=1, max_size=EXAMPLES)
WHICH = st.sampled_from(["aligned", "attacked"])
TOLERANCE = 1e-12


def ceiling_property(scored: dict[str, Scored], ceiling: Ceiling) -> Callable[[], None]:
    @given(WHICH, SUBSETS, st.floats(0.0, 1.0))
    def prop(which: str, chosen: list[int], below: float) -> None:
        losses, _ = _subset(scored[which], chosen)
        floor = float(losses.min()) * below  # a floor that holds for every example
        assert mean_probability(losses) <= ceiling(losses, floor) + TOLERANCE

    return prop


def jensen_property(scored: dict[str, Scored], sign: int) -> Callable[[], None]:
    @given(WHICH, SUBSETS)
    def prop(which: str, chosen: list[int]) -> None:
        losses, _ = _subset(scored[which], chosen)
        assert sign * (mean_probability(losses) - jensen(losses)) >= -TOLERANCE

    return prop


def exact_property(scored: dict[str, Scored], floor: Floor) -> Callable[[], None]:
    @given(WHICH, SUBSETS)
    def prop(which: str, chosen: list[int]) -> None:
        losses, exact = _subset(scored[which], chosen)
        assert exact.mean() >= floor(losses)

    return prop


def test_t10_ceiling_on_real_losses(scored: dict[str, Scored]) -> None:
    ceiling_property(scored, ceiling_every_example)()


def test_t10_jensen_floor_on_real_losses(scored: dict[str, Scored]) -> None:
    jensen_property(scored, +1)()


def test_t10_exact_match_on_real_losses(scored: dict[str, Scored]) -> None:
    exact_property(scored, exact_match_floor)()


@pytest.mark.negative_control
def test_ceiling_with_the_mean_floor_is_falsified(
    scored: dict[str, Scored], expect_falsified: Callable[..., None]
) -> None:
    expect_falsified(ceiling_property(scored, ceiling_mean_floor))


@pytest.mark.negative_control
def test_jensen_reversed_is_falsified(
    scored: dict[str, Scored], expect_falsified: Callable[..., None]
) -> None:
    expect_falsified(jensen_property(scored, -1))


# ---------------------------------------------------------------------- random distributions
#: a response of 1-4 tokens over a 2-5 token vocabulary: logits per token, the target's index
RESPONSES = st.integers(1, 4).flatmap(
    lambda length: st.tuples(
        st.lists(
            st.lists(st.floats(-3.0, 3.0), min_size=2, max_size=5), min_size=length,
            max_size=length,
        ),
        st.lists(st.integers(0, 4), min_size=length, max_size=length),
    )
)


def _teacher_forced(response: tuple[list[list[float]], list[int]]) -> tuple[float, bool]:
    """CE (summed −log p of the targets) and whether every target is the unique arg-max."""
    logits, targets = response
    loss, exact = 0.0, True
    for row, target in zip(logits, targets, strict=True):
        values = np.asarray(row)
        probabilities = np.exp(values - values.max())
        probabilities /= probabilities.sum()
        chosen = target % values.size
        loss -= math.log(float(probabilities[chosen]))
        others = np.delete(probabilities, chosen)
        exact = exact and bool((others < probabilities[chosen]).all())
    return loss, exact


def exact_on_distributions(level: float) -> Callable[[], None]:
    @given(st.lists(RESPONSES, min_size=1, max_size=8))
    def prop(responses: list[tuple[list[list[float]], list[int]]]) -> None:
        scored = [_teacher_forced(r) for r in responses]
        losses = np.asarray([loss for loss, _ in scored])
        f_e = float(np.mean([exact for _, exact in scored]))
        assert f_e >= exact_level(level)(losses)

    return prop


def test_t10_exact_match_on_random_distributions() -> None:
    exact_on_distributions(math.log(2))()


@pytest.mark.negative_control
def test_exact_match_at_one_third_is_falsified(expect_falsified: Callable[..., None]) -> None:
    expect_falsified(exact_on_distributions(math.log(3)))


# ---------------------------------------------------------------------- random vectors
LOSSES = st.lists(st.floats(0.0, 20.0), min_size=1, max_size=30).map(np.asarray)


@given(LOSSES, st.floats(0.0, 1.0))
def test_t10_on_random_losses(losses: np.ndarray, below: float) -> None:
    """(a) with per-example floors l_i ≤ CE_i and with the common floor min CE_i, and (b)."""
    f_s = mean_probability(losses)
    assert f_s <= sampled_harm_ceiling(losses * below) + TOLERANCE
    assert f_s >= sampled_harm_floor(float(losses.mean())) - TOLERANCE
    assert THEOREM.evaluate(loss_floor=float(losses.min())) >= f_s - TOLERANCE


def test_random_losses_falsify_the_false_variants(expect_falsified: Callable[..., None]) -> None:
    @given(LOSSES)
    def reversed_jensen(losses: np.ndarray) -> None:
        assert mean_probability(losses) <= sampled_harm_floor(float(losses.mean())) + 1e-9

    @given(LOSSES)
    def mean_floor(losses: np.ndarray) -> None:
        assert mean_probability(losses) <= sampled_harm_ceiling([float(losses.mean())]) + 1e-9

    expect_falsified(reversed_jensen)
    expect_falsified(mean_floor)


# ---------------------------------------------------------------------- the check
def _records(values: Scored, step: int) -> HarmEvaluation:
    return HarmEvaluation(
        step=step,
        losses=[float(v) for v in values.losses],
        sampled_harm=values.sampled,
        exact_harm=values.exact_rate,
    )


def test_check_holds_on_the_proxies_measured_values(scored: dict[str, Scored]) -> None:
    records = [_records(scored["aligned"], 0), _records(scored["attacked"], 45)]
    floor = min(min(r.losses) for r in records) / 2
    check = check_harm_from_loss(records, floor=floor)
    assert check.status == "holds" and check.instances == 6, check.summary()


@pytest.mark.negative_control
def test_check_catches_a_proxy_off_by_a_little(scored: dict[str, Scored]) -> None:
    """A sampled harm computed as exp(−mean CE) (the Jensen floor itself, minus a little)
    and an exact-match rate one example short are both reported."""
    values = scored["attacked"]
    low = sampled_harm_floor(float(values.losses.mean())) * (1 - 1e-6)
    wrong = _records(values, 45).model_copy(update={"sampled_harm": low})
    assert check_harm_from_loss([wrong]).violations == 1
    short = exact_match_floor(values.losses) - 1 / values.losses.size
    fewer = _records(values, 45).model_copy(update={"exact_harm": max(0.0, short)})
    assert check_harm_from_loss([fewer]).violations >= 1
