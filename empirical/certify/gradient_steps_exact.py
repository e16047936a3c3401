r"""The check of T9 ``gradient_steps_exact`` on every step of gradient descent on the probe loss.

T9 (``theory.theorems.gradient_steps_exact``; docs/theorems.md, T9): if L is β-smooth and N ≥ 1
full gradient steps θ_{k+1} = θ_k − η∇L(θ_k) (any η > 0) have ‖∇L(θ_k)‖ ≤ G at the iterates
θ_0, …, θ_{N−1}, then

    L_N ≥ L_0 − (N (η G² + β η² G²/4) + β η² G²/4),

the exact worst case (attained by a one-dimensional β-smooth function). ``check_gradient_steps``
evaluates theory's ``THEOREM.evaluate`` at every measured step t ≥ 1 (one G for the whole run
bounds the gradient at every prefix's iterates) and compares the measured steps to a threshold
τ with the certified minimum ``THEOREM.steps_to_threshold``. It applies only where the run *is*
gradient descent on the probe loss (full batch, SGD without momentum or weight decay, no
active clipping, one learning rate). ``plan`` is T9's contribution to ``check_all``: nothing
for other runs (the verifier's minibatch attacks), so their records are unchanged.

Source: performance estimation (Drori & Teboulle, Math. Program. 2014; Taylor, Hendrickx &
Glineur, Math. Program. 2017, Theorem 3.10), the dual certificate in closed form
(docs/theorems.md, T9).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from empirical.certify.checks_base import (
    LOSS_TOLERANCE_TEXT,
    PlannedCheck,
    StepBound,
    Tally,
    as_constant,
    default_threshold,
    first_at_or_below,
    gradient_descent_on_probe,
    gradient_descent_prelude,
    loss_tolerance,
    missing,
    parameter_rounding,
    planned,
)
from empirical.certify.records import BoundCheck, Constant, PathConstants
from empirical.measurement.trajectory import Trajectory
from theory.theorems.gradient_steps_exact import THEOREM

__all__ = ["THEOREM", "check_gradient_steps", "plan"]


def check_gradient_steps(
    trajectory: Trajectory,
    G: float | Constant,
    beta: float | Constant,
    *,
    threshold: float | None = None,
    theta0_norm: float | None = None,
    bound: StepBound | None = None,
) -> BoundCheck:
    """T9 on every step of gradient descent: L_t ≥ bound(L0, G, eta, beta, t) for t ≥ 1, and
    the measured steps to τ are at least T9's certified minimum.

    ``G`` bounds ‖∇L_P‖ at the iterates, ``beta`` the smoothness. ``bound`` defaults to T9's
    ``THEOREM.evaluate`` (keywords ``L0, G, eta, beta, t``), the certified minimum is
    ``THEOREM.steps_to_threshold``; τ defaults to the lowest probe loss reached. With
    ``theta0_norm`` the allowance includes G times the rounding of the parameters (the
    rounded step is not exactly −η∇L).
    """
    theorem = THEOREM
    label, name = theorem.label, theorem.name
    inequality = "L_t >= L_0 - (t (eta G^2 + beta eta^2 G^2/4) + beta eta^2 G^2/4)"
    prelude = gradient_descent_prelude(trajectory, label, name, inequality)
    if isinstance(prelude, BoundCheck):
        return prelude
    losses, steps, loss0 = prelude
    constants = {"G": as_constant("G", G), "beta": as_constant("beta", beta)}
    values = {
        "L0": loss0,
        "G": constants["G"].value,
        "eta": float(trajectory.learning_rate[0]),  # type: ignore[arg-type]
        "beta": constants["beta"].value,
    }
    evaluate = bound or theorem.evaluate
    rounding = parameter_rounding(trajectory, theta0_norm)
    extra = None
    if rounding is not None:
        extra = np.concatenate(([0.0], np.cumsum(values["G"] * rounding[:steps])))
    tally = Tally()
    for t in range(1, steps + 1):
        value = losses[t]
        if value is None:
            break
        allowance = loss_tolerance(trajectory, value, values["L0"])
        if extra is not None:
            allowance += float(extra[t])
        tally.add(t, value - evaluate(t=t, **values), allowance)
    prefix = losses[: steps + 1]
    tau = default_threshold(prefix) if threshold is None else float(threshold)
    fields: dict[str, Any] = {}
    if tau < values["L0"]:
        certified = theorem.steps_to_threshold(tau, **values)
        measured = first_at_or_below(prefix, tau)
        if measured is not None and measured < certified:
            tally.fail(measured)
        else:
            tally.instances += 1
        unreachable = bool(np.isinf(certified))
        fields = {
            "threshold": tau,
            "steps_kind": "minimum",
            "certified_steps": None if unreachable else int(certified),
            "certified_unreachable": unreachable,
            "measured_steps": measured,
        }
    return tally.result(
        label,
        name,
        inequality,
        tolerance=LOSS_TOLERANCE_TEXT
        + ("" if rounding is None else "; + G * eps * sum ||theta_{s+1}|| (parameter rounding)"),
        constants=constants,
        **fields,
    )


def plan(
    trajectory: Trajectory, constants: PathConstants, threshold: float | None
) -> list[PlannedCheck]:
    """T9 for a run that is gradient descent on the probe loss, with G at the iterates, the
    path β and ‖θ_0‖ (parameter rounding); nothing for other runs."""
    if gradient_descent_on_probe(trajectory, THEOREM.label) is not None:
        return []
    g_iterates, beta = constants.G_iterates, constants.beta
    if g_iterates is None or beta is None:
        return [missing(THEOREM, "G at the iterates and beta")]
    norm0 = constants.theta0_norm
    return [
        planned(
            THEOREM,
            lambda: check_gradient_steps(
                trajectory,
                g_iterates,
                beta,
                threshold=threshold,
                theta0_norm=None if norm0 is None else norm0.value,
            ),
        )
    ]
