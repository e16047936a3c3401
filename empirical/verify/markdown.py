"""``report.md``: the verdict document (``empirical.verify.document``) in words and tables.

``markdown(outcome, record, figures)`` reads the typed ``VerdictDocument`` (and the runs'
trajectories for the per-run table): the verdict first, bound violations and other warnings
above the conditions table, then the threat model, the predictions made before the attacks
(predicted against measured steps), the worst attack, the adaptive attacker, the bound
checks and the power of each check (weak checks named, with why each is weak, its largest
detecting factor and its independent counterpart; the independent constants with method,
points, provenance and confidence), the runs, the figures and the provenance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from empirical.verify.document import HarmSummary, VerdictDocument, trajectory_file

if TYPE_CHECKING:
    from empirical.verify.outcome import VerifyOutcome
    from empirical.verify.theory import PowerRecord

__all__ = [
    "CONSTANTS_SHOWN",
    "STATUS_MARK",
    "WEAK_REASONS_LEAD",
    "estimate_confidence",
    "markdown",
    "power_lines",
    "prediction_lines",
    "provenance_text",
]

STATUS_MARK: dict[str, str] = {
    "holds": "HOLDS",
    "violated": "VIOLATED",
    "inconclusive": "INCONCLUSIVE",
}


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def markdown(outcome: VerifyOutcome, record: VerdictDocument, figures: list[str]) -> str:
    """``report.md``: the verdict table first, warnings (bound violations) above it."""
    claim = record.claim
    threat = record.threat_model
    lines: list[str] = [f"# Verification of \"{claim.claim.name}\"", ""]
    if claim.claim.description:
        lines += [f"> {claim.claim.description}", ""]
    status = record.verdict.value
    lines += [
        f"**Verdict: {STATUS_MARK[status]}** (exit code {record.exit_code}): "
        + (
            "every claimed condition holds."
            if record.exit_code == 0
            else "at least one claimed condition is violated or inconclusive."
        ),
        "",
    ]
    for warning in record.warnings:
        lines += [f"> **WARNING:** {warning}", ""]
    lines += [
        "## Conditions",
        "",
        "| condition | claimed | status | rests on | reason |",
        "|---|---|---|---|---|",
    ]
    for name, entry in record.conditions.items():
        claimed = "yes" if entry.claimed else "measured only"
        rests = _cell(entry.rests_on.text)
        lines.append(
            f"| {name} | {claimed} | **{entry.status.value}** | {rests} | {_cell(entry.reason)} |"
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
    lines += prediction_lines(record)
    lines += certification_lines(record)
    lines += _worst_lines(record)
    lines += _attacker_lines(record)
    lines += _theory_lines(record)
    lines += power_lines(record)
    lines += _runs_lines(outcome)
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{name}](figures/{name})" for name in figures]
        lines.append("")
    lines += _provenance_lines(record)
    return "\n".join(lines) + "\n"


def _worst_lines(record: VerdictDocument) -> list[str]:
    worst = record.worst_attack
    if worst is None:
        return []
    lines = ["## Worst attack", ""]
    broke = worst.broke_at_step
    lines.append(
        f"`{worst.run}`: {worst.attack}. "
        + (
            f"It broke M* at step {broke} (measured f > φ)"
            if broke is not None
            else "It did not break M* within the budget"
        )
        + (
            f", certainly (lower confidence bound above φ) from step "
            f"{worst.certainly_broke_at_step}"
            if worst.certainly_broke_at_step is not None
            else ""
        )
        + f"; highest f = {_number(worst.max_harm)} at step {_number(worst.max_harm_step)}."
    )
    original = worst.original
    if original is not None:
        broke_original = original.broke_at_step
        lines.append(
            "The same attack on the original model M: "
            + (
                f"broke it at step {broke_original}"
                if broke_original is not None
                else "did not break it within the budget"
            )
            + f" (highest f = {_number(original.max_harm)})."
        )
    lines.append("")
    return lines


def _attacker_lines(record: VerdictDocument) -> list[str]:
    attacker = record.attacker
    lines = [
        "## Adaptive attacker",
        "",
        f"Strategy `{attacker.strategy}`: grid of {_plural(attacker.grid_size, 'attack')} "
        f"({attacker.grid_steps} steps in all); "
        f"{_plural(attacker.attacks_on_immunized, 'attack')} on M* measured.",
    ]
    search = attacker.search
    if search is not None:
        lines.append(
            f"Optuna ({search.objective}, pruner {search.pruner}, seed {search.seed}): "
            f"{search.trials} trials, best trial {search.best_trial} "
            f"(objective {_number(search.best_objective)}); it trained "
            f"{search.steps_to_best} steps to find its worst attack against "
            f"{search.grid_steps} for the full grid (ratio {_number(search.compute_ratio)}, "
            f"{_number(100 * search.compute_saved, 3)}% saved"
            + ("" if search.pruning_saves_steps else "; pruning decisions recorded only")
            + ")."
        )
    lines.append("")
    return lines


CONSTANTS_SHOWN: tuple[str, ...] = ("beta", "G_path", "G_iterates", "C", "c", "theta0_norm")
"""The constants of the worst attack the reports name, in order."""


def _theory_lines(record: VerdictDocument) -> list[str]:
    lines = [
        "## Theory in the loop",
        "",
        f"Bound violations: **{record.bound_violations}**. {record.theory.note}.",
        "",
        "| theorem | inequality | runs checked | instances | violations | worst slack | "
        "steps to threshold (measured vs certified) |",
        "|---|---|---|---|---|---|---|",
    ]
    for bound in record.bounds:
        steps = bound.steps_to_threshold
        shown = "; ".join(
            f"{s.run}: {_number(s.measured)} vs {s.kind} "
            f"{'never' if s.certified_unreachable else _number(s.certified)}"
            for s in steps[:3]
        ) + (" …" if len(steps) > 3 else "")
        reasons = "; ".join(bound.not_applicable_reasons)
        skipped = bound.runs_not_applicable
        checked = f"{bound.runs_checked}" + (f" ({skipped} n/a: {reasons})" if skipped else "")
        lines.append(
            f"| {bound.theorem} {bound.name} | `{_cell(bound.inequality)}` | "
            f"{_cell(checked)} | {bound.instances} | {bound.violations} | "
            f"{_number(bound.worst_slack)} | {_cell(shown) or '–'} |"
        )
    lines += [
        "",
        "Worst slack: the measured side minus the bound, in the direction that must be ≥ 0. "
        "Each inequality allows for the rounding of the float losses it compares; a negative "
        "slack within that allowance is roundoff, not a violation.",
    ]
    lines += [
        f"- {bound.theorem} {bound.name}: worst slack {_number(bound.worst_slack)} is "
        f"within the rounding allowance ({bound.tolerance or 'not stated'})."
        for bound in record.bounds
        if bound.worst_slack is not None and bound.worst_slack < 0 and not bound.violations
    ]
    constants = record.theory.worst_constants
    if constants is not None:
        measured = [
            f"{key} = {constant.value:.4g} ({constant.method})"
            for key in CONSTANTS_SHOWN
            if (constant := getattr(constants, key)) is not None
        ]
        if measured:
            lines += ["", "Constants of the worst attack: " + "; ".join(measured) + "."]
    lines.append("")
    return lines


def prediction_lines(record: VerdictDocument) -> list[str]:
    """"Predictions before the attacks": per attack, the certified minimum steps stated
    before it ran against its measured first break, and the constants they rest on."""
    predictions = record.predictions
    if predictions is None:
        return []
    lines = [
        "## Predictions before the attacks",
        "",
        f"Stated before any attack ran ({predictions.seconds:.1f} s): the fewest steps each "
        f"attack needs to push f above φ = {record.claim.harm.phi:g}. "
        + " ".join(dict.fromkeys(p.basis + "." for p in predictions.predictions)),
        "",
        "| run | attack | certified minimum steps | measured first break | measured / certified "
        "| status |",
        "|---|---|---|---|---|---|",
    ]
    checks = {c.run: c for c in predictions.checks}
    for p in predictions.predictions:
        check = checks.get(p.run)
        if p.available:
            minimum = "none within the budget" if p.minimum_steps is None else p.minimum_steps
        else:
            minimum = f"not available ({p.reason})"
        rows = [(p.run, p.attack, check)] + [  # a search class: its trials, checked against it
            (c.run, f"trial of {p.run}", c) for c in predictions.checks if c.prediction == p.run
        ]
        lines += [
            f"| {run} | {_cell(attack)} | {_cell(minimum)} | "
            f"{_number(None if c is None else c.measured_break)} | "
            f"{_number(None if c is None else c.ratio)} | "
            f"{'–' if c is None else f'**{c.status}**'} |"
            for run, attack, c in rows
        ]
    planned = {p.run for p in predictions.predictions}
    unplanned = [c for c in predictions.checks if c.run not in planned and c.prediction is None]
    if unplanned:
        lines += ["", f"Not predicted before they ran: {', '.join(c.run for c in unplanned)}."]
    for constants in predictions.constants:
        low_high = constants.lipschitz_range
        spread = "" if low_high is None else f"; L_ik in [{low_high[0]:.3g}, {low_high[1]:.3g}]"
        quantiles = constants.radius_quantiles
        lines += [
            "",
            f"Margins on `{constants.evaluation}` ({constants.examples} prompts, "
            f"{constants.harmful_at_start} harmful at θ_0): {constants.method}{spread}; harm "
            f"radii r_i min {_number(quantiles.get('min'))}, median "
            f"{_number(quantiles.get('median'))}. Confidence: {constants.confidence}. "
            f"{constants.note.capitalize()}"
            + (" (cached)." if constants.cached else "."),
        ]
    maximum = next((p.maximum_reason for p in predictions.predictions), None)
    if maximum:
        lines += ["", f"Maximum steps: {maximum}."]
    lines += [
        "",
        "A break measured before the certified minimum is a *violated* prediction: these "
        "constants do not describe this run (it is also listed in the warnings).",
        "",
    ]
    return lines


def certification_lines(record: VerdictDocument) -> list[str]:
    """"Certified resistance": per declared attacker class, T11's certificate on M* and on the
    aligned baseline M, the strongest attack of a certified class on M*, and the assumptions."""
    certification = record.certification
    if certification is None:
        return []
    lines = [
        "## Certified resistance (before any attack)",
        "",
        f"T11 (harm_radius) on the {certification.examples} held-out harmful prompts of "
        f"`{certification.evaluation}` ({certification.seconds:.1f} s): the harm radius r_i "
        "of each prompt is solved exactly (one convex program; no estimated constant), and a "
        "class is *certified* when no attack of it can reach f >= phi within its budget. The "
        "same certificate for the original model M is the control: a defence earns a "
        "certificate only where M is refused.",
        "",
        "| attacker class | M* | harm ceiling on M* (population upper) | M (baseline) | "
        "strongest attack on M*: highest f | T11 check |",
        "|---|---|---|---|---|---|",
    ]
    for item in certification.classes:
        mine, base = item.immunized, item.original
        strongest = "–" if item.strongest_peak_harm is None else _number(item.strongest_peak_harm)
        check = "–" if item.check is None else (
            f"{item.check.status} ({item.check.violations}/{item.check.instances})"
        )
        lines.append(
            f"| {_cell(item.attacker_class.label())} | **{mine.status}** | "
            f"{_number(mine.harm_ceiling)} ({_number(mine.population_upper)}) | "
            f"{base.status} (ceiling {_number(base.harm_ceiling)})"
            f"{'' if item.baseline_refused else ' (**no control**)'} | "
            f"{strongest} | {check} |"
        )
    assumptions = certification.classes[0].immunized.assumptions if certification.classes else []
    if assumptions:
        lines += ["", "What each certificate assumes:", ""]
        lines += [f"- {text}" for text in assumptions]
    lines.append("")
    return lines


def power_lines(record: VerdictDocument) -> list[str]:
    """"Power of the checks": per check, the runs it applied to, its detection of constants
    x0.5 and x0.8 and of wrong statements, its false alarms; weak checks named, each with why
    it is weak and its largest detecting factor (``weak_reasons``) and its independent
    counterpart; the independent constants with method, points, provenance and confidence."""
    power = record.theory.power
    if power is None:
        return []
    lines = [
        "## Power of the checks",
        "",
        f"How often each check would have failed had its constants or its statement been "
        f"wrong, on {_plural(len(power.subjects), 'run')}: {power.note}.",
        "",
        "| check | applicable runs | detection at x0.5 | x0.8 | wrong statement | "
        "false alarms at the measured constants |",
        "|---|---|---|---|---|---|",
    ]
    for row in power.checks:
        statements = "; ".join(
            f"{s.name} {_number(s.rate, 2)}" for s in row.statements if s.rate is not None
        )
        half = _number(row.detection_x05, 2) + (" (**weak**)" if row.weak else "")
        lines.append(
            f"| {row.check} | {row.runs} | {half} | {_number(row.detection_x08, 2)} | "
            f"{_cell(statements) or '–'} | {row.false_alarms} |"
        )
    weak = power.weak
    lines += [
        "",
        (
            f"**Weak checks** (detection at x0.5 below 0.9): {', '.join(weak)}. Their "
            "\"0 violations\" would hardly have failed with constants half as large; they "
            "are weak evidence."
            if weak
            else "No applicable check is weak: each detects constants x0.5 on at least 90% of "
            "the runs it applies to."
        ),
        "",
    ]
    if power.weak_reasons:
        lines += [WEAK_REASONS_LEAD, ""]
    lines += [f"- {check}: {why}." for check, why in power.weak_reasons.items()]
    lines += [
        f"- {row.check}: independent counterpart {row.counterpart}."
        for row in power.checks
        if row.counterpart
    ]
    if power.weak_reasons or any(row.counterpart for row in power.checks):
        lines.append("")
    if power.estimates:
        lines += [
            "Constants estimated on data the checked steps did not produce (a violation reads "
            '"these constants do not describe this run"):',
            "",
            "| run | check | constant | method | points | provenance | violations |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {e.run} | {e.check} | {e.constant.name} = {_number(e.constant.value, 4)} | "
            f"{_cell(e.constant.method)} | {e.constant.points or '–'} | "
            f"{_cell(provenance_text(e.constant.provenance))} | {e.violations}/{e.instances} |"
            for e in power.estimates
        ]
        lines += ["", "How far each check's independent constants can be trusted:", ""]
        lines += [f"- {check}: {text}." for check, text in estimate_confidence(power).items()]
        lines.append("")
    return lines


#: The sentence before the weak checks' reasons (``PowerRecord.weak_reasons``).
WEAK_REASONS_LEAD = (
    "Why each weak check cannot detect its constants x0.5, and the largest factor f at which "
    "it still detects (measured on these runs):"
)


def provenance_text(provenance: Mapping[str, Any]) -> str:
    """An estimate's provenance record in one short phrase: its scalar entries as
    ``name value``, a list or a record by its length (``abs_curvatures (34 values)``); "–"
    when empty. The full record is in verdict.json."""
    parts: list[str] = []
    for key, value in provenance.items():
        if isinstance(value, list | tuple):
            parts.append(f"{key} ({_plural(len(value), 'value')})")
        elif isinstance(value, Mapping):
            parts.append(f"{key} ({len(value)} {'entry' if len(value) == 1 else 'entries'})")
        else:
            parts.append(f"{key} {_number(value, 4)}")
    return ", ".join(parts) or "–"


def estimate_confidence(power: PowerRecord) -> dict[str, str]:
    """What the independent constants can be trusted for (``IndependentEstimate.confidence``),
    once per distinct statement: each keyed by the checks and constants it is said of, as
    ``check (beta); other check (c, G)``."""
    said_of: dict[str, dict[str, list[str]]] = {}
    for estimate in power.estimates:
        checks = said_of.setdefault(estimate.confidence.rstrip("."), {})
        names = checks.setdefault(estimate.check, [])
        if estimate.constant.name not in names:
            names.append(estimate.constant.name)
    return {
        "; ".join(f"{check} ({', '.join(names)})" for check, names in checks.items()): text
        for text, checks in said_of.items()
    }


def _runs_lines(outcome: VerifyOutcome) -> list[str]:
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
                f"| [{run.name}]({trajectory_file(run)}) | {run.role} | {run.label()} | "
                f"{run.trajectory.n_steps} | accuracy {_number(best)} | – |"
            )
            continue
        summary = HarmSummary.of_run(run, claim.harm.phi, claim.threat_model.budget_steps)
        lines.append(
            f"| [{run.name}]({trajectory_file(run)}) | {run.role} | {run.label()} | "
            f"{run.trajectory.n_steps} | {_number(summary.max_harm)} "
            f"({_number(summary.max_harm_step)}) | {_number(summary.broke_at_step)} |"
        )
    lines.append("")
    return lines


def _provenance_lines(record: VerdictDocument) -> list[str]:
    defence = record.defence
    environment = record.environment
    cached = " (cached)" if defence.cached else ""
    seeds = record.seeds.model_dump(mode="json")
    lines = [
        "## Provenance",
        "",
        f"- Defence: `{defence.name}`{cached}, hyperparameters "
        f"`{json.dumps(defence.hyperparameters, sort_keys=True)}`.",
        f"- Seeds: `{json.dumps(seeds, sort_keys=True)}`.",
        f"- Environment: python {environment.python}, torch {environment.torch}, "
        f"transformers {environment.transformers}, {environment.torch_threads} "
        f"torch thread(s), executor {environment.executor}.",
        "- Timing (s): " + ", ".join(f"{k} {v:g}" for k, v in record.timing.items()) + ".",
        "- Machine-readable verdict: [verdict.json](verdict.json).",
        "",
    ]
    return lines
