r"""T3 ``path_length_adam``: the path-length (Lipschitz) bound, with Adam's step bound.

Statement (docs/theorems.md, T3). Hypothesis: ‖∇L‖ ≤ G on every segment [θ_s, θ_{s+1}] of the
attack (L is G-Lipschitz along the path). Then |L_{s+1} − L_s| ≤ G‖Δ_s‖ (mean-value theorem
and Cauchy–Schwarz), and summing,

    L_t ≥ L_0 − G Σ_{s<t} ‖Δ_s‖                          (``PATH_CONCLUSION``).

No smoothness is needed, so this holds for losses whose curvature is unknown or huge.

For Adam (PyTorch ``Adam``/``AdamW``, bias-corrected, counter k = s + 1) every coordinate of
m̂_k/(√v̂_k + ε) is at most a_k ≤ a_∞ = (1−β1)/√((1−β2)(1−β1²/β2)) in magnitude, for *every*
gradient sequence (``theory.optimizers``), so ‖Δ_s‖ ≤ η_s a_{s+1} √d and for AdamW
‖Δ_s‖ ≤ η_s (a_{s+1} √d + λ R_s). With constant η and λ = 0 the uniform a_∞ gives

    L_t ≥ L_0 − t G η a_∞ √d                               (``conclusion``; ``bound``),

``PATH_BOUND`` with the path length t η a_∞ √d substituted. Certified minimum steps to reach
τ: t_min = ⌈(L_0 − τ)/(G η a_∞ √d)⌉, from ``sympy.solve(bound = τ, t)``; for a schedule (and
AdamW) ``certified_min_steps_schedule`` uses the exact per-step a_{s+1} and the AdamW norm
recursion. ``path_envelope`` applies the path-length conclusion to measured (or bounded) step
norms of any optimizer.

Parameters: 0 ≤ β1 < 1, 0 < β2 < 1, β1² < β2, ε ≥ 0, λ ≥ 0, η_s λ ≤ 1, η_s > 0, G ≥ 0,
integer d ≥ 1, integer t ≥ 0.

Sources: Kingma & Ba, "Adam", ICLR 2015, §2.1 (the step-size bound, made exact here);
Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

>>> round(THEOREM.evaluate(L0=2.0, G=1.0, eta=1e-3, beta1=0.9, beta2=0.999, d=100, t=10), 4)
1.273
>>> THEOREM.steps_to_threshold(1.0, L0=2.0, G=1.0, eta=1e-3, beta1=0.9, beta2=0.999, d=100)
14.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import sympy as sp

from theory import optimizers
from theory import symbols as sym
from theory.errors import AssumptionError
from theory.theorem import (
    Assumption,
    StepsKind,
    Theorem,
    check_parameter_assumptions,
    lambdified,
)

FloatArray = npt.NDArray[np.float64]

#: L_0 − G · (path length): the path-length lower bound on L_t.
PATH_BOUND: sp.Expr = sym.L0 - sym.G * sym.path_length
PATH_CONCLUSION: sp.Basic = sp.Ge(sym.L_t, PATH_BOUND)
#: t η a_∞ √d: the path length of t Adam steps with constant η (uniform bound a_∞).
ADAM_PATH_LENGTH: sp.Expr = (
    sym.t * sym.eta * optimizers.ADAM_COORDINATE_BOUND_LIMIT * sp.sqrt(sym.d)
)
#: L_0 − t G η a_∞ √d.
BOUND: sp.Expr = PATH_BOUND.subs(sym.path_length, ADAM_PATH_LENGTH)
#: The theorem's conclusion.
CONCLUSION: sp.Basic = sp.Ge(sym.L_t, BOUND)
#: The Adam lemma (proved in proofs/): |m̂_k|/(√v̂_k + ε) ≤ a_k for every coordinate.
COORDINATE_STEP_BOUND: sp.Basic = sp.Le(
    sp.Abs(sym.m_hat) / (sp.sqrt(sym.v_hat) + sym.adam_eps), optimizers.ADAM_COORDINATE_BOUND
)

GRADIENT_BOUNDED_ON_PATH = Assumption(
    "gradient_bounded_on_path",
    sp.Le(sym.grad_norm, sym.G),
    "||grad L|| <= G on every segment [theta_s, theta_{s+1}] of the attack",
    kind="hypothesis",
)
ADAM_UPDATE = Assumption(
    "adam_update",
    sp.Le(
        sym.delta_norm,
        sym.eta * sp.sqrt(sym.d) * sp.Abs(sym.m_hat) / (sp.sqrt(sym.v_hat) + sym.adam_eps),
    ),
    "every step is an Adam step eta * m_hat/(sqrt(v_hat) + eps) over d coordinates, so its norm"
    " is at most sqrt(d) times its largest coordinate (m_hat, v_hat: that coordinate's moments)",
    kind="hypothesis",
)
G_NONNEGATIVE = sym.G_NONNEGATIVE
T_NONNEGATIVE = sym.T_NONNEGATIVE
T_INTEGER = sym.T_INTEGER


@dataclass(frozen=True)
class PathLengthAdam(Theorem):
    """T3: path-length bound with Adam/AdamW step bounds (see the module docstring)."""

    label: ClassVar[str] = "T3"
    name: ClassVar[str] = "path_length_adam"
    title: ClassVar[str] = "Path-length (Lipschitz) bound; Adam/AdamW step bound"
    source: ClassVar[str] = (
        "Kingma & Ba, Adam, ICLR 2015, §2.1 (step-size bound, made exact); "
        "Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019"
    )
    steps_kind: ClassVar[StepsKind | None] = "minimum"
    steps_symbol: ClassVar[str | None] = "t"

    assumptions: tuple[Assumption, ...] = (
        GRADIENT_BOUNDED_ON_PATH,
        ADAM_UPDATE,
        optimizers.ETA_POSITIVE,
        G_NONNEGATIVE,
        *optimizers.ADAM_ASSUMPTIONS,
        T_NONNEGATIVE,
        T_INTEGER,
    )
    conclusion: sp.Basic = CONCLUSION
    bound: sp.Expr = BOUND

    def steps_to_threshold(self, threshold: float, **values: float) -> float:
        """Certified minimum steps ⌈(L_0 − τ)/(G η a_∞ √d)⌉ for Adam with constant η.

        Inputs by name: ``L0, G, eta, beta1, beta2, d`` (others ignored). 0 when
        ``threshold >= L0``; ``math.inf`` when G = 0.
        """
        _require_no_weight_decay(values)
        inputs = self.require_inputs(values, ("L0", "G", "eta", "beta1", "beta2", "d"))
        self.check_assumptions(tau=threshold, **inputs)
        if threshold >= inputs["L0"]:
            return 0.0
        if inputs["G"] == 0:
            return math.inf
        return self.solved_steps(threshold, inputs)

    def evaluate(self, **values: float) -> float:
        """``bound`` (constant η, λ = 0); AdamW needs the schedule form (``envelope``)."""
        _require_no_weight_decay(values)
        return super().evaluate(**values)


def _require_no_weight_decay(values: dict[str, float]) -> None:
    if values.get("lam", 0.0) != 0.0:
        raise AssumptionError(
            "T3",
            "uniform_bound_without_weight_decay",
            f"the closed form assumes lam = 0, got lam = {values['lam']}; for AdamW use "
            "envelope / certified_min_steps_schedule with theta0_norm",
        )


THEOREM = PathLengthAdam()


def path_envelope(*, L0: float, G: float, step_norms: npt.ArrayLike) -> FloatArray:
    """L_0 − G Σ_{s<t} ‖Δ_s‖ for t = 0..T (shape (T+1,)), from ``PATH_BOUND``.

    ``step_norms`` (shape (T,)): the measured update norms, or bounds on them
    (``theory.optimizers``). A certified lower bound on L_t when ‖∇L‖ ≤ G along the path.
    """
    check_parameter_assumptions(THEOREM.label, THEOREM.assumptions, {"L0": L0, "G": G})
    norms = np.atleast_1d(np.asarray(step_norms, dtype=np.float64))
    if norms.ndim != 1 or not np.all(np.isfinite(norms)) or np.any(norms < 0):
        raise AssumptionError(
            THEOREM.label, "step_norms_nonnegative", "step norms must be finite and >= 0"
        )
    path = np.concatenate(([0.0], np.cumsum(norms)))
    fn = lambdified(PATH_BOUND, (sym.G, sym.L0, sym.path_length), "numpy")
    return np.broadcast_to(np.asarray(fn(float(G), float(L0), path)), path.shape).copy()


def step_norm_bounds(
    *,
    learning_rates: npt.ArrayLike,
    beta1: float,
    beta2: float,
    d: int,
    lam: float = 0.0,
    theta0_norm: float | None = None,
) -> FloatArray:
    """Bounds on ‖Δ_s‖ for Adam (``lam = 0``) or AdamW (``lam > 0``, needs ``theta0_norm``)."""
    if lam == 0:
        return optimizers.adam_step_bounds(learning_rates, beta1=beta1, beta2=beta2, d=d)
    if theta0_norm is None:
        raise AssumptionError(
            THEOREM.label, "inputs_given", "AdamW (lam > 0) needs theta0_norm = ||theta_0||"
        )
    bounds = optimizers.adamw_step_bounds(
        learning_rates, beta1=beta1, beta2=beta2, d=d, lam=lam, theta0_norm=theta0_norm
    )
    return bounds.step_norms


def envelope(
    *,
    L0: float,
    G: float,
    learning_rates: npt.ArrayLike,
    beta1: float,
    beta2: float,
    d: int,
    lam: float = 0.0,
    theta0_norm: float | None = None,
) -> FloatArray:
    """The certified lower bound on L_t for t = 0..T (shape (T+1,)) for Adam/AdamW with the
    per-step learning rates ``learning_rates`` (shape (T,)): ``path_envelope`` of
    ``step_norm_bounds``."""
    steps = step_norm_bounds(
        learning_rates=learning_rates,
        beta1=beta1,
        beta2=beta2,
        d=d,
        lam=lam,
        theta0_norm=theta0_norm,
    )
    return path_envelope(L0=L0, G=G, step_norms=steps)


def certified_min_steps_schedule(
    *,
    L0: float,
    threshold: float,
    G: float,
    learning_rates: npt.ArrayLike,
    beta1: float,
    beta2: float,
    d: int,
    lam: float = 0.0,
    theta0_norm: float | None = None,
) -> float:
    """The smallest t ≤ T whose ``envelope`` value is ≤ ``threshold``; ``math.inf`` when no
    step of the schedule gets there (the attacker cannot reach τ within these T steps)."""
    if not math.isfinite(threshold):
        raise AssumptionError(THEOREM.label, "tau_finite", f"tau = {threshold}")
    values = envelope(
        L0=L0,
        G=G,
        learning_rates=learning_rates,
        beta1=beta1,
        beta2=beta2,
        d=d,
        lam=lam,
        theta0_norm=theta0_norm,
    )
    reached = np.flatnonzero(values <= threshold)
    return float(reached[0]) if reached.size else math.inf
