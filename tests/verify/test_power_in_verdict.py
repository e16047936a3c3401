"""The power of each check in the verdict (``empirical.verify.theory.check_power``): every check
rerun on the verdict's own runs with its constants x0.5 and x0.8 and its wrong statements,
recorded per check in ``TheoryOutcome.power``, verdict.json, report.md and report.html, weak
checks named. The stand-in attacks' step norms are set against theory's Adam step bound so
that the detection rates are known in advance (and a check that cannot detect is shown
weak)."""

from __future__ import annotations

import json
from pathlib import Path

from empirical.certify.independent import T1_PREFIX_DIRECTIONAL, T1_SIBLING_DIRECTIONAL
from empirical.models.model import EMBEDDED_MODEL_DIR
from empirical.verify.api import verify_claim
from empirical.verify.stages import Services, prepare, verify
from empirical.verify.theory import WEAK_BELOW, CheckPower, PowerRecord, with_counterparts
from empirical.verify.workspace import VerifyOptions, Workspace
from tests.verify.test_stages import CLAIM, StandIn, _claim
from theory.theorems import path_length_adam

STEP_CHECK = "T3 path_length_adam:adam_step"


def _between_half_and_full_bound() -> float:
    """A step factor u / η with u in (b_max / 2, b_min]: theory's Adam step bounds b_s on the
    stand-in runs (constant η, d = 10) all hold, and every one of them halved fails."""
    rates = [1e-3] * 40
    bounds = path_length_adam.step_norm_bounds(
        learning_rates=rates, beta1=0.9, beta2=0.999, d=10
    )
    factor = 0.75 * float(bounds.min()) / rates[0]
    assert 0.5 * float(bounds.max()) / rates[0] < factor
    return factor


def _row(power: PowerRecord | None, check: str) -> CheckPower:
    assert power is not None
    (row,) = [r for r in power.checks if r.check == check]
    return row


def test_a_tight_check_detects_halved_constants_on_every_run(tmp_path: Path) -> None:
    attacker = StandIn(step_factor=_between_half_and_full_bound())
    result = verify(prepare(_claim()), Workspace(tmp_path), services=Services(
        run_attacks=attacker, measure_path=False))
    power = result.theory.power
    assert power is not None and power.subjects == ["grid-000", "grid-001", "grid-002", "grid-003"]
    row = _row(power, STEP_CHECK)
    assert (row.runs, row.false_alarms) == (4, 0)
    assert row.detection_x05 == 1.0 and row.weak is False
    assert row.lower_95_x05 is not None and 0.0 < row.lower_95_x05 < 1.0
    (statement,) = row.statements
    assert statement.name == "a_k_halved" and statement.rate == 1.0
    assert result.theory.violations == 0  # the measured constants raise no alarm
    assert STEP_CHECK not in power.weak


def test_a_loose_check_is_reported_weak(tmp_path: Path) -> None:
    """Steps of a sixth of the bound: halving the bound still holds, so the check has no
    power at x0.5 and the verdict must call it weak."""
    attacker = StandIn(step_factor=0.5)
    result = verify(prepare(_claim()), Workspace(tmp_path), services=Services(
        run_attacks=attacker, measure_path=False))
    row = _row(result.theory.power, STEP_CHECK)
    assert row.detection_x05 == 0.0 < WEAK_BELOW and row.weak is True
    assert result.theory.power is not None and STEP_CHECK in result.theory.power.weak
    not_applied = _row(result.theory.power, "T2 clipped_sgd_progress")  # AdamW runs only
    assert not_applied.runs == 0 and not_applied.detection_x05 is None
    assert not_applied.weak is None


def test_false_alarms_at_the_measured_constants_are_counted(tmp_path: Path) -> None:
    """Negative control: steps 50 x the rate exceed Adam's bound; the measured constants
    themselves then raise alarms (the verdict's bound violations)."""
    attacker = StandIn(step_factor=50.0, original_breaks=False)
    result = verify(prepare(_claim()), Workspace(tmp_path), services=Services(
        run_attacks=attacker, measure_path=False))
    row = _row(result.theory.power, STEP_CHECK)
    assert row.false_alarms == row.runs == 4
    assert result.theory.violations > 0


def test_the_power_table_is_in_verdict_json_report_md_and_html(tmp_path: Path) -> None:
    claim_file = tmp_path / "claim.toml"
    claim_file.write_text(CLAIM.format(original=EMBEDDED_MODEL_DIR), encoding="utf-8")
    out = tmp_path / "out"
    attacker = StandIn(step_factor=_between_half_and_full_bound())
    verify_claim(claim_file, out, options=VerifyOptions(progress=False),
                 services=Services(run_attacks=attacker, measure_path=False))
    written = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
    rows = {r["check"]: r for r in written["theory"]["power"]["checks"]}
    assert rows[STEP_CHECK]["detection_x05"] == 1.0
    assert rows[STEP_CHECK]["weak"] is False
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Power of the checks" in report
    assert f"| {STEP_CHECK} | 4 | 1 | 0 | a_k_halved 1 | 0 |" in report
    weak = [name for name, r in rows.items() if r["weak"]]
    assert weak and f"**Weak checks** (detection at x0.5 below 0.9): {', '.join(weak)}" in report
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="power-table"' in html and "weak</strong>" in html
    # T1 with independent constants: β_dir of each run's first half and of its sibling (the
    # stand-in's curvature is the same on every step, so both are exact and detect x0.5)
    for check in (T1_PREFIX_DIRECTIONAL, T1_SIBLING_DIRECTIONAL):
        assert rows[check]["independent"] is True and rows[check]["runs"] == 4
        assert rows[check]["detection_x05"] == 1.0 and rows[check]["false_alarms"] == 0
    estimates = written["theory"]["power"]["estimates"]
    assert {(e["run"], e["check"]) for e in estimates} == {
        (f"grid-00{i}", check)
        for i in range(4)
        for check in (T1_PREFIX_DIRECTIONAL, T1_SIBLING_DIRECTIONAL)
    }
    assert all("max |kappa_s|" in e["constant"]["method"] for e in estimates)
    assert "these constants do not describe this run" in report
    reasons = written["theory"]["power"]["weak_reasons"]
    assert set(reasons) == set(weak) and all("measured: it detects" in r for r in reasons.values())


def _power(check: str, rate: float, *, independent: bool) -> CheckPower:
    return CheckPower(
        check=check,
        runs=4,
        not_applicable=0,
        detection_x05=rate,
        detection_x08=rate,
        lower_95_x05=None,
        statements=[],
        false_alarms=0,
        weak=rate < WEAK_BELOW,
        independent=independent,
    )


def test_a_weak_check_names_its_strongest_independent_counterpart() -> None:
    rows = with_counterparts(
        [
            _power("T1 smoothness_sandwich", 0.0, independent=False),
            _power("T3 path_length_adam", 0.0, independent=False),
            _power(T1_PREFIX_DIRECTIONAL, 0.25, independent=True),
            _power(T1_SIBLING_DIRECTIONAL, 1.0, independent=True),
            _power("T6 contraction_tail [prefix c, prefix G]", 1.0, independent=True),
        ]
    )
    counterparts = {r.check: r.counterpart for r in rows}
    assert counterparts["T1 smoothness_sandwich"] == T1_SIBLING_DIRECTIONAL
    assert counterparts[T1_PREFIX_DIRECTIONAL] == T1_SIBLING_DIRECTIONAL
    assert counterparts["T3 path_length_adam"] is None  # none exists: stays weak, alone
    assert counterparts[T1_SIBLING_DIRECTIONAL] is None  # not weak

