r"""The check of T6 ``contraction_tail`` over the rest of a measured run.

T6 (``theory.theorems.contraction_tail``; docs/theorems.md, T6): if from step K on the updates
contract, ‖u_{s+1}‖ ≤ c‖u_s‖ with 0 ≤ c < 1, and ‖∇L‖ ≤ G on the region the remaining path
visits, then for every n ≥ 0 (the geometric series and T3's path-length bound)

    L_{K+n} ≥ L_K − G‖u_K‖(1 − cⁿ)/(1 − c) ≥ L_K − G‖u_K‖/(1 − c),

so no threshold below the floor is ever reached. ``check_contraction_tail`` checks the
hypothesis on every measured step after K and both inequalities on every loss after K with
theory's ``THEOREM.horizon`` and ``THEOREM.evaluate``, and the certified minimum steps after K
to a threshold with ``THEOREM.steps_to_threshold``. ``plan`` is T6's contribution to
``check_all`` (when a contraction start K and c were measured).

Source: CLAMP (CVPR 2026), as stated in docs/theorems.md, T6; the geometric series applied
to T3's path-length bound.
"""

from __future__ import annotations

import math
from typing import Any

from empirical.certify.checks_base import (
    LOSS_TOLERANCE_TEXT,
    ROUNDING_ULPS,
    PlannedCheck,
    StepBound,
    Tally,
    as_constant,
    epsilon,
    first_at_or_below,
    loss_tolerance,
    measured_prefix,
    missing,
    no_probe,
    parameter_rounding,
    planned,
    probe_losses,
)
from empirical.certify.records import BoundCheck, Constant, PathConstants, not_applicable
from empirical.measurement.trajectory import Trajectory
from theory.theorems.contraction_tail import THEOREM

__all__ = ["THEOREM", "check_contraction_tail", "plan"]


def check_contraction_tail(
    trajectory: Trajectory,
    K: int,
    c: float | Constant,
    G: float | Constant,
    *,
    threshold: float | None = None,
    theta0_norm: float | Constant | None = None,
    horizon: StepBound | None = None,
    floor: StepBound | None = None,
) -> BoundCheck:
    """T6 over the rest of the run from step K: the contraction hypothesis
    ‖u_{s+1}‖ ≤ c‖u_s‖ (s ≥ K, measured) and, for every n, L_{K+n} ≥ horizon(n) ≥ floor.

    ``horizon`` defaults to T6's ``THEOREM.horizon`` (keywords ``L_K, G, u_K, c, n``),
    ``floor`` to ``THEOREM.evaluate`` (``L_K, G, u_K, c``). A measured ratio above c is a
    violation (the hypothesis is refuted at that step). With ``threshold`` τ: the certified
    minimum number of steps after K (``math.inf`` if the floor is above τ) against the
    measured one. Rounding: an update norm is a difference of rounded parameters, so near
    convergence it is rounding noise of the size ε‖θ‖; with ``theta0_norm`` each update in
    the hypothesis may be off by ``ROUNDING_ULPS`` ε (‖θ_0‖ + ‖θ − θ_0‖) (the rounding of the
    parameters and of the gradient's last digits), without it only by 8 ulp of the norms.
    """
    theorem = THEOREM
    label, name = theorem.label, theorem.name
    inequality = "L_{K+n} >= L_K - G ||u_K|| (1 - c^n)/(1 - c) >= L_K - G ||u_K||/(1 - c)"
    losses = probe_losses(trajectory)
    if losses is None:
        return no_probe(label, name, inequality)
    steps = measured_prefix(trajectory)
    if not 0 <= K < steps:
        return not_applicable(label, name, inequality, f"K = {K} outside the measured steps")
    c_constant, g_constant = as_constant("c", c), as_constant("G", G)
    horizon = horizon or theorem.horizon
    floor = floor or theorem.evaluate
    norms = [float(u) for u in trajectory.update_norm[:steps]]  # type: ignore[arg-type]
    loss_k = float(losses[K])  # type: ignore[arg-type]
    inputs = {"L_K": loss_k, "G": g_constant.value, "u_K": norms[K], "c": c_constant.value}
    tally = Tally()
    refuted: list[int] = []
    norm0 = None if theta0_norm is None else as_constant("theta0_norm", theta0_norm).value
    rounding = parameter_rounding(trajectory, norm0)
    for s in range(K, steps - 1):
        # hypothesis: ||u_{s+1}|| <= c ||u_s||, each norm off by at most its rounding
        slack = c_constant.value * norms[s] - norms[s + 1]
        tolerance = ROUNDING_ULPS * epsilon(trajectory) * (norms[s] + norms[s + 1])
        if rounding is not None:
            tolerance += ROUNDING_ULPS * (c_constant.value * rounding[s] + rounding[s + 1])
        if not slack >= -tolerance:
            refuted.append(s + 1)
            tally.fail(s + 1)
    floor_value = floor(**inputs)
    for n in range(0, steps - K + 1):
        value = losses[K + n]
        if value is None:
            break
        slack = min(value - horizon(n=n, **inputs), value - floor_value)
        tally.add(K + n, slack, loss_tolerance(trajectory, value, loss_k))
    fields: dict[str, Any] = {}
    if threshold is not None:
        certified = theorem.steps_to_threshold(float(threshold), **inputs)
        measured = first_at_or_below(losses[K : steps + 1], float(threshold))
        if measured is not None and measured < certified:
            tally.fail(K + measured)
        else:
            tally.instances += 1
        fields = {
            "threshold": float(threshold),
            "steps_kind": "minimum",
            "certified_steps": None if math.isinf(certified) else int(certified),
            "certified_unreachable": math.isinf(certified),
            "measured_steps": measured,
        }
    return tally.result(
        label,
        name,
        inequality,
        tolerance=LOSS_TOLERANCE_TEXT
        + ("" if rounding is None else "; update norms: 8 ulp of the parameter norm"),
        constants={"c": c_constant, "G": g_constant},
        details={
            "K": K,
            "floor": floor_value,
            "contraction_refuted_at": refuted,
            "steps_after_K_are_counted_from_K": True,
        },
        **fields,
    )


def plan(
    trajectory: Trajectory, constants: PathConstants, threshold: float | None
) -> list[PlannedCheck]:
    """T6 from the measured contraction start K with the measured c and G on the segments;
    nothing when the update norms were not found to contract."""
    start, c, g_path = constants.contraction_start, constants.c, constants.G_path
    if start is None or c is None:
        return []
    if g_path is None:
        return [missing(THEOREM, "G on the segments")]
    return [
        planned(
            THEOREM,
            lambda: check_contraction_tail(trajectory, start, c, g_path, threshold=threshold),
        )
    ]
