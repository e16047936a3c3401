"""T7 ``stability_displacement`` against real torch losses and real displacements.

T7: if the capability loss g is β_g-smooth and ‖∇g(θ)‖ ≤ G_g at the original parameters θ,
then for every displacement δ

    |g(θ + δ) − g(θ)| ≤ G_g‖δ‖ + (β_g/2)‖δ‖²              (``THEOREM.evaluate``),

so every ‖δ‖ ≤ r(ε) (``certified_radius``) keeps |g(θ + δ) − g(θ)| ≤ ε.

Capability losses: the problems of ``empirical.testing`` (quadratics, least squares and the
non-convex Σ x_i² + 3 sin²(x_i)), whose global smoothness β_g is known, evaluated by torch in
float64; G_g = ‖∇g(θ)‖ by autograd at θ (T7's hypothesis is about θ only, so this constant is
exact). Displacements: what real ``torch.optim.SGD`` training moved θ by (``descend``, with
momentum drawn), a drawn direction, or the gradient's direction (ascent or descent), at norms
from 10⁻⁴ to 10² times 1 + ‖θ‖.

Rounding: the losses are float64; each inequality allows 8 ulp of |g(θ)| + |g(θ + δ)| plus,
at each end, ‖∇g‖ r + (β_g/2) r² with r = 8ε(‖θ‖ + ‖δ‖) (moving an evaluation point by its
rounding; the allowance ``empirical.certify`` uses for T1).

Negative controls: the bound without its curvature term (β_g = 0: first order only), and
the certified radius doubled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given, note
from hypothesis import strategies as st

from empirical.testing import GradientProblem, descend
from tests.properties._runs import MOMENTA, PROBLEMS
from theory import symbols as sym
from theory.theorem import lambdified
from theory.theorems import stability_displacement

EPSILON = float(np.finfo(np.float64).eps)
ULPS = 8.0
Bound = Callable[..., float]
Radius = Callable[..., float]


@dataclass(frozen=True)
class Displacement:
    """A capability loss g at θ, a displacement δ, and what torch measures there."""

    problem: GradientProblem
    kind: str
    theta: torch.Tensor
    delta: torch.Tensor

    def value_and_gradient(self, point: torch.Tensor) -> tuple[float, float]:
        """g(point) and ‖∇g(point)‖ (float64, autograd)."""
        leaf = point.detach().clone().requires_grad_(True)
        loss = self.problem.loss(leaf)
        (gradient,) = torch.autograd.grad(loss, leaf)
        return float(loss.detach()), float(gradient.norm())

    def change_and_allowance(self) -> tuple[float, float, float, float]:
        """(|g(θ + δ) − g(θ)|, the rounding allowance, G_g = ‖∇g(θ)‖, ‖δ‖)."""
        moved = self.theta + self.delta
        g0, gradient0 = self.value_and_gradient(self.theta)
        g1, gradient1 = self.value_and_gradient(moved)
        norm = float(self.delta.norm())
        beta = self.problem.smoothness
        radius = ULPS * EPSILON * (float(self.theta.norm()) + norm)
        allowance = ULPS * EPSILON * (abs(g0) + abs(g1))
        allowance += (gradient0 + gradient1) * radius + beta * radius**2
        return abs(g1 - g0), allowance, gradient0, norm


def _direction(vector: torch.Tensor) -> torch.Tensor:
    norm = vector.norm()
    if float(norm) == 0.0:
        unit = torch.zeros_like(vector)
        unit[0] = 1.0
        return unit
    scaled: torch.Tensor = vector / norm
    return scaled


@st.composite
def displacements(draw: st.DrawFn, *, largest: float | None = None) -> Displacement:
    """θ = the problem's θ_0 and δ from training, a drawn direction or the gradient's; with
    ``largest`` the norm is a drawn fraction of it (the radius property), else drawn."""
    problem = draw(PROBLEMS)
    theta = torch.as_tensor(problem.theta_0, dtype=torch.float64)
    kinds = ["drawn", "gradient"] if largest is not None else ["training", "drawn", "gradient"]
    kind = draw(st.sampled_from(kinds))
    if kind == "training":
        run = descend(problem, draw(st.integers(1, 20)), momentum=draw(MOMENTA))
        return Displacement(problem, kind, theta, run.iterate_tensors()[-1] - theta)
    if kind == "gradient":
        leaf = theta.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(problem.loss(leaf), leaf)
        direction = _direction(gradient.detach()) * draw(st.sampled_from([1.0, -1.0]))
    else:
        entries = st.floats(-1.0, 1.0, allow_nan=False)
        drawn = draw(st.lists(entries, min_size=problem.dimension, max_size=problem.dimension))
        direction = _direction(torch.tensor(drawn, dtype=torch.float64))
    if largest is None:
        scale = 10.0 ** draw(st.floats(-4.0, 2.0)) * (1.0 + float(theta.norm()))
    else:
        scale = largest * draw(st.floats(0.0, 1.0))
    return Displacement(problem, kind, theta, direction * scale)


# ---------------------------------------------------------------------- the bound
def bound_property(bound: Bound | None = None) -> Callable[[], None]:
    evaluate = bound or stability_displacement.THEOREM.evaluate

    @given(case=displacements())
    def prop(case: Displacement) -> None:
        note(f"{case.kind}: {case.problem!r}, delta = {case.delta.tolist()}")
        change, allowance, gradient, norm = case.change_and_allowance()
        certified = evaluate(G_g=gradient, beta_g=case.problem.smoothness, delta_norm=norm)
        note(f"|g(theta + delta) - g(theta)| = {change!r}, bound = {certified!r}")
        assert change <= certified + allowance

    return prop


def test_t7_bound_holds_for_real_displacements() -> None:
    bound_property()()


def _first_order_only(**values: float) -> float:
    """T7's bound with β_g = 0: G_g‖δ‖, the change to first order only."""
    expression = stability_displacement.BOUND.subs(sym.beta_g, 0)
    fn = lambdified(expression, (sym.G_g, sym.delta_norm))
    return float(fn(values["G_g"], values["delta_norm"]))


@pytest.mark.negative_control
def test_t7_without_the_curvature_term_is_refuted(expect_falsified: Callable[..., None]) -> None:
    expect_falsified(bound_property(_first_order_only))


# ---------------------------------------------------------------------- the radius
def radius_property(radius: Radius | None = None) -> Callable[[], None]:
    certified_radius = radius or stability_displacement.certified_radius

    @given(problem_case=displacements(largest=1.0), exponent=st.floats(-6.0, 1.0))
    def prop(problem_case: Displacement, exponent: float) -> None:
        problem, theta = problem_case.problem, problem_case.theta
        g0, gradient = problem_case.value_and_gradient(theta)
        eps = 10.0**exponent * (1.0 + abs(g0))
        r = certified_radius(eps=eps, G_g=gradient, beta_g=problem.smoothness)
        assert math.isfinite(r)  # β_g > 0 for every problem drawn
        # the drawn δ has norm u ∈ [0, 1]: scale it to u·r(ε)
        case = Displacement(problem, problem_case.kind, theta, problem_case.delta * r)
        change, allowance, _, norm = case.change_and_allowance()
        note(f"{case.kind}: {problem!r}, eps = {eps!r}, r = {r!r}, |delta| = {norm!r}")
        note(f"|g(theta + delta) - g(theta)| = {change!r}")
        assert change <= eps + allowance

    return prop


def test_t7_certified_radius_keeps_real_losses_stable() -> None:
    radius_property()()


def _doubled_radius(*, eps: float, G_g: float, beta_g: float) -> float:
    return 2.0 * stability_displacement.certified_radius(eps=eps, G_g=G_g, beta_g=beta_g)


@pytest.mark.negative_control
def test_t7_with_the_radius_doubled_is_refuted(expect_falsified: Callable[..., None]) -> None:
    expect_falsified(radius_property(_doubled_radius))
