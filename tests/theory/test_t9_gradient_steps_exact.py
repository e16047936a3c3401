"""T9 ``gradient_steps_exact``: numbers, solver, multipliers, and a function attaining it.

The attaining function is built here as numbers (a one-dimensional β-smooth function whose
derivative is piecewise linear with slopes ±β), gradient descent is *run* on it, and the
measured progress f(x_0) − f(x_N) is compared with T9's bound: equal (the bound is attained,
so it cannot be lowered) and, as a negative control, above T9 with the last-step extra dropped.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from theory import catalogue
from theory import symbols as sym
from theory.errors import AssumptionError
from theory.theorems import clipped_sgd_progress as t2
from theory.theorems import gradient_steps_exact as t9

THM = t9.THEOREM


def progress(steps: int, eta: float, beta: float, gradient_bound: float) -> float:
    return -THM.evaluate(L0=0.0, G=gradient_bound, eta=eta, beta=beta, t=steps)


def test_catalogued_with_its_statement() -> None:
    assert THM in catalogue() or any(t.name == THM.name for t in catalogue())
    assert THM.label == "T9" and THM.steps_kind == "minimum"
    assert {"beta_smooth", "gradient_bounded_at_iterates", "gradient_step"} <= {
        a.name for a in THM.hypotheses
    }
    assert "Longrightarrow" in THM.latex()
    expected = sym.t * (sym.eta * sym.G**2 + sym.beta * sym.eta**2 * sym.G**2 / 4)
    assert sp.simplify(t9.PROGRESS - expected - sym.beta * sym.eta**2 * sym.G**2 / 4) == 0


def test_evaluate_and_one_step_equals_t2() -> None:
    assert THM.evaluate(L0=2.0, G=1.0, eta=0.5, beta=2.0, t=2) == pytest.approx(0.625)
    for eta in (0.1, 1.0, 3.0):  # one step: T1's lower side, the same as T2 with C = G
        t2_one = t2.THEOREM.evaluate(L0=0.0, G=1.5, C=1.5, eta=eta, beta=2.0, t=1)
        assert progress(1, eta, 2.0, 1.5) == pytest.approx(-t2_one)


def test_t9_is_below_t2_after_one_step() -> None:
    for steps in (2, 5, 10):
        t2_progress = -t2.THEOREM.evaluate(L0=0.0, G=1.0, C=1.0, eta=2.0, beta=1.0, t=steps)
        assert progress(steps, 2.0, 1.0, 1.0) < t2_progress
    ratio = -t2.THEOREM.evaluate(L0=0.0, G=1.0, C=1.0, eta=2.0, beta=1.0, t=10) / progress(
        10, 2.0, 1.0, 1.0
    )
    assert ratio == pytest.approx(40 / 31)


def test_steps_to_threshold() -> None:
    assert THM.steps_to_threshold(1.0, L0=2.0, G=1.0, eta=0.5, beta=2.0) == 2.0
    assert THM.steps_to_threshold(3.0, L0=2.0, G=1.0, eta=0.5, beta=2.0) == 0.0
    assert THM.steps_to_threshold(1.0, L0=2.0, G=0.0, eta=0.5, beta=2.0) == math.inf
    # the certified minimum: one step fewer does not reach tau, this many can
    for tau in (1.9, 1.0, -3.0):
        n = THM.steps_to_threshold(tau, L0=2.0, G=1.0, eta=0.5, beta=2.0)
        assert THM.evaluate(L0=2.0, G=1.0, eta=0.5, beta=2.0, t=n) <= tau
        if n > 1:
            assert THM.evaluate(L0=2.0, G=1.0, eta=0.5, beta=2.0, t=n - 1) > tau


@pytest.mark.parametrize(
    ("values", "assumption"),
    [
        ({"eta": 0.0}, "eta_positive"),
        ({"t": 0}, "t_at_least_one"),
        ({"G": -1.0}, "G_nonnegative"),
        ({"beta": -1.0}, "beta_nonnegative"),
    ],
)
def test_parameter_assumptions(values: dict[str, float], assumption: str) -> None:
    inputs = {"L0": 1.0, "G": 1.0, "eta": 0.5, "beta": 1.0, "t": 2, **values}
    with pytest.raises(AssumptionError, match=assumption):
        THM.evaluate(**inputs)


def test_multipliers_sum_to_the_bound() -> None:
    for steps in (1, 2, 3, 7):
        for eta, beta in ((0.1, 1.0), (2.0, 3.0)):
            weights = t9.multipliers(steps, eta=eta, beta=beta)
            assert len(weights) == steps
            assert sum(weights) * 1.5**2 == pytest.approx(progress(steps, eta, beta, 1.5))
    with pytest.raises(AssumptionError, match="t_at_least_one"):
        t9.multipliers(0, eta=1.0, beta=1.0)


def attaining_run(
    steps: int, eta: float, beta: float, gradient_bound: float
) -> tuple[float, np.ndarray, float]:
    """Gradient descent on the one-dimensional function that attains T9.

    f'(x) = G at every iterate x_k = −kηG (k < N); between x_{k+1} and x_k (k < N − 1) it
    rises with slope β to G + βηG/2 at the midpoint and falls back; on the last segment it
    rises with slope β from x_{N−1} down to x_N. f'(x) is piecewise linear, so the trapezoid
    rule on a grid containing every breakpoint integrates it exactly.

    Returns (f(x_0) − f(x_N), the gradients at the iterates x_0..x_N, the largest slope of f').
    """
    length = eta * gradient_bound
    ends = -length * np.arange(steps + 1)

    def derivative(x: np.ndarray) -> np.ndarray:
        out = np.full_like(x, gradient_bound)
        for k in range(steps):
            right, left = ends[k], ends[k + 1]
            inside = (x <= right) & (x >= left)
            last = k == steps - 1
            rise = beta * (right - x) if last else beta * np.minimum(right - x, x - left)
            out = np.where(inside, gradient_bound + rise, out)
        return out

    # run gradient descent on f' (it stays on the iterates the construction expects)
    x = 0.0
    gradients = []
    for _ in range(steps):
        g = float(derivative(np.array([x]))[0])
        gradients.append(g)
        x = x - eta * g
    gradients.append(float(derivative(np.array([x]))[0]))
    breakpoints = np.concatenate([ends, (ends[:-1] + ends[1:]) / 2])
    grid = np.unique(np.concatenate([np.linspace(ends[-1], 0.0, 4001), breakpoints]))
    values = derivative(grid)
    measured = float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(grid)))  # f(0) − f(x_N)
    slope = float(np.max(np.abs(np.diff(values) / np.diff(grid))))
    assert x == pytest.approx(ends[-1])
    return measured, np.array(gradients), slope


@pytest.mark.parametrize(("steps", "eta", "beta"), [(1, 0.5, 1.0), (3, 2.0, 1.0), (6, 0.3, 4.0)])
def test_gradient_descent_on_the_attaining_function_reaches_the_bound(
    steps: int, eta: float, beta: float
) -> None:
    measured, gradients, slope = attaining_run(steps, eta, beta, gradient_bound=1.5)
    assert np.all(np.abs(gradients[:-1]) <= 1.5 + 1e-12)  # the hypothesis at θ_0..θ_{N−1}
    assert slope <= beta * (1 + 1e-9)  # f' is β-Lipschitz: f is β-smooth
    assert measured == pytest.approx(progress(steps, eta, beta, 1.5), rel=1e-12)


@pytest.mark.negative_control
def test_the_attaining_function_breaks_a_smaller_bound() -> None:
    """T9 without its last-step extra βη²G²/4 is false: the same run exceeds it."""
    steps, eta, beta, gradient_bound = 4, 1.0, 2.0, 1.0
    measured, _, _ = attaining_run(steps, eta, beta, gradient_bound)
    smaller = float(
        (sym.t * t9.STEP_WORST).subs(
            {sym.t: steps, sym.eta: eta, sym.beta: beta, sym.G: gradient_bound}
        )
    )
    assert measured > smaller + 0.4
