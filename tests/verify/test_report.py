"""verdict.json, report.md, figures and the atomic publication of the output directory."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from empirical.certify import BoundCheck, Constant, PathConstants
from empirical.engine.attack import AttackConfig
from empirical.measurement.trajectory import Environment, Evaluation, Timing, Trajectory
from empirical.outputs import MARKER, claim_output, publish
from empirical.verify.claim import parse_claim, resolve_data
from empirical.verify.document import ResistanceCondition, VerdictDocument
from empirical.verify.figures import (
    _layout,
    _trainability_panel,
    certified_envelope,
    conditions_figure,
    figure_two_loss,
    figures,
)
from empirical.verify.pipeline import (
    AttackRun,
    BoundSummary,
    DefenceOutcome,
    TheoryOutcome,
    VerifyOutcome,
    judge_resistance,
)
from empirical.verify.report import document, markdown, write_outputs
from tests.verify._verdict import ENVIRONMENT
from theory.theorems import path_length_adam
from theory.verdict import Status, Verdict

CLAIM = """
[claim]
name = "report test"

[defence]
name = "none"

[threat_model]
budget_steps = 20
learning_rates = [1e-3]
seeds = [0, 1]

[harm]
phi = 0.5
eval_every_steps = 10

[conditions]
claimed = ["weak_resistance"]
measured = ["generalization_in_domain"]
"""


def _trajectory(harm: list[float], budget: int = 20) -> Trajectory:
    n = budget
    losses = [5.0 - 0.1 * s for s in range(n + 1)]
    return Trajectory(
        source="attack",
        config={"optimizer": "adamw", "method": "full", "resolved": {"evaluation_examples": 200}},
        budget_steps=budget,
        trainable_parameters=100,
        train_loss=losses[:-1],
        learning_rate=[1e-3] * n,
        grad_norm=[1.0] * n,
        update_norm=[0.01] * n,
        distance_from_start=[0.01 * s for s in range(n + 1)],
        probe_loss=losses,
        probe_grad_norm=[1.0] * (n + 1),
        probe_directional_derivative=[-0.01] * n,
        evaluations=[Evaluation(step=s, harm=h) for s, h in zip((0, 10, 20), harm, strict=True)],
        timing=Timing(wall_seconds=1, train_seconds=1, eval_seconds=0, train_cpu_seconds=1),
        environment=Environment(python="3", platform="test", device="cpu", dtype="float32"),
    )


def _outcome(violations: int = 0, broken: bool = False) -> VerifyOutcome:
    claim = parse_claim(CLAIM)
    data = resolve_data(claim)
    runs = [
        AttackRun("grid", "grid-000", AttackConfig(seed=0), _trajectory([0.0, 0.0, 0.01])),
        AttackRun(
            "grid",
            "grid-001",
            AttackConfig(seed=1),
            _trajectory([0.0, 0.4, 0.9] if broken else [0.0, 0.02, 0.03]),
        ),
    ]
    verdicts, findings = judge_resistance(
        claim, data, {"in": runs}, {"weak_resistance", "generalization_in_domain"}
    )
    worst = max(findings["weak_resistance"], key=lambda f: f.max_harm()[0] or 0)
    summary = BoundSummary(
        label="T3",
        name="path_length_adam",
        inequality="L_t >= L_0 - G sum ...",
        runs_checked=2,
        runs_not_applicable=0,
        instances=42,
        violations=violations,
        first_violation={"run": "grid-001", "step": 3, "slack": -1.0} if violations else None,
        worst_slack=-1.0 if violations else 0.5,
        not_applicable_reasons=[],
        steps=[{"run": "grid-000", "threshold": 1.0, "kind": "minimum", "certified": 5,
                "certified_unreachable": False, "measured": 20}],
    )
    warnings = ["BOUND VIOLATIONS: 1 measured inequalities contradict"] if violations else []
    return VerifyOutcome(
        claim=claim,
        claim_file=None,
        conditions={k: verdicts[k] for k in ("weak_resistance", "generalization_in_domain")},
        claimed=["weak_resistance"],
        runs=runs,
        worst=worst,
        original_worst=None,
        defence=DefenceOutcome("none", {}, None, None, None, False, 0.0, None),
        search=None,
        grid_size=2,
        theory=TheoryOutcome(
            summaries=[summary], checks={}, worst_constants=None, worst_run="grid-001",
            measured_again=False, reproduced=None, note="synthetic", seconds=0.0,
        ),
        stability_values=None,
        warnings=warnings,
        environment=ENVIRONMENT,
        timing={"grid": 1.0},
    )


def test_document_has_the_contracted_fields() -> None:
    record = document(_outcome())
    assert isinstance(record, VerdictDocument) and record.schema_version == 4
    assert record.verdict is Status.HOLDS and record.exit_code == 0
    entry = record.conditions["weak_resistance"]
    assert isinstance(entry, ResistanceCondition) and entry.kind == "resistance"
    assert entry.status is Status.HOLDS and entry.claimed is True
    assert entry.rests_on.runs == 2 and entry.rests_on.evaluations == 6
    assert entry.evidence.runs == 2 and entry.evidence.broke == 0
    assert [r.run for r in entry.evidence.runs_detail] == ["grid-000", "grid-001"]
    assert record.conditions["generalization_in_domain"].claimed is False
    bound = record.bounds[0]
    assert (bound.theorem, bound.instances, bound.violations) == ("T3", 42, 0)
    assert bound.steps_to_threshold[0].certified == 5
    assert record.threat_model.budget_steps == 20
    assert record.worst_attack is not None and record.worst_attack.setting.seed in (0, 1)
    assert record.seeds.attack_seeds == [0, 1]
    written = json.loads(record.to_json())
    assert written["conditions"]["weak_resistance"]["evidence"]["runs"] == 2
    assert written["schema_version"] == 4 and written["verdict"] == "holds"


def test_a_broken_claim_exits_one_with_the_worst_attack() -> None:
    outcome = _outcome(broken=True)
    assert outcome.status is Status.VIOLATED and outcome.exit_code == 1
    record = document(outcome)
    assert record.worst_attack is not None and record.worst_attack.run == "grid-001"
    assert record.worst_attack.broke_at_step == 20
    assert record.exit_code == 1 and record.verdict is Status.VIOLATED


def test_bound_violations_are_reported_at_the_top() -> None:
    outcome = _outcome(violations=1)
    record = document(outcome)
    text = markdown(outcome, record, [])
    assert record.bound_violations == 1
    assert text.index("BOUND VIOLATIONS") < text.index("## Conditions")
    assert "Bound violations: **1**" in text


def test_an_inconclusive_measured_condition_does_not_decide() -> None:
    outcome = _outcome()
    outcome.conditions["generalization_in_domain"] = Verdict(
        condition="generalization_in_domain", status=Status.INCONCLUSIVE
    )
    assert outcome.exit_code == 0


def test_write_and_publish_replace_the_output_atomically(tmp_path: Path) -> None:
    outcome = _outcome()
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    (out / MARKER).write_text('{"command": "verify"}')  # a previous verify output
    staging = tmp_path / "work" / "partial"
    write_outputs(outcome, staging, figures(outcome))
    publish(staging, claim_output(out, "verify"))
    assert not staging.exists()
    assert not (out / "stale.txt").exists()
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"verdict.json", "report.md", "trajectories/grid-000.json"} <= names
    assert "figures/conditions.png" in names and "figures/figure2_loss.png" in names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.old")]
    mode = stat.S_IMODE(os.stat(out / "verdict.json").st_mode)
    assert mode & stat.S_IRGRP  # not the owner-only mode of a temporary file
    loaded = Trajectory.load(out / "trajectories/grid-001.json")
    assert loaded.comparable() == outcome.runs[1].trajectory.comparable()


def test_conditions_figure_has_one_panel_per_condition() -> None:
    outcome = _outcome()
    figure = conditions_figure(outcome)
    visible = [a for a in figure.axes if a.get_visible()]
    assert len(visible) == len(outcome.conditions)
    titles = [a.get_title() for a in visible]
    assert titles[0].startswith("weak_resistance (claimed)")


def test_certified_envelope_is_theorys() -> None:
    run = _outcome().runs[0]
    constants = PathConstants(
        G_path=Constant(name="G", value=2.0, method="given"),
        theta0_norm=Constant(name="theta0_norm", value=10.0, method="given"),
    )
    envelope = certified_envelope(run, constants)
    assert envelope is not None and envelope.lower is not None
    expected = path_length_adam.envelope(
        L0=5.0, G=2.0, learning_rates=np.full(20, 1e-3), beta1=0.9, beta2=0.999, d=100,
        lam=0.0, theta0_norm=10.0,
    )
    assert np.allclose(envelope.lower, expected)


@pytest.mark.negative_control
def test_an_envelope_from_a_wrong_constant_differs() -> None:
    run = _outcome().runs[0]
    wrong = PathConstants(G_path=Constant(name="G", value=1.0, method="given"))
    right = PathConstants(G_path=Constant(name="G", value=2.0, method="given"))
    a, b = certified_envelope(run, wrong), certified_envelope(run, right)
    assert a is not None and b is not None and a.lower is not None and b.lower is not None
    assert not np.allclose(a.lower, b.lower)


# --------------------------------------------------------------------------- issue 17 defects
def _legend_problems(axes: Any) -> list[str]:
    """A legend title standing in for an entry, or an entry with neither line nor marker."""
    legend = axes.get_legend()
    if legend is None:
        return ["no legend"]
    problems = [f"title '{legend.get_title().get_text()}'"] if legend.get_title().get_text() else []
    for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
        if isinstance(handle, Line2D) and handle.get_linestyle() == "None" and (
            handle.get_marker() in ("None", None, "")
        ):
            problems.append(f"entry '{text.get_text()}' has no line")
    return problems


def test_attack_panels_have_one_legend_entry_per_line_and_count_right() -> None:
    outcome = _outcome()
    cases = ((outcome.runs, "M* under 2 attacks"), (outcome.runs[:1], "M* under 1 attack"))
    for runs, wanted in cases:
        one = replace(outcome, runs=runs)
        figure = conditions_figure(one)
        axes = figure.axes[0]
        assert _legend_problems(axes) == []
        texts = [t.get_text() for t in axes.get_legend().get_texts()]
        assert texts[0] == wanted and not any("1 attacks" in t for t in texts)


@pytest.mark.negative_control
def test_the_legend_check_catches_a_title_with_no_line() -> None:
    figure = Figure()
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1])
    axes.axhline(0.5, label="phi")
    axes.legend(title="1 attacks")
    assert _legend_problems(axes) == ["title '1 attacks'"]


def test_conditions_fill_the_grid_without_empty_cells() -> None:
    assert [_layout(n) for n in (1, 2, 3, 4, 5, 6)] == [
        (1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (2, 3)
    ]
    outcome = _outcome()
    extra = Verdict(condition="strong_resistance", status=Status.HOLDS)
    conditions = {**outcome.conditions, "strong_resistance": extra,
                  "generalization_cross_domain": extra.model_copy(update={"condition": "x"})}
    for count in (3, 4):
        chosen = dict(list(conditions.items())[:count])
        figure = conditions_figure(replace(outcome, conditions=chosen))
        rows, columns = _layout(count)
        assert len(figure.axes) == rows * columns
        for axes in figure.axes:
            assert axes.get_visible() and (axes.get_lines() or axes.texts)
    five = {**conditions, "stability": extra.model_copy(update={"condition": "stability"})}
    figure = conditions_figure(replace(outcome, conditions=five))
    assert len(figure.axes) == 6
    summary = [t for a in figure.axes for t in a.texts if t.get_gid() == "summary"]
    assert len(summary) == 1 and summary[0].get_text().startswith("verdict: ")


def test_the_envelope_is_marked_as_mstars_and_where_it_leaves_the_axis() -> None:
    outcome = _outcome(broken=True)
    run = outcome.runs[1]
    steep = PathConstants(G_path=Constant(name="G", value=200.0, method="given"))
    figure = figure_two_loss(run, outcome.runs[0], steep)
    axes = figure.axes[0]
    lines = {line.get_gid(): line for line in axes.get_lines()}
    lower = path_length_adam.envelope(
        L0=5.0, G=200.0, learning_rates=np.full(20, 1e-3), beta1=0.9, beta2=0.999, d=100,
        lam=0.0, theta0_norm=None,
    )
    first_negative = int(np.argmax(lower < 0))
    assert first_negative > 0
    label = lines["envelope:lower"].get_label()
    assert label.startswith("M*'s certified lower bound")
    assert f"from step {first_negative}," in label
    assert "envelope:leaves-axis" in lines
    bottom, _ = axes.get_ylim()
    assert bottom <= 0.0
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert label in legend


@pytest.mark.negative_control
def test_an_envelope_inside_the_axis_gets_no_leaving_marker() -> None:
    outcome = _outcome(broken=True)
    gentle = PathConstants(G_path=Constant(name="G", value=2.0, method="given"))
    figure = figure_two_loss(outcome.runs[1], None, gentle)
    gids = [line.get_gid() for line in figure.axes[0].get_lines()]
    assert "envelope:lower" in gids and "envelope:leaves-axis" not in gids


def _learning_curve(values: list[float]) -> Trajectory:
    base = _trajectory([0.0, 0.0, 0.0])
    return base.model_copy(update={"evaluations": [
        Evaluation(step=s, capability=v) for s, v in zip((0, 10, 20), values, strict=True)
    ]})


def test_a_target_met_at_step_zero_is_called_out() -> None:
    flat = AttackRun("trainability", "t", AttackConfig(), _learning_curve([0.0, 0.0, 0.0]))
    figure = Figure()
    axes = figure.subplots()
    _trainability_panel(axes, flat, flat, -0.05)
    assert [t.get_gid() for t in axes.texts] == ["trivial-target"]
    learning = AttackRun("trainability", "t", AttackConfig(), _learning_curve([0.0, 0.5, 1.0]))
    other = Figure().subplots()
    _trainability_panel(other, learning, learning, 0.9)
    assert len(other.texts) == 0  # negative control: a target the runs had to reach


def test_a_negative_slack_without_violation_names_its_rounding_allowance() -> None:
    outcome = _outcome()
    summary = replace(outcome.theory.summaries[0], worst_slack=-1.2e-6)
    check = BoundCheck(label="T3", name="path_length_adam", inequality="...", status="holds",
                       tolerance="8 ulp of every loss compared")
    theory = replace(outcome.theory, summaries=[summary], checks={"grid-000": [check]})
    outcome = replace(outcome, theory=theory)
    record = document(outcome)
    assert record.bounds[0].tolerance == "8 ulp of every loss compared"
    text = markdown(outcome, record, [])
    assert ("T3 path_length_adam: worst slack -1.2e-06 is within the rounding allowance "
            "(8 ulp of every loss compared)") in text
    # negative control: a violated bound is not excused as rounding
    violated = replace(outcome, theory=replace(theory, summaries=[replace(summary, violations=1)]))
    assert "within the rounding allowance" not in markdown(violated, document(violated), [])


# --------------------------------------------------------------------------- typed evidence
def _stability_verdict(with_intervals: bool) -> Verdict:
    """Theory's ``Stability`` verdict with the values ``judge.judge_stability`` adds."""
    from theory.conditions import Stability
    from theory.statistics import clopper_pearson

    original, immunized = clopper_pearson(90, 100, 0.025), clopper_pearson(88, 100, 0.025)
    interval = (immunized.lower - original.upper, immunized.upper - original.lower)
    verdict = Stability(0.5, direction="degradation", higher_is_better=True).check(
        0.9, 0.88, interval if with_intervals else None
    )
    values: dict[str, Any] = {"proxy": "task_accuracy", "examples": 100,
                              "higher_is_better": True, "original": 0.9, "immunized": 0.88}
    if with_intervals:
        values.update(original_interval=original.as_dict(), immunized_interval=immunized.as_dict(),
                      difference_interval=list(interval), interval_method="Clopper-Pearson")
    else:
        values["interval_method"] = "none: point estimates"
    return verdict.model_copy(update={"evidence": {**verdict.evidence, **values}})


def test_the_stability_panel_reads_the_typed_evidence() -> None:
    outcome = _outcome()
    claim = parse_claim(CLAIM + "\n[stability]\nepsilon = 0.5\n")
    for with_intervals in (True, False):
        verdict = _stability_verdict(with_intervals)
        stable = replace(outcome, claim=claim,
                         conditions={**outcome.conditions, "stability": verdict})
        axes = conditions_figure(stable).axes[2]
        heights = [p.get_height() for p in axes.patches]
        assert heights == [0.9, 0.88]
        assert axes.get_xlabel() == "tolerance ε = 0.5; bars: 100 examples"
        # error bars only where the evidence has intervals (negative control: none without)
        assert bool(axes.collections) is with_intervals
        entry = document(stable).conditions["stability"]
        assert entry.kind == "stability" and entry.rests_on.examples == 100
        assert entry.evidence.feasible_difference == ((-0.5, None) if with_intervals else None)
