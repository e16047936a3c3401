"""A measured trajectory of one proxy during one training run, with no torch attached.

``Curve(steps, values, horizon, diverged_at)`` holds a proxy (the harm proxy f of an attack,
the capability proxy g of harmless fine-tuning, a loss) evaluated at some training steps:

* ``steps``: the evaluated steps, strictly increasing, 0 = before the first update;
* ``values``: the proxy at those steps;
* ``horizon``: the last training step actually run (steps after it say nothing);
* ``diverged_at``: the first step at which training diverged (loss NaN or infinite), or None.

Evaluations at or after ``diverged_at`` are not evidence about the attack: they may be NaN or
infinite (and only they may), and the conditions ignore them whatever their value. The steps
of 0..horizon that are not in ``steps`` were run but not evaluated; the conditions report them.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from itertools import pairwise

from theory.errors import AssumptionError

__all__ = ["Curve"]

OWNER = "curve"


def _as_step(value: object, what: str) -> int:
    """An integer step (Python or numpy integer; never a bool or a float such as 1.0)."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise AssumptionError(OWNER, "steps_are_integers", f"{what} = {value!r}")
    return operator.index(value)


@dataclass(frozen=True)
class Curve:
    """A proxy measured at evaluation steps of one run (see the module docstring)."""

    steps: tuple[int, ...]
    values: tuple[float, ...]
    horizon: int
    diverged_at: int | None = None

    def __post_init__(self) -> None:
        steps = tuple(_as_step(s, "step") for s in self.steps)
        try:
            values = tuple(float(v) for v in self.values)
        except (TypeError, ValueError) as exc:
            raise AssumptionError(OWNER, "values_are_numbers", str(exc)) from None
        horizon = _as_step(self.horizon, "horizon")
        diverged = None if self.diverged_at is None else _as_step(self.diverged_at, "diverged_at")
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "horizon", horizon)
        object.__setattr__(self, "diverged_at", diverged)

        if len(steps) != len(values):
            detail = f"{len(steps)} steps but {len(values)} values"
            raise AssumptionError(OWNER, "steps_and_values_same_length", detail)
        if horizon < 0:
            raise AssumptionError(OWNER, "horizon_nonnegative", f"horizon = {horizon}")
        if steps and steps[0] < 0:
            raise AssumptionError(OWNER, "steps_nonnegative", f"first step = {steps[0]}")
        for before, after in pairwise(steps):
            if after <= before:
                detail = f"step {after} follows step {before}"
                raise AssumptionError(OWNER, "steps_strictly_increasing", detail)
        if steps and steps[-1] > horizon:
            detail = f"step {steps[-1]} evaluated after the horizon {horizon}"
            raise AssumptionError(OWNER, "steps_within_horizon", detail)
        if diverged is not None and not 0 <= diverged <= horizon:
            detail = f"diverged_at = {diverged} outside 0..{horizon}"
            raise AssumptionError(OWNER, "divergence_within_horizon", detail)
        for s, v in zip(steps, values, strict=True):
            if not math.isfinite(v) and (diverged is None or s < diverged):
                detail = f"value {v} at step {s}" + (
                    "" if diverged is None else f" before divergence at step {diverged}"
                )
                raise AssumptionError(OWNER, "non_finite_only_after_divergence", detail)

    # ----------------------------------------------------------------- views
    def __len__(self) -> int:
        return len(self.steps)

    def points(self) -> Iterator[tuple[int, float]]:
        """Every evaluation as (step, value)."""
        return zip(self.steps, self.values, strict=True)

    def evidence(self, up_to: int | None = None) -> list[tuple[int, float]]:
        """The evaluations that count as evidence: before divergence (and at steps ≤ ``up_to``)."""
        last = self.horizon if up_to is None else min(up_to, self.horizon)
        if self.diverged_at is not None:
            last = min(last, self.diverged_at - 1)
        return [(s, v) for s, v in self.points() if s <= last]

    def diverged_by(self, step: int) -> bool:
        """Whether training diverged at or before ``step``."""
        return self.diverged_at is not None and self.diverged_at <= step

    def unevaluated(self, up_to: int) -> list[tuple[int, int]]:
        """Steps of 0..``up_to`` without evidence, as inclusive ranges (first, last).

        A step lacks evidence when it was not evaluated, not run (after the horizon), or
        evaluated at or after divergence.
        """
        gaps: list[tuple[int, int]] = []
        expected = 0
        for s, _ in self.evidence(up_to):
            if s > expected:
                gaps.append((expected, s - 1))
            expected = s + 1
        if expected <= up_to:
            gaps.append((expected, up_to))
        return gaps

    def first_step(self, predicate: Callable[[float], bool]) -> int | None:
        """The first evidence step whose value satisfies ``predicate`` (None if none does)."""
        return next((s for s, v in self.evidence() if predicate(v)), None)

    def subsample(self, keep: Collection[int]) -> Curve:
        """The same run evaluated only at the steps in ``keep`` (a coarser evaluation)."""
        pairs = [(s, v) for s, v in self.points() if s in keep]
        return Curve(
            tuple(s for s, _ in pairs), tuple(v for _, v in pairs), self.horizon, self.diverged_at
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (non-finite values as None)."""
        return {
            "steps": list(self.steps),
            "values": [v if math.isfinite(v) else None for v in self.values],
            "horizon": self.horizon,
            "diverged_at": self.diverged_at,
        }
