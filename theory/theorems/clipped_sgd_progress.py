r"""T2 ``clipped_sgd_progress``: cumulative attacker progress under (clipped) SGD.

Statement (docs/theorems.md, T2). The attack takes steps Δ_s = −η_s clip_C(g̃_s) with
‖clip_C(g̃)‖ ≤ C (for unclipped SGD, C bounds the stochastic-gradient norm). Hypotheses: L is
β-smooth and ‖∇L(θ_s)‖ ≤ G at every iterate. Parameters: η_s > 0, C > 0, G ≥ 0, β ≥ 0,
integer t ≥ 0.

Per step, T1's lower side with ⟨∇L(θ_s), Δ_s⟩ ≥ −‖∇L(θ_s)‖‖Δ_s‖ ≥ −G‖Δ_s‖ (Cauchy–Schwarz)
and ‖Δ_s‖ ≤ η_s C gives

    L_{s+1} ≥ L_s − (G ‖Δ_s‖ + (β/2)‖Δ_s‖²) ≥ L_s − (G η_s C + (β/2) η_s² C²),

and summing, L_t ≥ L_0 − Σ_{s<t} (G η_s C + (β/2) η_s² C²); with constant η,

    L_t ≥ L_0 − t (G η C + β η² C² / 2)          (``conclusion``; ``bound`` is its right side).

The per-step decrease is *derived* from T1's ``LOWER_BOUND`` by substitution, and the
certified minimum number of steps to reach τ,
t_min = ⌈(L_0 − τ)/(G η C + β η² C²/2)⌉, is ``sympy.solve(bound = τ, t)`` then a ceiling. No
step before t_min has L_t ≤ τ: a weak-resistance certificate for any budget T < t_min.

Numeric helpers for a per-step schedule η_0, η_1, ...: ``envelope`` (the certified lower
bound on L_t at every step, also with PyTorch heavy-ball or Nesterov momentum through
``theory.optimizers.sgd_step_bounds``), ``envelope_from_step_norms`` (any steps whose norms are
bounded), and ``certified_min_steps_schedule``.

Source: the descent-lemma argument (Nesterov, Introductory Lectures on Convex Optimization,
2004, §1.2.3) applied to the attacker.

>>> THEOREM.evaluate(L0=2.0, G=1.0, eta=0.1, C=1.0, beta=2.0, t=5)
1.45
>>> THEOREM.steps_to_threshold(1.0, L0=2.0, G=1.0, eta=0.1, C=1.0, beta=2.0)
10.0
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
from theory.theorems import smoothness_sandwich as sandwich

FloatArray = npt.NDArray[np.float64]

#: G‖Δ‖ + (β/2)‖Δ‖²: the most one step of norm ‖Δ‖ can lower the loss where ‖∇L‖ ≤ G
#: (T1's lower side with the worst inner product ⟨∇L, Δ⟩ = −G‖Δ‖).
DECREASE_GIVEN_STEP_NORM: sp.Expr = sp.expand(
    sym.L0 - sandwich.LOWER_BOUND.subs(sym.gdot, -sym.G * sym.delta_norm)
)
#: G η C + (β/2) η² C²: the most one clipped-SGD step (‖Δ‖ ≤ ηC) can lower the loss.
STEP_DECREASE: sp.Expr = DECREASE_GIVEN_STEP_NORM.subs(sym.delta_norm, sym.eta * sym.C)
#: L_0 − t (G η C + β η² C²/2): the certified lower bound on L_t (constant η).
BOUND: sp.Expr = sym.L0 - sym.t * STEP_DECREASE
#: The theorem's conclusion.
CONCLUSION: sp.Basic = sp.Ge(sym.L_t, BOUND)
#: one step: L_{s+1} ≥ L_s − (G η C + β η² C²/2).
STEP_CONCLUSION: sp.Basic = sp.Ge(sym.L_next, sym.L_s - STEP_DECREASE)

GRADIENT_BOUNDED_AT_ITERATES = Assumption(
    "gradient_bounded_at_iterates",
    sp.Le(sym.grad_norm, sym.G),
    "||grad L(theta_s)|| <= G at every iterate theta_s of the attack",
    kind="hypothesis",
)
CLIPPED_STEP = Assumption(
    "clipped_step",
    sp.Le(sym.delta_norm, sym.eta * sym.C),
    "||Delta_s|| = eta_s ||clip_C(g_s)|| <= eta_s C"
    " (clipping, or C bounds the stochastic gradient)",
    kind="hypothesis",
)
ETA_POSITIVE = optimizers.ETA_POSITIVE
C_POSITIVE = Assumption("C_positive", sp.Gt(sym.C, 0), "clipping norm C > 0")
G_NONNEGATIVE = sym.G_NONNEGATIVE
T_NONNEGATIVE = sym.T_NONNEGATIVE
T_INTEGER = sym.T_INTEGER


@dataclass(frozen=True)
class ClippedSgdProgress(Theorem):
    """T2: cumulative attacker progress under (clipped) SGD (see the module docstring)."""

    label: ClassVar[str] = "T2"
    name: ClassVar[str] = "clipped_sgd_progress"
    title: ClassVar[str] = "Cumulative attacker progress, (clipped) SGD"
    source: ClassVar[str] = (
        "Descent-lemma argument (Nesterov, Introductory Lectures on Convex Optimization, 2004, "
        "§1.2.3) applied to the attacker's clipped SGD steps"
    )
    steps_kind: ClassVar[StepsKind | None] = "minimum"
    steps_symbol: ClassVar[str | None] = "t"
    simplify_steps: ClassVar[bool] = True

    assumptions: tuple[Assumption, ...] = (
        sandwich.BETA_SMOOTH,
        GRADIENT_BOUNDED_AT_ITERATES,
        CLIPPED_STEP,
        ETA_POSITIVE,
        C_POSITIVE,
        G_NONNEGATIVE,
        sandwich.BETA_NONNEGATIVE,
        T_NONNEGATIVE,
        T_INTEGER,
    )
    conclusion: sp.Basic = CONCLUSION
    bound: sp.Expr = BOUND

    def steps_to_threshold(self, threshold: float, **values: float) -> float:
        """Certified minimum steps t_min = ⌈(L_0 − τ)/(G η C + β η² C²/2)⌉ (constant η).

        Inputs by name: ``L0, G, eta, C, beta`` (others are ignored). Returns 0 when
        ``threshold >= L0`` (nothing to certify) and ``math.inf`` when G = β = 0 (no step can
        lower the loss).
        """
        if values.get("momentum", 0.0) != 0.0:
            raise AssumptionError(
                self.label,
                "closed_form_without_momentum",
                f"the closed form is for momentum = 0, got {values['momentum']}; use "
                "certified_min_steps_schedule(..., momentum=...)",
            )
        inputs = self.require_inputs(values, ("L0", "G", "eta", "C", "beta"))
        self.check_assumptions(tau=threshold, **inputs)
        if threshold >= inputs["L0"]:
            return 0.0
        if self.evaluate_expression(STEP_DECREASE, **inputs) == 0.0:
            return math.inf
        return self.solved_steps(threshold, inputs)


THEOREM = ClippedSgdProgress()


def envelope_from_step_norms(
    *, L0: float, G: float, beta: float, step_norms: npt.ArrayLike
) -> FloatArray:
    """L_0 − Σ_{s<t} (G‖Δ_s‖ + (β/2)‖Δ_s‖²) for t = 0..T (shape (T+1,)), from
    ``DECREASE_GIVEN_STEP_NORM``: the certified lower bound on L_t for any steps with
    ‖Δ_s‖ ≤ ``step_norms[s]`` on a β-smooth loss with ‖∇L(θ_s)‖ ≤ G."""
    check_parameter_assumptions(
        THEOREM.label, THEOREM.assumptions, {"L0": L0, "G": G, "beta": beta}
    )
    norms = np.atleast_1d(np.asarray(step_norms, dtype=np.float64))
    if norms.ndim != 1 or not np.all(np.isfinite(norms)) or np.any(norms < 0):
        raise AssumptionError(
            THEOREM.label, "step_norms_nonnegative", "step norms must be finite and >= 0"
        )
    fn = lambdified(DECREASE_GIVEN_STEP_NORM, (sym.G, sym.beta, sym.delta_norm), "numpy")
    decrease = np.broadcast_to(np.asarray(fn(float(G), float(beta), norms)), norms.shape)
    return np.concatenate(([float(L0)], float(L0) - np.cumsum(decrease)))


def envelope(
    *,
    L0: float,
    G: float,
    C: float,
    beta: float,
    learning_rates: npt.ArrayLike,
    momentum: float = 0.0,
    nesterov: bool = False,
) -> FloatArray:
    """The certified lower bound on L_t for t = 0..T (shape (T+1,)) under clipped SGD with
    the per-step learning rates ``learning_rates`` (shape (T,)):
    L_0 − Σ_{s<t} (G η_s C + (β/2) η_s² C²) without momentum; with momentum the step norms
    of ``theory.optimizers.sgd_step_bounds`` replace η_s C."""
    steps = optimizers.sgd_step_bounds(learning_rates, C=C, momentum=momentum, nesterov=nesterov)
    return envelope_from_step_norms(L0=L0, G=G, beta=beta, step_norms=steps)


def certified_min_steps_schedule(
    *,
    L0: float,
    threshold: float,
    G: float,
    C: float,
    beta: float,
    learning_rates: npt.ArrayLike,
    momentum: float = 0.0,
    nesterov: bool = False,
) -> float:
    """The smallest t ≤ T whose ``envelope`` value is ≤ ``threshold``; ``math.inf`` when no
    step of the schedule gets there (the attacker cannot reach τ within these T steps)."""
    if not math.isfinite(threshold):
        raise AssumptionError(THEOREM.label, "tau_finite", f"tau = {threshold}")
    values = envelope(
        L0=L0,
        G=G,
        C=C,
        beta=beta,
        learning_rates=learning_rates,
        momentum=momentum,
        nesterov=nesterov,
    )
    reached = np.flatnonzero(values <= threshold)
    return float(reached[0]) if reached.size else math.inf
