"""The verdict document (``verdict.json``) as typed records: one pydantic model per part.

``VerdictDocument`` is what ``hfta verify`` writes (``empirical.verify.report.document`` builds
it from the verifier's outcome; ``verdict.json`` is its ``model_dump(mode="json")``) and what
``report.md``, the figures and ``report.html`` read. Its JSON Schema is published as
``docs/verdict.schema.json`` (``schema_text``; regenerate with
``python -m empirical.verify.document``), and a test keeps the file equal to the model.

Layout (``VERDICT_SCHEMA`` = 4):

* ``schema_version``, ``tool``, ``verdict`` (holds / violated / inconclusive over the claimed
  conditions), ``exit_code``, ``claim_file``;
* ``claim`` (the validated ``Claim``), ``threat_model``, ``searched_space``;
* ``conditions``: keyed by condition name; each a ``ResistanceCondition`` (weak and strong
  resistance, generalization in- and cross-domain), ``StabilityCondition`` or
  ``TrainabilityCondition``, told apart by ``kind``, with ``claimed``, ``status``,
  ``reason``, ``rests_on``, ``first_violation_step``, ``margin`` and the evidence of its kind
  (``ResistanceEvidence``, ``StabilityEvidence``, ``TrainabilityEvidence``);
* ``worst_attack`` (``WorstAttack``), ``attacker`` (``AttackerRecord``), ``bounds``
  (``BoundRecord`` per theorem check) and ``bound_violations``, ``theory`` (``TheoryRecord``,
  with ``power``: each check's detection of constants x0.5 / x0.8 and of wrong statements,
  ``empirical.verify.theory.PowerRecord``);
* ``predictions`` (``empirical.verify.predict.Predictions``): each planned attack's certified
  minimum steps stated before the attacks, and its comparison with the measured break;
* ``certification`` (``empirical.verify.certified.Certification``, None without a
  ``[certify]`` section): each declared attacker class's T11 certificate on M* and on M (the
  baseline), and the strongest attack of each certified class on M*;
* ``defence`` (``DefenceSummary``), ``runs`` (``RunRecord``), ``environment``, ``seeds``,
  ``timing``, ``warnings``.

The evidence models live in ``empirical.verify.evidence`` (re-exported here): each types
every entry the verifier writes and keeps any further entry (a new one from theory) in its
typed extra (``dict[str, JsonValue]``, flat in the JSON, never ``Any``).

Statistics behind the numbers: docs/science.md §4.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from empirical.certify import PathConstants
from empirical.defences.record import DefenceRecord
from empirical.engine.attack_config import AttackConfig, ScheduleName
from empirical.measurement.trajectory import Environment
from empirical.verify.certified import Certification, ClassCertification
from empirical.verify.claim import Claim, ConditionName, SearchStrategy
from empirical.verify.evidence import (
    CONDITION_KINDS,
    AttackAxes,
    AttackSetting,
    ConditionKind,
    Evidence,
    IntervalRecord,
    ResistanceEvidence,
    RunJudgement,
    SettingSuccess,
    StabilityEvidence,
    TrainabilityEvidence,
    evidence_of,
    kind_of,
)
from empirical.verify.evidence import Record as _Record
from empirical.verify.outcome import RunRole
from empirical.verify.predict import MarginSummary, Prediction, PredictionCheck, Predictions
from empirical.verify.theory import CheckPower, PowerRecord, StatementPower
from theory.framework import Method as MethodName
from theory.framework import Optimizer, Schedule, ThreatModel
from theory.verdict import Status

if TYPE_CHECKING:
    from empirical.verify.outcome import AttackRun

__all__ = [
    "CONDITION_KINDS",
    "SCHEMA_PATH",
    "VERDICT_SCHEMA",
    "AttackAxes",
    "AttackSetting",
    "AttackerRecord",
    "BoundRecord",
    "Certification",
    "CheckPower",
    "ClassCertification",
    "ConditionKind",
    "ConditionRecord",
    "DefenceSummary",
    "Evidence",
    "FirstViolation",
    "GridSpace",
    "HarmSummary",
    "IntervalRecord",
    "MarginSummary",
    "MeasuredRestsOn",
    "OriginalAttack",
    "PowerRecord",
    "Prediction",
    "PredictionCheck",
    "Predictions",
    "ResistanceCondition",
    "ResistanceEvidence",
    "ResistanceRestsOn",
    "RunJudgement",
    "RunRecord",
    "SearchRecord",
    "SearchSetting",
    "SearchSpaceRecord",
    "SearchedSpace",
    "SeedsRecord",
    "SettingSuccess",
    "StabilityCondition",
    "StabilityEvidence",
    "StatementPower",
    "StepsToThreshold",
    "TheoryRecord",
    "TrainabilityCondition",
    "TrainabilityEvidence",
    "VerdictDocument",
    "VerifyEnvironment",
    "WorstAttack",
    "evidence_of",
    "kind_of",
    "schema",
    "schema_text",
    "trajectory_file",
]

VERDICT_SCHEMA: Final = 4
"""Version of ``verdict.json``'s layout (1: untyped dicts; 2: these records; 3: with the
predictions before the attacks and the power of the checks; 4: with the certification of the
declared attacker classes)."""

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "verdict.schema.json"
"""Where the JSON Schema of ``VerdictDocument`` is published."""

# --------------------------------------------------------------------------- conditions
class ResistanceRestsOn(_Record):
    """How many attacks and evaluations of f a resistance-like verdict rests on."""

    runs: int
    evaluations: int
    text: str


class MeasuredRestsOn(_Record):
    """How many runs and examples a stability or trainability verdict rests on."""

    runs: int
    examples: int | None
    text: str


class _Condition(_Record):
    kind: ConditionKind
    claimed: bool
    status: Status
    reason: str
    rests_on: ResistanceRestsOn | MeasuredRestsOn
    first_violation_step: int | None
    margin: float | None
    evidence: Evidence


class ResistanceCondition(_Condition):
    """A resistance-like condition's entry in ``conditions``."""

    kind: Literal["resistance"] = "resistance"
    rests_on: ResistanceRestsOn
    evidence: ResistanceEvidence


class StabilityCondition(_Condition):
    """The stability condition's entry in ``conditions``."""

    kind: Literal["stability"] = "stability"
    rests_on: MeasuredRestsOn
    evidence: StabilityEvidence


class TrainabilityCondition(_Condition):
    """The trainability condition's entry in ``conditions``."""

    kind: Literal["trainability"] = "trainability"
    rests_on: MeasuredRestsOn
    evidence: TrainabilityEvidence


ConditionRecord = Annotated[
    ResistanceCondition | StabilityCondition | TrainabilityCondition,
    Field(discriminator="kind"),
]
"""One entry of ``conditions``, its evidence typed by ``kind``."""


# --------------------------------------------------------------------------- the space
class GridSpace(_Record):
    """The threat model's grid (``plan.searched_space``)."""

    learning_rates: list[float]
    optimizers: list[Optimizer]
    schedules: list[Schedule]
    lora: bool | Literal["both"] = Field(union_mode="left_to_right")
    batch_sizes: list[int]
    seeds: list[int]
    attacks: int


class LogUniform(_Record):
    """A learning rate drawn log-uniformly on [low, high]."""

    log_uniform: tuple[float, float]


class Choices(_Record):
    """A learning rate chosen among the threat model's values."""

    choices: list[float]


class SearchSpaceRecord(_Record):
    """The optuna search's axes."""

    learning_rate: LogUniform | Choices
    optimizers: list[Optimizer]
    schedules: list[Schedule]
    lora: bool | Literal["both"] = Field(union_mode="left_to_right")
    batch_sizes: list[int]
    seeds: list[int]
    trials: int


class SearchedSpace(_Record):
    """Exactly the space the verifier attacked in; ``search`` None: grid only."""

    grid: GridSpace
    threat_model_learning_rates: list[float]
    search: SearchSpaceRecord | None = None


# --------------------------------------------------------------------------- the attacks
class HarmSummary(_Record):
    """Where one run's measured f first exceeded φ within the budget and its highest f."""

    broke_at_step: int | None
    max_harm: float | None
    max_harm_step: int | None
    diverged_at: int | None

    @classmethod
    def of_run(cls, run: AttackRun, phi: float, budget: int) -> HarmSummary:
        """Theory's ``WeakResistance`` (φ, T) on the run's measured harm curve."""
        from theory.conditions import WeakResistance

        curve = run.trajectory.to_curve("harm")
        points = curve.evidence()
        verdict = WeakResistance(phi, budget=budget).check(curve)
        peak = max(points, key=lambda p: (p[1], -p[0])) if points else None
        return cls(
            broke_at_step=verdict.first_violation_step,
            max_harm=None if peak is None else peak[1],
            max_harm_step=None if peak is None else peak[0],
            diverged_at=run.trajectory.diverged_at,
        )


def trajectory_file(run: AttackRun) -> str:
    """Where the run's trajectory is written, relative to the output directory."""
    return f"trajectories/{run.name}.json"


class OriginalAttack(HarmSummary):
    """The worst attack rerun on the original M."""

    trajectory: str


class WorstAttack(_Record):
    """The attack that did the most damage to M*, and the same attack on M."""

    run: str
    role: RunRole
    attack: str
    setting: AttackSetting
    config: AttackConfig
    status: Status
    broke_at_step: int | None
    certainly_broke_at_step: int | None
    max_harm: float | None
    max_harm_step: int | None
    diverged_at: int | None
    trajectory: str
    original: OriginalAttack | None = None


class SearchSetting(_Record):
    """The optuna search's best attack."""

    learning_rate: float
    optimizer: Optimizer
    schedule: ScheduleName
    method: MethodName
    batch_size: int
    seed: int


class SearchRecord(_Record):
    """The optuna search as the verdict reports it (``SearchResult``)."""

    objective: str
    pruner: str
    seed: int
    trials: int
    new_attacks: int
    best_trial: int
    best_objective: float
    best_setting: SearchSetting
    steps_trained: int
    steps_to_best: int
    grid_steps: int
    compute_ratio: float
    compute_saved: float
    pruning_saves_steps: bool


class AttackerRecord(_Record):
    """The adaptive attacker: grid and search sizes (``search`` None: no search ran)."""

    strategy: SearchStrategy
    grid_size: int
    grid_steps: int
    grid_runs: int
    attacks_on_immunized: int
    search: SearchRecord | None


# --------------------------------------------------------------------------- theory
class FirstViolation(_Record):
    """The first run that violated a bound, its step and slack."""

    run: str
    step: int | None
    slack: float | None


class StepsToThreshold(_Record):
    """Measured against certified steps to a threshold on one run."""

    run: str
    threshold: float | None
    kind: Literal["minimum", "maximum"]
    certified: int | None
    certified_unreachable: bool
    measured: int | None


class BoundRecord(_Record):
    """One theorem's check over every attack on M* (``BoundSummary``)."""

    theorem: str
    name: str
    inequality: str
    instances: int
    violations: int
    runs_checked: int
    runs_not_applicable: int
    first_violation: FirstViolation | None
    worst_slack: float | None
    tolerance: str
    not_applicable_reasons: list[str]
    steps_to_threshold: list[StepsToThreshold]


class TheoryRecord(_Record):
    """How the bounds were checked and the constants of the worst attack."""

    note: str
    worst_run: str | None
    worst_constants: PathConstants | None
    measured_again: bool
    reproduced: bool | None
    seconds: float
    power: PowerRecord | None


# --------------------------------------------------------------------------- provenance
class DefenceSummary(_Record):
    """What was immunized and how (``DefenceOutcome``); ``record`` is the defence's own."""

    name: str
    hyperparameters: dict[str, JsonValue]
    model: str | None
    immunized_model: str | None
    cache_key: str | None
    cached: bool
    seconds: float
    record: DefenceRecord | None


class RunRecord(_Record):
    """One measured run and its trajectory file."""

    run: str
    role: RunRole
    attack: str
    trajectory: str
    steps: int
    diverged_at: int | None


class VerifyEnvironment(Environment):
    """Where the verification ran: the trajectory's environment, library versions, executor."""

    versions: dict[str, str | None]
    torch_threads: int
    torch_version: str
    executor: str
    ray_address: str | None
    machine: str


class SeedsRecord(_Record):
    """Every seed the verdict depends on (None: that stage did not run)."""

    attack_seeds: list[int]
    benchmark_seed: int
    search_seed: int | None
    trainability_seed: int | None
    defence_seed: int | None


# --------------------------------------------------------------------------- the document
class VerdictDocument(_Record):
    """``verdict.json`` (module docstring)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={"$id": "verdict.schema.json"},
    )

    schema_version: Literal[4] = VERDICT_SCHEMA
    tool: Literal["hfta verify"] = "hfta verify"
    verdict: Status
    exit_code: Literal[0, 1]
    claim_file: str | None
    claim: Claim
    threat_model: ThreatModel
    searched_space: SearchedSpace
    conditions: dict[ConditionName, ConditionRecord]
    worst_attack: WorstAttack | None
    attacker: AttackerRecord
    bounds: list[BoundRecord]
    bound_violations: int
    theory: TheoryRecord
    predictions: Predictions | None
    certification: Certification | None = None
    defence: DefenceSummary
    runs: list[RunRecord]
    environment: VerifyEnvironment
    seeds: SeedsRecord
    timing: dict[str, float]
    warnings: list[str]

    @model_validator(mode="after")
    def _consistent(self) -> VerdictDocument:
        for name, entry in self.conditions.items():
            if entry.kind != kind_of(name):
                raise ValueError(f"condition {name} has {entry.kind} evidence, not {kind_of(name)}")
        total = sum(b.violations for b in self.bounds)
        if self.bound_violations != total:
            raise ValueError(f"bound_violations {self.bound_violations} != {total} over the bounds")
        if (self.exit_code == 0) != (self.verdict is Status.HOLDS):
            raise ValueError(f"exit code {self.exit_code} with verdict {self.verdict.value}")
        return self

    def to_json(self) -> str:
        """The text of ``verdict.json``."""
        return json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=False) + "\n"


def schema(model: type[BaseModel] = VerdictDocument) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``model``."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(),
    }


def schema_text(model: type[BaseModel] = VerdictDocument) -> str:
    """``docs/verdict.schema.json`` as it must read."""
    return json.dumps(schema(model), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    """Write ``docs/verdict.schema.json`` from the model."""
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")


if __name__ == "__main__":
    main()
