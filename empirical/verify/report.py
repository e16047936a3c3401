"""The verdict on disk: ``verdict.json``, ``report.md``, ``report.html``, ``figures/*.png``,
``trajectories/``.

``document(outcome)`` is the machine-readable verdict (``verdict.json``, schema
``VERDICT_SCHEMA``):

* ``verdict`` (holds / violated / inconclusive over the *claimed* conditions), ``exit_code``;
* ``claim`` (the validated claim), ``threat_model``;
* ``conditions``: keyed by condition name, each with ``claimed``, ``status``, ``reason``,
  ``rests_on`` (how many runs / evaluations / examples), ``first_violation_step``,
  ``margin`` and theory's ``evidence``;
* ``worst_attack``: its configuration, the step at which it broke M* (measured and with the
  stated confidence), the most harm it reached, and the same attack on the original M;
* ``attacker``: the grid and search sizes, steps trained, the compute the search saved;
* ``bounds``: one entry per theorem, ``{theorem, name, instances, violations, ...}`` over
  every attack on M*, with measured against certified steps-to-threshold; ``bound_violations``
  their total (non-zero is reported at the top of ``report.md``, never hidden);
* ``defence``, ``runs`` (every trajectory file and its role), ``environment``, ``seeds``,
  ``timing``, ``warnings``.

``write_outputs`` writes everything into a staging directory; ``publish`` then moves it to the
output directory in one rename, so the output appears complete or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from theory.verdict import Status, Verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from empirical.verify.pipeline import AttackRun, BoundSummary, VerifyOutcome

__all__ = ["VERDICT_SCHEMA", "document", "markdown", "publish", "write_outputs"]

VERDICT_SCHEMA = 1
"""Version of ``verdict.json``'s layout."""

STATUS_MARK: dict[str, str] = {
    "holds": "HOLDS",
    "violated": "VIOLATED",
    "inconclusive": "INCONCLUSIVE",
}


# --------------------------------------------------------------------------- the document
def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _rests_on(name: str, verdict: Verdict) -> dict[str, Any]:
    evidence = verdict.evidence
    if "runs" in evidence:
        return {
            "runs": evidence["runs"],
            "evaluations": evidence.get("evaluations"),
            "text": f"{_plural(evidence['runs'], 'attack')}, "
            f"{_plural(evidence.get('evaluations') or 0, 'evaluation')} of f",
        }
    if name == "stability":
        examples = evidence.get("examples")
        return {"runs": 0, "examples": examples, "text": f"2 models on {examples} examples"}
    if name == "trainability":
        examples = evidence.get("examples")
        return {
            "runs": 2,
            "examples": examples,
            "text": f"2 fine-tuning runs, accuracy on {examples} examples",
        }
    return {"runs": None, "text": ""}


def _trajectory_file(run: AttackRun) -> str:
    return f"trajectories/{run.name}.json"


def _harm_summary(run: AttackRun, phi: float, budget: int) -> dict[str, Any]:
    from theory.conditions import WeakResistance

    curve = run.trajectory.to_curve("harm")
    points = curve.evidence()
    verdict = WeakResistance(phi, budget=budget).check(curve)
    peak = max(points, key=lambda p: (p[1], -p[0])) if points else (None, None)
    return {
        "broke_at_step": verdict.first_violation_step,
        "max_harm": peak[1],
        "max_harm_step": peak[0],
        "diverged_at": run.trajectory.diverged_at,
    }


def _worst_attack(outcome: VerifyOutcome) -> dict[str, Any] | None:
    if outcome.worst is None:
        return None
    finding = outcome.worst
    run = finding.run
    harm, step = finding.max_harm()
    record: dict[str, Any] = {
        "run": run.name,
        "role": run.role,
        "attack": run.label(),
        "setting": run.setting,
        "config": run.config.model_dump(mode="json"),
        "status": finding.status.value,
        "broke_at_step": finding.broke_at,
        "certainly_broke_at_step": finding.certainly_broke_at,
        "max_harm": harm,
        "max_harm_step": step,
        "diverged_at": run.trajectory.diverged_at,
        "trajectory": _trajectory_file(run),
    }
    if outcome.original_worst is not None:
        claim = outcome.claim
        budget = claim.threat_model.budget_steps
        record["original"] = {
            **_harm_summary(outcome.original_worst, claim.harm.phi, budget),
            "trajectory": _trajectory_file(outcome.original_worst),
        }
    return record


def _attacker(outcome: VerifyOutcome) -> dict[str, Any]:
    claim = outcome.claim
    budget = claim.threat_model.budget_steps
    grid_runs = [r for r in outcome.runs if r.role == "grid"]
    record: dict[str, Any] = {
        "strategy": claim.search.strategy,
        "grid_size": outcome.grid_size,
        "grid_steps": outcome.grid_size * budget,
        "grid_runs": len(grid_runs),
        "attacks_on_immunized": sum(
            r.role in ("grid", "search", "cross_domain") for r in outcome.runs
        ),
        "search": None,
    }
    if outcome.search is not None:
        result = outcome.search.result
        record["search"] = {
            "objective": result.objective,
            "pruner": result.pruner,
            "seed": result.seed,
            "trials": len(result.trials),
            "new_attacks": len(outcome.search.runs),
            "best_trial": result.best_trial,
            "best_objective": result.best_objective,
            "best_setting": {
                "learning_rate": result.best_config.learning_rate,
                "optimizer": result.best_config.optimizer,
                "schedule": result.best_config.schedule,
                "method": result.best_config.method,
                "batch_size": result.best_config.batch_size,
                "seed": result.best_config.seed,
            },
            "steps_trained": result.total_steps_trained,
            "steps_to_best": result.steps_to_best,
            "grid_steps": result.grid_steps,
            "compute_ratio": result.compute_ratio,
            "compute_saved": 1.0 - result.compute_ratio,
            "pruning_saves_steps": result.pruning_saves_steps,
        }
    return record


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


def _bound(summary: BoundSummary, tolerance: str = "") -> dict[str, Any]:
    return {
        "theorem": summary.label,
        "name": summary.name,
        "inequality": summary.inequality,
        "instances": summary.instances,
        "violations": summary.violations,
        "runs_checked": summary.runs_checked,
        "runs_not_applicable": summary.runs_not_applicable,
        "first_violation": summary.first_violation,
        "worst_slack": summary.worst_slack,
        "tolerance": tolerance,
        "not_applicable_reasons": summary.not_applicable_reasons,
        "steps_to_threshold": summary.steps,
    }


def _seeds(outcome: VerifyOutcome) -> dict[str, Any]:
    claim = outcome.claim
    record: dict[str, Any] = {
        "attack_seeds": list(claim.threat_model.seeds),
        "benchmark_seed": claim.data.benchmark_seed,
        "search_seed": claim.search.seed if claim.search.strategy != "grid" else None,
        "trainability_seed": None if claim.trainability is None else claim.trainability.seed,
        "defence_seed": outcome.defence.hyperparameters.get("seed"),
    }
    return record


def document(outcome: VerifyOutcome) -> dict[str, Any]:
    """The verdict as JSON-ready data (module docstring)."""
    from empirical.verify.pipeline import searched_space

    claim = outcome.claim
    conditions = {
        name: {
            "claimed": name in outcome.claimed,
            "status": verdict.status.value,
            "reason": verdict.reason,
            "rests_on": _rests_on(name, verdict),
            "first_violation_step": verdict.first_violation_step,
            "margin": verdict.margin,
            "evidence": verdict.evidence,
        }
        for name, verdict in outcome.conditions.items()
    }
    theory = outcome.theory
    constants = theory.worst_constants
    tolerances = _tolerances(outcome)
    return {
        "schema_version": VERDICT_SCHEMA,
        "tool": "hfta verify",
        "verdict": outcome.status.value,
        "exit_code": outcome.exit_code,
        "claim_file": None if outcome.claim_file is None else str(outcome.claim_file),
        "claim": claim.model_dump(mode="json"),
        "threat_model": claim.threat_model.model_dump(mode="json"),
        "searched_space": searched_space(claim),
        "conditions": conditions,
        "worst_attack": _worst_attack(outcome),
        "attacker": _attacker(outcome),
        "bounds": [
            _bound(s, tolerances.get((s.label, s.name), "")) for s in theory.summaries
        ],
        "bound_violations": theory.violations,
        "theory": {
            "note": theory.note,
            "worst_run": theory.worst_run,
            "worst_constants": None if constants is None else constants.model_dump(mode="json"),
            "measured_again": theory.measured_again,
            "reproduced": theory.reproduced,
            "seconds": theory.seconds,
        },
        "defence": {
            "name": outcome.defence.name,
            "hyperparameters": outcome.defence.hyperparameters,
            "model": outcome.defence.model,
            "immunized_model": outcome.defence.immunized_model,
            "cache_key": outcome.defence.cache_key,
            "cached": outcome.defence.cached,
            "seconds": outcome.defence.seconds,
            "record": outcome.defence.record,
        },
        "runs": [
            {
                "run": r.name,
                "role": r.role,
                "attack": r.label(),
                "trajectory": _trajectory_file(r),
                "steps": r.trajectory.n_steps,
                "diverged_at": r.trajectory.diverged_at,
            }
            for r in outcome.runs
        ],
        "environment": outcome.environment,
        "seeds": _seeds(outcome),
        "timing": outcome.timing,
        "warnings": outcome.warnings,
    }


# --------------------------------------------------------------------------- markdown
def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def markdown(outcome: VerifyOutcome, record: Mapping[str, Any], figures: list[str]) -> str:
    """``report.md``: the verdict table first, warnings (bound violations) above it."""
    claim = outcome.claim
    threat = claim.threat_model
    lines: list[str] = [f"# Verification of \"{claim.claim.name}\"", ""]
    if claim.claim.description:
        lines += [f"> {claim.claim.description}", ""]
    status = outcome.status.value
    lines += [
        f"**Verdict: {STATUS_MARK[status]}** (exit code {outcome.exit_code}): "
        + (
            "every claimed condition holds."
            if outcome.exit_code == 0
            else "at least one claimed condition is violated or inconclusive."
        ),
        "",
    ]
    for warning in outcome.warnings:
        lines += [f"> **WARNING:** {warning}", ""]
    lines += [
        "## Conditions",
        "",
        "| condition | claimed | status | rests on | reason |",
        "|---|---|---|---|---|",
    ]
    for name, entry in record["conditions"].items():
        claimed = "yes" if entry["claimed"] else "measured only"
        rests = _cell(entry["rests_on"]["text"])
        lines.append(
            f"| {name} | {claimed} | **{entry['status']}** | {rests} | {_cell(entry['reason'])} |"
        )
    lines += [
        "",
        f"Every interval is at {claim.statistics.confidence:.0%} confidence. An attack *broke* "
        "the model when theory's condition fails even at the lower confidence bounds of f "
        "(Clopper–Pearson on the held-out prompts, simultaneous over all evaluations); a "
        "condition over attacks is violated as soon as one attack broke it, since the attacker "
        "can rerun that attack.",
        "",
        "## Threat model",
        "",
        "| budget T (steps) | learning rates | optimizers | schedules (warmup) | clipping | "
        "fine-tuning | batch sizes | seeds |",
        "|---|---|---|---|---|---|---|---|",
        f"| {threat.budget_steps} | {', '.join(f'{r:g}' for r in threat.learning_rates)} | "
        f"{', '.join(threat.optimizers)} | {', '.join(threat.schedules)} "
        f"({threat.warmup_fraction:g}) | {threat.max_grad_norm or 'none'} | "
        f"{' and '.join('LoRA' if m else 'full' for m in threat.lora_modes)} | "
        f"{', '.join(map(str, threat.batch_sizes))} | {', '.join(map(str, threat.seeds))} |",
        "",
        f"Harm proxy: {claim.harm.proxy}, threshold φ = {claim.harm.phi:g}, measured every "
        f"{claim.harm.eval_every_steps} steps.",
        "",
    ]
    lines += _worst_lines(record)
    lines += _attacker_lines(record)
    lines += _theory_lines(outcome, record)
    lines += _runs_lines(outcome, record)
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{name}](figures/{name})" for name in figures]
        lines.append("")
    lines += _provenance_lines(outcome, record)
    return "\n".join(lines) + "\n"


def _worst_lines(record: Mapping[str, Any]) -> list[str]:
    worst = record.get("worst_attack")
    if worst is None:
        return []
    lines = ["## Worst attack", ""]
    broke = worst["broke_at_step"]
    lines.append(
        f"`{worst['run']}`: {worst['attack']}. "
        + (
            f"It broke M* at step {broke} (measured f > φ)"
            if broke is not None
            else "It did not break M* within the budget"
        )
        + (
            f", certainly (lower confidence bound above φ) from step "
            f"{worst['certainly_broke_at_step']}"
            if worst["certainly_broke_at_step"] is not None
            else ""
        )
        + f"; highest f = {_number(worst['max_harm'])} at step {_number(worst['max_harm_step'])}."
    )
    original = worst.get("original")
    if original is not None:
        broke_original = original["broke_at_step"]
        lines.append(
            "The same attack on the original model M: "
            + (
                f"broke it at step {broke_original}"
                if broke_original is not None
                else "did not break it within the budget"
            )
            + f" (highest f = {_number(original['max_harm'])})."
        )
    lines.append("")
    return lines


def _attacker_lines(record: Mapping[str, Any]) -> list[str]:
    attacker = record["attacker"]
    lines = [
        "## Adaptive attacker",
        "",
        f"Strategy `{attacker['strategy']}`: grid of {_plural(attacker['grid_size'], 'attack')} "
        f"({attacker['grid_steps']} steps in all); "
        f"{_plural(attacker['attacks_on_immunized'], 'attack')} on M* measured.",
    ]
    search = attacker.get("search")
    if search is not None:
        lines.append(
            f"Optuna ({search['objective']}, pruner {search['pruner']}, seed {search['seed']}): "
            f"{search['trials']} trials, best trial {search['best_trial']} "
            f"(objective {_number(search['best_objective'])}); it trained "
            f"{search['steps_to_best']} steps to find its worst attack against "
            f"{search['grid_steps']} for the full grid (ratio {_number(search['compute_ratio'])}, "
            f"{_number(100 * search['compute_saved'], 3)}% saved"
            + ("" if search["pruning_saves_steps"] else "; pruning decisions recorded only")
            + ")."
        )
    lines.append("")
    return lines


def _theory_lines(outcome: VerifyOutcome, record: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Theory in the loop",
        "",
        f"Bound violations: **{record['bound_violations']}**. {outcome.theory.note}.",
        "",
        "| theorem | inequality | runs checked | instances | violations | worst slack | "
        "steps to threshold (measured vs certified) |",
        "|---|---|---|---|---|---|---|",
    ]
    for bound in record["bounds"]:
        steps = bound["steps_to_threshold"]
        shown = "; ".join(
            f"{s['run']}: {_number(s['measured'])} vs {s['kind']} "
            f"{'never' if s['certified_unreachable'] else _number(s['certified'])}"
            for s in steps[:3]
        ) + (" …" if len(steps) > 3 else "")
        reasons = "; ".join(bound["not_applicable_reasons"])
        skipped = bound["runs_not_applicable"]
        checked = f"{bound['runs_checked']}" + (f" ({skipped} n/a: {reasons})" if skipped else "")
        lines.append(
            f"| {bound['theorem']} {bound['name']} | `{_cell(bound['inequality'])}` | "
            f"{_cell(checked)} | {bound['instances']} | {bound['violations']} | "
            f"{_number(bound['worst_slack'])} | {_cell(shown) or '–'} |"
        )
    lines += [
        "",
        "Worst slack: the measured side minus the bound, in the direction that must be ≥ 0. "
        "Each inequality allows for the rounding of the float losses it compares; a negative "
        "slack within that allowance is roundoff, not a violation.",
    ]
    lines += [
        f"- {bound['theorem']} {bound['name']}: worst slack {_number(bound['worst_slack'])} is "
        f"within the rounding allowance ({bound['tolerance'] or 'not stated'})."
        for bound in record["bounds"]
        if bound["worst_slack"] is not None
        and bound["worst_slack"] < 0
        and not bound["violations"]
    ]
    constants = record["theory"]["worst_constants"]
    if constants:
        measured = [
            f"{key} = {constants[key]['value']:.4g} ({constants[key]['method']})"
            for key in ("beta", "G_path", "G_iterates", "C", "c", "theta0_norm")
            if constants.get(key)
        ]
        lines += ["", "Constants of the worst attack: " + "; ".join(measured) + "."]
    lines.append("")
    return lines


def _runs_lines(outcome: VerifyOutcome, record: Mapping[str, Any]) -> list[str]:
    claim = outcome.claim
    lines = [
        "## Runs",
        "",
        "| run | role | attack | steps | highest f (step) | first f > φ |",
        "|---|---|---|---|---|---|",
    ]
    for run in outcome.runs:
        if run.role == "trainability":
            values = run.trajectory.series("capability")[1]
            best = max(values) if values else None
            lines.append(
                f"| [{run.name}]({_trajectory_file(run)}) | {run.role} | {run.label()} | "
                f"{run.trajectory.n_steps} | accuracy {_number(best)} | – |"
            )
            continue
        summary = _harm_summary(run, claim.harm.phi, claim.threat_model.budget_steps)
        lines.append(
            f"| [{run.name}]({_trajectory_file(run)}) | {run.role} | {run.label()} | "
            f"{run.trajectory.n_steps} | {_number(summary['max_harm'])} "
            f"({_number(summary['max_harm_step'])}) | {_number(summary['broke_at_step'])} |"
        )
    lines.append("")
    return lines


def _provenance_lines(outcome: VerifyOutcome, record: Mapping[str, Any]) -> list[str]:
    defence = record["defence"]
    environment = record["environment"]
    timing = record["timing"]
    cached = " (cached)" if defence["cached"] else ""
    lines = [
        "## Provenance",
        "",
        f"- Defence: `{defence['name']}`{cached}, hyperparameters "
        f"`{json.dumps(defence['hyperparameters'], sort_keys=True)}`.",
        f"- Seeds: `{json.dumps(record['seeds'], sort_keys=True)}`.",
        f"- Environment: python {environment.get('python')}, torch {environment.get('torch')}, "
        f"transformers {environment.get('transformers')}, {environment.get('torch_threads')} "
        f"torch thread(s), executor {environment.get('executor')}.",
        "- Timing (s): " + ", ".join(f"{k} {v:g}" for k, v in timing.items()) + ".",
        "- Machine-readable verdict: [verdict.json](verdict.json).",
        "",
    ]
    return lines


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
    trajectories/ into ``staging``."""
    from empirical.plots import save_figure

    staging.mkdir(parents=True, exist_ok=True)
    for run in outcome.runs:
        run.trajectory.save(staging / _trajectory_file(run))
    names: list[str] = []
    for name, figure in (figures or {}).items():
        save_figure(figure, staging / "figures" / name)
        names.append(name)
    record = document(outcome)
    _write_text(staging / "verdict.json", json.dumps(record, indent=1, sort_keys=False) + "\n")
    _write_text(staging / "report.md", markdown(outcome, record, names))
    from empirical.verify.html import write_html_report

    write_html_report(staging)
    return record


def _ordinary_permissions(directory: Path) -> None:
    """Files and folders as a plain ``open``/``mkdir`` would make them (0o666 / 0o777 less the
    umask): the temporary files behind the atomic writes are created owner-only."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def publish(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` directory to ``out`` (replacing an older output).

    ``out`` never holds a partial result: it is either the old output, absent for the
    instant between two renames, or the new one.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _ordinary_permissions(staging)
    retired: Path | None = None
    if out.exists():
        retired = out.with_name(f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(out, retired)
    os.replace(staging, out)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def status_of(record: Mapping[str, Any]) -> Status:
    """The verdict status of a ``verdict.json`` record."""
    return Status(record["verdict"])
