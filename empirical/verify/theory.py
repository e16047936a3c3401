"""Stage 4 of ``verify``: theory in the loop, every attack on M* against the proved bounds.

Every attack on M* is checked against the theorems that apply to its optimizer
(``empirical.certify.check_all``; the catalogue is docs/theorems.md). The constants of each
attack come from its trajectory alone (``constants_from_trajectory``): G at the iterates, the
largest probe-gradient norm, stands in for G on the segments between iterates (a lower
estimate of what T3 and T6 assume, labelled as such), and for full fine-tuning ‖θ_0‖ is the
norm of the attacked model's trainable parameters. With ``[theory] measure_path = "worst"``
the worst attack is rerun with its iterates captured (``attack_and_measure``) so that β (by
Lanczos) and G on the segments are measured along its path, and the rerun must reproduce the
attack's trajectory exactly. Each check's threshold for the steps-to-threshold comparison is
the probe loss at the iterate where the harm first exceeded φ. Violations are counted and
reported loudly: a violation means a constant was mis-estimated or a bug.

The rerun samples β densely enough that halving the interval changes it by at most
``[theory] beta_refine``, and its probe columns are evaluated again in float64 at its
iterates (``empirical.certify.float64``): the worst attack is checked on those float64
columns, so rounding does not decide its checks. The rerun's constants and float64
trajectory are cached in the work directory (``theory/<attack key>.json``).

The power of each check (docs/science.md §4, "Power"; issue 14, item 3): every check runs
again on the same runs with the same constants multiplied by 0.5 and 0.8 in the direction
that tightens it, and with its wrong statements (``empirical.certify.power``). A check
detects a perturbation on a run when it reports a violation there; ``check_power`` records,
per check, on how many runs it applied, its detection rates, and its false alarms at the
measured constants (which are the verdict's own bound violations). A check whose detection
at x0.5 is below ``WEAK_BELOW`` is *weak*: its "0 violations" would hardly have failed had
its constants been half as large, and the verdict says so, with why (``weak_reasons``).

Independent constants (issue 14, item 1; ``empirical.certify.independent``): the constants
above come from the checked trajectories themselves. Beside them, every attack is checked with
constants its checked steps did not produce: T1 with the directional smoothness β_dir (the
largest trustworthy |κ_s| along the attack's own update directions) fitted on the first half of
the run and checked on the second, and fitted on the other runs of the same attack class (the
same configuration, another seed) and checked on every step; T6 from K = T/2 with the
contraction factor c and G fitted on the first half (G at the prefix iterates, from the
trajectory alone), and, for the worst attack's rerun, with G on the ball B(θ_0, R) of the
budget's path-length bound (gradients at 9 points; no Lanczos, to keep the stage's cost, so the
T1 rows with a Lanczos β apply to no run here). Each constant's estimation record is in
``PowerRecord.estimates``, their power rows are marked ``independent``, and a weak check names
its non-weak independent ``counterpart``. A violation with independent constants is *not* a
bound violation of the verdict: it reads "these constants do not describe this run" and is
counted as the row's false alarms.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from empirical.certify.checks_base import measured_prefix
from empirical.certify.records import Constant
from empirical.measurement.trajectory import Trajectory
from empirical.verify.claim import Claim
from empirical.verify.evidence import Record
from empirical.verify.judge import harm_break_step
from empirical.verify.outcome import AttackRun, BoundSummary, RunFinding, TheoryOutcome
from empirical.verify.workspace import Log, Workspace, silent, write_json
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from empirical.certify import BoundCheck, PathConstants
    from empirical.certify.capture import MeasuredAttack
    from empirical.certify.independent import BallConstants, IndependentRun
    from empirical.certify.power import PowerTable

__all__ = [
    "WEAK_BELOW",
    "CheckPower",
    "IndependentEstimate",
    "PowerRecord",
    "StatementPower",
    "ball_of_rerun",
    "break_threshold",
    "check_power",
    "check_theory",
    "estimates_of",
    "independent_runs",
    "stand_in_constants",
    "start_norm",
    "start_point",
    "summaries",
    "with_counterparts",
]


def break_threshold(run: AttackRun, step: int | None) -> float | None:
    """The probe loss at the iterate where the harm first exceeded φ (None: no break)."""
    losses = run.trajectory.probe_loss
    if step is None or losses is None or step >= len(losses):
        return None
    return losses[step]


def start_point(model_path: Path | None) -> tuple[int, float]:
    """(d, ‖θ_0‖) over the trainable parameters of a model, as a full fine-tuning attack
    sees them."""
    import torch

    from empirical.engine.attack import flat_parameters
    from empirical.models.model import load_model

    model, _ = load_model(model_path)
    trainable = [p for p in model.parameters() if p.requires_grad]
    flat = flat_parameters(trainable)
    return int(flat.numel()), float(torch.linalg.vector_norm(flat.double()))


def start_norm(model_path: Path | None) -> float:
    """‖θ_0‖ over the trainable parameters of a model, as a full fine-tuning attack sees them."""
    return start_point(model_path)[1]


def stand_in_constants(trajectory: Trajectory, theta0_norm: float | None) -> PathConstants:
    """The constants the trajectory alone gives, with G at the iterates standing in for G on
    the segments (a lower estimate of what T3 and T6 assume; labelled as such) and, for full
    fine-tuning, ‖θ_0‖ of the attacked model."""
    from empirical.certify import Constant, constants_from_trajectory

    base = constants_from_trajectory(trajectory)
    if theta0_norm is not None and trajectory.config.get("method") == "full":
        norm = Constant(
            name="theta0_norm", value=theta0_norm, method="norm of the attacked model's parameters"
        )
        base = base.model_copy(update={"theta0_norm": norm})
    if base.G_iterates is None:
        return base
    stand_in = Constant(
        name="G",
        value=base.G_iterates.value,
        method="largest probe-gradient norm at the iterates (stand-in for the segments)",
        points=base.G_iterates.points,
        note="measured at the iterates only; T3 and T6 assume the bound on the segments",
    )
    return base.model_copy(update={"G_path": stand_in})


#: A check whose detection rate at constants x0.5 is below this is reported as weak.
WEAK_BELOW = 0.9


class StatementPower(Record):
    """One wrong statement of a check and how often it was detected."""

    name: str
    description: str
    runs: int
    detected: int
    rate: float | None


class CheckPower(Record):
    """One check's power on the verdict's runs: applicable runs, detection of its constants
    x0.5 and x0.8 (all together), of each wrong statement, and false alarms at the measured
    constants; ``weak`` when the x0.5 detection is below ``WEAK_BELOW`` (None: it applied to
    no run)."""

    check: str
    runs: int
    not_applicable: int
    detection_x05: float | None
    detection_x08: float | None
    lower_95_x05: float | None
    statements: list[StatementPower]
    false_alarms: int
    weak: bool | None
    independent: bool = False
    counterpart: str | None = None


class IndependentEstimate(Record):
    """One constant estimated on data the checked steps did not produce (module docstring):
    the run it checks, the power row that uses it, the constant with its estimation record
    (method, points, provenance), and the check at it: ``violations`` of ``instances`` (a
    violation: "these constants do not describe this run")."""

    run: str
    check: str
    constant: Constant
    confidence: str
    instances: int
    violations: int


class PowerRecord(Record):
    """The power of every check on the verdict's runs (module docstring); ``estimates``: the
    independent constants' records; ``weak_reasons``: why a weak check cannot detect
    (``empirical.certify.weak_checks.weak_reasons``)."""

    subjects: list[str]
    note: str
    checks: list[CheckPower]
    seconds: float
    estimates: list[IndependentEstimate] = Field(default_factory=list)
    weak_reasons: dict[str, str] = Field(default_factory=dict)

    @property
    def weak(self) -> list[str]:
        """The checks that applied somewhere and detect constants x0.5 on < 90% of runs."""
        return [c.check for c in self.checks if c.weak]


def power_rows(table: PowerTable, *, independent: bool = False) -> list[CheckPower]:
    """``empirical.certify.power``'s table, one ``CheckPower`` per check (``independent``:
    rows with independent constants; those that applied to no run are left out)."""
    found: list[CheckPower] = []
    for check in dict.fromkeys(row.check for row in table.rates):
        rows = {row.perturbation: row for row in table.rates if row.check == check}
        correct, half, most = rows["correct"], rows.get("all x0.5"), rows.get("all x0.8")
        statements = [
            StatementPower(
                name=r.perturbation,
                description=r.description,
                runs=r.runs,
                detected=r.detected,
                rate=r.rate,
            )
            for r in rows.values()
            if r.kind == "statement"
        ]
        rate = None if half is None else half.rate
        if independent and not correct.runs:
            continue
        found.append(
            CheckPower(
                check=check,
                runs=correct.runs,
                not_applicable=correct.not_applicable,
                detection_x05=rate,
                detection_x08=None if most is None else most.rate,
                lower_95_x05=None if half is None else half.lower_95,
                statements=statements,
                false_alarms=correct.detected,
                weak=None if rate is None else rate < WEAK_BELOW,
                independent=independent,
            )
        )
    return found


def with_counterparts(rows: Sequence[CheckPower]) -> list[CheckPower]:
    """Each weak row with the non-weak independent row of the same check (the best x0.5
    detection; the check's name up to its "[...]" constants) as its ``counterpart``."""
    strong = [r for r in rows if r.independent and r.weak is False]
    out: list[CheckPower] = []
    for row in rows:
        base = row.check.split(" [")[0]
        match = sorted(
            (r for r in strong if r.check.split(" [")[0] == base),
            key=lambda r: -(r.detection_x05 or 0.0),
        )
        if row.weak and match:
            row = row.model_copy(update={"counterpart": match[0].check})
        out.append(row)
    return out


def _class_key(run: AttackRun) -> str:
    """An attack's class: its configuration without the seed."""
    return run.config.model_copy(update={"seed": 0}).model_dump_json()


def independent_runs(
    runs: Sequence[AttackRun],
    checked: Mapping[str, Trajectory],
    balls: Mapping[str, BallConstants | None] | None = None,
) -> list[IndependentRun]:
    """Every attack with its independent constants (module docstring): β_dir of its first
    half and of the other runs of its class (``directional_fit``), T6's c and G fitted on its
    first half from the trajectory alone (``prefix_fit`` without a landscape), and the ball
    constants of ``balls`` by run name (the worst attack's rerun)."""
    from empirical.certify.independent import IndependentRun, directional_fit, prefix_fit

    found: list[IndependentRun] = []
    for run in runs:
        trajectory = checked.get(run.name, run.trajectory)
        others = [r for r in runs if r is not run and _class_key(r) == _class_key(run)]
        sibling = None
        if others:
            names = ", ".join(r.name for r in others)
            sibling = directional_fit([r.trajectory for r in others], trajectory, source_name=names)
        directional = prefix = None
        split = trajectory.n_steps // 2
        if trajectory.probe_loss is not None and 2 <= split < measured_prefix(trajectory):
            directional = directional_fit(trajectory, trajectory, split=split)
            if trajectory.probe_grad_norm is not None:
                prefix = prefix_fit(trajectory, None, None, split, beta=False)
        found.append(
            IndependentRun(
                name=run.name,
                trajectory=trajectory,
                prefix=prefix,
                directional=directional,
                sibling=sibling,
                ball=(balls or {}).get(run.name),
            )
        )
    return found


def estimates_of(runs: Sequence[IndependentRun]) -> list[IndependentEstimate]:
    """The estimation record of every independent constant of ``runs``, with the check at it
    (the constants as estimated: a violation is "these constants do not describe this run")."""
    from empirical.certify.contraction_tail import check_contraction_tail
    from empirical.certify.independent import T1_PREFIX_DIRECTIONAL, T1_SIBLING_DIRECTIONAL
    from empirical.certify.smoothness_sandwich import check_step_sandwich

    found: list[IndependentEstimate] = []

    def add(
        run: IndependentRun, check: str, constant: Constant, confidence: str, result: BoundCheck
    ) -> None:
        found.append(
            IndependentEstimate(
                run=run.name,
                check=check,
                constant=constant,
                confidence=confidence,
                instances=result.instances,
                violations=result.violations,
            )
        )

    for run in runs:
        for check, fit in (
            (T1_PREFIX_DIRECTIONAL, run.directional),
            (T1_SIBLING_DIRECTIONAL, run.sibling),
        ):
            if fit is not None:
                add(
                    run,
                    check,
                    fit.beta,
                    fit.confidence,
                    check_step_sandwich(run.trajectory, fit.beta_rest),
                )
        prefix = run.prefix
        if prefix is None or prefix.c is None:
            continue
        for check, G in (
            ("T6 contraction_tail [prefix c, prefix G]", prefix.G),
            ("T6 contraction_tail [prefix c, ball G]", None if run.ball is None else run.ball.G),
        ):
            if G is None:
                continue
            result = check_contraction_tail(run.trajectory, prefix.split, prefix.c, G)
            for constant in (prefix.c, G):
                source = run.ball if constant is G and "ball" in check else prefix
                assert source is not None
                add(run, check, constant, source.confidence, result)
    return found


def check_power(
    runs: Sequence[AttackRun],
    constants: Mapping[str, PathConstants],
    note: str,
    checked: Mapping[str, Trajectory] | None = None,
    balls: Mapping[str, BallConstants | None] | None = None,
) -> PowerRecord:
    """Each check's detection rates on ``runs`` with the constants the verdict checked them
    with (``empirical.certify.power.power_table``; module docstring), on the trajectories the
    verdict checked (``checked`` by run name, e.g. the worst attack's float64 columns; a run's
    own trajectory otherwise); then T1 and T6 with independent constants
    (``independent_runs``; ``balls``: the worst attack's ball constants), their
    estimation records, and why each weak check cannot detect."""
    from empirical.certify.independent import independent_power
    from empirical.certify.power import PowerSubject, power_table
    from empirical.certify.weak_checks import weak_reasons

    started = time.perf_counter()
    given = checked or {}
    subjects = [
        PowerSubject(r.name, given.get(r.name, r.trajectory), constants[r.name]) for r in runs
    ]
    table = power_table(subjects)
    independent = independent_runs(runs, given, balls)
    rows = power_rows(table) + power_rows(independent_power(independent), independent=True)
    weak = [r.check for r in rows if r.weak]
    return PowerRecord(
        subjects=[s.name for s in subjects],
        note=note,
        checks=with_counterparts(rows),
        seconds=time.perf_counter() - started,
        estimates=estimates_of(independent),
        weak_reasons=weak_reasons(subjects, weak),
    )


def ball_of_rerun(run: AttackRun, measured: MeasuredAttack) -> BallConstants | None:
    """G at θ_0 and 8 points of the ball B(θ_0, R) of the worst attack's budget
    (``radius_for_config``; ``constants_before_attack`` without Lanczos: gradients only);
    None when the budget bounds no path (unclipped SGD)."""
    from empirical.certify.independent import constants_before_attack, radius_for_config

    norm0 = measured.constants.theta0_norm
    d = measured.trajectory.trainable_parameters
    try:
        radius = radius_for_config(run.config, d, None if norm0 is None else norm0.value)
    except HftaInputError:
        return None
    return constants_before_attack(measured.landscape, measured.iterates[0], radius, beta=False)


def summaries(checks: Mapping[str, Sequence[BoundCheck]]) -> list[BoundSummary]:
    """Per theorem and check (sorted by label and name), over the runs: how many runs it
    applied to, its instances and violations, the first violation, the worst slack, why it
    did not apply elsewhere, and the certified against measured steps to the threshold."""
    grouped: dict[tuple[str, str], list[tuple[str, BoundCheck]]] = {}
    for run_name, run_checks in checks.items():
        for check in run_checks:
            grouped.setdefault((check.label, check.name), []).append((run_name, check))
    found: list[BoundSummary] = []
    for (label, name), items in sorted(grouped.items()):
        applied = [(r, c) for r, c in items if c.applicable]
        violated = [(r, c) for r, c in applied if c.violations]
        first = None
        if violated:
            run_name, check = violated[0]
            first = {
                "run": run_name,
                "step": check.first_violation_step,
                "slack": check.worst_slack,
            }
        slacks = [c.worst_slack for _, c in applied if c.worst_slack is not None]
        steps = [
            {
                "run": r,
                "threshold": c.threshold,
                "kind": c.steps_kind,
                "certified": c.certified_steps,
                "certified_unreachable": c.certified_unreachable,
                "measured": c.measured_steps,
            }
            for r, c in applied
            if c.steps_kind is not None
        ]
        inequality = next((c.inequality for _, c in items if c.inequality), "")
        found.append(
            BoundSummary(
                label=label,
                name=name,
                inequality=inequality,
                runs_checked=len(applied),
                runs_not_applicable=len(items) - len(applied),
                instances=sum(c.instances for _, c in applied),
                violations=sum(c.violations for _, c in applied),
                first_violation=first,
                worst_slack=min(slacks) if slacks else None,
                not_applicable_reasons=sorted({c.reason for _, c in items if not c.applicable}),
                steps=steps,
            )
        )
    return found


def check_theory(
    claim: Claim,
    runs: Sequence[AttackRun],
    worst: RunFinding | None,
    workspace: Workspace,
    *,
    measure_path: bool,
    theta0_norm: float | None = None,
    log: Log = silent,
    progress: bool = False,
) -> TheoryOutcome:
    """Every attack on M* against the theorems (module docstring); ``progress``: a bar for
    the worst attack's rerun (``empirical.progress.step_progress``) on a terminal."""
    from empirical.certify import PathConstants, attack_and_measure, check_all
    from empirical.progress import step_progress

    started = time.perf_counter()
    worst_constants: PathConstants | None = None
    worst_checked: Trajectory | None = None
    reproduced: bool | None = None
    balls: dict[str, BallConstants | None] = {}
    measured_again = False
    note = "Constants from each trajectory alone (G at the iterates as a stand-in for G on the "
    note += "segments); T1 needs beta, measured only along the worst attack's path"
    if worst is not None and measure_path and claim.theory.measure_path == "worst":
        key = workspace.store.key(worst.run.config)
        cache = workspace.theory / f"{key}.json"
        cached = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}
        if "independent" in cached:
            from empirical.certify.independent import BallConstants

            worst_constants = PathConstants.model_validate(cached["constants"])
            reproduced = bool(cached["reproduced"])
            worst_checked = Trajectory.model_validate(cached["checked"])
            ball = cached["independent"]["ball"]
            balls[worst.run.name] = None if ball is None else BallConstants.model_validate(ball)
        else:
            log(f"measuring the constants along the worst attack ({worst.run.label()})")
            from empirical.models.model import load_model

            model, tokenizer = load_model(worst.run.config.model, device=worst.run.config.device)
            with step_progress(
                "constants along the worst attack", None, enabled=progress
            ) as advance:
                measured = attack_and_measure(
                    worst.run.config,
                    model=model,
                    tokenizer=tokenizer,
                    beta_every=claim.theory.beta_every_steps,
                    segment_samples=claim.theory.segment_samples,
                    float64=True,
                    refine=claim.theory.beta_refine or None,
                    advance=advance,
                )
            measured_again = True
            worst_constants = measured.constants
            worst_checked = measured.checked
            reproduced = measured.trajectory.comparable() == worst.run.trajectory.comparable()
            ball = balls[worst.run.name] = ball_of_rerun(worst.run, measured)
            write_json(
                cache,
                {
                    "constants": worst_constants.model_dump(mode="json"),
                    "reproduced": reproduced,
                    "checked": worst_checked.model_dump(mode="json"),
                    "independent": {
                        "ball": None if ball is None else ball.model_dump(mode="json"),
                    },
                },
            )
        note = (
            "The worst attack rerun with its iterates captured: beta by Lanczos along its path, "
            "G on its segments, its probe losses evaluated again in float64; the other attacks: "
            "constants from their trajectories alone (G at the iterates standing in for G on the "
            "segments; no beta, so no T1)"
        )
    checks: dict[str, list[BoundCheck]] = {}
    used: dict[str, PathConstants] = {}
    trajectories: dict[str, Trajectory] = {}
    for run in runs:
        is_worst = worst is not None and run is worst.run
        used[run.name] = (
            worst_constants
            if is_worst and worst_constants is not None
            else stand_in_constants(run.trajectory, theta0_norm)
        )
        threshold = break_threshold(run, harm_break_step(claim, run.trajectory))
        checked = worst_checked if is_worst and worst_checked is not None else run.trajectory
        trajectories[run.name] = checked
        checks[run.name] = check_all(checked, used[run.name], threshold=threshold)
    power_note = (
        f"every attack on M* with the constants it was checked with ({note}); each constant "
        "x0.5 and x0.8 in the direction that tightens the check, and the wrong statements"
    )
    return TheoryOutcome(
        summaries=summaries(checks),
        checks=checks,
        worst_constants=worst_constants,
        worst_run=None if worst is None else worst.run.name,
        measured_again=measured_again,
        reproduced=reproduced,
        note=note,
        seconds=time.perf_counter() - started,
        power=check_power(runs, used, power_note, trajectories, balls) if runs else None,
    )
