"""T6 on geometric update sequences: after step K the update norms contract by at most c,
the directions are random or adversarial (steepest descent on the loss), and the loss has
‖∇L‖ ≤ G everywhere (a linear loss, logistic regression). Every L_{K+n} must stay above the
n-step bound and the every-step floor; the same check must falsify a floor that forgets the
geometric sum and one that uses 1 − c² (negative controls).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from theory.theorems import contraction_tail

Array = npt.NDArray[np.float64]
FIND = settings(max_examples=3000, database=None, phases=[Phase.generate])

#: (seed, loss family, n steps, c, directions, ratios)
tail_cases = st.tuples(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["linear", "logistic"]),
    st.integers(1, 80),
    st.floats(0.0, 0.99),
    st.sampled_from(["random", "descent"]),
    st.sampled_from(["exact", "random"]),
)
Floor = Callable[[float, float, float, float], float]  # (L_K, u_K, c, G) -> floor


def theory_floor(L_K: float, u_K: float, c: float, G: float) -> float:
    result = contraction_tail.tail_bound(L_K=L_K, u_K=u_K, c=c, G=G, threshold=L_K - 1.0)
    assert result.floor == contraction_tail.THEOREM.evaluate(L_K=L_K, u_K=u_K, c=c, G=G)
    return result.floor


def _lipschitz_loss(
    rng: np.random.Generator, family: str, dim: int
) -> tuple[Callable[[Array], float], Callable[[Array], Array], float]:
    if family == "linear":
        w = rng.normal(size=dim)
        return (lambda th: float(w @ th)), (lambda th: w), float(np.linalg.norm(w))
    n = int(rng.integers(5, 30))
    X = rng.normal(size=(n, dim)) * rng.uniform(0.5, 3)
    y = rng.choice([-1.0, 1.0], size=n)

    def loss(th: Array) -> float:
        return float(np.mean(np.logaddexp(0.0, -y * (X @ th))))

    def grad(th: Array) -> Array:
        z = -y * (X @ th)
        return np.asarray(-(X.T @ (y * (0.5 * (1 + np.tanh(z / 2))))) / n)

    return loss, grad, float(np.mean(np.linalg.norm(X, axis=1)))


def _tail_respects(floor_of: Floor, case: tuple[Any, ...]) -> bool:
    """Run n contracting updates from θ_K; every L_{K+n} ≥ the n-step bound (theory) and
    ≥ ``floor_of``; a certified floor above τ means τ is never reached."""
    seed, family, steps, c, directions, ratios = case
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(1, 6))
    loss, grad, G = _lipschitz_loss(rng, family, dim)
    theta = rng.normal(size=dim)
    L_K = loss(theta)
    u_K = float(rng.uniform(0.01, 2.0))
    floor = floor_of(L_K, u_K, c, G)
    norm = u_K
    for n in range(1, steps + 1):
        if directions == "descent":
            g = grad(theta)
            direction = -g / max(float(np.linalg.norm(g)), 1e-300)
        else:
            direction = rng.normal(size=dim)
            direction /= np.linalg.norm(direction)
        theta = theta + norm * direction
        norm *= c if ratios == "exact" else c * float(rng.uniform(0, 1))
        value = loss(theta)
        tol = 1e-9 * (1 + abs(value) + abs(L_K))
        horizon = contraction_tail.THEOREM.horizon(L_K=L_K, u_K=u_K, c=c, G=G, n=n)
        assert value >= horizon - tol  # the n-step form (theory's, always)
        if value < floor - tol:
            return False
    return True


@given(case=tail_cases)
def test_t6_floor_holds_on_contracting_update_sequences(case: tuple[Any, ...]) -> None:
    assert _tail_respects(theory_floor, case)


def test_t6_certificate_and_tightness_on_a_linear_loss() -> None:
    """Steepest descent on L = wᵀθ with ratio exactly c approaches the floor from above and
    never crosses it; a threshold below the floor is certified never reached."""
    w = np.array([3.0, 4.0])  # G = 5
    c, u_K = 0.8, 0.5
    floor = theory_floor(0.0, u_K, c, 5.0)
    assert floor == pytest.approx(-5.0 * 0.5 / 0.2)
    theta, norm = np.zeros(2), u_K
    for _ in range(400):
        theta = theta - norm * w / 5.0
        norm *= c
    assert floor <= float(w @ theta) <= floor + 1e-9
    certificate = contraction_tail.tail_bound(L_K=0.0, u_K=u_K, c=c, G=5.0, threshold=-12.6)
    assert certificate.certifies_every_step and certificate.margin == pytest.approx(0.1)
    assert contraction_tail.THEOREM.steps_to_threshold(
        -12.6, L_K=0.0, u_K=u_K, c=c, G=5.0
    ) == float("inf")


@pytest.mark.negative_control
@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda L_K, u_K, c, G: L_K - G * u_K, id="first_step_only"),
        pytest.param(lambda L_K, u_K, c, G: L_K - G * u_K / (1 - c**2), id="one_minus_c_squared"),
    ],
)
def test_negative_control_t6_wrong_floor_is_falsified(wrong: Floor) -> None:
    find(tail_cases, lambda case: not _tail_respects(wrong, case), settings=FIND)
