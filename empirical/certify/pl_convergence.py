r"""The check of T4 ``pl_convergence`` on every step of gradient descent on the probe loss.

T4 (``theory.theorems.pl_convergence``; docs/theorems.md, T4): if L is β-smooth and satisfies
the Polyak–Łojasiewicz inequality ½‖∇L‖² ≥ μ(L − L*), gradient descent with a constant step
η ≤ 1/β has

    L_t ≤ L* + (1 − ημ)^t (L_0 − L*),

so every threshold τ > L* is reached within T4's certified maximum number of steps (an upper
bound on the attacker's cost: the attacker's side). ``check_pl_convergence`` evaluates
theory's ``THEOREM.evaluate`` at every measured step and compares the measured steps to τ
with ``THEOREM.steps_to_threshold``. It applies only where the run *is* gradient descent on
the probe loss (full batch, SGD without momentum or weight decay, no active clipping, one
learning rate). ``plan`` is T4's contribution to ``check_all`` (when μ, L* and β are known).

Source: Polyak, "Gradient methods for minimizing functionals" (1963); Karimi, Nutini &
Schmidt, "Linear Convergence of Gradient and Proximal-Gradient
Methods Under the Polyak-Łojasiewicz Condition", ECML-PKDD 2016, Theorem 1.
"""

from __future__ import annotations

from typing import Any

from empirical.certify.checks_base import (
    LOSS_TOLERANCE_TEXT,
    PlannedCheck,
    StepBound,
    Tally,
    as_constant,
    first_at_or_below,
    gradient_descent_prelude,
    loss_tolerance,
    planned,
)
from empirical.certify.records import BoundCheck, Constant, PathConstants
from empirical.measurement.trajectory import Trajectory
from theory.theorems.pl_convergence import THEOREM

__all__ = ["THEOREM", "check_pl_convergence", "plan"]


def check_pl_convergence(
    trajectory: Trajectory,
    mu: float | Constant,
    beta: float | Constant,
    loss_star: float | Constant,
    *,
    threshold: float | None = None,
    bound: StepBound | None = None,
) -> BoundCheck:
    """T4 on every step of gradient descent: L_t ≤ bound(L0, L_star, eta, mu, t), and the
    measured steps to τ are at most T4's certified maximum.

    ``bound`` defaults to T4's ``THEOREM.evaluate`` (keywords ``L0, L_star, eta, mu, t``),
    the certified maximum to ``THEOREM.steps_to_threshold``; τ defaults to the last probe
    loss measured.
    """
    theorem = THEOREM
    label, name = theorem.label, theorem.name
    inequality = "L_t <= L* + (1 - eta mu)^t (L_0 - L*)"
    prelude = gradient_descent_prelude(trajectory, label, name, inequality)
    if isinstance(prelude, BoundCheck):
        return prelude
    losses, steps, loss0 = prelude
    constants = {
        "mu": as_constant("mu", mu),
        "beta": as_constant("beta", beta),
        "L_star": as_constant("L_star", loss_star),
    }
    eta = float(trajectory.learning_rate[0])  # type: ignore[arg-type]
    values = {
        "L0": loss0,
        "L_star": constants["L_star"].value,
        "eta": eta,
        "mu": constants["mu"].value,
    }
    theorem.check_assumptions(beta=constants["beta"].value, **values)
    evaluate = bound or theorem.evaluate
    tally = Tally()
    for t in range(1, steps + 1):
        value = losses[t]
        if value is None:
            break
        certified_value = evaluate(t=t, **values)
        tally.add(t, certified_value - value, loss_tolerance(trajectory, value, values["L0"]))
    tau = float(losses[steps]) if threshold is None else float(threshold)  # type: ignore[arg-type]
    fields: dict[str, Any] = {}
    if tau > values["L_star"]:
        certified = theorem.steps_to_threshold(tau, beta=constants["beta"].value, **values)
        measured = first_at_or_below(losses[: steps + 1], tau)
        horizon_reached = certified <= steps
        if (measured is None and horizon_reached) or (
            measured is not None and measured > certified
        ):
            tally.fail(measured)
        else:
            tally.instances += 1
        fields = {
            "threshold": tau,
            "steps_kind": "maximum",
            "certified_steps": int(certified),
            "measured_steps": measured,
        }
    return tally.result(
        label, name, inequality, tolerance=LOSS_TOLERANCE_TEXT, constants=constants, **fields
    )


def plan(
    trajectory: Trajectory, constants: PathConstants, threshold: float | None
) -> list[PlannedCheck]:
    """T4 when μ, L* and β are known (the check itself says when the run is not gradient
    descent on the probe loss)."""
    mu, loss_star, beta = constants.mu, constants.loss_star, constants.beta
    if mu is None or loss_star is None or beta is None:
        return []
    return [
        planned(
            THEOREM,
            lambda: check_pl_convergence(trajectory, mu, beta, loss_star, threshold=threshold),
        )
    ]
