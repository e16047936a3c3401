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

The rerun's constants are cached in the work directory (``theory/<attack key>.json``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from empirical.trajectory import Trajectory
from empirical.verify.claim import Claim
from empirical.verify.judge import harm_break_step
from empirical.verify.outcome import AttackRun, BoundSummary, RunFinding, TheoryOutcome
from empirical.verify.workspace import Log, Workspace, silent, write_json

if TYPE_CHECKING:
    from empirical.certify import BoundCheck, PathConstants

__all__ = [
    "break_threshold",
    "check_theory",
    "stand_in_constants",
    "start_norm",
    "summaries",
]


def break_threshold(run: AttackRun, step: int | None) -> float | None:
    """The probe loss at the iterate where the harm first exceeded φ (None: no break)."""
    losses = run.trajectory.probe_loss
    if step is None or losses is None or step >= len(losses):
        return None
    return losses[step]


def start_norm(model_path: Path | None) -> float:
    """‖θ_0‖ over the trainable parameters of a model, as a full fine-tuning attack sees them."""
    import torch

    from empirical.attack import flat_parameters
    from empirical.model import load_model

    model, _ = load_model(model_path)
    trainable = [p for p in model.parameters() if p.requires_grad]
    return float(torch.linalg.vector_norm(flat_parameters(trainable).double()))


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
) -> TheoryOutcome:
    """Every attack on M* against the theorems (module docstring)."""
    from empirical.certify import PathConstants, attack_and_measure, check_all

    started = time.perf_counter()
    worst_constants: PathConstants | None = None
    reproduced: bool | None = None
    measured_again = False
    note = "Constants from each trajectory alone (G at the iterates as a stand-in for G on the "
    note += "segments); T1 needs beta, measured only along the worst attack's path"
    if worst is not None and measure_path and claim.theory.measure_path == "worst":
        key = workspace.store.key(worst.run.config)
        cache = workspace.theory / f"{key}.json"
        if cache.is_file():
            cached = json.loads(cache.read_text(encoding="utf-8"))
            worst_constants = PathConstants.model_validate(cached["constants"])
            reproduced = bool(cached["reproduced"])
        else:
            log(f"measuring the constants along the worst attack ({worst.run.label()})")
            from empirical.model import load_model

            model, tokenizer = load_model(worst.run.config.model)
            measured = attack_and_measure(
                worst.run.config,
                model=model,
                tokenizer=tokenizer,
                beta_every=claim.theory.beta_every_steps,
                segment_samples=claim.theory.segment_samples,
            )
            measured_again = True
            worst_constants = measured.constants
            reproduced = measured.trajectory.comparable() == worst.run.trajectory.comparable()
            write_json(
                cache,
                {"constants": worst_constants.model_dump(mode="json"), "reproduced": reproduced},
            )
        note = (
            "The worst attack rerun with its iterates captured: beta by Lanczos along its path, "
            "G on its segments; the other attacks: constants from their trajectories alone (G at "
            "the iterates standing in for G on the segments; no beta, so no T1)"
        )
    checks: dict[str, list[BoundCheck]] = {}
    for run in runs:
        is_worst = worst is not None and run is worst.run
        constants = (
            worst_constants
            if is_worst and worst_constants is not None
            else stand_in_constants(run.trajectory, theta0_norm)
        )
        threshold = break_threshold(run, harm_break_step(claim, run.trajectory))
        checks[run.name] = check_all(run.trajectory, constants, threshold=threshold)
    return TheoryOutcome(
        summaries=summaries(checks),
        checks=checks,
        worst_constants=worst_constants,
        worst_run=None if worst is None else worst.run.name,
        measured_again=measured_again,
        reproduced=reproduced,
        note=note,
        seconds=time.perf_counter() - started,
    )
