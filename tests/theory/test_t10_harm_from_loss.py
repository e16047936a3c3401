"""T10 ``harm_from_loss``: the numeric helpers against hand-computed values, and bad input.

Negative control: a helper fed a negative loss or a non-positive φ raises ``AssumptionError``
(an ``HftaInputError``) naming the assumption, instead of returning a number.
"""

from __future__ import annotations

import math

import pytest

import theory
from theory.errors import AssumptionError, HftaInputError
from theory.theorems import harm_from_loss as t10


def test_the_theorem_is_catalogued_as_t10() -> None:
    assert t10.THEOREM in theory.catalogue()
    assert (t10.THEOREM.label, t10.THEOREM.name, t10.THEOREM.steps_kind) == (
        "T10",
        "harm_from_loss",
        None,
    )
    assert {a.name for a in t10.THEOREM.hypotheses} >= {"per_example_floors", "losses_nonnegative"}


def test_helpers_match_hand_computed_values() -> None:
    assert t10.sequence_probabilities([0.0, math.log(4)]).tolist() == pytest.approx([1.0, 0.25])
    assert t10.sampled_harm([0.0, math.log(4)]) == pytest.approx(0.625)
    assert t10.sampled_harm_ceiling([-3.0, 1.0]) == pytest.approx((1 + math.exp(-1)) / 2)
    assert t10.loss_floor_for(0.25) == pytest.approx(math.log(4))
    assert t10.sampled_harm_floor(math.log(4)) == pytest.approx(0.25)
    assert t10.exact_match_floor([0.1, 0.69, 0.7, 5.0]) == pytest.approx(0.5)
    assert t10.THEOREM.evaluate(loss_floor=-1.0) == pytest.approx(1.0)  # max(l, 0)


def test_the_floor_for_phi_is_exactly_where_the_common_ceiling_reaches_phi() -> None:
    for phi in (0.01, 0.1, 0.5, 0.9):
        level = t10.loss_floor_for(phi)
        assert t10.sampled_harm_ceiling([level]) == pytest.approx(phi)
        assert t10.sampled_harm_ceiling([level * 1.01]) < phi
        assert t10.sampled_harm_floor(level) == pytest.approx(phi)


@pytest.mark.negative_control
@pytest.mark.parametrize(
    ("call", "assumption"),
    [
        (lambda: t10.sampled_harm([0.5, -0.1]), "losses_nonnegative"),
        (lambda: t10.exact_match_floor([]), "n_at_least_one"),
        (lambda: t10.sampled_harm_ceiling([math.nan]), "floor_finite"),
        (lambda: t10.loss_floor_for(0.0), "phi_positive"),
        (lambda: t10.sampled_harm_floor(-1.0), "losses_nonnegative"),
    ],
)
def test_bad_input_names_the_assumption(call: object, assumption: str) -> None:
    with pytest.raises(AssumptionError, match=assumption) as raised:
        call()  # type: ignore[operator]
    assert isinstance(raised.value, HftaInputError)
