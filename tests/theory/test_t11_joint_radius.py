"""T11 (iv)-(v): the curvature radius, the bound on ‖Σ_S g_i‖, the joint radius and the first
step beyond a radius, as numbers.

Each helper is compared with an exact answer on instances where it is known: the curvature
radius with the root of the worst-case quadratic −a + ‖g‖s + βs²/2; ``gram_sum_bound`` with
the brute-force maximum over every set of k vectors; ``joint_radius`` with the exact smallest
displacement that makes every one of n examples positive when the combined margins are the
worst-case quadratics D_i(Δ) = −a_i + ⟨g_i, Δ⟩ + β_i‖Δ‖²/2 (a convex program, cvxpy); and
``steps_beyond`` with a scan of the schedule. Negative controls: the joint radius with the
remainder dropped, or with U_k halved, overshoots the achieved distance on such instances; a
bound without the factor √k falls below the brute-force maximum.

(vii) ``lora_reach``: compared with the exact maximum of s b (a_0 + x) over b² + x² ≤ R²
(a dense scan of the quarter circle): never below it, at most 2/√3 above it, and equal to it
in the first-order limit; negative control: the reach without the R²/2 term falls below the
exact maximum once R is comparable with a_0.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.errors import AssumptionError
from theory.theorems import harm_radius as t11

constants = st.one_of(st.just(0.0), st.floats(1e-3, 50.0))


@given(st.floats(0.0, 5.0), constants, constants)
def test_curvature_radius_is_the_root_of_the_worst_case_quadratic(
    deficit: float, norm: float, curvature: float
) -> None:
    """At s = r the worst case −a + ‖g‖ s + β s²/2 reaches 0 (and is negative before)."""
    r = t11.curvature_radius(deficit, norm, curvature)
    if norm == 0.0 and curvature == 0.0 and deficit > 0.0:
        assert r == math.inf
        return
    assert -deficit + norm * r + curvature * r**2 / 2 == pytest.approx(0.0, abs=1e-9)
    if r > 0:
        s = 0.999 * r
        assert -deficit + norm * s + curvature * s**2 / 2 < 0.0


def test_curvature_radius_examples_and_bad_input() -> None:
    assert t11.curvature_radius(2.0, 4.0, 0.0) == pytest.approx(0.5)  # first order: a/g
    assert t11.curvature_radius(1.5, 1.0, 8.0) == pytest.approx(0.5)
    assert t11.curvature_radius(0.0, 1.0, 1.0) == 0.0
    with pytest.raises(AssumptionError):
        t11.curvature_radius(1.0, -1.0, 0.0)
    with pytest.raises(AssumptionError):
        t11.curvature_radius(1.0, 1.0, math.nan)


def _largest_sum(vectors: np.ndarray, k: int) -> float:
    return max(
        float(np.linalg.norm(vectors[list(s)].sum(axis=0)))
        for s in itertools.combinations(range(len(vectors)), k)
    )


vectors = st.integers(2, 6).flatmap(
    lambda n: st.lists(
        st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3), min_size=n, max_size=n
    )
)


@given(vectors, st.data())
def test_gram_sum_bound_bounds_every_set_of_k(rows: list[list[float]], data: st.DataObject) -> None:
    g = np.array(rows)
    k = data.draw(st.integers(1, len(g)))
    gram = g @ g.T
    assert t11.gram_sum_bound(gram, k) >= _largest_sum(g, k) - 1e-9


def test_negative_control_sqrt_lambda_without_k_is_not_a_bound() -> None:
    """Three aligned vectors: ‖Σ‖ = 3, √λ_max = √3 alone would be too small."""
    g = np.ones((3, 2))
    gram = g @ g.T
    assert math.sqrt(np.linalg.eigvalsh(gram)[-1]) < _largest_sum(g, 3)
    assert t11.gram_sum_bound(gram, 3) == pytest.approx(_largest_sum(g, 3))


def _exact_distance(a: np.ndarray, g: np.ndarray, beta: np.ndarray) -> float:
    """A distance at which −a_i + ⟨g_i, Δ⟩ + β_i ‖Δ‖²/2 ≥ 0 for every i is achieved: the
    shortest Δ of the linear problem (β = 0, a convex program, cvxpy), then the first point
    along its direction where the quadratic constraints hold (exact for β = 0; an upper bound
    on the shortest such Δ otherwise, which is all a lower bound must stay under)."""
    import cvxpy as cp

    delta = cp.Variable(g.shape[1])
    squares = cp.sum_squares(delta)  # type: ignore[attr-defined]
    problem = cp.Problem(cp.Minimize(squares), [g @ delta >= a])  # type: ignore[list-item]
    problem.solve()  # type: ignore[no-untyped-call]
    if delta.value is None:
        return math.inf
    length = float(np.linalg.norm(delta.value))
    direction = np.asarray(delta.value) / max(length, 1e-300)
    for s in np.linspace(0.0, length * 1.001, 20001):
        if np.all(-a + g @ (s * direction) + beta * s**2 / 2 >= -1e-9):
            return float(s)
    return length


instances = st.integers(1, 4).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0.1, 3.0), min_size=n, max_size=n),
        st.lists(st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4), min_size=n, max_size=n),
        st.lists(st.floats(0.0, 4.0), min_size=n, max_size=n),
    )
)


def _radius_and_exact(
    instance: tuple[list[float], list[list[float]], list[float]],
) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray]:
    a, g, beta = (np.array(x) for x in instance)
    return (
        t11.joint_radius(a, g @ g.T, beta, len(a)),
        _exact_distance(a, g, beta),
        a,
        g,
        beta,
    )


@settings(max_examples=25)
@given(instances)
def test_joint_radius_never_exceeds_the_exact_distance(
    instance: tuple[list[float], list[list[float]], list[float]],
) -> None:
    """On worst-case quadratic margins, no displacement shorter than the joint radius makes
    all n examples positive: the joint radius is ≤ an achievable distance."""
    radius, exact, *_ = _radius_and_exact(instance)
    assert radius <= exact * (1 + 1e-6) + 1e-9


def test_negative_controls_remainder_dropped_or_u_halved_overshoot() -> None:
    """Two orthogonal unit gradients, a = 1 each: with β = 0 the achieved distance is √2 and
    the joint radius √2 (tight); U/2 would claim 2√2. With β = 4 the achieved distance is
    smaller and the radius without the remainder (√2) exceeds it."""
    a, g = np.ones(2), np.eye(2)
    exact = _exact_distance(a, g, np.zeros(2))
    assert exact == pytest.approx(math.sqrt(2), rel=1e-3)
    radius = t11.joint_radius(a, g @ g.T, [0.0, 0.0], 2)
    assert radius == pytest.approx(math.sqrt(2), rel=1e-9)
    halved = 2.0 / (t11.gram_sum_bound(g @ g.T, 2) / 2)
    assert halved > exact * 1.5
    curved = np.array([4.0, 4.0])
    exact_curved = _exact_distance(a, g, curved)
    assert t11.joint_radius(a, g @ g.T, curved, 2) <= exact_curved + 1e-9
    assert t11.joint_radius(a, g @ g.T, [0.0, 0.0], 2) > exact_curved * 1.2


def test_flip_radius_takes_the_larger_valid_radius() -> None:
    """Aligned gradients: the union's k-th curvature radius beats the joint one; orthogonal
    gradients: the joint one wins; fewer examples than k: never."""
    aligned = np.ones((2, 2)) * 1.0
    a = [1.0, 3.0]
    union = sorted(t11.curvature_radius(x, 1.0, 0.0) for x in a)[1]
    assert t11.flip_radius(a, aligned, [0.0, 0.0], 2) >= union
    orthogonal = np.eye(2)
    assert t11.flip_radius([1.0, 1.0], orthogonal, [0.0, 0.0], 2) == pytest.approx(math.sqrt(2))
    assert t11.flip_radius([1.0], [[1.0]], [0.0], 2) == math.inf
    assert t11.flip_radius([1.0], [[1.0]], [0.0], 0) == 0.0


@given(st.floats(0.0, 5.0), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20))
def test_steps_beyond_is_the_first_step_past_the_radius(
    radius: float, increments: list[float]
) -> None:
    schedule = list(np.cumsum(increments))
    found = t11.steps_beyond(radius, schedule)
    past = [t for t, r in enumerate([0.0, *schedule]) if r > radius]
    assert found == (past[0] if past else None)


# --------------------------------------------------------------------------- (vi) sampled harm
@given(
    st.lists(st.floats(0.0, 6.0), min_size=1, max_size=6),
    st.floats(0.0, 5.0),
    st.floats(0.0, 20.0),
    st.floats(0.05, 0.95),
)
def test_sampled_radius_is_where_the_t10_cap_reaches_phi(
    losses: list[float], norm: float, curvature: float, phi: float
) -> None:
    """Below the radius T10's cap on the worst-case losses CE_i − ‖g‖ s − β s²/2 (which the
    floors equal) stays under φ; just beyond it, it does not (a scan of the exact cap)."""
    n = len(losses)
    g, beta = [norm] * n, [curvature] * n

    def cap(s: float) -> float:
        return float(np.mean([math.exp(-max(c - norm * s - curvature * s**2 / 2, 0.0))
                              for c in losses]))

    radius = t11.sampled_radius(losses, g, beta, phi)
    assert t11.sampled_ceiling(losses, g, beta, 0.3) == pytest.approx(cap(0.3), rel=1e-12)
    if radius == math.inf:
        assert norm == 0.0 and curvature == 0.0
        return
    assert cap(radius) < phi + 1e-9 or radius == 0.0
    assert cap(radius * (1 + 1e-6) + 1e-9) >= phi - 1e-9


def test_negative_control_the_cap_without_remainder_is_below_the_worst_case() -> None:
    """With curvature, the first-order floors CE − ‖g‖ s overstate the loss: their cap falls
    below the sampled harm of the worst-case losses at the same distance."""
    losses, g, beta, s = [3.0, 3.0], [1.0, 1.0], [4.0, 4.0], 1.0
    worst = float(np.mean([math.exp(-max(c - 1.0 * s - 4.0 * s**2 / 2, 0.0)) for c in losses]))
    assert t11.sampled_ceiling(losses, g, beta, s) == pytest.approx(worst)
    assert t11.sampled_ceiling(losses, g, [0.0, 0.0], s) < worst / 2


# --------------------------------------------------------------------------- (vii) LoRA reach
def _exact_lora_maximum(radius: float, a0: float, scale: float) -> float:
    """max of s b (a_0 + x) over b, x ≥ 0 with b² + x² ≤ R² (on the circle: 20,001 angles)."""
    angles = np.linspace(0.0, math.pi / 2, 20_001)
    values = scale * radius * np.cos(angles) * (a0 + radius * np.sin(angles))
    return float(values.max())


@given(st.floats(1e-4, 1e3), st.floats(1e-3, 10.0), st.floats(0.1, 8.0))
def test_lora_reach_bounds_the_exact_maximum_within_two_over_root_three(
    radius: float, a0: float, scale: float
) -> None:
    reach, exact = t11.lora_reach(radius, a0, scale), _exact_lora_maximum(radius, a0, scale)
    assert exact <= reach * (1 + 1e-12)
    assert reach <= 2 / math.sqrt(3) * exact * (1 + 1e-6)


def test_lora_reach_examples_and_bad_input() -> None:
    assert t11.lora_reach(0.0, 0.8, 2.0) == 0.0
    assert t11.lora_reach(2.0, 1.0, 2.0) == pytest.approx(2 * (2 + 2))
    small = t11.lora_reach(1e-6, 0.8, 2.0)
    assert small == pytest.approx(2 * 0.8 * 1e-6, rel=1e-5)  # first order: s a_0 R
    for bad in ((-1.0, 1.0, 1.0), (1.0, -0.5, 1.0), (1.0, 1.0, -2.0), (math.nan, 1.0, 1.0)):
        with pytest.raises(AssumptionError):
            t11.lora_reach(*bad)


@pytest.mark.negative_control
def test_negative_control_lora_reach_first_order_only_is_below_the_maximum() -> None:
    """s a_0 R (the R²/2 term dropped) is not a bound: at R = a_0 the exact maximum is larger."""
    exact = _exact_lora_maximum(1.0, 1.0, 2.0)
    first_order = 2.0 * 1.0 * 1.0  # s a_0 R at s = 2, a_0 = R = 1
    assert exact > first_order
