r"""The check of T10 ``harm_from_loss`` on per-example harmful losses at evaluation points.

T10 (``theory.theorems.harm_from_loss``; docs/theorems.md, T10): with CE_i ≥ 0 the sequence
cross-entropy of harmful example i, f_s = (1/n) Σ_i exp(−CE_i) the sampled harm and f_e the
exact-match harm,

    (a) CE_i ≥ l for every i  ⇒  f_s ≤ exp(−max(l, 0)),
    (b) f_s ≥ exp(−L), L = (1/n) Σ_i CE_i,
    (c) f_e ≥ (1/n) #{i : CE_i < ln 2}.

``HarmEvaluation`` records what the check needs at one evaluation point: the per-example
CE_i and the two proxies *as the proxies computed them*
(``empirical.measurement.proxies.sampled_harm``
and ``exact_harm`` on the same examples). ``check_harm_from_loss`` compares the recorded
proxies with theory's bounds evaluated on the recorded losses (``sampled_harm_floor``,
``exact_match_floor``, ``sampled_harm_ceiling``): a violation means a proxy does not compute
what T10 speaks about. (a) needs a floor l that does not come from the losses it checks (a
certificate's, given by the caller); it is checked only at points where the floor holds for
every example (the hypothesis), and skipped without one.

A ``Trajectory`` records the mean harmful loss and f, not the per-example losses, so ``plan``
(T10's contribution to ``check_all``) reports the check not applicable on trajectories.

Allowance: the proxies and the bounds are float64 functions of the same float64 losses;
``ROUNDING_ULPS`` units of float64 roundoff of each compared value.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from empirical.certify.checks_base import ROUNDING_ULPS, PlannedCheck, Tally, missing
from empirical.certify.records import BoundCheck, PathConstants, not_applicable
from empirical.measurement.trajectory import Trajectory
from theory.theorems.harm_from_loss import (
    THEOREM,
    exact_match_floor,
    sampled_harm_ceiling,
    sampled_harm_floor,
)

__all__ = ["THEOREM", "HarmEvaluation", "check_harm_from_loss", "plan"]

INEQUALITY = (
    "(a) CE_i >= l => f_s <= exp(-max(l, 0)); (b) f_s >= exp(-mean CE); "
    "(c) f_e >= #{CE_i < ln 2}/n"
)
FLOAT64_EPSILON = float(np.finfo(np.float64).eps)


class HarmEvaluation(BaseModel):
    """Per-example harmful losses and the proxies measured on the same examples, at one step.

    ``losses``: CE_i (nats, ≥ 0; ``TeacherForced.loss_sum``) of the harmful examples;
    ``sampled_harm`` and ``exact_harm``: the proxies' values on exactly those examples.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(ge=0)
    losses: list[float] = Field(min_length=1)
    sampled_harm: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    exact_harm: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _losses_nonnegative(self) -> HarmEvaluation:
        if not all(math.isfinite(v) and v >= 0 for v in self.losses):
            raise ValueError("every per-example loss must be finite and >= 0")
        return self


def _allowance(*values: float) -> float:
    return ROUNDING_ULPS * FLOAT64_EPSILON * math.fsum(abs(v) for v in values)


def check_harm_from_loss(
    evaluations: list[HarmEvaluation], *, floor: float | None = None
) -> BoundCheck:
    """T10 (b) and (c) at every evaluation, and (a) where the given common ``floor`` holds
    for every example (see the module docstring)."""
    label, name = THEOREM.label, THEOREM.name
    if not evaluations:
        return not_applicable(label, name, INEQUALITY, "no evaluation point given")
    tally = Tally()
    ceiling = None if floor is None else sampled_harm_ceiling([floor])
    below_floor = 0
    for point in evaluations:
        f_s, f_e = point.sampled_harm, point.exact_harm
        jensen = sampled_harm_floor(math.fsum(point.losses) / len(point.losses))
        tally.add(point.step, f_s - jensen, _allowance(f_s, jensen))
        exact = exact_match_floor(point.losses)
        tally.add(point.step, f_e - exact, _allowance(f_e, exact))
        if ceiling is not None and floor is not None:
            if min(point.losses) >= floor:
                tally.add(point.step, ceiling - f_s, _allowance(f_s, ceiling))
            else:
                below_floor += 1
    return tally.result(
        label,
        name,
        INEQUALITY,
        tolerance=f"{ROUNDING_ULPS:g} ulp (float64) of every value compared",
        details={
            "floor": floor,
            "points_below_floor": below_floor,
            "ceiling_checked": floor is not None,
        },
    )


def plan(
    trajectory: Trajectory, constants: PathConstants, threshold: float | None
) -> list[PlannedCheck]:
    """Not applicable on a trajectory: it does not record the per-example harmful losses."""
    what = "per-example harmful cross-entropy at the evaluation points"
    return [missing(THEOREM, what, inequality=INEQUALITY)]
