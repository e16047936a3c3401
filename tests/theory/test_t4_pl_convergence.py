"""T4 on real PL problems: gradient descent with η ≤ 1/β on strongly convex quadratics and on
least squares (full rank, and rank deficient: PL without strong convexity).

Every L_t must satisfy L_t − L* ≤ (1 − ημ)^t (L_0 − L*), and the loss must reach every
τ > L* within theory's certified maximum number of steps. The same checks must falsify the
wrong contraction (1 − 2ημ)^t and the steps it would certify (negative controls).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from theory.theorems import pl_convergence

Array = npt.NDArray[np.float64]
FIND = settings(max_examples=3000, database=None, phases=[Phase.generate])

#: (seed, family, steps, eta * beta, threshold fraction)
pl_cases = st.tuples(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["strongly_convex", "least_squares", "rank_deficient"]),
    st.integers(1, 150),
    st.floats(0.05, 1.0),
    st.floats(0.01, 0.99),
)
ExcessBound = Callable[[float, float, float, int], float]  # (gap, eta, mu, t) -> bound
MaxSteps = Callable[[float, dict[str, float]], float]


def theory_excess(gap: float, eta: float, mu: float, t: int) -> float:
    return pl_convergence.THEOREM.evaluate(L0=gap, L_star=0.0, eta=eta, mu=mu, t=t)


def theory_max_steps(tau: float, values: dict[str, float]) -> float:
    return pl_convergence.THEOREM.steps_to_threshold(tau, **values)


def pl_problem(rng: np.random.Generator, family: str) -> tuple[Array, Array, Array, float]:
    """(Hessian H, gradient map data, θ*, L*) for ``L(θ) = L* + ½(θ−θ*)ᵀH(θ−θ*)``; for least
    squares H = XᵀX/n and L* the least-squares residual."""
    dim = int(rng.integers(2, 7))
    if family == "strongly_convex":
        Q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        beta = float(rng.uniform(0.5, 10))
        eig = rng.uniform(float(rng.uniform(0.01, 1.0)) * beta, beta, size=dim)
        eig[0] = beta
        H = (Q * eig) @ Q.T
        return (H + H.T) / 2, np.zeros(0), rng.normal(size=dim), float(rng.uniform(-2, 2))
    n = int(rng.integers(dim + 1, 30))
    rank = dim if family == "least_squares" else int(rng.integers(1, dim))
    X = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, dim))
    y = rng.normal(size=n)
    theta_star = np.linalg.lstsq(X, y, rcond=None)[0]
    L_star = float(np.sum((X @ theta_star - y) ** 2) / (2 * n))
    return X.T @ X / n, np.concatenate((X.ravel(), y)), theta_star, L_star


def _gd_within(excess_bound: ExcessBound, max_steps: MaxSteps, case: tuple[Any, ...]) -> bool:
    """Gradient descent with η = (ηβ)/β: every excess loss within ``excess_bound`` and the
    threshold reached within ``max_steps``."""
    seed, family, steps, eta_beta, fraction = case
    rng = np.random.default_rng(seed)
    H, _, theta_star, L_star = pl_problem(rng, family)
    eig = np.linalg.eigvalsh(H)
    beta = float(eig[-1])
    positive = eig[eig > 1e-9 * beta]
    mu = float(positive[0])  # PL constant: the smallest non-zero eigenvalue
    eta = eta_beta / beta
    theta = theta_star + rng.normal(size=H.shape[0]) * rng.uniform(0.1, 5)

    def excess(th: Array) -> float:  # L(θ) − L*, exactly, without cancellation
        e = th - theta_star
        return float(0.5 * e @ H @ e)

    gap = excess(theta)
    if gap <= 1e-12:
        return True
    tau_excess = fraction * gap
    t_max = max_steps(
        L_star + tau_excess,
        {"L0": L_star + gap, "L_star": L_star, "eta": eta, "mu": mu, "beta": beta},
    )
    check_hit = t_max <= 3000  # longer runs cost more than they add
    horizon = int(max(steps, t_max if check_hit else 0))
    first_hit = math.inf
    for t in range(horizon + 1):
        value = excess(theta)
        if t <= steps and value > excess_bound(gap, eta, mu, t) + 1e-12 * (1 + gap):
            return False
        if value <= tau_excess and first_hit == math.inf:
            first_hit = t
        theta = theta - eta * (H @ (theta - theta_star))
    return first_hit <= t_max or not check_hit


@given(case=pl_cases)
def test_t4_holds_for_gradient_descent_on_pl_problems(case: tuple[Any, ...]) -> None:
    assert _gd_within(theory_excess, theory_max_steps, case)


def wrong_excess(gap: float, eta: float, mu: float, t: int) -> float:
    return float((1 - 2 * eta * mu) ** t * gap)


def wrong_max_steps(tau: float, values: dict[str, float]) -> float:
    q = 1 - 2 * values["eta"] * values["mu"]
    ratio = (tau - values["L_star"]) / (values["L0"] - values["L_star"])
    return 1.0 if q <= 0 else float(math.ceil(math.log(ratio) / math.log(q)))


def test_t4_known_numbers_on_the_slowest_mode() -> None:
    """H = diag(1, 4), η = 1/4, all mass on the slow mode: the excess is (3/4)^{2t} of the
    start, under theory's (1 − ημ)^t = (3/4)^t and above the wrong (1 − 2ημ)^t = (1/2)^t."""
    H = np.diag([1.0, 4.0])
    theta = np.array([2.0, 0.0])
    gap = 0.5 * theta @ H @ theta
    for t in range(1, 20):
        theta = theta - 0.25 * (H @ theta)
        excess = 0.5 * theta @ H @ theta
        assert excess == pytest.approx(0.75 ** (2 * t) * gap, rel=1e-12)
        assert excess <= theory_excess(gap, 0.25, 1.0, t)
        assert excess > wrong_excess(gap, 0.25, 1.0, t)
    values = {"L0": 2.0, "L_star": 0.0, "eta": 0.25, "mu": 1.0, "beta": 4.0}
    assert theory_max_steps(2.0 * 0.75**5, values) == 5.0


@pytest.mark.negative_control
def test_negative_control_t4_twice_the_rate_is_falsified() -> None:
    find(pl_cases, lambda case: not _gd_within(wrong_excess, theory_max_steps, case), settings=FIND)


@pytest.mark.negative_control
def test_negative_control_t4_steps_from_twice_the_rate_are_falsified() -> None:
    find(pl_cases, lambda case: not _gd_within(theory_excess, wrong_max_steps, case), settings=FIND)
