r"""T4 ``pl_convergence``: Polyak–Łojasiewicz convergence of gradient descent.

Statement (docs/theorems.md, T4). Hypotheses: L is β-smooth and μ-PL,
½‖∇L(θ)‖² ≥ μ (L(θ) − L*), with L ≥ L*; the attack is gradient descent
θ_{s+1} = θ_s − η ∇L(θ_s). Parameters: 0 < μ ≤ β, 0 < η ≤ 1/β, L_0 ≥ L*. Then

    L_t − L* ≤ (1 − ημ)^t (L_0 − L*)         (``conclusion``: L_t ≤ L* + (1 − ημ)^t (L_0 − L*)).

One step: T1's upper side with ⟨∇L, Δ⟩ = −η‖∇L‖² and ‖Δ‖ = η‖∇L‖ gives
L_{s+1} ≤ L_s − η(1 − βη/2)‖∇L(θ_s)‖² ≤ L_s − (η/2)‖∇L(θ_s)‖² (as βη ≤ 1)
≤ L_s − ημ(L_s − L*); subtract L* and induct.

Certified *maximum* steps to reach τ > L*: t_max = ⌈log((τ − L*)/(L_0 − L*)) / log(1 − ημ)⌉,
from ``sympy.solve(bound = τ, t)``; 0 if L_0 ≤ τ; 1 if ημ = 1. On harmful data this is a
vulnerability certificate (the attack succeeds within t_max steps); on harmless data, a
trainability certificate.

Source: Polyak, "Gradient methods for minimizing functionals" (1963); Karimi, Nutini,
Schmidt, "Linear Convergence of Gradient and Proximal-Gradient Methods Under the
Polyak-Łojasiewicz Condition", ECML-PKDD 2016, Theorem 1.

>>> THEOREM.evaluate(L0=1.0, L_star=0.0, eta=0.5, mu=1.0, t=3)
0.125
>>> THEOREM.steps_to_threshold(0.125, L0=1.0, L_star=0.0, eta=0.5, mu=1.0, beta=2.0)
3.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import sympy as sp

from theory import symbols as sym
from theory.theorem import (
    Assumption,
    StepsKind,
    Theorem,
    first_step_at_or_below,
)
from theory.theorems import smoothness_sandwich as sandwich

#: The per-step contraction factor 1 − ημ of the excess loss.
CONTRACTION: sp.Expr = 1 - sym.eta * sym.mu
#: L* + (1 − ημ)^t (L_0 − L*): the certified upper bound on L_t.
BOUND: sp.Expr = sym.L_star + CONTRACTION**sym.t * (sym.L0 - sym.L_star)
#: The theorem's conclusion.
CONCLUSION: sp.Basic = sp.Le(sym.L_t, BOUND)
#: one step: L_{s+1} − L* ≤ (1 − ημ)(L_s − L*).
STEP_CONCLUSION: sp.Basic = sp.Le(sym.L_next - sym.L_star, CONTRACTION * (sym.L_s - sym.L_star))

MU_PL = Assumption(
    "mu_pl",
    sp.Ge(sym.grad_norm**2 / 2, sym.mu * (sym.L_s - sym.L_star)),
    "L is mu-PL: ||grad L(theta)||^2 / 2 >= mu (L(theta) - L*) at every theta",
    kind="hypothesis",
)
LOSS_ABOVE_MINIMUM = Assumption(
    "loss_above_minimum",
    sp.Ge(sym.L_s, sym.L_star),
    "L* = inf L, so L(theta) >= L*",
    kind="hypothesis",
)
GRADIENT_DESCENT_STEP = Assumption(
    "gradient_descent_step",
    sp.And(
        sp.Eq(sym.gdot, -sym.eta * sym.grad_norm**2), sp.Eq(sym.delta_norm, sym.eta * sym.grad_norm)
    ),
    "Delta = -eta grad L(theta): <grad L, Delta> = -eta ||grad L||^2"
    " and ||Delta|| = eta ||grad L||",
    kind="hypothesis",
)
MU_POSITIVE = Assumption("mu_positive", sp.Gt(sym.mu, 0), "PL constant mu > 0")
MU_AT_MOST_BETA = Assumption("mu_at_most_beta", sp.Le(sym.mu, sym.beta), "mu <= beta")
ETA_POSITIVE = Assumption("eta_positive", sp.Gt(sym.eta, 0), "learning rate eta > 0")
ETA_AT_MOST_INVERSE_BETA = Assumption(
    "eta_at_most_inverse_beta",
    sp.Le(sym.eta * sym.beta, 1),
    "eta <= 1/beta (stated as eta*beta <= 1)",
)
START_ABOVE_MINIMUM = Assumption("start_above_minimum", sp.Ge(sym.L0, sym.L_star), "L_0 >= L*")
THRESHOLD_ABOVE_MINIMUM = Assumption(
    "threshold_above_minimum", sp.Gt(sym.tau, sym.L_star), "tau > L* (L* itself is only a limit)"
)
T_NONNEGATIVE = sym.T_NONNEGATIVE
T_INTEGER = sym.T_INTEGER


@dataclass(frozen=True)
class PlConvergence(Theorem):
    """T4: PL convergence of gradient descent (see the module docstring)."""

    label: ClassVar[str] = "T4"
    name: ClassVar[str] = "pl_convergence"
    title: ClassVar[str] = "Polyak–Łojasiewicz convergence (vulnerability / trainability)"
    source: ClassVar[str] = "Polyak (1963); Karimi, Nutini, Schmidt, ECML-PKDD 2016, Theorem 1"
    steps_kind: ClassVar[StepsKind | None] = "maximum"
    steps_symbol: ClassVar[str | None] = "t"

    assumptions: tuple[Assumption, ...] = (
        sandwich.BETA_SMOOTH,
        MU_PL,
        LOSS_ABOVE_MINIMUM,
        GRADIENT_DESCENT_STEP,
        MU_POSITIVE,
        MU_AT_MOST_BETA,
        ETA_POSITIVE,
        ETA_AT_MOST_INVERSE_BETA,
        START_ABOVE_MINIMUM,
        THRESHOLD_ABOVE_MINIMUM,
        T_NONNEGATIVE,
        T_INTEGER,
    )
    conclusion: sp.Basic = CONCLUSION
    bound: sp.Expr = BOUND

    def steps_to_threshold(self, threshold: float, **values: float) -> float:
        """Certified maximum steps t_max = ⌈log((τ − L*)/(L_0 − L*)) / log(1 − ημ)⌉.

        Inputs by name: ``L0, L_star, eta, mu, beta`` (others ignored; β is needed to check
        η ≤ 1/β). 0 when ``threshold >= L0``; 1 when ημ = 1; ``threshold <= L_star`` raises
        ``AssumptionError`` (``threshold_above_minimum``).
        """
        inputs = self.require_inputs(values, ("L0", "L_star", "eta", "mu", "beta"))
        self.check_assumptions(**inputs)
        if threshold >= inputs["L0"]:
            self.check_assumptions(tau=threshold)  # finite
            return 0.0
        self.check_assumptions(tau=threshold, **inputs)
        at = {k: v for k, v in inputs.items() if k != "beta"}
        if inputs["eta"] * inputs["mu"] >= 1.0:
            return first_step_at_or_below(lambda t: self.evaluate(t=t, **at), threshold, 1.0)
        return self.solved_steps(threshold, at)


THEOREM = PlConvergence()
