"""T1, T2, T7 on real smooth losses whose smoothness constant is known exactly.

Losses: random quadratics ½θᵀHθ + bᵀθ (convex, indefinite or concave; β = max |eig H|) and
logistic regression (1/n)Σ log(1 + exp(−y_i x_iᵀw) (β = ‖X‖₂²/(4n)). Every property is a
function of an implementation (a bound or an envelope); the test runs it with theory's and
hypothesis searches the same property with a deliberately wrong version that must be caught
(negative controls).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from theory.theorems import clipped_sgd_progress, smoothness_sandwich, stability_displacement

Array = npt.NDArray[np.float64]
FIND = settings(max_examples=3000, database=None, phases=[Phase.generate])
FAMILIES = ("convex", "indefinite", "concave", "logistic")


@dataclass(frozen=True)
class SmoothLoss:
    """A loss with its gradient and its exact smoothness constant β (shape (dim,) inputs)."""

    loss: Callable[[Array], float]
    grad: Callable[[Array], Array]
    beta: float
    dim: int
    hessian: Array | None  # for quadratics


def random_loss(rng: np.random.Generator, family: str) -> SmoothLoss:
    dim = int(rng.integers(2, 7))
    if family == "logistic":
        n = int(rng.integers(5, 40))
        X = rng.normal(size=(n, dim)) * rng.uniform(0.2, 3.0)
        y = rng.choice([-1.0, 1.0], size=n)
        beta = float(np.linalg.norm(X, 2) ** 2 / (4 * n))

        def loss(w: Array) -> float:
            return float(np.mean(np.logaddexp(0.0, -y * (X @ w))))

        def grad(w: Array) -> Array:
            z = -y * (X @ w)
            return np.asarray(-(X.T @ (y * (0.5 * (1 + np.tanh(z / 2))))) / n)

        return SmoothLoss(loss, grad, beta, dim, None)
    beta = float(rng.uniform(0.1, 20.0))
    low, high = {"convex": (0.0, 1.0), "indefinite": (-1.0, 1.0), "concave": (-1.0, -0.5)}[family]
    eig = rng.uniform(low, high, size=dim) * beta
    eig[0] = beta * (high if abs(high) >= abs(low) else low)  # max |eig| = beta exactly
    Q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    H = (Q * eig) @ Q.T
    H = (H + H.T) / 2
    b = rng.normal(size=dim) * rng.uniform(0.1, 5.0)

    def qloss(w: Array) -> float:
        return float(0.5 * w @ H @ w + b @ w)

    def qgrad(w: Array) -> Array:
        return np.asarray(H @ w + b)

    return SmoothLoss(qloss, qgrad, float(np.max(np.abs(eig))), dim, H)


def _tol(*values: float) -> float:
    return 1e-9 * (1.0 + sum(abs(v) for v in values))


# ---------------------------------------------------------------------- T1
Sides = Callable[[float, float, float, float], tuple[float, float]]
t1_cases = st.tuples(
    st.integers(0, 2**32 - 1),
    st.sampled_from(FAMILIES),
    st.floats(1e-3, 3.0),
    st.sampled_from(["random", "top_eigenvector", "gradient"]),
)


def theory_sides(L0: float, gdot: float, beta: float, delta_norm: float) -> tuple[float, float]:
    values = {"L0": L0, "gdot": gdot, "beta": beta, "delta_norm": delta_norm}
    thm = smoothness_sandwich.THEOREM
    return thm.evaluate(**values), thm.upper(**values)


def _sandwich_holds(sides: Sides, case: tuple[int, str, float, str]) -> bool:
    """L(θ+Δ) lies between the two sides given by ``sides`` on a random smooth loss."""
    seed, family, scale, direction = case
    rng = np.random.default_rng(seed)
    f = random_loss(rng, family)
    theta = rng.normal(size=f.dim)
    if direction == "top_eigenvector" and f.hessian is not None:
        eig, vec = np.linalg.eigh(f.hessian)
        delta = vec[:, int(np.argmax(np.abs(eig)))]
    elif direction == "gradient":
        delta = -f.grad(theta)
    else:
        delta = rng.normal(size=f.dim)
    delta = delta / max(np.linalg.norm(delta), 1e-300) * scale
    L0, L1 = f.loss(theta), f.loss(theta + delta)
    gdot = float(f.grad(theta) @ delta)
    norm = float(np.linalg.norm(delta))
    lower, upper = sides(L0, gdot, f.beta, norm)
    tol = _tol(L0, L1, f.beta * norm**2)
    kappa = smoothness_sandwich.segment_curvature(L0=L0, L1=L1, gdot=gdot, delta_norm=norm)
    assert abs(kappa) <= f.beta * (1 + 1e-6) + 2 * tol / norm**2  # |κ| ≤ β (T1, other form)
    return lower - tol <= L1 <= upper + tol


@given(case=t1_cases)
def test_t1_sandwich_holds_on_random_smooth_losses(case: tuple[int, str, float, str]) -> None:
    assert _sandwich_holds(theory_sides, case)


def test_t1_is_tight_along_the_extreme_eigenvector() -> None:
    """On a quadratic, Δ along the eigenvector of eigenvalue ±β makes |κ| = β exactly."""
    for family, sign in (("convex", 1.0), ("concave", -1.0)):
        f = random_loss(np.random.default_rng(7), family)
        assert f.hessian is not None
        eig, vec = np.linalg.eigh(f.hessian)
        delta = vec[:, int(np.argmax(np.abs(eig)))] * 0.3
        theta = np.ones(f.dim)
        kappa = smoothness_sandwich.segment_curvature(
            L0=f.loss(theta),
            L1=f.loss(theta + delta),
            gdot=float(f.grad(theta) @ delta),
            delta_norm=float(np.linalg.norm(delta)),
        )
        assert kappa == pytest.approx(sign * f.beta, rel=1e-9)


@pytest.mark.negative_control
@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(
            lambda L0, g, b, n: (L0 + g - b * n**2 / 4, L0 + g + b * n**2 / 4), id="beta_over_4"
        ),
        pytest.param(lambda L0, g, b, n: (L0 + g, L0 + g + b * n**2 / 2), id="lower_drops_beta"),
        pytest.param(lambda L0, g, b, n: (L0 + g - b * n**2 / 2, L0 + g), id="upper_drops_beta"),
    ],
)
def test_negative_control_t1_wrong_sandwich_is_falsified(wrong: Sides) -> None:
    find(t1_cases, lambda case: not _sandwich_holds(wrong, case), settings=FIND)


# ---------------------------------------------------------------------- T2
#: (seed, family, steps, schedule, noise, clip fraction, momentum variant)
t2_cases = st.tuples(
    st.integers(0, 2**32 - 1),
    st.sampled_from(FAMILIES),
    st.integers(1, 30),
    st.sampled_from(["constant", "warmup_cosine", "random"]),
    st.sampled_from([0.0, 0.3, 2.0]),
    st.floats(0.05, 2.0),
    st.sampled_from(["none", "heavy_ball", "nesterov"]),
)
T2Envelope = Callable[..., Array]


def _schedule(rng: np.random.Generator, kind: str, steps: int, peak: float) -> Array:
    if kind == "constant":
        return np.full(steps, peak)
    if kind == "random":
        return peak * rng.uniform(0.05, 1.0, size=steps)
    warm = max(1, steps // 10)
    s = np.arange(steps)
    cosine = 0.5 * (1 + np.cos(np.pi * np.clip(s - warm, 0, None) / max(steps - warm, 1)))
    return np.asarray(peak * np.where(s < warm, (s + 1) / warm, np.maximum(cosine, 1e-3)))


def _clipped_sgd_respects_envelope(envelope: T2Envelope, case: tuple[Any, ...]) -> bool:
    """Run clipped SGD (numpy, PyTorch's momentum convention) on a random smooth loss and
    check every L_t against ``envelope`` with G = max ‖∇L(θ_s)‖ over the iterates."""
    seed, family, steps, kind, noise, clip_fraction, variant = case
    rng = np.random.default_rng(seed)
    f = random_loss(rng, family)
    theta = rng.normal(size=f.dim)
    g0 = float(np.linalg.norm(f.grad(theta)))
    C = max(clip_fraction * g0, 1e-3)
    peak = float(rng.uniform(0.01, 1.0)) / max(f.beta, 1e-3)
    rates = _schedule(rng, kind, steps, peak)
    momentum = {"none": 0.0, "heavy_ball": 0.9, "nesterov": 0.5}[variant]
    losses, grad_norms = [f.loss(theta)], []
    buffer = np.zeros(f.dim)
    for s, eta in enumerate(rates):
        g = f.grad(theta)
        grad_norms.append(float(np.linalg.norm(g)))
        stochastic = g + noise * g0 * rng.normal(size=f.dim)
        norm = np.linalg.norm(stochastic)
        clipped = stochastic * min(1.0, C / norm) if norm > 0 else stochastic
        buffer = clipped if s == 0 else momentum * buffer + clipped
        direction = clipped + momentum * buffer if variant == "nesterov" else buffer
        theta = theta - eta * direction
        losses.append(f.loss(theta))
    G = max(grad_norms)
    env = envelope(
        L0=losses[0],
        G=G,
        C=C,
        beta=f.beta,
        learning_rates=rates,
        momentum=momentum,
        nesterov=variant == "nesterov",
    )
    values = np.asarray(losses)
    return bool(np.all(values >= env - _tol(*values, *env)))


@given(case=t2_cases)
def test_t2_envelope_holds_on_clipped_sgd_trajectories(case: tuple[Any, ...]) -> None:
    assert _clipped_sgd_respects_envelope(clipped_sgd_progress.envelope, case)


def test_t2_is_tight_for_one_step_along_negative_curvature() -> None:
    """L = −(β/2)x² + b·x from x = 0, one unclipped gradient step: L_1 equals the envelope."""
    beta, b, eta = 4.0, 3.0, 0.1
    loss = lambda x: -beta / 2 * x**2 + b * x  # noqa: E731
    x1 = 0.0 - eta * b
    env = clipped_sgd_progress.envelope(L0=loss(0.0), G=b, C=b, beta=beta, learning_rates=[eta])
    assert loss(x1) == pytest.approx(float(env[1]), rel=1e-12)


def _wrong_envelope(G_factor: float, beta_factor: float) -> T2Envelope:
    def wrong(**kw: Any) -> Array:
        kw = {**kw, "G": kw["G"] * G_factor, "beta": kw["beta"] * beta_factor}
        return clipped_sgd_progress.envelope(**kw)

    return wrong


@pytest.mark.negative_control
@pytest.mark.parametrize(
    ("G_factor", "beta_factor"), [(0.5, 1.0), (1.0, 0.0)], ids=["half_G", "drop_beta_term"]
)
def test_negative_control_t2_wrong_envelope_is_falsified(
    G_factor: float, beta_factor: float
) -> None:
    wrong = _wrong_envelope(G_factor, beta_factor)
    find(t2_cases, lambda case: not _clipped_sgd_respects_envelope(wrong, case), settings=FIND)


# ---------------------------------------------------------------------- T7
t7_cases = st.tuples(
    st.integers(0, 2**32 - 1),
    st.sampled_from(FAMILIES),
    st.floats(1e-3, 5.0),
    st.sampled_from(["random", "gradient", "minus_gradient"]),
    st.floats(0.0, 1.0),
)
Radius = Callable[[float, float, float], float]


def theory_radius(eps: float, G_g: float, beta_g: float) -> float:
    return stability_displacement.certified_radius(eps=eps, G_g=G_g, beta_g=beta_g)


def _radius_keeps_stability(radius: Radius, case: tuple[Any, ...]) -> bool:
    """Every ‖δ‖ ≤ radius(ε) keeps |g(θ+δ) − g(θ)| ≤ ε, and |Δg| ≤ T7's bound."""
    seed, family, eps, direction, fraction = case
    rng = np.random.default_rng(seed)
    g = random_loss(rng, family)
    theta = rng.normal(size=g.dim)
    grad = g.grad(theta)
    G_g = float(np.linalg.norm(grad))
    if direction == "random" or G_g == 0:
        u = rng.normal(size=g.dim)
    else:
        u = grad if direction == "gradient" else -grad
    r = radius(eps, G_g, g.beta)
    delta = u / np.linalg.norm(u) * r * fraction
    change = abs(g.loss(theta + delta) - g.loss(theta))
    bound = stability_displacement.THEOREM.evaluate(
        G_g=G_g, beta_g=g.beta, delta_norm=float(np.linalg.norm(delta))
    )
    tol = _tol(g.loss(theta), eps)
    assert change <= bound + tol
    return change <= eps + tol


@given(case=t7_cases)
def test_t7_certified_radius_keeps_stability(case: tuple[Any, ...]) -> None:
    assert _radius_keeps_stability(theory_radius, case)


@pytest.mark.negative_control
@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda eps, G, b: eps / G, id="curvature_ignored"),
        pytest.param(lambda eps, G, b: theory_radius(eps, G / 2, b), id="half_G"),
    ],
)
def test_negative_control_t7_wrong_radius_is_falsified(wrong: Radius) -> None:
    find(t7_cases, lambda case: not _radius_keeps_stability(wrong, case), settings=FIND)
