"""The evidence of each condition kind as typed records (``verdict.json``'s ``conditions``).

Theory's conditions (``theory.conditions``) and the verifier's judge
(``empirical.verify.judge``) write a condition's evidence as a dict (``Verdict.evidence``);
``evidence_of(name, evidence)`` reads it as the model of its kind:

* ``ResistanceEvidence``: weak and strong resistance, generalization in- and cross-domain,
  over the attacks (``judge.aggregate``: counts, the Bonferroni level, the attack success
  interval, per setting and per run);
* ``StabilityEvidence``: g(M) and g(M*) on D_ref, their difference, its interval and the
  feasible differences (theory's ``Stability`` and ``judge.judge_stability``);
* ``TrainabilityEvidence``: the two harmless fine-tuning runs' best values, the target and
  the steps to it, with intervals on the best values (theory's ``Trainability`` and
  ``judge.judge_trainability``).

Every entry the verifier writes is typed; an entry a later theory adds is kept, flat in the
JSON, in the model's typed extra (``Evidence.extra``: ``dict[str, JsonValue]``, never
``Any``). Statistics: docs/science.md §4.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from empirical.verify.claim import CapabilityProxyName, Direction
from theory.framework import Method as MethodName
from theory.framework import Optimizer, Schedule
from theory.statistics import Side
from theory.verdict import Status

__all__ = [
    "CONDITION_KINDS",
    "AttackAxes",
    "AttackSetting",
    "ConditionKind",
    "Evidence",
    "IntervalRecord",
    "Record",
    "ResistanceEvidence",
    "RunJudgement",
    "SettingSuccess",
    "StabilityEvidence",
    "TrainabilityEvidence",
    "evidence_of",
    "kind_of",
]

ConditionKind = Literal["resistance", "stability", "trainability"]
"""The three shapes of a condition's evidence."""

CONDITION_KINDS: dict[str, ConditionKind] = {
    "weak_resistance": "resistance",
    "strong_resistance": "resistance",
    "generalization_in_domain": "resistance",
    "generalization_cross_domain": "resistance",
    "stability": "stability",
    "trainability": "trainability",
}
"""The kind of every condition name (``ConditionName``)."""


class Record(BaseModel):
    """A closed part of the document: unknown keys are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Evidence(BaseModel):
    """Base of the evidence models: every known entry typed, further entries kept flat in
    a typed extra (``extra``)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    __pydantic_extra__: dict[str, JsonValue] = Field(init=False)

    @property
    def extra(self) -> dict[str, JsonValue]:
        """Entries the model does not name (kept as written)."""
        return dict(self.__pydantic_extra__ or {})


class IntervalRecord(Record):
    """A confidence interval (``theory.statistics.Interval.as_dict``)."""

    lower: float
    upper: float
    estimate: float
    confidence: float
    method: str
    side: Side


class AttackAxes(Record):
    """The threat-model axes of an attack but its seed (one setting of the grid)."""

    learning_rate: float
    optimizer: Optimizer
    schedule: Schedule
    warmup_fraction: float
    method: MethodName
    batch_size: int
    max_grad_norm: float | None


class AttackSetting(AttackAxes):
    """The threat-model axes of one attack (``AttackRun.setting``), its seed included."""

    seed: int


# --------------------------------------------------------------------------- evidence
class SettingSuccess(Record):
    """Attacks of one setting that broke the model, out of the seeds tried."""

    setting: AttackAxes
    seeds: list[int]
    broke: int
    runs: int
    success_rate: IntervalRecord


class RunJudgement(Record):
    """One attack judged against a resistance-like condition (``judge.aggregate``)."""

    run: str
    attack: str
    status: Status
    broke_at_step: int | None
    certainly_broke_at_step: int | None
    max_harm: float | None
    diverged_at: int | None
    reason: str


class ResistanceEvidence(Evidence):
    """Weak / strong resistance and generalization over the attacks (``judge.aggregate``)."""

    runs: int
    broke: int
    held: int
    unclear: int
    diverged: int
    evaluations: int
    threshold: float
    budget_steps: int
    confidence: float
    per_evaluation_alpha: float
    interval_method: str
    attack_success: IntervalRecord
    success_by_setting: list[SettingSuccess]
    max_upper_bound: float | None
    runs_detail: list[RunJudgement]
    worst_run: str | None = None


class StabilityEvidence(Evidence):
    """Theory's ``Stability`` on g(M) and g(M*) with the measured values
    (``judge.judge_stability``); the intervals only for a rate proxy."""

    original: float
    immunized: float
    difference: float
    degradation: float
    interval: tuple[float, float] | None
    tolerance: float
    direction: Direction
    higher_is_better: bool
    feasible_difference: tuple[float | None, float | None] | None = None
    proxy: CapabilityProxyName
    examples: int
    original_interval: IntervalRecord | None = None
    immunized_interval: IntervalRecord | None = None
    difference_interval: tuple[float, float] | None = None
    interval_method: str


class TrainabilityEvidence(Evidence):
    """Theory's ``Trainability`` on the two harmless fine-tuning curves, with intervals on
    the best values (``judge.judge_trainability``). Entries after ``diverged_immunized`` are
    None when the check stopped before them (a diverged run)."""

    higher_is_better: bool
    direction: Direction
    epsilon_quality: float
    epsilon_steps: float
    horizon_original: int
    horizon_immunized: int
    diverged_original: int | None
    diverged_immunized: int | None
    best_original: float | None = None
    best_immunized: float | None = None
    quality_gap: float | None = None
    quality_margin: float | None = None
    target: float | None = None
    step_original: int | None = None
    step_immunized: int | None = None
    steps_margin: float | None = None
    examples: int | None = None
    best_original_interval: IntervalRecord | None = None
    best_immunized_interval: IntervalRecord | None = None
    quality_difference_interval: tuple[float, float] | None = None
    quality_with_interval: Status | None = None


_EVIDENCE: dict[ConditionKind, type[Evidence]] = {
    "resistance": ResistanceEvidence,
    "stability": StabilityEvidence,
    "trainability": TrainabilityEvidence,
}


def kind_of(name: str) -> ConditionKind:
    """The evidence kind of condition ``name``.

    Raises:
        KeyError: not a condition name.
    """
    return CONDITION_KINDS[name]


def evidence_of(
    name: str, evidence: Mapping[str, Any]
) -> ResistanceEvidence | StabilityEvidence | TrainabilityEvidence:
    """Theory's evidence dict of condition ``name`` (``Verdict.evidence``) as its typed model.

    Raises:
        KeyError: not a condition name; pydantic.ValidationError: not that kind's evidence.
    """
    model = _EVIDENCE[kind_of(name)]
    typed = model.model_validate(dict(evidence))
    assert isinstance(typed, ResistanceEvidence | StabilityEvidence | TrainabilityEvidence)
    return typed
