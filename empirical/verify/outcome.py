"""The verifier's typed records: what each stage of ``verify`` returns.

One record per stage (``empirical.verify.stages.verify`` reads as the list of them):

* ``Prepared``: the claim checked end to end before anything is written (``prepare``);
* ``DefenceOutcome``: M*, the claimed defence applied to M or the given model (``immunize``);
* ``AttackRun``: one measured attack (or harmless fine-tuning) and its role in the verdict;
  ``AttackOutcome``: the attacks of the threat model's grid, the optuna search and the
  cross-domain grid; ``SearchOutcome``: the search's own result;
* ``RunFinding``: one attack judged against one condition (lower / point / upper curves,
  docs/science.md §4); ``ResistanceOutcome``: every resistance-like condition over its attacks
  and the worst attack; ``OriginalOutcome``: the worst attack rerun on M;
  ``StabilityOutcome`` and ``TrainabilityOutcome``;
* ``Predictions`` (``empirical.verify.predict``): each planned attack's certified minimum
  steps, stated before the attacks and compared with them afterwards;
* ``BoundSummary`` and ``TheoryOutcome``: the bound checks (``empirical.certify``) and the
  power of each check (``empirical.verify.theory.PowerRecord``);
* ``VerifyOutcome``: everything the report needs (``empirical.verify.report`` renders it).

The verdict of a condition is decided in ``empirical.verify.judge`` only; the records here
carry it (``VerifyOutcome.status`` combines the claimed conditions through
``judge.overall_status``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from empirical.engine.attack_config import AttackConfig
from empirical.measurement.trajectory import Trajectory
from empirical.verify.claim import Claim, ClaimData
from theory.verdict import Status, Verdict

if TYPE_CHECKING:
    from empirical.certify import BoundCheck, PathConstants
    from empirical.verify.certified import Certification
    from empirical.verify.predict import Predictions
    from empirical.verify.search import SearchResult
    from empirical.verify.theory import PowerRecord

__all__ = [
    "AttackOutcome",
    "AttackRun",
    "BoundSummary",
    "DefenceOutcome",
    "OriginalOutcome",
    "Prepared",
    "ResistanceOutcome",
    "RunFinding",
    "RunRole",
    "SearchOutcome",
    "StabilityOutcome",
    "TheoryOutcome",
    "TrainabilityOutcome",
    "VerifyOutcome",
]

RunRole = Literal["grid", "search", "cross_domain", "original", "trainability"]
"""The role of a run in the verdict."""


@dataclass(frozen=True)
class Prepared:
    """A claim checked end to end before anything is written: its data and model paths."""

    claim: Claim
    claim_file: Path | None
    data: ClaimData
    model: Path | None
    original: Path | None
    defence_hyperparameters: dict[str, Any]

    @property
    def has_original(self) -> bool:
        """Whether there is an original M to compare M* with: the model the defence is applied
        to, or the claim's ``model.original_path``."""
        return self.claim.defence.applies or self.original is not None

    @property
    def original_model(self) -> Path | None:
        """M's folder (None: the embedded model)."""
        return self.model if self.claim.defence.applies else self.original


@dataclass(frozen=True)
class AttackRun:
    """One measured attack or fine-tuning run, with the role it plays in the verdict."""

    role: RunRole
    name: str
    config: AttackConfig
    trajectory: Trajectory

    @property
    def setting(self) -> dict[str, Any]:
        """The threat-model axes of this attack (what the attacker chose)."""
        c = self.config
        return {
            "learning_rate": c.learning_rate,
            "optimizer": c.optimizer,
            "schedule": c.schedule,
            "warmup_fraction": c.warmup_fraction,
            "method": c.method,
            "batch_size": c.batch_size,
            "max_grad_norm": c.max_grad_norm,
            "seed": c.seed,
        }

    def label(self) -> str:
        c = self.config
        return (
            f"{c.optimizer} lr {c.learning_rate:g} {c.schedule} {c.method} "
            f"batch {c.batch_size} seed {c.seed}"
        )


@dataclass(frozen=True)
class DefenceOutcome:
    """What was immunized and how: the defence's record, the cache key, whether cached."""

    name: str
    hyperparameters: dict[str, Any]
    model: str | None
    immunized_model: str | None
    cache_key: str | None
    cached: bool
    seconds: float
    record: dict[str, Any] | None

    @property
    def immunized_path(self) -> Path | None:
        """M*'s folder (None: the embedded model)."""
        return None if self.immunized_model is None else Path(self.immunized_model)


@dataclass(frozen=True)
class RunFinding:
    """One attack judged against one condition (``empirical.verify.judge``).

    ``point``, ``lower`` and ``upper`` are theory's verdicts on the measured harm curve and on
    the curves of its lower and upper confidence bounds; ``status`` is VIOLATED when even the
    lower curve violates, HOLDS when even the upper curve holds, INCONCLUSIVE otherwise.
    """

    run: AttackRun
    status: Status
    point: Verdict
    lower: Verdict
    upper: Verdict
    evaluations: int

    @property
    def broke_at(self) -> int | None:
        """The first evaluated step whose measured f exceeds φ (the point estimate)."""
        return self.point.first_violation_step

    @property
    def certainly_broke_at(self) -> int | None:
        """The first evaluated step whose lower confidence bound on f exceeds φ."""
        return self.lower.first_violation_step if self.status is Status.VIOLATED else None

    def max_harm(self) -> tuple[float | None, int | None]:
        curve = self.run.trajectory.to_curve("harm")
        points = curve.evidence()
        if not points:
            return None, None
        step, value = max(points, key=lambda p: (p[1], -p[0]))
        return value, step


@dataclass(frozen=True)
class SearchOutcome:
    """The optuna search's result as the verdict reports it."""

    result: SearchResult
    runs: list[AttackRun]


@dataclass(frozen=True)
class AttackOutcome:
    """The attacks on M*: in-domain (the grid, then the search's new attacks) and cross-domain.

    ``grid_size`` is the size of the threat model's grid whether or not it ran (the report
    states it next to the search)."""

    in_domain: list[AttackRun]
    cross: list[AttackRun]
    search: SearchOutcome | None
    grid_size: int

    @property
    def attacked(self) -> list[AttackRun]:
        """Every attack on M*, in-domain first."""
        return [*self.in_domain, *self.cross]


@dataclass(frozen=True)
class ResistanceOutcome:
    """The resistance-like conditions over their attacks, each attack's findings, the worst."""

    conditions: dict[str, Verdict]
    findings: dict[str, list[RunFinding]]
    worst: RunFinding | None


@dataclass(frozen=True)
class OriginalOutcome:
    """The worst attack rerun on the original M (None when there is no M or no attack)."""

    run: AttackRun | None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StabilityOutcome:
    """Theory's ``Stability`` on the reference data, and the measured values."""

    verdict: Verdict
    values: dict[str, Any]


@dataclass(frozen=True)
class TrainabilityOutcome:
    """Theory's ``Trainability`` on the harmless fine-tuning of M and M*, and the two runs."""

    verdict: Verdict
    runs: list[AttackRun]


@dataclass(frozen=True)
class BoundSummary:
    """One theorem's checks over all attacks: instances, violations, where it did not apply."""

    label: str
    name: str
    inequality: str
    runs_checked: int
    runs_not_applicable: int
    instances: int
    violations: int
    first_violation: dict[str, Any] | None
    worst_slack: float | None
    not_applicable_reasons: list[str]
    steps: list[dict[str, Any]]


@dataclass(frozen=True)
class TheoryOutcome:
    """The bound checks of every attack on M*, the constants of the worst attack, and the
    power of each check on these runs (``empirical.verify.theory.check_power``; None when
    no attack ran)."""

    summaries: list[BoundSummary]
    checks: dict[str, list[BoundCheck]]
    worst_constants: PathConstants | None
    worst_run: str | None
    measured_again: bool
    reproduced: bool | None
    note: str
    seconds: float
    power: PowerRecord | None = None

    @property
    def violations(self) -> int:
        return sum(s.violations for s in self.summaries)


@dataclass
class VerifyOutcome:
    """Everything the report needs (``empirical.verify.report`` renders and writes it)."""

    claim: Claim
    claim_file: Path | None
    conditions: dict[str, Verdict]
    claimed: list[str]
    runs: list[AttackRun]
    worst: RunFinding | None
    original_worst: AttackRun | None
    defence: DefenceOutcome
    search: SearchOutcome | None
    grid_size: int
    theory: TheoryOutcome
    stability_values: dict[str, Any] | None
    warnings: list[str]
    environment: dict[str, Any]
    timing: dict[str, float]
    predictions: Predictions | None = None
    certification: Certification | None = None

    @property
    def status(self) -> Status:
        """Holds when every claimed condition holds; violated when one is violated."""
        from empirical.verify.judge import overall_status

        return overall_status(self.conditions, self.claimed)

    @property
    def exit_code(self) -> int:
        """0 when every claimed condition holds, 1 otherwise (``hfta verify``'s contract)."""
        return 0 if self.status is Status.HOLDS else 1
