r"""What every bound check shares: rounding allowances, the tally of slacks, trajectory access,
the envelope comparison and the plan of checks a theorem contributes to ``check_all``.

What the checks mean, honestly. The constants are *measured* along one path
(``empirical.certify.constants``): a Lanczos β at a point is a lower estimate of the
smoothness on any region containing it (Ritz values lie inside the spectrum; the estimate is
multiplied by 1 + the Lanczos tolerance to cover its convergence error, not a missed
eigenvalue); a G measured at sampled points is a lower estimate of the supremum on the
segments. A violation therefore means "the theorem with these measured constants does not
describe this run" (a constant too small for the region, or a wrong bound), and is reported,
never hidden.

Rounding. The losses are float32 (or the trajectory's dtype) evaluations. A float32
causal-LM loss agrees with a float64 evaluation of the same model to a few ulp at L ≈ 1 but by
up to 65 ulp near a minimum (L ≈ 0.003 on the default 200-step attack, measured by
``empirical.certify.float64``), so a fixed ulp count cannot cover it: the verifier's measured
run has its probe columns evaluated again in float64 at the captured iterates
(``Trajectory.probe_dtype = "float64"``), and each inequality is allowed ``ROUNDING_ULPS`` = 8
units of roundoff ε *of the probe's dtype* of every loss-sized value it compares
(``loss_tolerance``: 8 ε Σ|v|); on a float32 trajectory the allowance stays 8 float32 ulp,
which near a minimum can be too small (say so when such a check fails); bounds on
step *norms* also allow the rounding of the new parameters (``parameter_rounding``:
ε‖θ_{s+1}‖ ≤ ε(‖θ_0‖ + ‖θ_{s+1} − θ_0‖)) and G times its sum in the cumulative bounds, and
T1 (given ‖θ_0‖) the loss's own loss of digits relative to ‖θ‖ near a minimum
(``evaluation_rounding``: ‖∇L‖ r + (β/2) r², r = 8ε(‖θ_0‖ + ‖θ − θ_0‖), the mean-value
bound on moving the point by r). Any allowance used is named in ``BoundCheck.tolerance``.

The ``Tally`` counts an inequality as satisfied when its slack (measured minus bound, in the
direction that must be ≥ 0) is ≥ −allowance; a NaN slack is a violation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from empirical.certify.records import (
    BoundCheck,
    Constant,
    PathConstants,
    given_constant,
    not_applicable,
)
from empirical.measurement.trajectory import MACHINE_EPSILON as MACHINE_EPSILON
from empirical.measurement.trajectory import Trajectory
from theory.errors import AssumptionError

if TYPE_CHECKING:
    from theory.theorem import Theorem

FloatArray = npt.NDArray[np.float64]
#: A bound evaluated from keyword arguments (a theorem's ``evaluate``, ``upper``, ``horizon``).
StepBound = Callable[..., float]
#: A bound on every step at once (an envelope L_0 − Σ ..., or per-step norm bounds).
Envelope = Callable[..., FloatArray]

#: Units of roundoff allowed per loss-sized value an inequality compares (module docstring).
ROUNDING_ULPS = 8.0
#: Theory's schedule helpers require η_s > 0; a rate of exactly 0 (the first warmup step,
#: which moves nothing) enters them as this number, changing the bound it gives by < 1e-300.
ZERO_RATE_STAND_IN = float(np.finfo(np.float64).tiny)


# ---------------------------------------------------------------------- the tally
@dataclass
class Tally:
    """Accumulates slacks (≥ −tolerance is satisfied) into a ``BoundCheck``."""

    instances: int = 0
    violations: int = 0
    first_violation: int | None = None
    worst_slack: float | None = None
    worst_step: int | None = None

    def add(self, step: int, slack: float, tolerance: float) -> None:
        """One inequality at ``step``: satisfied when slack ≥ −tolerance (NaN is not)."""
        self.instances += 1
        if self.worst_slack is None or slack < self.worst_slack:
            self.worst_slack, self.worst_step = slack, step
        if not slack >= -tolerance:  # NaN counts as a violation
            self.violations += 1
            if self.first_violation is None:
                self.first_violation = step

    def fail(self, step: int | None) -> None:
        """One inequality that failed outright at ``step`` (e.g. measured < certified steps)."""
        self.instances += 1
        self.violations += 1
        if self.first_violation is None or (step is not None and step < self.first_violation):
            self.first_violation = step

    def result(self, label: str, name: str, inequality: str, **fields: Any) -> BoundCheck:
        """The ``BoundCheck`` (not applicable when nothing was evaluated)."""
        if self.instances == 0:
            reason = fields.pop("reason", "") or "no step had the measurements this check needs"
            return not_applicable(label, name, inequality, reason)
        return BoundCheck(
            label=label,
            name=name,
            inequality=inequality,
            status="violated" if self.violations else "holds",
            instances=self.instances,
            violations=self.violations,
            first_violation_step=self.first_violation,
            worst_slack=self.worst_slack,
            worst_step=self.worst_step,
            **fields,
        )


# ---------------------------------------------------------------------- trajectory access
def epsilon(trajectory: Trajectory) -> float:
    """The unit roundoff ε of the trajectory's parameters (its dtype; float32's when unknown)."""
    return MACHINE_EPSILON.get(trajectory.environment.dtype, MACHINE_EPSILON["float32"])


def loss_epsilon(trajectory: Trajectory) -> float:
    """The unit roundoff of the probe quantities: ``probe_dtype`` when they were evaluated
    again in another dtype (``empirical.certify.float64``), else the parameters' ``epsilon``."""
    if trajectory.probe_dtype is None:
        return epsilon(trajectory)
    return MACHINE_EPSILON.get(trajectory.probe_dtype, epsilon(trajectory))


def loss_tolerance(trajectory: Trajectory, *values: float) -> float:
    """8 ε Σ|v|: ``ROUNDING_ULPS`` units of roundoff (of the probe's dtype, ``loss_epsilon``)
    of every loss-sized value compared."""
    return ROUNDING_ULPS * loss_epsilon(trajectory) * math.fsum(abs(v) for v in values)


LOSS_TOLERANCE_TEXT = f"{ROUNDING_ULPS:g} ulp of every loss-sized value compared"
EVALUATION_TEXT = "; + |grad L| r + (beta/2) r^2 at each end, r = 8 eps |theta|"


def probe_losses(trajectory: Trajectory) -> list[float | None] | None:
    """L_P(θ_0) … L_P(θ_T), or None when the attack ran without the probe."""
    return trajectory.probe_loss


def no_probe(label: str, name: str, inequality: str) -> BoundCheck:
    """Not applicable: the trajectory has no probe loss."""
    return not_applicable(
        label, name, inequality, "the trajectory has no probe loss (attack with probe=True)"
    )


def config_value(trajectory: Trajectory, key: str, default: Any = None) -> Any:
    """One entry of the attack configuration the trajectory records."""
    return trajectory.config.get(key, default)


def optimizer_of(trajectory: Trajectory) -> str:
    """The attack's optimizer ("sgd", "adam", "adamw"; "unknown" if not recorded)."""
    return str(config_value(trajectory, "optimizer", "unknown"))


def rates_of(trajectory: Trajectory) -> FloatArray | None:
    """η_0 … η_{T−1} with 0 replaced by ``ZERO_RATE_STAND_IN``; None if any is missing."""
    rates = trajectory.learning_rate
    if any(r is None for r in rates):
        return None
    array = np.asarray(rates, dtype=np.float64)
    return np.where(array == 0.0, ZERO_RATE_STAND_IN, array)


def gradient_descent_on_probe(trajectory: Trajectory, label: str) -> str | None:
    """Why the run is not gradient descent on the probe loss with a constant step (None: it
    is), as theorem ``label`` (T4, T9) says it: a full-batch run (the probe loss is the loss
    descended) of SGD without momentum or weight decay, clipping never active, one rate."""
    if not config_value(trajectory, "full_batch", False):
        return f"{label} needs gradient descent on the probe loss itself (a full-batch run)"
    if optimizer_of(trajectory) != "sgd" or float(config_value(trajectory, "momentum", 0.0) or 0.0):
        return f"{label} is for plain gradient descent (SGD without momentum)"
    if float(config_value(trajectory, "weight_decay", 0.0) or 0.0):
        return f"{label} is for gradient descent without weight decay"
    clip = config_value(trajectory, "max_grad_norm")
    if clip is not None and any(g is not None and g > clip for g in trajectory.grad_norm):
        return "clipping was active: the steps are not gradient-descent steps"
    if len({r for r in trajectory.learning_rate if r is not None}) != 1:
        return f"{label}'s bound is for a constant learning rate"
    return None


def measured_prefix(trajectory: Trajectory) -> int:
    """Number of leading steps whose probe losses at both ends and update norm are finite."""
    losses = trajectory.probe_loss or []
    count = 0
    for s in range(trajectory.n_steps):
        if s + 1 >= len(losses) or losses[s] is None or losses[s + 1] is None:
            break
        if trajectory.update_norm[s] is None:
            break
        count += 1
    return count


def gradient_descent_prelude(
    trajectory: Trajectory, label: str, name: str, inequality: str
) -> tuple[list[float | None], int, float] | BoundCheck:
    """What the gradient-descent checks (T4, T9) share before they compare anything: the
    probe losses, the measured prefix and L_0, or the not-applicable ``BoundCheck`` that says
    why the run cannot be checked (no probe, not gradient descent on the probe, no step)."""
    losses = probe_losses(trajectory)
    if losses is None:
        return no_probe(label, name, inequality)
    reason = gradient_descent_on_probe(trajectory, label)
    if reason is not None:
        return not_applicable(label, name, inequality, reason)
    steps = measured_prefix(trajectory)
    first = losses[0]
    if steps == 0 or first is None:
        return not_applicable(label, name, inequality, "no measured step")
    return losses, steps, float(first)


def parameter_rounding(trajectory: Trajectory, theta0_norm: float | None) -> FloatArray | None:
    """ε‖θ_{s+1}‖ bounds, per step, by ε(‖θ_0‖ + ‖θ_{s+1} − θ_0‖): how far the rounding of
    the new parameters can move a step from the one the optimizer intended."""
    if theta0_norm is None:
        return None
    distances = trajectory.distance_from_start
    if any(d is None for d in distances[1:]):
        return None
    far = np.asarray(distances[1:], dtype=np.float64)
    return np.asarray(epsilon(trajectory) * (float(theta0_norm) + far), dtype=np.float64)


def evaluation_rounding(
    trajectory: Trajectory, theta0_norm: float | Constant | None
) -> Callable[[int, float], float] | None:
    """``(i, β) ↦ ‖∇L(θ_i)‖ r_i + (β/2) r_i²`` with r_i = 8ε(‖θ_0‖ + ‖θ_i − θ_0‖): how much
    a loss evaluated with its parameters' last digits lost can move at iterate i."""
    if theta0_norm is None or trajectory.probe_grad_norm is None:
        return None
    norm0 = as_constant("theta0_norm", theta0_norm).value
    gradients = trajectory.probe_grad_norm
    distances = trajectory.distance_from_start
    eps = loss_epsilon(trajectory)

    def rounding(index: int, beta: float) -> float:
        gradient, distance = gradients[index], distances[index]
        if gradient is None or distance is None:
            return 0.0
        radius = ROUNDING_ULPS * eps * (norm0 + distance)
        return gradient * radius + beta * radius**2 / 2.0

    return rounding


def as_constant(name: str, value: float | Constant) -> Constant:
    """``value`` as a ``Constant`` (a plain number becomes a given one)."""
    return value if isinstance(value, Constant) else given_constant(name, float(value))


def first_at_or_below(values: Sequence[float | None], threshold: float) -> int | None:
    """The first index t with values[t] ≤ τ (None if none): the measured steps to τ."""
    return next((i for i, v in enumerate(values) if v is not None and v <= threshold), None)


def default_threshold(losses: Sequence[float | None]) -> float:
    """The lowest probe loss the run reached (its first occurrence is the measured step)."""
    return min(v for v in losses if v is not None)


def compare_minimum_steps(
    tally: Tally, envelope: FloatArray, losses: Sequence[float | None], threshold: float
) -> dict[str, Any]:
    """The attacker needs at least the first t with envelope_t ≤ τ: measured ≥ certified."""
    reached = np.flatnonzero(envelope <= threshold)
    certified = int(reached[0]) if reached.size else None
    measured = first_at_or_below(losses, threshold)
    if measured is not None and (certified is None or measured < certified):
        tally.fail(measured)
    else:
        tally.instances += 1
    return {
        "threshold": float(threshold),
        "steps_kind": "minimum",
        "certified_steps": certified,
        "certified_unreachable": certified is None,
        "measured_steps": measured,
    }


def envelope_tally(
    trajectory: Trajectory,
    envelope: FloatArray,
    losses: Sequence[float | None],
    extra: FloatArray | None = None,
) -> Tally:
    """L_t ≥ envelope_t for t = 1..len(envelope)−1, allowing loss rounding (+ ``extra[t]``)."""
    tally = Tally()
    first = losses[0]
    assert first is not None
    for t in range(1, len(envelope)):
        value = losses[t]
        if value is None:
            break
        allowance = loss_tolerance(trajectory, value, first)
        if extra is not None:
            allowance += float(extra[t])
        tally.add(t, value - float(envelope[t]), allowance)
    return tally


# ---------------------------------------------------------------------- planning
@dataclass(frozen=True)
class PlannedCheck:
    """One check ``check_all`` will run: the theorem's label, the check's name and the thunk.

    Calling it runs the thunk; constants that break the theorem's parameter assumptions (an
    ``AssumptionError``, e.g. c ≥ 1 or η > 1/β) make the check not applicable, with the
    reason, instead of failing the whole ``check_all``.
    """

    label: str
    name: str
    run: Callable[[], BoundCheck]

    def __call__(self) -> BoundCheck:
        try:
            return self.run()
        except AssumptionError as exc:
            return not_applicable(self.label, self.name, "", str(exc))


#: A theorem's contribution to ``check_all``: the checks that apply to a trajectory with the
#: given constants and threshold (none when the theorem does not apply to the optimizer).
Planner = Callable[[Trajectory, PathConstants, "float | None"], list[PlannedCheck]]


def planned(theorem: Theorem, run: Callable[[], BoundCheck], suffix: str = "") -> PlannedCheck:
    """A planned check of ``theorem`` (name ``theorem.name + suffix``)."""
    return PlannedCheck(theorem.label, theorem.name + suffix, run)


def missing(theorem: Theorem, what: str, suffix: str = "", inequality: str = "") -> PlannedCheck:
    """A planned check that reports ``what`` constant was not measured (not applicable)."""
    label, name = theorem.label, theorem.name + suffix
    reason = f"constant not measured: {what}"
    return PlannedCheck(label, name, lambda: not_applicable(label, name, inequality, reason))
