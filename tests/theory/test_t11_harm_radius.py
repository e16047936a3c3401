"""T11 ``harm_radius``: the ceiling, the certified steps and the margin lemma as numbers.

Each helper is compared with a brute-force reading of its definition (count the radii, scan
the schedule), the margin lemma with the exact distance at which a linear margin crosses zero,
and bad inputs raise ``AssumptionError`` (an ``HftaInputError``). Negative controls: a margin
radius computed with L/2 overshoots the exact crossing distance; radii ×2 give a ceiling
below a harm that is reached.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory import catalogue
from theory.errors import AssumptionError, HftaInputError
from theory.theorems import harm_radius as t11

radius_values = st.one_of(
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False), st.just(math.inf)
)


def test_catalogued_with_its_statement() -> None:
    assert any(t.name == "harm_radius" and t.label == "T11" for t in catalogue())
    assert {"radius_is_lower_bound", "margins_lipschitz", "reachable_radius"} <= {
        a.name for a in t11.THEOREM.hypotheses
    }
    assert t11.THEOREM.evaluate(count=3.0, n=4.0) == 0.75
    assert "Longrightarrow" in t11.THEOREM.latex()


@given(st.lists(radius_values, min_size=1, max_size=30), st.floats(0.0, 12.0))
def test_ceiling_counts_radii_within_the_ball(radii: list[float], radius: float) -> None:
    expected = sum(1 for r in radii if r <= radius) / len(radii)
    assert t11.harm_ceiling(radii, radius) == pytest.approx(expected, abs=1e-15)


@given(
    st.lists(radius_values, min_size=1, max_size=20),
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20),
    st.floats(0.01, 1.0),
)
def test_certified_steps_is_the_first_step_whose_ceiling_reaches_phi(
    radii: list[float], increments: list[float], phi: float
) -> None:
    schedule = list(np.cumsum(increments))
    found = t11.certified_steps(radii, schedule, phi)
    reached = [t for t, r in enumerate([0.0, *schedule]) if t11.harm_ceiling(radii, r) >= phi]
    assert found == (reached[0] if reached else None)


def test_certified_steps_examples() -> None:
    radii = [0.5, 1.0, math.inf, 2.0]
    assert t11.certified_steps(radii, [0.4, 0.8, 1.2], 0.5) == 3
    assert t11.certified_steps(radii, [0.4, 0.8], 0.5) is None
    assert t11.certified_steps([0.0, 0.0, 1.0], [1.0], 0.5) == 0  # harmful at theta_0


@given(st.floats(-5.0, 5.0), st.floats(0.01, 5.0), st.floats(-3.0, 3.0))
def test_margin_radius_is_where_a_linear_margin_crosses_zero(
    margin: float, slope: float, other: float
) -> None:
    """m(θ_0 + s u) = m + L s for a unit direction u is L-Lipschitz and crosses 0 at s = −m/L:
    the lemma's radius is exactly that distance (and 0 for a positive margin)."""
    crossing = max(0.0, -margin / slope)
    assert t11.margin_radius([margin], [slope]) == pytest.approx(crossing, rel=1e-12)
    # the largest over several margins
    both = t11.margin_radius([margin, other], [slope, 1.0])
    assert both == pytest.approx(max(crossing, max(0.0, -other)), rel=1e-12)


def test_a_frozen_nonpositive_margin_is_never_crossed() -> None:
    assert t11.margin_radius([-1.0, 2.0], [0.0, 1.0]) == math.inf
    assert t11.margin_radius([0.0], [0.0]) == math.inf
    assert t11.margin_radius([1.0], [0.0]) == 0.0


def test_negative_control_half_lipschitz_overshoots_the_crossing() -> None:
    """With L/2 the radius is twice the distance at which the linear margin crosses zero: a
    point at the true crossing (+ε) is harmful yet inside the claimed radius."""
    margin, slope = -1.0, 2.0
    crossing = -margin / slope
    wrong = t11.margin_radius([margin], [slope / 2])
    assert wrong > crossing * 1.5
    assert margin + slope * (crossing * 1.01) > 0.0  # harmful inside the wrong radius


def test_negative_control_doubled_radii_undercount() -> None:
    radii = [0.5, 0.6, 0.7, 3.0]
    reached_harm = 0.75  # three examples reachable within R = 0.7
    assert t11.harm_ceiling(radii, 0.7) >= reached_harm
    assert t11.harm_ceiling([2 * r for r in radii], 0.7) < reached_harm


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: t11.harm_ceiling([], 1.0), "n_at_least_one"),
        (lambda: t11.harm_ceiling([-1.0], 1.0), "radius_nonnegative"),
        (lambda: t11.harm_ceiling([float("nan")], 1.0), "radius_nonnegative"),
        (lambda: t11.harm_ceiling([1.0], -0.5), "radius_nonnegative"),
        (lambda: t11.certified_steps([1.0], [1.0], 0.0), "phi_in_unit_interval"),
        (lambda: t11.certified_steps([1.0], [1.0], 1.5), "phi_in_unit_interval"),
        (lambda: t11.margin_radius([1.0], []), "margins_lipschitz"),
        (lambda: t11.margin_radius([-1.0], [-2.0]), "L_k_nonnegative"),
    ],
)
def test_bad_input_names_the_assumption(call: object, message: str) -> None:
    with pytest.raises(HftaInputError, match=message) as raised:
        call()  # type: ignore[operator]
    assert isinstance(raised.value, AssumptionError)
