"""The records of ``empirical.certify``: measured constants and the outcome of one bound check.

* ``Constant``: one constant a theorem assumes (β, G, C, c, μ, L*, ‖θ_0‖), with how it was
  obtained (method, points, provenance);
* ``PathConstants``: every constant measured along one trajectory;
* ``BoundCheck``: the outcome of checking one theorem's inequality on every step of a
  trajectory (instances, violations, worst slack, steps to a threshold).

All three are frozen pydantic models: the verifier writes them to JSON and reads them back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CheckStatus = Literal["holds", "violated", "not_applicable"]

__all__ = [
    "BoundCheck",
    "CheckStatus",
    "Constant",
    "PathConstants",
    "given_constant",
    "not_applicable",
]


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


def not_applicable(label: str, name: str, inequality: str, reason: str) -> BoundCheck:
    """A check that did not run on this trajectory, and why (``reason``)."""
    return BoundCheck(
        label=label, name=name, inequality=inequality, status="not_applicable", reason=reason
    )
