"""The outcome of checking one immunization condition on measured numbers.

A condition is a statement about every step of an attack (or about two models); a finite
measurement can establish it, refute it, or do neither. ``Verdict`` keeps the three apart and
carries the evidence: the first step that violated the condition and the margin by which it
held or failed (positive margin = satisfied with room to spare).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    """Three-valued outcome of a condition check."""

    HOLDS = "holds"
    VIOLATED = "violated"
    INCONCLUSIVE = "inconclusive"


class Verdict(BaseModel):
    """Result of ``Condition.check``.

    Attributes:
        condition: name of the condition checked (``"weak_resistance"`` ...).
        status: holds / violated / inconclusive.
        first_violation_step: the first step t at which the condition failed, if it did.
        margin: signed slack of the defining inequality; ``> 0`` satisfied, ``< 0`` violated,
            ``None`` when no inequality could be evaluated.
        reason: one sentence a reader can act on.
        evidence: the numbers the verdict rests on (JSON-serialisable).
    """

    model_config = ConfigDict(frozen=True)

    condition: str
    status: Status
    first_violation_step: int | None = None
    margin: float | None = None
    reason: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return self.status is Status.HOLDS

    @property
    def violated(self) -> bool:
        return self.status is Status.VIOLATED
