"""verdict.json, report.md, figures and the atomic publication of the output directory."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from empirical.attack import AttackConfig
from empirical.certify import Constant, PathConstants
from empirical.trajectory import Environment, Evaluation, Timing, Trajectory
from empirical.verify.claim import parse_claim, resolve_data
from empirical.verify.figures import certified_envelope, conditions_figure, figures
from empirical.verify.pipeline import (
    AttackRun,
    BoundSummary,
    DefenceOutcome,
    TheoryOutcome,
    VerifyOutcome,
    judge_resistance,
)
from empirical.verify.report import document, markdown, publish, write_outputs
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
        environment={"python": "3"},
        timing={"grid": 1.0},
    )


def test_document_has_the_contracted_fields() -> None:
    record = document(_outcome())
    assert record["verdict"] == "holds" and record["exit_code"] == 0
    entry = record["conditions"]["weak_resistance"]
    assert entry["status"] == "holds" and entry["claimed"] is True
    assert entry["rests_on"]["runs"] == 2
    assert record["conditions"]["generalization_in_domain"]["claimed"] is False
    assert record["bounds"][0] == record["bounds"][0] | {
        "theorem": "T3", "instances": 42, "violations": 0
    }
    assert record["threat_model"]["budget_steps"] == 20
    assert record["worst_attack"]["setting"]["seed"] in (0, 1)
    assert record["seeds"]["attack_seeds"] == [0, 1]
    json.dumps(record)


def test_a_broken_claim_exits_one_with_the_worst_attack() -> None:
    outcome = _outcome(broken=True)
    assert outcome.status is Status.VIOLATED and outcome.exit_code == 1
    record = document(outcome)
    assert record["worst_attack"]["run"] == "grid-001"
    assert record["worst_attack"]["broke_at_step"] == 20


def test_bound_violations_are_reported_at_the_top() -> None:
    outcome = _outcome(violations=1)
    record = document(outcome)
    text = markdown(outcome, record, [])
    assert record["bound_violations"] == 1
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
    staging = tmp_path / "work" / "partial"
    write_outputs(outcome, staging, figures(outcome))
    publish(staging, out)
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
