"""T3: Adam's per-coordinate step bound a_k, the AdamW norm recursion, SGD step bounds, and
the path-length envelope, checked against real optimizers.

A numpy transcription of PyTorch's Adam (below) and ``torch.optim.Adam``/``AdamW``/``SGD``
themselves run on random and adversarial gradient sequences (alternating signs, single
spikes, heavy tails, the Cauchy–Schwarz-tight sequence g_j ∝ (β1/β2)^{k−j}); every step must
stay within theory's bound, and the same checks must catch Kingma & Ba's informal bound
(1−β1)/√(1−β2) and a bound that drops the √((1−γ^k)/(1−γ)) factor (negative controls).
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

from theory import optimizers
from theory.theorems import path_length_adam

Array = npt.NDArray[np.float64]
FIND = settings(max_examples=3000, database=None, phases=[Phase.generate])
FAMILIES = ("gaussian", "heavy_tailed", "alternating", "spike", "tight", "growing", "decaying")

#: (beta1, beta2): the defaults, common variants, and random pairs with beta1^2 < beta2
betas = st.one_of(
    st.sampled_from([(0.9, 0.999), (0.9, 0.99), (0.0, 0.9), (0.95, 0.95), (0.5, 0.999)]),
    st.tuples(st.floats(0.0, 0.99), st.floats(0.3, 0.9999)).map(
        lambda p: (p[0] * math.sqrt(p[1]), p[1])
    ),
)


def gradient_sequence(
    rng: np.random.Generator, family: str, steps: int, dim: int, beta1: float, beta2: float
) -> Array:
    """A (steps, dim) gradient sequence of the named family."""
    scale = 10.0 ** rng.uniform(-3, 3)
    if family == "gaussian":
        g = rng.normal(size=(steps, dim))
    elif family == "heavy_tailed":
        g = rng.standard_cauchy(size=(steps, dim))
    elif family == "alternating":
        g = np.where(np.arange(steps)[:, None] % 2 == 0, 1.0, -1.0) * rng.uniform(
            0.1, 1.0, size=(steps, dim)
        )
    elif family == "spike":
        g = rng.normal(size=(steps, dim)) * 1e-3
        g[int(rng.integers(0, steps))] = rng.choice([-1.0, 1.0], size=dim) * 1e3
    elif family == "tight":  # the Cauchy–Schwarz equality case for the last step
        j = np.arange(1, steps + 1)
        g = np.outer((beta1 / beta2) ** (steps - j), rng.choice([-1.0, 1.0], size=dim))
    elif family == "growing":
        g = np.outer(rng.uniform(1.0, 1.5) ** np.arange(steps), rng.normal(size=dim))
    else:
        g = np.outer(rng.uniform(0.3, 1.0) ** np.arange(steps), rng.normal(size=dim))
    return np.asarray(g * scale, dtype=np.float64)


def adam_directions(grads: Array, beta1: float, beta2: float, eps: float) -> Array:
    """m̂_k/(√v̂_k + ε) for k = 1..K, PyTorch's bias-corrected Adam in numpy (0 where 0/0)."""
    m = np.zeros(grads.shape[1])
    v = np.zeros(grads.shape[1])
    out = np.empty_like(grads)
    for k, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**k)
        denominator = np.sqrt(v / (1 - beta2**k)) + eps
        out[k - 1] = np.divide(m_hat, denominator, out=np.zeros_like(m_hat), where=denominator > 0)
    return out


# ---------------------------------------------------------------------- a_k itself
@given(pair=betas)
def test_a_k_starts_at_one_increases_and_is_bounded_by_its_limit(pair: tuple[float, float]) -> None:
    beta1, beta2 = pair
    k = np.arange(1, 5001)
    a = optimizers.adam_coordinate_bound(k, beta1=beta1, beta2=beta2)
    a_inf = optimizers.adam_coordinate_bound_limit(beta1=beta1, beta2=beta2)
    assert a[0] == pytest.approx(1.0, rel=1e-12)
    assert np.all(np.diff(a) >= -1e-12 * a_inf)
    assert np.all(a <= a_inf * (1 + 1e-12))
    assert a_inf >= 1.0 - 1e-12  # a_inf - 1 has the sign of (beta2 - beta1)^2
    far = optimizers.adam_coordinate_bound(10**7, beta1=beta1, beta2=beta2)[0]
    assert far == pytest.approx(a_inf, rel=1e-6)


def test_a_k_default_values() -> None:
    a = optimizers.adam_coordinate_bound([1, 2, 10, 100, 1000], beta1=0.9, beta2=0.999)
    a_inf = optimizers.adam_coordinate_bound_limit(beta1=0.9, beta2=0.999)
    assert a[0] == 1.0 and 1.0 < a[1] < a[2] < a[3] < a[4] < a_inf
    assert a_inf == pytest.approx(0.1 / math.sqrt(0.001 * (1 - 0.81 / 0.999)))
    assert a_inf > 2 * 0.1 / math.sqrt(0.001)  # more than twice Kingma & Ba's 3.16


# ---------------------------------------------------------------------- numpy Adam
#: (seed, family, steps, dim, betas, eps)
adam_cases = st.tuples(
    st.integers(0, 2**32 - 1),
    st.sampled_from(FAMILIES),
    st.integers(1, 300),
    st.integers(1, 4),
    betas,
    st.sampled_from([0.0, 1e-12, 1e-8]),
)
CoordinateBound = Callable[[Array, float, float], Array]


def theory_a_k(k: Array, beta1: float, beta2: float) -> Array:
    return optimizers.adam_coordinate_bound(k, beta1=beta1, beta2=beta2)


def _adam_within(bound: CoordinateBound, case: tuple[Any, ...]) -> bool:
    """Every coordinate of every Adam direction is within ``bound(k)``."""
    seed, family, steps, dim, (beta1, beta2), eps = case
    rng = np.random.default_rng(seed)
    grads = gradient_sequence(rng, family, steps, dim, beta1, beta2)
    directions = np.abs(adam_directions(grads, beta1, beta2, eps)).max(axis=1)
    limit = bound(np.arange(1, steps + 1, dtype=np.float64), beta1, beta2)
    return bool(np.all(directions <= limit * (1 + 1e-9)))


@given(case=adam_cases)
def test_adam_coordinate_bound_holds_on_adversarial_sequences(case: tuple[Any, ...]) -> None:
    assert _adam_within(theory_a_k, case)


@given(pair=betas, steps=st.integers(1, 400))
def test_adam_coordinate_bound_is_attained_by_the_tight_sequence(
    pair: tuple[float, float], steps: int
) -> None:
    """g_j = (β1/β2)^{k−j} (Cauchy–Schwarz equality) gives |m̂_k/√v̂_k| = a_k with ε = 0."""
    beta1, beta2 = pair
    j = np.arange(1, steps + 1)
    grads = ((beta1 / beta2) ** (steps - j))[:, None]
    last = adam_directions(grads, beta1, beta2, 0.0)[-1, 0]
    a_k = optimizers.adam_coordinate_bound(steps, beta1=beta1, beta2=beta2)[0]
    assert last == pytest.approx(a_k, rel=1e-9)


def kingma_ba(k: Array, beta1: float, beta2: float) -> Array:
    """Kingma & Ba's informal bound (1−β1)/√(1−β2), uniform in k (wrong)."""
    return np.full_like(k, (1 - beta1) / math.sqrt(1 - beta2))


def without_gamma_factor(k: Array, beta1: float, beta2: float) -> Array:
    """a_k without the Cauchy–Schwarz factor √((1−γ^k)/(1−γ)) (wrong)."""
    gamma = beta1**2 / beta2
    return np.asarray(theory_a_k(k, beta1, beta2) / np.sqrt((1 - gamma**k) / (1 - gamma)))


@pytest.mark.negative_control
@pytest.mark.parametrize(
    "wrong", [kingma_ba, without_gamma_factor], ids=["kingma_ba", "without_gamma_factor"]
)
def test_negative_control_wrong_adam_bound_is_falsified(wrong: CoordinateBound) -> None:
    find(adam_cases, lambda case: not _adam_within(wrong, case), settings=FIND)


@pytest.mark.negative_control
def test_negative_control_kingma_ba_is_below_sup_a_k() -> None:
    """The check 'a_k ≤ A for all k' fails for A = Kingma & Ba's value at the defaults."""
    a = optimizers.adam_coordinate_bound(np.arange(1, 2001), beta1=0.9, beta2=0.999)
    assert not np.all(a <= kingma_ba(np.ones(1), 0.9, 0.999)[0])


# ---------------------------------------------------------------------- torch optimizers
torch = pytest.importorskip("torch")

#: (seed, family, steps, dim, betas, optimizer, weight decay)
torch_cases = st.tuples(
    st.integers(0, 2**32 - 1),
    st.sampled_from(FAMILIES),
    st.integers(1, 60),
    st.integers(1, 6),
    betas,
    st.sampled_from(["Adam", "AdamW", "Adam_L2"]),
    st.sampled_from([0.0, 0.01, 0.5]),
)
StepBounds = Callable[..., Array]


def _torch_adam_within(adam_bounds: StepBounds, case: tuple[Any, ...]) -> bool:
    """Drive torch.optim.Adam/AdamW with a gradient sequence and a random schedule; every
    ‖Δ_s‖ must be within ``adam_bounds`` (and ‖θ_s‖ within R_s for AdamW)."""
    seed, family, steps, dim, (beta1, beta2), name, decay = case
    rng = np.random.default_rng(seed)
    grads = gradient_sequence(rng, family, steps, dim, beta1, beta2)
    rates = rng.uniform(1e-4, 0.5, size=steps)
    theta0 = rng.normal(size=dim) * 3
    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    if name == "AdamW":
        opt = torch.optim.AdamW([p], lr=1.0, betas=(beta1, beta2), eps=1e-8, weight_decay=decay)
    else:
        wd = decay if name == "Adam_L2" else 0.0
        opt = torch.optim.Adam([p], lr=1.0, betas=(beta1, beta2), eps=1e-8, weight_decay=wd)
    thetas = [theta0]
    for g, eta in zip(grads, rates, strict=True):
        opt.param_groups[0]["lr"] = float(eta)
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        thetas.append(p.detach().numpy().copy())
    path = np.asarray(thetas)
    steps_taken = np.linalg.norm(np.diff(path, axis=0), axis=1)
    lam = decay if name == "AdamW" else 0.0
    bounds, norms = adam_bounds(
        rates, beta1=beta1, beta2=beta2, d=dim, lam=lam, theta0_norm=float(np.linalg.norm(theta0))
    )
    ok_steps = np.all(steps_taken <= bounds * (1 + 1e-9))
    ok_norms = np.all(np.linalg.norm(path, axis=1) <= norms * (1 + 1e-9))
    return bool(ok_steps and ok_norms)


def theory_adam_bounds(rates: Array, **kw: Any) -> tuple[Array, Array]:
    result = optimizers.adamw_step_bounds(rates, **kw)
    if kw["lam"] == 0:
        np.testing.assert_allclose(
            result.step_norms,
            optimizers.adam_step_bounds(rates, beta1=kw["beta1"], beta2=kw["beta2"], d=kw["d"]),
        )
    return result.step_norms, result.parameter_norms


@given(case=torch_cases)
def test_torch_adam_and_adamw_steps_within_theory_bounds(case: tuple[Any, ...]) -> None:
    assert _torch_adam_within(theory_adam_bounds, case)


@pytest.mark.negative_control
def test_negative_control_torch_adam_exceeds_kingma_ba_step_bound() -> None:
    def wrong(rates: Array, **kw: Any) -> tuple[Array, Array]:
        a = (1 - kw["beta1"]) / math.sqrt(1 - kw["beta2"])
        steps = rates * (a * math.sqrt(kw["d"]) + kw["lam"] * 1e6)  # generous norm term
        return steps, np.full(rates.size + 1, np.inf)

    find(torch_cases, lambda case: not _torch_adam_within(wrong, case), settings=FIND)


@pytest.mark.negative_control
def test_negative_control_adamw_norm_recursion_without_the_step_term_is_falsified() -> None:
    """R_{s+1} = (1 − ηλ) R_s alone (the Adam step dropped) must fail to bound ‖θ_s‖."""

    def wrong(rates: Array, **kw: Any) -> tuple[Array, Array]:
        steps, _ = theory_adam_bounds(rates, **kw)
        norms = kw["theta0_norm"] * np.concatenate(([1.0], np.cumprod(1 - rates * kw["lam"])))
        return steps, norms

    find(torch_cases, lambda case: not _torch_adam_within(wrong, case), settings=FIND)


#: (seed, steps, dim, momentum, nesterov)
sgd_cases = st.tuples(
    st.integers(0, 2**32 - 1),
    st.integers(1, 40),
    st.integers(1, 6),
    st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    st.booleans(),
)


def _torch_sgd_within(sgd_bounds: StepBounds, case: tuple[Any, ...]) -> bool:
    seed, steps, dim, momentum, nesterov = case
    nesterov = nesterov and momentum > 0
    rng = np.random.default_rng(seed)
    C = float(rng.uniform(0.1, 10))
    rates = rng.uniform(1e-3, 1.0, size=steps)
    p = torch.nn.Parameter(torch.zeros(dim, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=1.0, momentum=momentum, nesterov=nesterov)
    previous = p.detach().numpy().copy()
    taken = []
    for eta in rates:
        direction = rng.normal(size=dim) * 0.1 + 1.0  # correlated: momentum accumulates
        p.grad = torch.tensor(direction * rng.uniform(0.5, 50), dtype=torch.float64)
        torch.nn.utils.clip_grad_norm_([p], C)
        opt.param_groups[0]["lr"] = float(eta)
        opt.step()
        current = p.detach().numpy().copy()
        taken.append(np.linalg.norm(current - previous))
        previous = current
    bounds = sgd_bounds(rates, C=C, momentum=momentum, nesterov=nesterov)
    return bool(np.all(np.asarray(taken) <= bounds * (1 + 1e-9)))


@given(case=sgd_cases)
def test_torch_sgd_steps_within_theory_bounds(case: tuple[Any, ...]) -> None:
    assert _torch_sgd_within(optimizers.sgd_step_bounds, case)


@pytest.mark.negative_control
def test_negative_control_sgd_bound_ignoring_momentum_is_falsified() -> None:
    def wrong(rates: Array, *, C: float, momentum: float, nesterov: bool) -> Array:
        return optimizers.sgd_step_bounds(rates, C=C)

    find(sgd_cases, lambda case: not _torch_sgd_within(wrong, case), settings=FIND)


# ---------------------------------------------------------------------- path envelope
#: (seed, loss family, steps, dim, betas, weight decay)
path_cases = st.tuples(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["logistic", "linear"]),
    st.integers(1, 40),
    st.integers(1, 8),
    betas,
    st.sampled_from([0.0, 0.1]),
)
Envelope = Callable[..., Array]


def _adam_trajectory_respects(envelope: Envelope, case: tuple[Any, ...]) -> bool:
    """Numpy Adam/AdamW on a loss with ‖∇L‖ ≤ G everywhere; every L_t ≥ envelope[t], both for
    theory's step bounds and for the measured step norms (``path_envelope``)."""
    seed, family, steps, dim, (beta1, beta2), lam = case
    rng = np.random.default_rng(seed)
    if family == "linear":  # L = wᵀθ, equal-magnitude coordinates: ‖w‖₁ = √d ‖w‖₂
        w = rng.choice([-1.0, 1.0], size=dim) * rng.uniform(0.1, 10)

        def loss(theta: Array) -> float:
            return float(w @ theta)

        def grad(theta: Array) -> Array:
            return w

        G = float(np.linalg.norm(w))
    else:
        n = int(rng.integers(5, 30))
        X = rng.normal(size=(n, dim))
        y = rng.choice([-1.0, 1.0], size=n)

        def loss(theta: Array) -> float:
            return float(np.mean(np.logaddexp(0.0, -y * (X @ theta))))

        def grad(theta: Array) -> Array:
            z = -y * (X @ theta)
            return np.asarray(-(X.T @ (y * (0.5 * (1 + np.tanh(z / 2))))) / n)

        G = float(np.mean(np.linalg.norm(X, axis=1)))  # ‖∇L‖ ≤ mean ‖x_i‖ everywhere
    rates = rng.uniform(1e-3, 0.3, size=steps)
    theta = rng.normal(size=dim)
    theta0_norm = float(np.linalg.norm(theta))
    m = np.zeros(dim)
    v = np.zeros(dim)
    losses, norms = [loss(theta)], []
    for k, eta in enumerate(rates, start=1):
        g = grad(theta)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        step = (m / (1 - beta1**k)) / (np.sqrt(v / (1 - beta2**k)) + 1e-12)
        new = theta * (1 - eta * lam) - eta * step
        norms.append(float(np.linalg.norm(new - theta)))
        theta = new
        losses.append(loss(theta))
    values = np.asarray(losses)
    tol = 1e-9 * (1 + np.abs(values).max())
    env = envelope(
        L0=losses[0],
        G=G,
        learning_rates=rates,
        beta1=beta1,
        beta2=beta2,
        d=dim,
        lam=lam,
        theta0_norm=theta0_norm,
    )
    measured = path_length_adam.path_envelope(L0=losses[0], G=G, step_norms=norms)
    assert np.all(values >= measured - tol)  # the path-length conclusion itself
    return bool(np.all(values >= env - tol))


@given(case=path_cases)
def test_t3_envelope_holds_on_adam_and_adamw_trajectories(case: tuple[Any, ...]) -> None:
    assert _adam_trajectory_respects(path_length_adam.envelope, case)


@pytest.mark.negative_control
def test_negative_control_t3_envelope_with_half_G_is_falsified() -> None:
    def wrong(**kw: Any) -> Array:
        return path_length_adam.envelope(**{**kw, "G": kw["G"] / 2})

    find(path_cases, lambda case: not _adam_trajectory_respects(wrong, case), settings=FIND)


def test_t3_uniform_bound_is_tight_at_the_first_step_of_a_linear_loss() -> None:
    """L = wᵀθ with |w_i| equal: the first Adam step (ε = 0) lowers L by exactly G η √d."""
    d, eta = 9, 0.01
    w = np.array([1.0, -1.0, 1.0] * 3)
    env = path_length_adam.envelope(
        L0=0.0, G=float(np.linalg.norm(w)), learning_rates=[eta], beta1=0.9, beta2=0.999, d=d
    )
    first_step = -eta * np.sign(w)  # m̂/√v̂ = sign(w) at k = 1
    assert float(w @ first_step) == pytest.approx(float(env[1]), rel=1e-12)
