r"""How far one optimizer step can move the parameters: SGD, Adam, AdamW.

These bounds hold for *every* gradient sequence, so they bound the attacker's path length
whatever its data and loss; T2 (SGD) and T3 (Adam, AdamW) turn them into certified lower
bounds on the harmful loss.

**Clipped SGD** (PyTorch ``torch.optim.SGD``, no dampening, no weight decay, gradients clipped
to norm C): the step is η·b_k with b_k the momentum buffer ``b_1 = g_1``,
``b_k = m·b_{k-1} + g_k``, so ‖Δ‖ ≤ η C (1 − m^k)/(1 − m) (``= η C`` without momentum), and
with Nesterov momentum (step direction ``g_k + m·b_k``) ‖Δ‖ ≤ η C (1 + m (1 − m^k)/(1 − m)).

**Adam** (PyTorch ``torch.optim.Adam``/``AdamW``, bias-corrected, step counter k = 1, 2, ...):
per coordinate ``m_k = β1 m_{k−1} + (1−β1) g_k``, ``v_k = β2 v_{k−1} + (1−β2) g_k²``,
``m̂_k = m_k/(1−β1^k)``, ``v̂_k = v_k/(1−β2^k)``, step ``η m̂_k/(√v̂_k + ε)``. Writing
``m_k = (1−β1) Σ_j β1^{k−j} g_j = (1−β1) Σ_j (β1^{k−j}/β2^{(k−j)/2}) (β2^{(k−j)/2} g_j)``,
Cauchy–Schwarz gives ``|m_k| ≤ (1−β1) √(Σ_j γ^{k−j}) √(v_k/(1−β2))`` with ``γ = β1²/β2``, and
the geometric sum ``Σ_{i<k} γ^i = (1−γ^k)/(1−γ)`` gives

    |m̂_k| / (√v̂_k + ε)  ≤  a_k = (1−β1) √(1−β2^k) / ((1−β1^k) √(1−β2)) · √((1−γ^k)/(1−γ)).

Equality holds (for ε = 0) exactly when ``g_j ∝ (β1/β2)^{k−j}``. ``a_1 = 1``; ``a_k`` increases
to ``a_∞ = (1−β1)/√((1−β2)(1−γ))`` (≈ 7.27 for the defaults β = (0.9, 0.999), more than
twice Kingma & Ba's informal ``(1−β1)/√(1−β2)`` ≈ 3.16, which real Adam exceeds). The bound is
independent of the gradients, so L2 weight decay folded into the gradient (``Adam(...,
weight_decay=...)``) and gradient clipping do not change it: ‖Δ‖₂ ≤ η a_k √d over d
coordinates.

**AdamW** (decoupled weight decay λ, ``θ ← θ(1 − ηλ) − η m̂/(√v̂+ε)``, ηλ ≤ 1): with
``R_0 = ‖θ_0‖``, ``R_{s+1} = (1 − η_s λ) R_s + η_s a_{s+1} √d`` bounds ‖θ_s‖ (triangle
inequality), and ‖Δ_s‖ ≤ η_s (a_{s+1} √d + λ R_s).

Step s = 0, 1, ... of a schedule uses Adam's counter k = s + 1.

Sources: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §2.1 (the
informal step-size bound, made exact here); Loshchilov & Hutter, "Decoupled Weight Decay
Regularization", ICLR 2019; PyTorch's documented update rules for SGD, Adam and AdamW.

>>> float(adam_coordinate_bound(1, beta1=0.9, beta2=0.999)[0])
1.0
>>> round(adam_coordinate_bound_limit(beta1=0.9, beta2=0.999), 4)
7.2703
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import sympy as sp

from theory import symbols as sym
from theory.errors import AssumptionError
from theory.theorem import Assumption, check_parameter_assumptions, lambdified

FloatArray = npt.NDArray[np.float64]

#: Owner named in the ``AssumptionError`` of this module (the theorem these bounds serve).
OWNER = "T3"

# --------------------------------------------------------------------------- symbolic forms
#: γ = β1²/β2, the ratio in Cauchy–Schwarz; the bound needs γ < 1.
GAMMA: sp.Expr = sym.beta1**2 / sym.beta2
#: a_k: bound on |m̂_k/(√v̂_k + ε)| for every coordinate and every gradient sequence.
ADAM_COORDINATE_BOUND: sp.Expr = (
    (1 - sym.beta1)
    * sp.sqrt(1 - sym.beta2**sym.k)
    / ((1 - sym.beta1**sym.k) * sp.sqrt(1 - sym.beta2))
    * sp.sqrt((1 - GAMMA**sym.k) / (1 - GAMMA))
)
#: a_∞ = lim_k a_k = sup_k a_k (β1^k, β2^k, γ^k → 0).
ADAM_COORDINATE_BOUND_LIMIT: sp.Expr = (1 - sym.beta1) / sp.sqrt((1 - sym.beta2) * (1 - GAMMA))
#: ‖Δ‖ ≤ η a_k √d: one Adam step over d coordinates (L2 weight decay folded in or not).
ADAM_STEP_BOUND: sp.Expr = sym.eta * ADAM_COORDINATE_BOUND * sp.sqrt(sym.d)
#: ‖Δ_s‖ ≤ η (a_k √d + λ R_s): one AdamW step from a point of norm at most R_s.
ADAMW_STEP_BOUND: sp.Expr = sym.eta * (ADAM_COORDINATE_BOUND * sp.sqrt(sym.d) + sym.lam * sym.R_s)
#: R_{s+1} = (1 − ηλ) R_s + η a_k √d: AdamW's bound on the next parameter norm.
ADAMW_NORM_RECURSION: sp.Expr = (1 - sym.eta * sym.lam) * sym.R_s + ADAM_STEP_BOUND
#: (1 − m^k)/(1 − m): bound on ‖b_k‖/C for SGD's momentum buffer (m = 0 gives 1).
SGD_MOMENTUM_FACTOR: sp.Expr = (1 - sym.momentum**sym.k) / (1 - sym.momentum)
#: ‖Δ‖ ≤ η C (1 − m^k)/(1 − m): one clipped-SGD step (heavy-ball momentum m).
SGD_STEP_BOUND: sp.Expr = sym.eta * sym.C * SGD_MOMENTUM_FACTOR
#: ‖Δ‖ ≤ η C (1 + m (1 − m^k)/(1 − m)): one clipped-SGD step with Nesterov momentum.
SGD_NESTEROV_STEP_BOUND: sp.Expr = sym.eta * sym.C * (1 + sym.momentum * SGD_MOMENTUM_FACTOR)

# --------------------------------------------------------------------------- assumptions
ADAM_ASSUMPTIONS: tuple[Assumption, ...] = (
    Assumption("beta1_nonnegative", sp.Ge(sym.beta1, 0), "0 <= beta1"),
    Assumption("beta1_below_one", sp.Lt(sym.beta1, 1), "beta1 < 1"),
    Assumption("beta2_positive", sp.Gt(sym.beta2, 0), "0 < beta2"),
    Assumption("beta2_below_one", sp.Lt(sym.beta2, 1), "beta2 < 1"),
    Assumption(
        "beta1_squared_below_beta2",
        sp.Lt(sym.beta1**2, sym.beta2),
        "gamma = beta1^2/beta2 < 1 (the geometric sum in the Adam step bound converges)",
    ),
    Assumption("adam_eps_nonnegative", sp.Ge(sym.adam_eps, 0), "Adam's epsilon >= 0"),
    Assumption("lam_nonnegative", sp.Ge(sym.lam, 0), "weight decay lambda >= 0"),
    Assumption(
        "eta_lam_at_most_one",
        sp.Le(sym.eta * sym.lam, 1),
        "eta * lambda <= 1 (AdamW's decay factor 1 - eta*lambda is in [0, 1])",
    ),
    Assumption("d_positive", sp.Ge(sym.d, 1), "at least one trainable coordinate"),
    Assumption("d_integer", sym.is_integer(sym.d), "d counts coordinates"),
    Assumption("theta0_norm_nonnegative", sp.Ge(sym.theta0_norm, 0), "||theta_0|| >= 0"),
)
SGD_ASSUMPTIONS: tuple[Assumption, ...] = (
    Assumption("C_positive", sp.Gt(sym.C, 0), "clipping norm C > 0"),
    Assumption("momentum_nonnegative", sp.Ge(sym.momentum, 0), "momentum >= 0"),
    Assumption("momentum_below_one", sp.Lt(sym.momentum, 1), "momentum < 1"),
)
ETA_POSITIVE = Assumption("eta_positive", sp.Gt(sym.eta, 0), "every learning rate eta_s > 0")


# --------------------------------------------------------------------------- numerics
def learning_rate_schedule(learning_rates: npt.ArrayLike, owner: str = OWNER) -> FloatArray:
    """The per-step learning rates η_0, η_1, ... as a 1-D float array, each finite and ≥ 0.

    A zero rate is allowed: warm-up schedules start at η_0 = 0, a step that moves nothing
    (for Adam it still advances the step counter k, so it must be counted, not dropped).
    A scalar is a one-step schedule. Raises ``AssumptionError`` (``eta_nonnegative`` or
    ``eta_finite``) naming the first bad step.
    """
    rates = np.atleast_1d(np.asarray(learning_rates, dtype=np.float64))
    if rates.ndim != 1:
        detail = f"expected a 1-D schedule, got shape {rates.shape}"
        raise AssumptionError(owner, "eta_schedule_1d", detail)
    bad = np.flatnonzero(~np.isfinite(rates))
    if bad.size:
        raise AssumptionError(owner, "eta_finite", f"eta_{bad[0]} = {rates[bad[0]]}")
    bad = np.flatnonzero(rates < 0)
    if bad.size:
        raise AssumptionError(owner, "eta_nonnegative", f"eta_{bad[0]} = {rates[bad[0]]:g} < 0")
    return rates


def check_adam_parameters(owner: str = OWNER, **values: float) -> None:
    """Check Adam/AdamW parameters by name (``beta1, beta2, adam_eps, lam, d, eta``) against
    ``ADAM_ASSUMPTIONS``; raises ``AssumptionError`` naming the first one broken."""
    check_parameter_assumptions(owner, ADAM_ASSUMPTIONS, values)


def adam_coordinate_bound(k: npt.ArrayLike, *, beta1: float, beta2: float) -> FloatArray:
    """a_k for each step counter in ``k`` (integers ≥ 1), from ``ADAM_COORDINATE_BOUND``.

    Every coordinate of PyTorch Adam's m̂_k/(√v̂_k + ε) has magnitude ≤ a_k, for every gradient
    sequence and every ε ≥ 0.
    """
    check_adam_parameters(beta1=beta1, beta2=beta2)
    counters = np.atleast_1d(np.asarray(k, dtype=np.float64))
    if counters.size and (
        not np.all(np.isfinite(counters))
        or np.any(counters < 1)
        or np.any(counters != np.floor(counters))
    ):
        raise AssumptionError(OWNER, "k_positive_integer", "Adam's step counter k is 1, 2, ...")
    fn = lambdified(ADAM_COORDINATE_BOUND, (sym.k, sym.beta1, sym.beta2), "numpy")
    with np.errstate(over="ignore", under="ignore"):
        values = np.asarray(fn(counters, float(beta1), float(beta2)), dtype=np.float64)
    return np.broadcast_to(values, counters.shape).copy()


def adam_coordinate_bound_limit(*, beta1: float, beta2: float) -> float:
    """a_∞ = (1−β1)/√((1−β2)(1−β1²/β2)) = sup_k a_k, from ``ADAM_COORDINATE_BOUND_LIMIT``."""
    check_adam_parameters(beta1=beta1, beta2=beta2)
    fn = lambdified(ADAM_COORDINATE_BOUND_LIMIT, (sym.beta1, sym.beta2))
    return float(fn(float(beta1), float(beta2)))


def adam_step_bounds(
    learning_rates: npt.ArrayLike, *, beta1: float, beta2: float, d: int
) -> FloatArray:
    """η_s a_{s+1} √d for each step s of the schedule: bounds on ‖Δ_s‖₂ for Adam (also with
    L2 weight decay folded into the gradient, and with gradient clipping)."""
    rates = learning_rate_schedule(learning_rates)
    check_adam_parameters(beta1=beta1, beta2=beta2, d=d)
    a = adam_coordinate_bound(np.arange(1, rates.size + 1), beta1=beta1, beta2=beta2)
    return rates * a * math.sqrt(d)


@dataclass(frozen=True)
class AdamWBounds:
    """AdamW's certified step and norm bounds over a schedule of T steps.

    ``step_norms[s]`` bounds ‖Δ_s‖ = ‖θ_{s+1} − θ_s‖ (shape (T,)); ``parameter_norms[s]`` is
    R_s, a bound on ‖θ_s‖ (shape (T+1,), ``parameter_norms[0] = ‖θ_0‖``).
    """

    step_norms: FloatArray
    parameter_norms: FloatArray


def adamw_step_bounds(
    learning_rates: npt.ArrayLike,
    *,
    beta1: float,
    beta2: float,
    d: int,
    lam: float,
    theta0_norm: float,
) -> AdamWBounds:
    """Step and parameter-norm bounds of AdamW (``ADAMW_STEP_BOUND``, ``ADAMW_NORM_RECURSION``).

    Requires η_s λ ≤ 1 at every step (``eta_lam_at_most_one``). With ``lam = 0`` the step
    bounds equal ``adam_step_bounds``.
    """
    rates = learning_rate_schedule(learning_rates)
    check_adam_parameters(
        beta1=beta1, beta2=beta2, d=d, lam=lam, theta0_norm=theta0_norm, eta=float(rates.max())
    )
    args = (sym.eta, sym.k, sym.beta1, sym.beta2, sym.d, sym.lam, sym.R_s)
    step_fn = lambdified(ADAMW_STEP_BOUND, args)
    next_fn = lambdified(ADAMW_NORM_RECURSION, args)
    norms = np.empty(rates.size + 1)
    steps = np.empty(rates.size)
    norms[0] = theta0_norm
    for s, eta in enumerate(rates):
        values = (float(eta), float(s + 1), float(beta1), float(beta2), float(d), float(lam))
        steps[s] = step_fn(*values, norms[s])
        norms[s + 1] = next_fn(*values, norms[s])
    return AdamWBounds(step_norms=steps, parameter_norms=norms)


def sgd_step_bounds(
    learning_rates: npt.ArrayLike, *, C: float, momentum: float = 0.0, nesterov: bool = False
) -> FloatArray:
    """Bounds on ‖Δ_s‖ for clipped SGD (``SGD_STEP_BOUND`` / ``SGD_NESTEROV_STEP_BOUND``).

    ``C`` bounds the norm of every (clipped) stochastic gradient; PyTorch's momentum
    convention without dampening and without weight decay (weight decay is added after
    clipping, so C would no longer bound the direction).
    """
    rates = learning_rate_schedule(learning_rates, owner="T2")
    check_parameter_assumptions("T2", SGD_ASSUMPTIONS, {"C": C, "momentum": momentum})
    expr = SGD_NESTEROV_STEP_BOUND if nesterov else SGD_STEP_BOUND
    fn = lambdified(expr, (sym.eta, sym.k, sym.C, sym.momentum))
    return np.array(
        [fn(float(eta), float(s + 1), float(C), float(momentum)) for s, eta in enumerate(rates)],
        dtype=np.float64,
    )
