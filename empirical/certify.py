r"""Checks of a measured trajectory against the catalogue's theorems (T1, T2, T3, T4, T6).

A theorem of ``theory.theorems`` bounds how fast an attacker can lower a *fixed* loss L given
constants (β-smoothness, a gradient bound G, a clipping norm C, a contraction factor c, a PL
constant μ). An attack recorded with ``probe=True`` (``empirical.attack``) measures exactly
such a loss, the probe loss L_P(θ_s) on a fixed batch, with ‖∇L_P(θ_s)‖, ⟨∇L_P(θ_s), Δ_s⟩ and
the update norms ‖Δ_s‖. This module

1. estimates the constants along the measured path with ``empirical.estimators`` and records
   how (``Constant``: value, method, points, provenance): β by Lanczos (both ends of the
   Hessian spectrum) at the iterates, G as the largest probe-gradient norm at the iterates
   (T2's hypothesis is about the iterates only) or at points sampled along the segments
   (T3's and T6's are about the segments), C from the clipping norm or the recorded
   minibatch-gradient norms, c from the update norms (``PathConstants``);
2. checks every step of the trajectory against each theorem that applies to the attack's
   optimizer, evaluating the bound with theory's own theorem objects and helpers (no formula
   is typed here), and reports a ``BoundCheck``: instances, violations, the worst slack and
   where, the first violating step, the constants and how they were measured, and certified
   against measured steps-to-threshold.

The checks (L_s = L_P(θ_s), Δ_s = θ_{s+1} − θ_s):

* ``check_step_sandwich`` (T1): L_s + ⟨∇L_s, Δ_s⟩ − (β_s/2)‖Δ_s‖² ≤ L_{s+1} ≤ L_s +
  ⟨∇L_s, Δ_s⟩ + (β_s/2)‖Δ_s‖² for every step, with a per-segment β_s (the larger of the
  Lanczos estimates at θ_s and θ_{s+1}) or one β for the path;
* ``check_sgd_progress`` (T2): L_t ≥ T2's envelope L_0 − Σ_{s<t}(G η_s C + (β/2) η_s² C²)
  (momentum through ``theory.optimizers``) on every step, SGD only;
* ``check_path_length`` (T3's path-length conclusion, any optimizer): L_t ≥ L_0 − G Σ_{s<t}‖Δ_s‖
  with the measured update norms;
* ``check_adam_steps`` (T3's Adam lemma): ‖Δ_s‖ ≤ η_s a_{s+1} √d (+ η_s λ R_s for AdamW);
* ``check_adam_path`` (T3): L_t ≥ T3's certified envelope L_0 − G Σ_{s<t} (step bound);
* ``check_contraction_tail`` (T6): from a step K where the updates contract by c,
  L_{K+n} ≥ L_K − G‖u_K‖(1 − cⁿ)/(1 − c) ≥ L_K − G‖u_K‖/(1 − c) for the rest of the run;
* ``check_pl_convergence`` (T4): L_t ≤ L* + (1 − ημ)^t (L_0 − L*) for gradient descent on the
  probe loss itself (full batch, no momentum, no active clipping, constant η ≤ 1/β).

Each check takes the theory function it evaluates as a keyword argument (default: theory's),
so a property test can inject a deliberately wrong bound and show that the same check
catches it (negative controls).

What the checks mean, honestly. The constants are *measured* along one path: a Lanczos β at
a point is a lower estimate of the smoothness on any region containing it (Ritz values lie
inside the spectrum; the estimate is multiplied by 1 + the Lanczos tolerance to cover its
convergence error, not a missed eigenvalue); a G measured at sampled points is a lower
estimate of the supremum on the segments. A violation therefore means "the theorem with
these measured constants does not describe this run" (a constant too small for the region,
or a wrong bound), and is reported, never hidden. Rounding: the losses are float32 (or the
trajectory's dtype) evaluations; a float32 causal-LM loss agrees with a float64 evaluation of
the same model to ~1.2 ulp (measured on the embedded and a random-init model), so each
inequality is allowed ``ROUNDING_ULPS`` = 8 units of roundoff ε of every loss-sized value it
compares; bounds on step *norms* also allow the rounding of the new parameters
(ε‖θ_{s+1}‖ ≤ ε(‖θ_0‖ + ‖θ_{s+1} − θ_0‖)) and G times its sum in the cumulative bounds, and
T1 (given ‖θ_0‖) the loss's own loss of digits relative to ‖θ‖ near a minimum. Any allowance
used is named in ``BoundCheck.tolerance``.

Measuring an attack: ``attack_and_measure(config, ...)`` runs ``empirical.attack.attack``
with the iterates θ_0 … θ_T captured by torch's global optimizer-step hooks (checked against
the recorded update norms), rebuilds the probe batch (checked against the recorded probe
losses) and calls ``measure_constants``; ``check_all(trajectory, constants)`` then runs every
check that applies. ``descent_constants`` does the same for a loss given as a function of one
flat vector (the problems of ``empirical.testing``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from empirical.trajectory import Trajectory
from theory.errors import AssumptionError, HftaInputError
from theory.theorems import clipped_sgd_progress as clipped
from theory.theorems import contraction_tail, path_length_adam, pl_convergence
from theory.theorems import smoothness_sandwich as sandwich

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn
    from transformers import PreTrainedTokenizerBase

    from empirical.attack import AttackConfig
    from empirical.data import Example
    from empirical.hvp import LossLandscape
    from empirical.proxies import CapabilityProxy, HarmProxy

FloatArray = npt.NDArray[np.float64]
CheckStatus = Literal["holds", "violated", "not_applicable"]

__all__ = [
    "BoundCheck",
    "Constant",
    "MeasuredAttack",
    "PathConstants",
    "attack_and_measure",
    "certified_steps",
    "check_adam_path",
    "check_adam_steps",
    "check_all",
    "check_contraction_tail",
    "check_path_length",
    "check_pl_convergence",
    "check_sgd_progress",
    "check_step_sandwich",
    "constants_from_trajectory",
    "descent_constants",
    "given_constant",
    "measure_constants",
]

#: Units of roundoff allowed per loss-sized value an inequality compares (module docstring).
ROUNDING_ULPS = 8.0
#: Machine epsilon of the dtypes a trajectory may be measured in.
MACHINE_EPSILON: dict[str, float] = {
    "float64": 2.0**-52,
    "float32": 2.0**-23,
    "float16": 2.0**-10,
    "bfloat16": 2.0**-7,
}
#: Default relative tolerance of the Lanczos estimates of β.
LANCZOS_TOLERANCE = 1e-2
#: Theory's schedule helpers require η_s > 0; a rate of exactly 0 (the first warmup step,
#: which moves nothing) enters them as this number, changing the bound it gives by < 1e-300.
ZERO_RATE_STAND_IN = float(np.finfo(np.float64).tiny)


# ---------------------------------------------------------------------- records
class Constant(BaseModel):
    """One constant a theorem assumes, as measured (or given), with its provenance.

    ``method`` says how it was obtained, ``points`` at how many parameter points, ``note``
    what kind of estimate it is (e.g. a lower estimate, local to the path), ``provenance``
    the estimator's own record (oracle calls, iterations, convergence, per-point values).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    value: float
    method: str
    points: int = 0
    note: str = ""
    provenance: dict[str, Any] = Field(default_factory=dict)


def given_constant(name: str, value: float, note: str = "") -> Constant:
    """A constant supplied by the caller (a claim, a known value), not measured here."""
    return Constant(name=name, value=float(value), method="given", note=note)


class PathConstants(BaseModel):
    """The constants measured along one trajectory (any may be missing).

    ``beta``: one β for the whole path (the largest estimate); ``beta_segments``: β_s for each
    segment [θ_s, θ_{s+1}] (the larger of the estimates at the sampled points bracketing it;
    ``None`` where there is none). ``G_iterates`` bounds ‖∇L_P‖ at the iterates (T2);
    ``G_path`` on points sampled along the segments (T3, T6). ``C`` bounds the norm of the
    (clipped) minibatch gradient. ``contraction_start`` K and ``c``: T6's hypothesis.
    ``mu`` and ``loss_star``: T4's. ``theta0_norm``: ‖θ_0‖ (AdamW; rounding allowances).
    """

    model_config = ConfigDict(frozen=True)

    beta: Constant | None = None
    beta_segments: list[float | None] | None = None
    G_iterates: Constant | None = None
    G_path: Constant | None = None
    C: Constant | None = None
    theta0_norm: Constant | None = None
    mu: Constant | None = None
    loss_star: Constant | None = None
    contraction_start: int | None = None
    c: Constant | None = None


class BoundCheck(BaseModel):
    """The outcome of checking one theorem's inequality on every step of a trajectory.

    Attributes:
        label, name: the theorem ("T2", "clipped_sgd_progress").
        inequality: the inequality checked, in words.
        status: holds (no violation), violated, or not_applicable (``reason`` says why).
        instances: inequalities evaluated (steps, plus one for the steps-to-threshold
            comparison where it applies); violations: how many failed beyond the tolerance.
        first_violation_step, worst_slack, worst_step: the first failing step; the smallest
            slack (measured minus bound, in the direction that must be ≥ 0) and its step.
        tolerance: the rounding allowance used, in words.
        constants: the constants used and how they were obtained.
        threshold, steps_kind, certified_steps, certified_unreachable, measured_steps: the
            steps-to-threshold comparison (``steps_kind`` "minimum": the attacker needs at
            least ``certified_steps``; "maximum": it succeeds within them;
            ``certified_unreachable``: theory says τ is never reached in the horizon checked;
            ``measured_steps`` None: the run never reached τ).
        details: further numbers (per-check).
    """

    model_config = ConfigDict(frozen=True)

    label: str
    name: str
    inequality: str
    status: CheckStatus
    reason: str = ""
    instances: int = 0
    violations: int = 0
    first_violation_step: int | None = None
    worst_slack: float | None = None
    worst_step: int | None = None
    tolerance: str = ""
    constants: dict[str, Constant] = Field(default_factory=dict)
    threshold: float | None = None
    steps_kind: Literal["minimum", "maximum"] | None = None
    certified_steps: int | None = None
    certified_unreachable: bool = False
    measured_steps: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return self.status == "holds"

    @property
    def applicable(self) -> bool:
        return self.status != "not_applicable"

    def summary(self) -> str:
        """One line: theorem, status, counts, worst slack, steps comparison."""
        head = f"{self.label} {self.name}: {self.status}"
        if not self.applicable:
            return f"{head} ({self.reason})"
        text = f"{head}, {self.violations}/{self.instances} violated"
        if self.worst_slack is not None:
            text += f", worst slack {self.worst_slack:.4g} at step {self.worst_step}"
        if self.first_violation_step is not None:
            text += f", first violation at step {self.first_violation_step}"
        if self.steps_kind is not None:
            certified = "never" if self.certified_unreachable else self.certified_steps
            text += (
                f"; steps to {self.threshold:.6g}: measured {self.measured_steps}, "
                f"certified {self.steps_kind} {certified}"
            )
        return text


def _not_applicable(label: str, name: str, inequality: str, reason: str) -> BoundCheck:
    return BoundCheck(
        label=label, name=name, inequality=inequality, status="not_applicable", reason=reason
    )


@dataclass
class _Tally:
    """Accumulates slacks (≥ −tolerance is satisfied) into a ``BoundCheck``."""

    instances: int = 0
    violations: int = 0
    first_violation: int | None = None
    worst_slack: float | None = None
    worst_step: int | None = None

    def add(self, step: int, slack: float, tolerance: float) -> None:
        self.instances += 1
        if self.worst_slack is None or slack < self.worst_slack:
            self.worst_slack, self.worst_step = slack, step
        if not slack >= -tolerance:  # NaN counts as a violation
            self.violations += 1
            if self.first_violation is None:
                self.first_violation = step

    def fail(self, step: int | None) -> None:
        self.instances += 1
        self.violations += 1
        if self.first_violation is None or (step is not None and step < self.first_violation):
            self.first_violation = step

    def result(self, label: str, name: str, inequality: str, **fields: Any) -> BoundCheck:
        if self.instances == 0:
            reason = fields.pop("reason", "") or "no step had the measurements this check needs"
            return _not_applicable(label, name, inequality, reason)
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
def _epsilon(trajectory: Trajectory) -> float:
    return MACHINE_EPSILON.get(trajectory.environment.dtype, MACHINE_EPSILON["float32"])


def _loss_tolerance(trajectory: Trajectory, *values: float) -> float:
    return ROUNDING_ULPS * _epsilon(trajectory) * math.fsum(abs(v) for v in values)


LOSS_TOLERANCE_TEXT = f"{ROUNDING_ULPS:g} ulp of every loss-sized value compared"
EVALUATION_TEXT = "; + |grad L| r + (beta/2) r^2 at each end, r = 8 eps |theta|"


def _probe_losses(trajectory: Trajectory) -> list[float | None] | None:
    return trajectory.probe_loss


def _no_probe(label: str, name: str, inequality: str) -> BoundCheck:
    return _not_applicable(
        label, name, inequality, "the trajectory has no probe loss (attack with probe=True)"
    )


def _config(trajectory: Trajectory, key: str, default: Any = None) -> Any:
    return trajectory.config.get(key, default)


def _optimizer(trajectory: Trajectory) -> str:
    return str(_config(trajectory, "optimizer", "unknown"))


def _learning_rates(trajectory: Trajectory) -> FloatArray | None:
    """η_0 … η_{T−1} with 0 replaced by ``ZERO_RATE_STAND_IN``; None if any is missing."""
    rates = trajectory.learning_rate
    if any(r is None for r in rates):
        return None
    array = np.asarray(rates, dtype=np.float64)
    return np.where(array == 0.0, ZERO_RATE_STAND_IN, array)


def _measured_prefix(trajectory: Trajectory) -> int:
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


def _parameter_rounding(trajectory: Trajectory, theta0_norm: float | None) -> FloatArray | None:
    """ε‖θ_{s+1}‖ bounds, per step, by ε(‖θ_0‖ + ‖θ_{s+1} − θ_0‖): how far the rounding of
    the new parameters can move a step from the one the optimizer intended."""
    if theta0_norm is None:
        return None
    distances = trajectory.distance_from_start
    if any(d is None for d in distances[1:]):
        return None
    far = np.asarray(distances[1:], dtype=np.float64)
    return np.asarray(_epsilon(trajectory) * (float(theta0_norm) + far), dtype=np.float64)


def _evaluation_rounding(
    trajectory: Trajectory, theta0_norm: float | Constant | None
) -> Callable[[int, float], float] | None:
    """``(i, β) ↦ ‖∇L(θ_i)‖ r_i + (β/2) r_i²`` with r_i = 8ε(‖θ_0‖ + ‖θ_i − θ_0‖): how much
    a loss evaluated with its parameters' last digits lost can move at iterate i."""
    if theta0_norm is None or trajectory.probe_grad_norm is None:
        return None
    norm0 = _as_constant("theta0_norm", theta0_norm).value
    gradients = trajectory.probe_grad_norm
    distances = trajectory.distance_from_start
    eps = _epsilon(trajectory)

    def rounding(index: int, beta: float) -> float:
        gradient, distance = gradients[index], distances[index]
        if gradient is None or distance is None:
            return 0.0
        radius = ROUNDING_ULPS * eps * (norm0 + distance)
        return gradient * radius + beta * radius**2 / 2.0

    return rounding


def _as_constant(name: str, value: float | Constant) -> Constant:
    return value if isinstance(value, Constant) else given_constant(name, float(value))


def _first_at_or_below(values: Sequence[float | None], threshold: float) -> int | None:
    return next((i for i, v in enumerate(values) if v is not None and v <= threshold), None)


def _default_threshold(losses: Sequence[float | None]) -> float:
    """The lowest probe loss the run reached (its first occurrence is the measured step)."""
    return min(v for v in losses if v is not None)


def _compare_minimum_steps(
    tally: _Tally, envelope: FloatArray, losses: Sequence[float | None], threshold: float
) -> dict[str, Any]:
    """The attacker needs at least the first t with envelope_t ≤ τ: measured ≥ certified."""
    reached = np.flatnonzero(envelope <= threshold)
    certified = int(reached[0]) if reached.size else None
    measured = _first_at_or_below(losses, threshold)
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


def _envelope_tally(
    trajectory: Trajectory,
    envelope: FloatArray,
    losses: Sequence[float | None],
    extra: FloatArray | None = None,
) -> _Tally:
    """L_t ≥ envelope_t for t = 1..len(envelope)−1, allowing loss rounding (+ ``extra[t]``)."""
    tally = _Tally()
    first = losses[0]
    assert first is not None
    for t in range(1, len(envelope)):
        value = losses[t]
        if value is None:
            break
        allowance = _loss_tolerance(trajectory, value, first)
        if extra is not None:
            allowance += float(extra[t])
        tally.add(t, value - float(envelope[t]), allowance)
    return tally


# ---------------------------------------------------------------------- T1
StepBound = Callable[..., float]


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
    label, name = sandwich.THEOREM.label, sandwich.THEOREM.name
    inequality = "L_s + <grad L_s, D_s> - (beta_s/2)|D_s|^2 <= L_{s+1} <= ... + (beta_s/2)|D_s|^2"
    losses = _probe_losses(trajectory)
    slopes = trajectory.probe_directional_derivative
    if losses is None or slopes is None:
        return _no_probe(label, name, inequality)
    lower = lower or sandwich.THEOREM.evaluate
    upper = upper or sandwich.THEOREM.upper
    n = trajectory.n_steps
    constants: dict[str, Constant] = {}
    if isinstance(beta, int | float | Constant):
        constant = _as_constant("beta", beta)
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
    evaluation = _evaluation_rounding(trajectory, theta0_norm)
    tally = _Tally()
    ratios: list[float] = []
    still = unknown = 0
    for s in range(_measured_prefix(trajectory)):
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
        allowance = _loss_tolerance(trajectory, l0, l1, gdot)
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


# ---------------------------------------------------------------------- T2
Envelope = Callable[..., FloatArray]


def _clip_constant(trajectory: Trajectory) -> Constant | None:
    """C: the clipping norm, or the largest recorded minibatch-gradient norm if smaller."""
    norms = [g for g in trajectory.grad_norm if g is not None]
    clip = _config(trajectory, "max_grad_norm")
    largest = max(norms) if norms else None
    if clip is None and largest is None:
        return None
    if clip is not None and (largest is None or clip <= largest):
        return Constant(name="C", value=float(clip), method="clipping norm max_grad_norm")
    assert largest is not None
    return Constant(
        name="C",
        # every gradient was 0 (a start at a stationary point): any C > 0 bounds them
        value=max(float(largest), ZERO_RATE_STAND_IN),
        method="largest recorded minibatch-gradient norm (before clipping)",
        points=len(norms),
        note="exact for the recorded steps: every step's gradient had at most this norm",
    )


def check_sgd_progress(
    trajectory: Trajectory,
    G: float | Constant,
    beta: float | Constant,
    C: float | Constant | None = None,
    *,
    threshold: float | None = None,
    theta0_norm: float | None = None,
    envelope: Envelope | None = None,
) -> BoundCheck:
    """T2 on every step of an SGD attack: L_t ≥ envelope_t, and measured ≥ certified steps.

    ``G`` bounds ‖∇L_P‖ at the iterates, ``beta`` the smoothness on the segments, ``C`` the
    norm of the (clipped) minibatch gradients (default ``_clip_constant``). ``envelope``
    defaults to ``theory.theorems.clipped_sgd_progress.envelope`` (keywords ``L0, G, C, beta,
    learning_rates, momentum``). ``threshold`` τ defaults to the lowest probe loss reached.
    With ``theta0_norm`` the allowance includes G times the rounding of the parameters.
    """
    label, name = clipped.THEOREM.label, clipped.THEOREM.name
    inequality = "L_t >= L_0 - sum_{s<t} (G eta_s C + (beta/2) eta_s^2 C^2)"
    losses = _probe_losses(trajectory)
    if losses is None:
        return _no_probe(label, name, inequality)
    if _optimizer(trajectory) != "sgd":
        return _not_applicable(label, name, inequality, "T2 is for SGD attacks")
    if float(_config(trajectory, "weight_decay", 0.0) or 0.0) != 0.0:
        return _not_applicable(
            label, name, inequality, "SGD's weight decay is added after clipping: C bounds no step"
        )
    clip = _clip_constant(trajectory) if C is None else _as_constant("C", C)
    rates = _learning_rates(trajectory)
    if clip is None or rates is None:
        return _not_applicable(label, name, inequality, "no gradient norms or learning rates")
    g_constant, b_constant = _as_constant("G", G), _as_constant("beta", beta)
    steps = _measured_prefix(trajectory)
    if steps == 0 or losses[0] is None:
        return _not_applicable(label, name, inequality, "no measured step")
    values = (envelope or clipped.envelope)(
        L0=float(losses[0]),
        G=g_constant.value,
        C=clip.value,
        beta=b_constant.value,
        learning_rates=rates[:steps],
        momentum=float(_config(trajectory, "momentum", 0.0) or 0.0),
    )
    rounding = _parameter_rounding(trajectory, theta0_norm)
    extra = None
    if rounding is not None:
        extra = np.concatenate(([0.0], np.cumsum(g_constant.value * rounding[:steps])))
    tally = _envelope_tally(trajectory, values, losses[: steps + 1], extra)
    tau = _default_threshold(losses[: steps + 1]) if threshold is None else float(threshold)
    steps_fields = _compare_minimum_steps(tally, values, losses[: steps + 1], tau)
    return tally.result(
        label,
        name,
        inequality,
        tolerance=LOSS_TOLERANCE_TEXT
        + ("" if rounding is None else "; + G * eps * sum ||theta_{s+1}|| (parameter rounding)"),
        constants={"G": g_constant, "beta": b_constant, "C": clip},
        **steps_fields,
    )


# ---------------------------------------------------------------------- T3
def check_path_length(
    trajectory: Trajectory,
    G: float | Constant,
    *,
    path_envelope: Envelope | None = None,
) -> BoundCheck:
    """T3's path-length conclusion with the measured update norms, any optimizer:
    L_t ≥ L_0 − G Σ_{s<t} ‖Δ_s‖ (``path_envelope`` defaults to theory's; keywords
    ``L0, G, step_norms``). ``G`` bounds ‖∇L_P‖ on the segments."""
    label, name = path_length_adam.THEOREM.label, path_length_adam.THEOREM.name
    inequality = "L_t >= L_0 - G sum_{s<t} ||D_s|| (measured update norms)"
    losses = _probe_losses(trajectory)
    if losses is None:
        return _no_probe(label, name, inequality)
    steps = _measured_prefix(trajectory)
    if steps == 0 or losses[0] is None:
        return _not_applicable(label, name, inequality, "no measured step")
    g_constant = _as_constant("G", G)
    norms = np.asarray(trajectory.update_norm[:steps], dtype=np.float64)
    values = (path_envelope or path_length_adam.path_envelope)(
        L0=float(losses[0]), G=g_constant.value, step_norms=norms
    )
    tally = _envelope_tally(trajectory, values, losses[: steps + 1])
    return tally.result(
        label,
        name + ":path_length",
        inequality,
        tolerance=LOSS_TOLERANCE_TEXT,
        constants={"G": g_constant},
    )


def _adam_inputs(
    trajectory: Trajectory, theta0_norm: float | None
) -> tuple[dict[str, Any], str | None]:
    """Keyword inputs of theory's Adam step bounds, or the reason they cannot be formed."""
    optimizer = _optimizer(trajectory)
    if optimizer not in ("adam", "adamw"):
        return {}, "T3's step bound is for Adam and AdamW attacks"
    rates = _learning_rates(trajectory)
    if rates is None:
        return {}, "learning rates missing"
    beta1, beta2 = (float(b) for b in _config(trajectory, "betas", (0.9, 0.999)))
    decay = float(_config(trajectory, "weight_decay", 0.0) or 0.0)
    # Adam's L2 decay is folded into the gradient, which the bound does not depend on.
    lam = decay if optimizer == "adamw" else 0.0
    if lam > 0.0 and theta0_norm is None:
        return {}, "AdamW's bound needs ||theta_0|| (measure the constants with the model)"
    inputs: dict[str, Any] = {
        "learning_rates": rates,
        "beta1": beta1,
        "beta2": beta2,
        "d": trajectory.trainable_parameters,
        "lam": lam,
    }
    if lam > 0.0:
        inputs["theta0_norm"] = float(theta0_norm)  # type: ignore[arg-type]
    return inputs, None


def check_adam_steps(
    trajectory: Trajectory,
    *,
    theta0_norm: float | Constant | None = None,
    step_bounds: Envelope | None = None,
) -> BoundCheck:
    """T3's Adam lemma on every step: ‖Δ_s‖ ≤ η_s a_{s+1} √d (Adam) or η_s(a_{s+1}√d + λR_s)
    (AdamW). ``step_bounds`` defaults to ``path_length_adam.step_norm_bounds`` (keywords
    ``learning_rates, beta1, beta2, d, lam[, theta0_norm]``). The allowance is the rounding
    of the new parameters, ε‖θ_{s+1}‖, plus 4ε of the bound (needs ‖θ_0‖)."""
    label, name = path_length_adam.THEOREM.label, path_length_adam.THEOREM.name
    inequality = "||D_s|| <= eta_s (a_{s+1} sqrt(d) + lam R_s)"
    norm0 = None if theta0_norm is None else _as_constant("theta0_norm", theta0_norm).value
    inputs, reason = _adam_inputs(trajectory, norm0)
    if reason is not None:
        return _not_applicable(label, name + ":adam_step", inequality, reason)
    rounding = _parameter_rounding(trajectory, norm0)
    if rounding is None:
        return _not_applicable(
            label, name + ":adam_step", inequality, "needs ||theta_0|| for the rounding allowance"
        )
    bounds = (step_bounds or path_length_adam.step_norm_bounds)(**inputs)
    tally = _Tally()
    eps = _epsilon(trajectory)
    ratios: list[float] = []
    for s, measured in enumerate(trajectory.update_norm):
        if measured is None:
            break
        bound = float(bounds[s])
        tally.add(s, bound - measured, float(rounding[s]) + 4.0 * eps * bound)
        if bound > 0:
            ratios.append(measured / bound)
    constants = {"d": given_constant("d", trajectory.trainable_parameters, "trainable coordinates")}
    if norm0 is not None:
        constants["theta0_norm"] = _as_constant("theta0_norm", theta0_norm)  # type: ignore[arg-type]
    return tally.result(
        label,
        name + ":adam_step",
        inequality,
        tolerance="eps * ||theta_{s+1}|| (parameter rounding) + 4 eps * bound",
        constants=constants,
        details={"max_step_over_bound": max(ratios) if ratios else None},
    )


def check_adam_path(
    trajectory: Trajectory,
    G: float | Constant,
    *,
    theta0_norm: float | Constant | None = None,
    threshold: float | None = None,
    envelope: Envelope | None = None,
) -> BoundCheck:
    """T3's certified envelope on every step of an Adam/AdamW attack:
    L_t ≥ L_0 − G Σ_{s<t} (step bound_s), and measured ≥ certified steps to τ.

    ``envelope`` defaults to ``path_length_adam.envelope`` (keywords ``L0, G,
    learning_rates, beta1, beta2, d, lam[, theta0_norm]``); ``G`` bounds ‖∇L_P‖ on the
    segments; τ defaults to the lowest probe loss reached.
    """
    label, name = path_length_adam.THEOREM.label, path_length_adam.THEOREM.name
    inequality = "L_t >= L_0 - G sum_{s<t} eta_s (a_{s+1} sqrt(d) + lam R_s)"
    losses = _probe_losses(trajectory)
    if losses is None:
        return _no_probe(label, name, inequality)
    norm0 = None if theta0_norm is None else _as_constant("theta0_norm", theta0_norm).value
    inputs, reason = _adam_inputs(trajectory, norm0)
    if reason is not None:
        return _not_applicable(label, name, inequality, reason)
    steps = _measured_prefix(trajectory)
    if steps == 0 or losses[0] is None:
        return _not_applicable(label, name, inequality, "no measured step")
    inputs["learning_rates"] = inputs["learning_rates"][:steps]
    g_constant = _as_constant("G", G)
    values = (envelope or path_length_adam.envelope)(
        L0=float(losses[0]), G=g_constant.value, **inputs
    )
    rounding = _parameter_rounding(trajectory, norm0)
    extra = None
    if rounding is not None:
        extra = np.concatenate(([0.0], np.cumsum(g_constant.value * rounding[:steps])))
    tally = _envelope_tally(trajectory, values, losses[: steps + 1], extra)
    tau = _default_threshold(losses[: steps + 1]) if threshold is None else float(threshold)
    steps_fields = _compare_minimum_steps(tally, values, losses[: steps + 1], tau)
    constants = {"G": g_constant, "d": given_constant("d", trajectory.trainable_parameters)}
    return tally.result(
        label,
        name,
        inequality,
        tolerance=LOSS_TOLERANCE_TEXT
        + ("" if rounding is None else "; + G * eps * sum ||theta_{s+1}|| (parameter rounding)"),
        constants=constants,
        **steps_fields,
    )


# ---------------------------------------------------------------------- T6
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
    theorem = contraction_tail.THEOREM
    label, name = theorem.label, theorem.name
    inequality = "L_{K+n} >= L_K - G ||u_K|| (1 - c^n)/(1 - c) >= L_K - G ||u_K||/(1 - c)"
    losses = _probe_losses(trajectory)
    if losses is None:
        return _no_probe(label, name, inequality)
    steps = _measured_prefix(trajectory)
    if not 0 <= K < steps:
        return _not_applicable(label, name, inequality, f"K = {K} outside the measured steps")
    c_constant, g_constant = _as_constant("c", c), _as_constant("G", G)
    horizon = horizon or theorem.horizon
    floor = floor or theorem.evaluate
    norms = [float(u) for u in trajectory.update_norm[:steps]]  # type: ignore[arg-type]
    loss_k = float(losses[K])  # type: ignore[arg-type]
    inputs = {"L_K": loss_k, "G": g_constant.value, "u_K": norms[K], "c": c_constant.value}
    tally = _Tally()
    refuted: list[int] = []
    norm0 = None if theta0_norm is None else _as_constant("theta0_norm", theta0_norm).value
    rounding = _parameter_rounding(trajectory, norm0)
    for s in range(K, steps - 1):
        # hypothesis: ||u_{s+1}|| <= c ||u_s||, each norm off by at most its rounding
        slack = c_constant.value * norms[s] - norms[s + 1]
        tolerance = ROUNDING_ULPS * _epsilon(trajectory) * (norms[s] + norms[s + 1])
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
        tally.add(K + n, slack, _loss_tolerance(trajectory, value, loss_k))
    fields: dict[str, Any] = {}
    if threshold is not None:
        certified = theorem.steps_to_threshold(float(threshold), **inputs)
        measured = _first_at_or_below(losses[K : steps + 1], float(threshold))
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


# ---------------------------------------------------------------------- T4
def _gradient_descent_on_probe(trajectory: Trajectory) -> str | None:
    """Why the run is not gradient descent on the probe loss with a constant step (None: it is)."""
    if not _config(trajectory, "full_batch", False):
        return "T4 needs gradient descent on the probe loss itself (a full-batch run)"
    if _optimizer(trajectory) != "sgd" or float(_config(trajectory, "momentum", 0.0) or 0.0):
        return "T4 is for plain gradient descent (SGD without momentum)"
    if float(_config(trajectory, "weight_decay", 0.0) or 0.0):
        return "T4 is for gradient descent without weight decay"
    clip = _config(trajectory, "max_grad_norm")
    if clip is not None and any(g is not None and g > clip for g in trajectory.grad_norm):
        return "clipping was active: the steps are not gradient-descent steps"
    if len({r for r in trajectory.learning_rate if r is not None}) != 1:
        return "T4's bound is for a constant learning rate"
    return None


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
    theorem = pl_convergence.THEOREM
    label, name = theorem.label, theorem.name
    inequality = "L_t <= L* + (1 - eta mu)^t (L_0 - L*)"
    losses = _probe_losses(trajectory)
    if losses is None:
        return _no_probe(label, name, inequality)
    reason = _gradient_descent_on_probe(trajectory)
    if reason is not None:
        return _not_applicable(label, name, inequality, reason)
    steps = _measured_prefix(trajectory)
    if steps == 0 or losses[0] is None:
        return _not_applicable(label, name, inequality, "no measured step")
    constants = {
        "mu": _as_constant("mu", mu),
        "beta": _as_constant("beta", beta),
        "L_star": _as_constant("L_star", loss_star),
    }
    eta = float(trajectory.learning_rate[0])  # type: ignore[arg-type]
    values = {
        "L0": float(losses[0]),
        "L_star": constants["L_star"].value,
        "eta": eta,
        "mu": constants["mu"].value,
    }
    theorem.check_assumptions(beta=constants["beta"].value, **values)
    evaluate = bound or theorem.evaluate
    tally = _Tally()
    for t in range(1, steps + 1):
        value = losses[t]
        if value is None:
            break
        certified_value = evaluate(t=t, **values)
        tally.add(t, certified_value - value, _loss_tolerance(trajectory, value, values["L0"]))
    tau = float(losses[steps]) if threshold is None else float(threshold)  # type: ignore[arg-type]
    fields: dict[str, Any] = {}
    if tau > values["L_star"]:
        certified = theorem.steps_to_threshold(tau, beta=constants["beta"].value, **values)
        measured = _first_at_or_below(losses[: steps + 1], tau)
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


# ---------------------------------------------------------------------- all of them
def check_all(
    trajectory: Trajectory, constants: PathConstants, *, threshold: float | None = None
) -> list[BoundCheck]:
    """Every check that applies to the trajectory's optimizer, with the given constants.

    Always: T1 (with the per-segment β if measured, else the path β) and T3's path-length
    bound (any optimizer). SGD: T2. Adam/AdamW: T3's step lemma and certified envelope. T6
    when a contraction start K and c are known. T4 when μ and L* are known and the run is
    gradient descent on the probe loss. Checks whose constants are missing come back
    ``not_applicable`` with the reason.

    Rounding allowances: ‖θ_0‖ (``constants.theta0_norm``) enters the bounds on step norms
    (T2, T3), whose intended steps the rounded parameters can overshoot. It does not enter
    T1's loss-evaluation allowance (a float32 causal-LM loss agrees with float64 to ~1 ulp of
    L, measured, so 8 ulp of L is the honest allowance there) nor T6's hypothesis (c measured
    from the same rounded update norms it is compared with).
    """
    checks = [_guarded(check) for check in _planned_checks(trajectory, constants, threshold)]
    return checks


def _guarded(plan: tuple[str, str, Callable[[], BoundCheck]]) -> BoundCheck:
    """Run one planned check; constants that break the theorem's parameter assumptions (an
    ``AssumptionError``, e.g. c ≥ 1 or η > 1/β) make it not applicable, with the reason."""
    label, name, run = plan
    try:
        return run()
    except AssumptionError as exc:
        return _not_applicable(label, name, "", str(exc))


def _planned_checks(
    trajectory: Trajectory, constants: PathConstants, threshold: float | None
) -> list[tuple[str, str, Callable[[], BoundCheck]]]:
    """(label, name, thunk) for every check ``check_all`` runs (see there)."""
    plan: list[tuple[str, str, Callable[[], BoundCheck]]] = []

    def add(label: str, name: str, run: Callable[[], BoundCheck]) -> None:
        plan.append((label, name, run))

    def missing(label: str, name: str, what: str) -> None:
        add(label, name, lambda: _missing(label, name, what))

    norm0 = constants.theta0_norm
    norm0_value = None if norm0 is None else norm0.value
    beta_segments, beta, g_path = constants.beta_segments, constants.beta, constants.G_path
    if beta_segments is not None:
        add("T1", "smoothness_sandwich", lambda: check_step_sandwich(trajectory, beta_segments))
    elif beta is not None:
        add("T1", "smoothness_sandwich", lambda: check_step_sandwich(trajectory, beta))
    else:
        missing("T1", "smoothness_sandwich", "beta")
    name = "path_length_adam:path_length"
    if g_path is None:
        missing("T3", name, "G on the segments")
    else:
        add("T3", name, lambda: check_path_length(trajectory, g_path))
    optimizer = _optimizer(trajectory)
    if optimizer == "sgd":
        g_iterates = constants.G_iterates
        if g_iterates is None or beta is None:
            missing("T2", "clipped_sgd_progress", "G at the iterates and beta")
        else:
            add(
                "T2",
                "clipped_sgd_progress",
                lambda: check_sgd_progress(
                    trajectory,
                    g_iterates,
                    beta,
                    constants.C,
                    threshold=threshold,
                    theta0_norm=norm0_value,
                ),
            )
    if optimizer in ("adam", "adamw"):
        add(
            "T3",
            "path_length_adam:adam_step",
            lambda: check_adam_steps(trajectory, theta0_norm=norm0),
        )
        if g_path is None:
            missing("T3", "path_length_adam", "G on the segments")
        else:
            add(
                "T3",
                "path_length_adam",
                lambda: check_adam_path(
                    trajectory, g_path, theta0_norm=norm0, threshold=threshold
                ),
            )
    start, c = constants.contraction_start, constants.c
    if start is not None and c is not None:
        if g_path is None:
            missing("T6", "contraction_tail", "G on the segments")
        else:
            add(
                "T6",
                "contraction_tail",
                lambda: check_contraction_tail(trajectory, start, c, g_path, threshold=threshold),
            )
    mu, loss_star = constants.mu, constants.loss_star
    if mu is not None and loss_star is not None and beta is not None:
        add(
            "T4",
            "pl_convergence",
            lambda: check_pl_convergence(trajectory, mu, beta, loss_star, threshold=threshold),
        )
    return plan


def _missing(label: str, name: str, what: str) -> BoundCheck:
    return _not_applicable(label, name, "", f"constant not measured: {what}")


def certified_steps(
    trajectory: Trajectory, constants: PathConstants, threshold: float
) -> dict[str, BoundCheck]:
    """Certified against measured steps to reach ``threshold`` for every theorem that has a
    steps solver and applies (key: ``"T2"``, ``"T3"``, ``"T6"``, ``"T4"``)."""
    return {
        check.label: check
        for check in check_all(trajectory, constants, threshold=threshold)
        if check.steps_kind is not None
    }


# ---------------------------------------------------------------------- constants
def _contraction_start(norms: Sequence[float]) -> int | None:
    """The smallest K ≤ n − 2 from which every ratio ‖u_{s+1}‖/‖u_s‖ is < 1 (None if none)."""
    start: int | None = None
    for s in range(len(norms) - 2, -1, -1):
        if norms[s] > 0.0 and norms[s + 1] < norms[s]:
            start = s
        else:
            break
    return start


def constants_from_trajectory(
    trajectory: Trajectory, *, contraction_start: int | None = None
) -> PathConstants:
    """The constants the trajectory alone determines: G at the iterates (the largest probe
    gradient norm), C (``_clip_constant``) and, where the update norms contract from some K
    on (or from ``contraction_start``), T6's c (``empirical.estimators.contraction``)."""
    from empirical.estimators import contraction

    g_iterates = None
    if trajectory.probe_grad_norm is not None:
        norms = [g for g in trajectory.probe_grad_norm if g is not None]
        if norms:
            g_iterates = Constant(
                name="G",
                value=max(norms),
                method="largest probe-gradient norm at the iterates",
                points=len(norms),
                note="exact at the iterates (T2's hypothesis), up to float rounding",
            )
    updates = [float(u) for u in trajectory.update_norm if u is not None]
    start = contraction_start if contraction_start is not None else _contraction_start(updates)
    c_constant = None
    if start is not None and start <= len(updates) - 2:
        estimate = contraction(updates, start)
        if estimate.value < 1.0:
            c_constant = Constant(
                name="c",
                value=estimate.value,
                method=estimate.method,
                points=estimate.points,
                note="measured over the recorded steps only; T6 assumes it for every later step",
                provenance=estimate.model_dump(mode="json"),
            )
        else:
            start = None
    else:
        start = None
    return PathConstants(
        G_iterates=g_iterates,
        C=_clip_constant(trajectory),
        contraction_start=start if c_constant is not None else None,
        c=c_constant,
    )


def measure_constants(
    trajectory: Trajectory,
    landscape: LossLandscape,
    iterates: Sequence[Tensor],
    *,
    beta_every: int = 1,
    segment_samples: int = 4,
    lanczos_tolerance: float = LANCZOS_TOLERANCE,
    contraction_start: int | None = None,
    seed: int = 0,
) -> PathConstants:
    """All constants along the measured path of ``trajectory``.

    ``landscape`` must be the probe loss θ ↦ L_P(θ) (checked: its loss at θ_0 and θ_T must
    match the recorded probe losses), ``iterates`` the points θ_0 … θ_T as flat vectors.
    β: Lanczos (``empirical.estimators.smoothness_of``, both ends of the spectrum) at every
    ``beta_every``-th iterate and the last, each multiplied by 1 + ``lanczos_tolerance``;
    ``beta`` is their maximum, ``beta_segments[s]`` the largest estimate at the sampled points
    bracketing segment s. G on the segments: ``gradient_bound_along_path`` with
    ``segment_samples`` points per segment. ‖θ_0‖ from ``iterates[0]``.
    """
    import torch

    from empirical.estimators import gradient_bound_along_path, smoothness_of

    if len(iterates) != trajectory.n_steps + 1:
        raise HftaInputError(
            f"{len(iterates)} iterates for a trajectory of {trajectory.n_steps} steps"
        )
    if isinstance(beta_every, bool) or not isinstance(beta_every, int) or beta_every < 1:
        raise HftaInputError(f"beta_every must be a positive integer, got {beta_every!r}")
    _check_landscape(trajectory, landscape, iterates)
    base = constants_from_trajectory(trajectory, contraction_start=contraction_start)
    steps = _measured_prefix(trajectory)
    last = steps  # the last iterate with a finite probe loss at both ends of its segment
    sampled = sorted({*range(0, last + 1, beta_every), last})
    estimates: dict[int, float] = {}
    records: list[dict[str, Any]] = []
    for index in sampled:
        estimate = smoothness_of(
            landscape, iterates[index].to(landscape.dtype), tolerance=lanczos_tolerance, seed=seed
        )
        estimates[index] = estimate.beta * (1.0 + lanczos_tolerance)
        records.append(
            {
                "iterate": index,
                "lambda_max": estimate.lambda_max,
                "lambda_min": estimate.lambda_min,
                "converged": estimate.converged,
                "hvps": estimate.hvps,
                "seconds": estimate.seconds,
                "method": estimate.method,
            }
        )
    beta_value = max(estimates.values())
    beta = Constant(
        name="beta",
        value=beta_value,
        method=f"Lanczos (both spectrum ends) at {len(sampled)} iterates, max |lambda|, "
        f"times 1 + {lanczos_tolerance:g}",
        points=len(sampled),
        note="local: a lower estimate of the smoothness of the region the path visits",
        provenance={"estimates": records, "all_converged": all(r["converged"] for r in records)},
    )
    segments: list[float | None] = []
    for s in range(trajectory.n_steps):
        if s >= steps:
            segments.append(None)
            continue
        before = max(i for i in sampled if i <= s)
        after = min(i for i in sampled if i >= s + 1)
        segments.append(max(estimates[before], estimates[after]))
    path = [iterates[i].to(landscape.dtype) for i in range(last + 1)]
    gradient = gradient_bound_along_path(landscape, path, segment_samples)
    g_path = Constant(
        name="G",
        value=gradient.value,
        method=gradient.method,
        points=gradient.points,
        note="a lower estimate of sup ||grad L_P|| on the segments",
        provenance={"seconds": gradient.seconds, "argmax_point": gradient.details["argmax_point"]},
    )
    theta0 = Constant(
        name="theta0_norm",
        value=float(torch.linalg.vector_norm(iterates[0].double())),
        method="norm of the captured start point",
    )
    return base.model_copy(
        update={"beta": beta, "beta_segments": segments, "G_path": g_path, "theta0_norm": theta0}
    )


def _check_landscape(
    trajectory: Trajectory, landscape: LossLandscape, iterates: Sequence[Tensor]
) -> None:
    """The landscape must be the trajectory's probe loss on the captured iterates."""
    losses = trajectory.probe_loss
    if losses is None:
        raise HftaInputError("the trajectory has no probe loss (attack with probe=True)")
    if landscape.dimension != trajectory.trainable_parameters:
        raise HftaInputError(
            f"the landscape has {landscape.dimension} coordinates, the trajectory "
            f"{trajectory.trainable_parameters} trainable parameters"
        )
    for index in (0, _measured_prefix(trajectory)):
        recorded = losses[index]
        if recorded is None:
            continue
        value = landscape.loss(iterates[index].to(landscape.dtype))
        if not math.isclose(value, recorded, rel_tol=1e-5, abs_tol=1e-7):
            raise HftaInputError(
                f"the landscape's loss {value!r} at iterate {index} differs from the recorded "
                f"probe loss {recorded!r}: not the probe loss of this trajectory"
            )


# ---------------------------------------------------------------------- attacks
@dataclass
class MeasuredAttack:
    """An attack run with its iterates captured and its constants measured."""

    trajectory: Trajectory
    constants: PathConstants
    model: nn.Module
    iterates: list[Tensor]
    landscape: LossLandscape

    def check_all(self, *, threshold: float | None = None) -> list[BoundCheck]:
        return check_all(self.trajectory, self.constants, threshold=threshold)


class _IterateCapture:
    """θ_s before every step and θ_T after the last, from torch's global optimizer hooks.

    The hooks see the optimizer's own parameter list (the attack's trainable parameters, in
    its order), so the captured vectors are exactly the ones the attack's update norms are
    measured on (``attack_and_measure`` checks that they are).
    """

    def __init__(self) -> None:
        self.optimizer: Any = None
        self.before: list[Tensor] = []
        self.after: Tensor | None = None

    def _flat(self, optimizer: Any) -> Tensor:
        from empirical.attack import flat_parameters

        return flat_parameters([p for group in optimizer.param_groups for p in group["params"]])

    def pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.optimizer is None:
            self.optimizer = optimizer
        if optimizer is self.optimizer:
            self.before.append(self._flat(optimizer))

    def post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if optimizer is self.optimizer:
            self.after = self._flat(optimizer)

    @contextlib.contextmanager
    def active(self) -> Iterator[_IterateCapture]:
        from torch.optim.optimizer import (
            register_optimizer_step_post_hook,
            register_optimizer_step_pre_hook,
        )

        handles = [
            register_optimizer_step_pre_hook(self.pre),
            register_optimizer_step_post_hook(self.post),
        ]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def iterates(self, trajectory: Trajectory) -> list[Tensor]:
        points = [*self.before, *([self.after] if self.after is not None else [])]
        n = trajectory.n_steps
        if len(points) < n + 1:
            raise HftaInputError(f"captured {len(points)} iterates for {n} steps")
        points = points[: n + 1]
        for s in range(n):
            recorded = trajectory.update_norm[s]
            if recorded is None:
                continue
            measured = float((points[s + 1] - points[s]).norm())
            if not math.isclose(measured, recorded, rel_tol=1e-5, abs_tol=1e-12):
                raise HftaInputError(
                    f"captured step {s} has norm {measured!r}, the attack recorded {recorded!r}"
                )
        return points


def _probe_batch(
    config: AttackConfig,
    tokenizer: PreTrainedTokenizerBase,
    model: nn.Module,
    data: Sequence[Example] | None,
    evaluation: Sequence[Example] | None,
    reference: Sequence[Example] | None,
) -> dict[str, torch.Tensor]:
    """The attack's probe batch: ``probe_size`` examples of the attack set chosen with seed
    ``seed + 1`` from the encoded set (as ``empirical.attack`` draws it; ``_check_landscape``
    verifies the result against the recorded probe loss)."""
    import torch

    from empirical.attack import encode_on, resolve_data, select_probe
    from empirical.proxies import context_length

    splits = resolve_data(config, data=data, evaluation=evaluation, reference=reference)
    max_length = config.max_length or context_length(model)
    train = encode_on(tokenizer, splits.attack, max_length, torch.device(config.device))
    return select_probe(train, config)


def attack_and_measure(
    config: AttackConfig,
    *,
    model: nn.Module | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    data: Sequence[Example] | None = None,
    evaluation: Sequence[Example] | None = None,
    reference: Sequence[Example] | None = None,
    harm_proxy: HarmProxy | None = None,
    capability_proxy: CapabilityProxy | None = None,
    beta_every: int = 1,
    segment_samples: int = 4,
    lanczos_tolerance: float = LANCZOS_TOLERANCE,
    contraction_start: int | None = None,
) -> MeasuredAttack:
    """Run ``empirical.attack.attack`` with its iterates captured, then ``measure_constants``
    on the probe loss along the path (arguments as for ``attack``; ``config.probe`` or
    ``config.record_curvature`` must be on)."""
    from empirical.attack import attack
    from empirical.hvp import model_landscape

    if not config.probing:
        raise HftaInputError("bound checks need the probe: set probe=True in the attack config")
    if (model is None) != (tokenizer is None):
        raise HftaInputError("give both model and tokenizer, or neither")
    if model is None or tokenizer is None:
        from empirical.attack import DTYPES
        from empirical.model import load_model

        model, tokenizer = load_model(
            config.model, device=config.device, dtype=DTYPES[config.dtype]
        )
    capture = _IterateCapture()
    with capture.active():
        outcome = attack(
            config,
            model=model,
            tokenizer=tokenizer,
            data=data,
            evaluation=evaluation,
            reference=reference,
            harm_proxy=harm_proxy,
            capability_proxy=capability_proxy,
        )
    trajectory = outcome.trajectory
    iterates = capture.iterates(trajectory)
    batch = _probe_batch(config, tokenizer, outcome.model, data, evaluation, reference)
    landscape = model_landscape(outcome.model, batch, trainable_only=True)
    constants = measure_constants(
        trajectory,
        landscape,
        iterates,
        beta_every=beta_every,
        segment_samples=segment_samples,
        lanczos_tolerance=lanczos_tolerance,
        contraction_start=contraction_start,
    )
    return MeasuredAttack(
        trajectory=trajectory,
        constants=constants,
        model=outcome.model,
        iterates=iterates,
        landscape=landscape,
    )


def descent_constants(
    trajectory: Trajectory,
    loss: Callable[[Tensor], Tensor],
    iterates: Sequence[Tensor],
    **options: Any,
) -> PathConstants:
    """``measure_constants`` for a loss given as a function of one flat float64 vector (the
    problems of ``empirical.testing``)."""
    from empirical.hvp import LossLandscape

    reference = {"theta": iterates[-1].detach().clone()}

    def function(parameters: Any) -> Tensor:
        return loss(parameters["theta"])

    landscape = LossLandscape(function, reference)
    return measure_constants(trajectory, landscape, iterates, **options)
