"""The verdict on disk: ``verdict.json``, ``report.md``, ``report.html``, ``figures/*.png``,
``trajectories/``.

``document(outcome)`` is the machine-readable verdict: a ``VerdictDocument``
(``empirical.verify.document``, schema ``VERDICT_SCHEMA``, JSON Schema in
docs/verdict.schema.json) built from the verifier's outcome:

* ``verdict`` (holds / violated / inconclusive over the *claimed* conditions), ``exit_code``;
* ``claim`` (the validated claim), ``threat_model``, ``searched_space``;
* ``conditions``: keyed by condition name, each with its ``kind``, ``claimed``, ``status``,
  ``reason``, ``rests_on`` (how many runs / evaluations / examples),
  ``first_violation_step``, ``margin`` and theory's evidence, typed by kind;
* ``worst_attack``: its configuration, the step at which it broke M* (measured and with the
  stated confidence), the most harm it reached, and the same attack on the original M;
* ``attacker``: the grid and search sizes, steps trained, the compute the search saved;
* ``bounds``: one entry per theorem, ``{theorem, name, instances, violations, ...}`` over
  every attack on M*, with measured against certified steps-to-threshold; ``bound_violations``
  their total (non-zero is reported at the top of ``report.md``, never hidden); ``theory``
  with each check's ``power``;
* ``predictions``: each planned attack's certified minimum steps, stated before the attacks,
  against the measured first break (a violated prediction is also a warning);
* ``defence``, ``runs`` (every trajectory file and its role), ``environment``, ``seeds``,
  ``timing``, ``warnings``.

``verdict.json`` is the document's ``model_dump(mode="json")``; ``report.md`` (``markdown``),
the figures (``empirical.verify.figures``) and ``report.html`` (``empirical.verify.html``)
read the typed records, never string keys. ``write_outputs`` writes everything into a
staging directory; ``empirical.outputs.publish`` then moves it to the output directory in
one rename (replacing only a previous verify output), so the output appears complete or not
at all.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from empirical.verify.document import (
    VERDICT_SCHEMA,
    AttackerRecord,
    AttackSetting,
    BoundRecord,
    ConditionRecord,
    DefenceSummary,
    FirstViolation,
    HarmSummary,
    MeasuredRestsOn,
    OriginalAttack,
    ResistanceCondition,
    ResistanceEvidence,
    ResistanceRestsOn,
    RunRecord,
    SearchedSpace,
    SearchRecord,
    SearchSetting,
    SeedsRecord,
    StabilityCondition,
    StabilityEvidence,
    StepsToThreshold,
    TheoryRecord,
    TrainabilityCondition,
    TrainabilityEvidence,
    VerdictDocument,
    VerifyEnvironment,
    WorstAttack,
    evidence_of,
    trajectory_file,
)
from empirical.verify.markdown import markdown
from theory.verdict import Status, Verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from empirical.verify.claim import ConditionName
    from empirical.verify.outcome import BoundSummary, VerifyOutcome

__all__ = ["VERDICT_SCHEMA", "document", "markdown", "write_outputs"]

# --------------------------------------------------------------------------- the document
def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _condition(name: str, verdict: Verdict, claimed: bool) -> ConditionRecord:
    """One entry of ``conditions``: theory's verdict with its evidence typed by kind and
    what it rests on."""
    evidence = evidence_of(name, verdict.evidence)
    common: dict[str, Any] = {
        "claimed": claimed,
        "status": verdict.status,
        "reason": verdict.reason,
        "first_violation_step": verdict.first_violation_step,
        "margin": verdict.margin,
    }
    if isinstance(evidence, ResistanceEvidence):
        rests = ResistanceRestsOn(
            runs=evidence.runs,
            evaluations=evidence.evaluations,
            text=f"{_plural(evidence.runs, 'attack')}, "
            f"{_plural(evidence.evaluations, 'evaluation')} of f",
        )
        return ResistanceCondition(**common, rests_on=rests, evidence=evidence)
    if isinstance(evidence, StabilityEvidence):
        examples = evidence.examples
        stable = MeasuredRestsOn(runs=0, examples=examples, text=f"2 models on {examples} examples")
        return StabilityCondition(**common, rests_on=stable, evidence=evidence)
    assert isinstance(evidence, TrainabilityEvidence)
    trained = MeasuredRestsOn(
        runs=2,
        examples=evidence.examples,
        text=f"2 fine-tuning runs, accuracy on {evidence.examples} examples",
    )
    return TrainabilityCondition(**common, rests_on=trained, evidence=evidence)


def _worst_attack(outcome: VerifyOutcome) -> WorstAttack | None:
    if outcome.worst is None:
        return None
    finding = outcome.worst
    run = finding.run
    harm, step = finding.max_harm()
    original = None
    if outcome.original_worst is not None:
        claim = outcome.claim
        summary = HarmSummary.of_run(
            outcome.original_worst, claim.harm.phi, claim.threat_model.budget_steps
        )
        original = OriginalAttack(
            **summary.model_dump(), trajectory=trajectory_file(outcome.original_worst)
        )
    return WorstAttack(
        run=run.name,
        role=run.role,
        attack=run.label(),
        setting=AttackSetting.model_validate(run.setting),
        config=run.config,
        status=finding.status,
        broke_at_step=finding.broke_at,
        certainly_broke_at_step=finding.certainly_broke_at,
        max_harm=harm,
        max_harm_step=step,
        diverged_at=run.trajectory.diverged_at,
        trajectory=trajectory_file(run),
        original=original,
    )


def _search(outcome: VerifyOutcome) -> SearchRecord | None:
    if outcome.search is None:
        return None
    result = outcome.search.result
    best = result.best_config
    return SearchRecord(
        objective=result.objective,
        pruner=result.pruner,
        seed=result.seed,
        trials=len(result.trials),
        new_attacks=len(outcome.search.runs),
        best_trial=result.best_trial,
        best_objective=result.best_objective,
        best_setting=SearchSetting(
            learning_rate=best.learning_rate,
            optimizer=best.optimizer,
            schedule=best.schedule,
            method=best.method,
            batch_size=best.batch_size,
            seed=best.seed,
        ),
        steps_trained=result.total_steps_trained,
        steps_to_best=result.steps_to_best,
        grid_steps=result.grid_steps,
        compute_ratio=result.compute_ratio,
        compute_saved=1.0 - result.compute_ratio,
        pruning_saves_steps=result.pruning_saves_steps,
    )


def _attacker(outcome: VerifyOutcome) -> AttackerRecord:
    claim = outcome.claim
    budget = claim.threat_model.budget_steps
    return AttackerRecord(
        strategy=claim.search.strategy,
        grid_size=outcome.grid_size,
        grid_steps=outcome.grid_size * budget,
        grid_runs=sum(r.role == "grid" for r in outcome.runs),
        attacks_on_immunized=sum(
            r.role in ("grid", "search", "cross_domain") for r in outcome.runs
        ),
        search=_search(outcome),
    )


def _tolerances(outcome: VerifyOutcome) -> dict[tuple[str, str], str]:
    """The rounding allowance each theorem's checks used (``BoundCheck.tolerance``), by
    (label, name); several wordings over the runs are joined."""
    found: dict[tuple[str, str], list[str]] = {}
    for checks in outcome.theory.checks.values():
        for check in checks:
            wordings = found.setdefault((check.label, check.name), [])
            if check.tolerance and check.tolerance not in wordings:
                wordings.append(check.tolerance)
    return {key: "; ".join(wordings) for key, wordings in found.items()}


def _bound(summary: BoundSummary, tolerance: str = "") -> BoundRecord:
    first = summary.first_violation
    return BoundRecord(
        theorem=summary.label,
        name=summary.name,
        inequality=summary.inequality,
        instances=summary.instances,
        violations=summary.violations,
        runs_checked=summary.runs_checked,
        runs_not_applicable=summary.runs_not_applicable,
        first_violation=None if first is None else FirstViolation.model_validate(first),
        worst_slack=summary.worst_slack,
        tolerance=tolerance,
        not_applicable_reasons=summary.not_applicable_reasons,
        steps_to_threshold=[StepsToThreshold.model_validate(s) for s in summary.steps],
    )


def _seeds(outcome: VerifyOutcome) -> SeedsRecord:
    claim = outcome.claim
    return SeedsRecord(
        attack_seeds=list(claim.threat_model.seeds),
        benchmark_seed=claim.data.benchmark_seed,
        search_seed=claim.search.seed if claim.search.strategy != "grid" else None,
        trainability_seed=None if claim.trainability is None else claim.trainability.seed,
        defence_seed=outcome.defence.hyperparameters.get("seed"),
    )


def _defence(outcome: VerifyOutcome) -> DefenceSummary:
    defence = outcome.defence
    return DefenceSummary.model_validate(
        {
            "name": defence.name,
            "hyperparameters": defence.hyperparameters,
            "model": defence.model,
            "immunized_model": defence.immunized_model,
            "cache_key": defence.cache_key,
            "cached": defence.cached,
            "seconds": defence.seconds,
            "record": defence.record,
        }
    )


def document(outcome: VerifyOutcome) -> VerdictDocument:
    """The verdict as typed records (module docstring); ``verdict.json`` is its
    ``model_dump(mode="json")``."""
    from empirical.verify.plan import searched_space

    claim = outcome.claim
    theory = outcome.theory
    tolerances = _tolerances(outcome)
    return VerdictDocument(
        verdict=outcome.status,
        exit_code=0 if outcome.exit_code == 0 else 1,
        claim_file=None if outcome.claim_file is None else str(outcome.claim_file),
        claim=claim,
        threat_model=claim.threat_model,
        searched_space=SearchedSpace.model_validate(searched_space(claim)),
        conditions={
            cast("ConditionName", name): _condition(name, verdict, name in outcome.claimed)
            for name, verdict in outcome.conditions.items()
        },
        worst_attack=_worst_attack(outcome),
        attacker=_attacker(outcome),
        bounds=[_bound(s, tolerances.get((s.label, s.name), "")) for s in theory.summaries],
        bound_violations=theory.violations,
        theory=TheoryRecord(
            note=theory.note,
            worst_run=theory.worst_run,
            worst_constants=theory.worst_constants,
            measured_again=theory.measured_again,
            reproduced=theory.reproduced,
            seconds=theory.seconds,
            power=theory.power,
        ),
        predictions=outcome.predictions,
        certification=outcome.certification,
        defence=_defence(outcome),
        runs=[
            RunRecord(
                run=r.name,
                role=r.role,
                attack=r.label(),
                trajectory=trajectory_file(r),
                steps=r.trajectory.n_steps,
                diverged_at=r.trajectory.diverged_at,
            )
            for r in outcome.runs
        ],
        environment=VerifyEnvironment.model_validate(outcome.environment),
        seeds=_seeds(outcome),
        timing=outcome.timing,
        warnings=outcome.warnings,
    )


# --------------------------------------------------------------------------- files
def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_outputs(
    outcome: VerifyOutcome, staging: Path, figures: Mapping[str, Figure] | None = None
) -> dict[str, Any]:
    """Write verdict.json, report.md, report.html (``empirical.verify.html``), figures/ and
    trajectories/ into ``staging``; return ``verdict.json``'s content (the document's
    ``model_dump(mode="json")``, what ``VerifyResult.record`` holds)."""
    from empirical.plots import save_figure

    staging.mkdir(parents=True, exist_ok=True)
    for run in outcome.runs:
        run.trajectory.save(staging / trajectory_file(run))
    names: list[str] = []
    for name, figure in (figures or {}).items():
        save_figure(figure, staging / "figures" / name)
        names.append(name)
    record = document(outcome)
    _write_text(staging / "verdict.json", record.to_json())
    _write_text(staging / "report.md", markdown(outcome, record, names))
    from empirical.verify.html import write_html_report

    write_html_report(staging)
    return record.model_dump(mode="json")


def status_of(record: VerdictDocument | Mapping[str, Any]) -> Status:
    """The verdict status of a verdict document or of ``verdict.json``'s content."""
    if isinstance(record, VerdictDocument):
        return record.verdict
    return Status(record["verdict"])
