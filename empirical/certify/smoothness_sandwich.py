r"""The check of T1 ``smoothness_sandwich`` on every step of a measured trajectory.

T1 (``theory.theorems.smoothness_sandwich``; docs/theorems.md, T1): for a β-smooth loss L
and any step Δ,

    L(θ) + ⟨∇L(θ), Δ⟩ − (β/2)‖Δ‖² ≤ L(θ + Δ) ≤ L(θ) + ⟨∇L(θ), Δ⟩ + (β/2)‖Δ‖²

(the descent lemma: Nesterov, Introductory Lectures on Convex Optimization, 2004, Lemma
1.2.3). ``check_step_sandwich`` evaluates both sides with theory's ``THEOREM.evaluate`` and
``THEOREM.upper`` at every recorded step s of the probe loss, L_s = L_P(θ_s), Δ_s =
θ_{s+1} − θ_s, with one β for the path or a per-segment β_s (the larger Lanczos estimate at
θ_s and θ_{s+1}). ``plan`` is T1's contribution to ``check_all``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from empirical.certify.checks_base import (
    EVALUATION_TEXT,
    LOSS_TOLERANCE_TEXT,
    PlannedCheck,
    StepBound,
    Tally,
    as_constant,
    evaluation_rounding,
    loss_tolerance,
    measured_prefix,
    missing,
    no_probe,
    planned,
    probe_losses,
)
from empirical.certify.records import BoundCheck, Constant, PathConstants
from empirical.measurement.trajectory import Trajectory
from theory.errors import HftaInputError
from theory.theorems.smoothness_sandwich import THEOREM

__all__ = ["THEOREM", "check_step_sandwich", "plan"]


def check_step_sandwich(
    trajectory: Trajectory,
    beta: float | Constant | Sequence[float | None],
    *,
    theta0_norm: float | Constant | None = None,
    lower: StepBound | None = None,
    upper: StepBound | None = None,
) -> BoundCheck:
    """T1 on every step: lower(L_s, ⟨∇L_s,Δ_s⟩, β_s, ‖Δ_s‖) ≤ L_{s+1} ≤ upper(...).

    ``beta``: one β (a number or a ``Constant``) or one β_s per step (``None`` skips that
    step). ``lower``/``upper`` default to T1's ``THEOREM.evaluate`` and ``THEOREM.upper``
    (keyword arguments ``L0, gdot, beta, delta_norm``). Steps that do not move are skipped
    (T1 holds there with equality).

    Rounding: 8 ulp of L_s, L_{s+1} and ⟨∇L_s, Δ_s⟩. A loss that subtracts parameters from
    stored constants (θ − θ* of a quadratic, Xw − y of least squares) loses its last digits
    relative to ‖θ‖, not to L, which matters near a minimum; with ``theta0_norm`` each end of
    the step also allows ‖∇L‖ r + (β/2) r², r = 8ε(‖θ_0‖ + ‖θ − θ_0‖) (the mean-value
    bound on moving the point by r).
    """
    label, name = THEOREM.label, THEOREM.name
    inequality = "L_s + <grad L_s, D_s> - (beta_s/2)|D_s|^2 <= L_{s+1} <= ... + (beta_s/2)|D_s|^2"
    losses = probe_losses(trajectory)
    slopes = trajectory.probe_directional_derivative
    if losses is None or slopes is None:
        return no_probe(label, name, inequality)
    lower = lower or THEOREM.evaluate
    upper = upper or THEOREM.upper
    n = trajectory.n_steps
    constants: dict[str, Constant] = {}
    if isinstance(beta, int | float | Constant):
        constant = as_constant("beta", beta)
        per_step: list[float | None] = [constant.value] * n
        constants["beta"] = constant
    else:
        per_step = list(beta)
        if len(per_step) != n:
            raise HftaInputError(f"{len(per_step)} per-segment betas for {n} steps")
        known = [b for b in per_step if b is not None]
        constants["beta"] = Constant(
            name="beta",
            value=max(known) if known else math.nan,
            method="per-segment beta_s (largest estimate at the points bracketing each step)",
            points=len(known),
        )
    evaluation = evaluation_rounding(trajectory, theta0_norm)
    tally = Tally()
    ratios: list[float] = []
    still = unknown = 0
    for s in range(measured_prefix(trajectory)):
        l0, l1, gdot, b = losses[s], losses[s + 1], slopes[s], per_step[s]
        norm = trajectory.update_norm[s]
        if l0 is None or l1 is None or gdot is None or norm is None or b is None:
            unknown += 1
            continue
        if norm == 0.0:  # no move (a zero learning rate): T1 holds with equality
            still += 1
            continue
        values = {"L0": l0, "gdot": gdot, "beta": b, "delta_norm": norm}
        slack = min(l1 - lower(**values), upper(**values) - l1)
        allowance = loss_tolerance(trajectory, l0, l1, gdot)
        if evaluation is not None:
            allowance += evaluation(s, b) + evaluation(s + 1, b)
        tally.add(s, slack, allowance)
        if trajectory.curvature is not None and trajectory.curvature[s] is not None and b > 0:
            ratios.append(abs(float(trajectory.curvature[s])) / b)  # type: ignore[arg-type]
    return tally.result(
        label,
        name,
        inequality,
        tolerance=LOSS_TOLERANCE_TEXT + ("" if evaluation is None else EVALUATION_TEXT),
        constants=constants,
        details={
            "max_abs_curvature_over_beta": max(ratios) if ratios else None,
            "steps_without_move": still,
            "steps_without_measurements": unknown,
        },
    )


def plan(
    trajectory: Trajectory, constants: PathConstants, threshold: float | None
) -> list[PlannedCheck]:
    """T1 with the per-segment β if measured, else the path β (any optimizer; T1 has no
    steps-to-threshold comparison, so ``threshold`` is unused)."""
    segments, beta = constants.beta_segments, constants.beta
    if segments is not None:
        return [planned(THEOREM, lambda: check_step_sandwich(trajectory, segments))]
    if beta is not None:
        return [planned(THEOREM, lambda: check_step_sandwich(trajectory, beta))]
    return [missing(THEOREM, "beta")]
