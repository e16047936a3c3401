"""Predictions for the optuna search's trials (``empirical.verify.predict_search``): one per
class of trials, stated at the upper end of the search's learning rates before any trial runs,
every trial checked against its class's prediction afterwards (verdict.json, report.md,
report.html), and the controls: a class prediction above a trial's measured break is reported
violated, a trial in a class without a prediction stays "not available" with the reason, and
a prediction at the lower end of the range would not bound the trials (R_t grows with the
rate: the monotonicity is what makes the upper end correct)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import empirical.engine.attack as engine_attack
from empirical.engine.attack_config import AttackConfig
from empirical.measurement.trajectory import Trajectory
from empirical.verify.api import verify_claim
from empirical.verify.claim import Claim, parse_claim
from empirical.verify.outcome import AttackRun
from empirical.verify.plan import AttackPlan, plan_attacks
from empirical.verify.predict import (
    Predictions,
    compare,
    predict,
    step_radii,
    warnings_of,
)
from empirical.verify.predict_radii import attack_radii
from empirical.verify.predict_search import (
    SEARCH_PREFIX,
    class_name,
    covering,
    search_classes,
    search_high,
)
from empirical.verify.stages import Services, prepare
from empirical.verify.theory import start_point
from empirical.verify.workspace import VerifyOptions, Workspace
from tests.verify._claims import tiny_claim
from tests.verify._recorders import PredictRecorder
from tests.verify.test_stages import _trajectory
from theory.errors import HftaInputError
from theory.theorems.harm_radius import steps_beyond

LOW, HIGH = 1e-3, 1e-2
"""The search's learning-rate range in the test claim (log-uniform; the grid's two rates)."""


def _search_claim(name: str = "search predictions", *, extra: str = "") -> str:
    """A tiny real claim whose attacker is the optuna search only: full fine-tuning or LoRA,
    AdamW, the rate log-uniform on [LOW, HIGH], 4 trials of 20 steps."""
    text = tiny_claim(name, budget_steps=40, attack_examples=8, evaluation_examples=5)
    text = text.replace(
        "learning_rates = [1e-3, 3e-3]", f'learning_rates = [{LOW}, {HIGH}]\nlora = "both"{extra}'
    )
    return text + (
        f'\n[search]\nstrategy = "optuna"\ntrials = 4\nlearning_rate_range = [{LOW}, {HIGH}]\n'
    )


@pytest.fixture(scope="module")
def searched(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, list[str], PredictRecorder]]:
    """One real verification of the search claim (real attacks on the embedded model), every
    attack recorded as it starts."""
    directory = tmp_path_factory.mktemp("search")
    claim_file = directory / "claim.toml"
    claim_file.write_text(_search_claim(), encoding="utf-8")
    events: list[str] = []
    recorder = PredictRecorder(events)
    real = engine_attack.run_attack

    def recorded(config: AttackConfig, *args: Any, **kwargs: Any) -> Trajectory:
        events.append(f"attack {config.method} lr {config.learning_rate:.4g}")
        return real(config, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine_attack, "run_attack", recorded)
        verify_claim(
            claim_file,
            directory / "out",
            options=VerifyOptions(progress=False, overlap=False),
            services=Services(predict=recorder, measure_path=False),
        )
    yield directory / "out", events, recorder


# --------------------------------------------------------------------------- before the search
def test_the_search_classes_are_predicted_before_any_trial(
    searched: tuple[Path, list[str], PredictRecorder],
) -> None:
    out, events, recorder = searched
    assert events[0] == "predict" and events.count("predict") == 1
    trials = [e for e in events if e.startswith("attack")]
    assert trials and len(events) == 1 + len(trials)  # every attack after the predictions
    stated = recorder.stated
    assert stated is not None
    names = [p.run for p in stated.predictions]
    assert names == [
        f"{SEARCH_PREFIX}adamw cosine full, lr <= {HIGH:g}",
        f"{SEARCH_PREFIX}adamw cosine lora seed 0, lr <= {HIGH:g}",
    ]
    for prediction in stated.predictions:
        assert prediction.available and prediction.step_radii, prediction.reason
        assert prediction.attack.startswith("any search trial:")
        assert any("upper end" in a for a in prediction.assumptions)
    lora = stated.predictions[1]
    assert "(vii)" in lora.basis  # the merged weights' reach of the class's own adapters
    # the curvature constants are estimated up to the largest reach of any class at the
    # upper end (the ball they hold on is capped at the first-order flip radius below it)
    (constants,) = stated.constants
    (estimate,) = (out.parent / "out.cache" / "theory").glob("margins-*.json")
    requested = json.loads(estimate.read_text(encoding="utf-8"))["radius"]
    assert requested == pytest.approx(max(p.step_radii[-1] for p in stated.predictions))
    assert constants.radius <= requested


def test_every_trial_is_checked_against_its_class(
    searched: tuple[Path, list[str], PredictRecorder],
) -> None:
    out, events, _ = searched
    written = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
    predictions = written["predictions"]
    classes = {p["run"]: p for p in predictions["predictions"]}
    trials = [c for c in predictions["checks"] if c["run"].startswith("search-")]
    # every search run (a trial the pruner did not stop) has its check
    searched_runs = {r["run"] for r in written["runs"] if r["role"] == "search"}
    assert trials and {c["run"] for c in trials} == searched_runs
    assert len(trials) <= len([e for e in events if e.startswith("attack")])
    assert any(c["status"] == "held" for c in trials)  # a trial broke M*, no earlier than stated
    for check in trials:
        assert check["prediction"] in classes, check
        prediction = classes[check["prediction"]]
        assert check["predicted_minimum"] == prediction["minimum_steps"]
        assert check["status"] in ("held", "no break measured"), check
        if check["measured_break"] is not None:
            assert check["measured_break"] >= prediction["minimum_steps"]
        assert f"checked against {check['prediction']!r}" in check["text"]
    used = {c["prediction"] for c in trials}
    for name in set(classes) - used:  # a class no trial fell in
        (unused,) = [c for c in predictions["checks"] if c["run"] == name]
        assert unused["status"] == "not attacked" and "no finished search trial" in unused["text"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "Not predicted before they ran" not in report
    section = report.split("## Predictions before the attacks")[1].split("\n## ")[0]
    for check in trials:
        assert f"| {check['run']} | trial of {check['prediction']} |" in section
    page = (out / "report.html").read_text(encoding="utf-8")
    shown = [c["prediction"].replace("<", "&lt;") for c in trials]  # escaped in HTML
    assert all(f"<td>trial of {name}</td>" in page for name in shown)


# --------------------------------------------------------------------------- controls
def test_a_class_prediction_above_a_real_trials_break_is_violated(
    searched: tuple[Path, list[str], PredictRecorder],
) -> None:
    """The measured trials of the real search, checked again against a stand-in class
    prediction one step later than a measured break: that trial is reported violated (and
    warned about), the same trial against the verifier's own prediction held."""
    out, _, _ = searched
    claim = parse_claim(_search_claim())
    stated = Predictions.model_validate(
        json.loads((out / "verdict.json").read_text(encoding="utf-8"))["predictions"]
    )
    held = next(c for c in stated.checks if c.status == "held" and c.prediction is not None)
    assert held.measured_break is not None
    trajectory = Trajectory.model_validate_json(
        (out / "trajectories" / f"{held.run}.json").read_text(encoding="utf-8")
    )
    config = AttackConfig.model_validate(
        {k: v for k, v in trajectory.config.items() if k != "resolved"}
    )
    run = AttackRun("search", held.run, config, trajectory)
    (honest,) = compare(claim, stated, [run]).checks[:1]
    assert honest.status == "held" and honest.prediction == held.prediction
    inflated = Predictions.model_validate({
        **stated.model_dump(),
        "predictions": [
            p.model_dump() | ({"minimum_steps": held.measured_break + 1}
                              if p.run == held.prediction else {})
            for p in stated.predictions
        ],
    })
    (check,) = compare(claim, inflated, [run]).checks[:1]
    assert check.status == "violated" and check.prediction == held.prediction
    assert warnings_of(inflated.model_copy(update={"checks": [check]})) == [
        f"PREDICTION VIOLATED on {held.run}: {check.text}"
    ]


def _class_setting(
    tmp_path: Path, extra: str = ""
) -> tuple[Claim, AttackPlan, list[Any], int, float | None]:
    claim = parse_claim(_search_claim(extra=extra))
    plan = plan_attacks(claim, prepare(claim).data, Workspace(tmp_path), None)
    d, norm = start_point(None)
    return claim, plan, search_classes(plan), d, norm


def _trial(plan: AttackPlan, number: int, **values: Any) -> AttackRun:
    """A search trial with the stand-in harm curve (lr > 2e-3: a break at step 20; the curve
    spans 40 steps)."""
    assert plan.search is not None
    config = plan.search.config({"method": "full", "seed": 0, "batch_size": 8, **values})
    curve = _trajectory(config.model_copy(update={"budget_steps": 40}))
    return AttackRun("search", f"search-{number:03d}", config, curve)


def test_a_class_prediction_above_a_trials_break_is_violated(tmp_path: Path) -> None:
    claim, plan, classes, d, norm = _class_setting(tmp_path)
    full = classes[0]
    radii = step_radii(full.config, d, norm)
    stated = predict(full, phi=claim.harm.phi, estimate=None, constants=None, radii=None)
    trial = _trial(plan, 3, learning_rate=5e-3, optimizer="adamw", schedule="cosine")
    assert covering(claim, [stated], trial) is stated
    for minimum, status in ((20, "held"), (21, "violated")):  # the trial breaks at step 20
        made = stated.model_copy(update={"available": True, "minimum_steps": minimum,
                                         "step_radii": radii, "reason": ""})
        predictions = Predictions(proxy="exact_harm", predictions=[made], constants=[],
                                  seconds=0.0)
        (check,) = compare(claim, predictions, [trial]).checks
        assert check.status == status and check.prediction == full.name
        assert check.measured_break == 20 and check.predicted_minimum == minimum
    assert check.text.startswith("predicted no break before step 21, measured a break at step "
                                 "20: these constants do not describe this run")
    assert (check.run, check.prediction) == ("search-003", full.name)


def test_a_trial_outside_every_prediction_is_not_available(tmp_path: Path) -> None:
    """SGD without clipping has no step bound before the attack: its class is stated as not
    available, and its trials stay not available with that reason; a trial above the upper
    end is covered by no class."""
    claim, plan, classes, d, norm = _class_setting(
        tmp_path, extra='\noptimizers = ["adamw", "sgd"]'
    )
    sgd = next(c for c in classes if c.config.optimizer == "sgd" and c.config.method == "full")
    with pytest.raises(HftaInputError, match="SGD without clipping"):
        attack_radii(sgd.config.model_copy(update={"max_grad_norm": None}), d, norm,
                     upper_end=True)
    reason = "no reachable radius before the attack: SGD without clipping"
    stated = [predict(c, phi=claim.harm.phi, estimate=None, constants=None, radii=None,
                      reason=reason) for c in classes]
    trial = _trial(plan, 0, learning_rate=5e-3, optimizer="sgd", schedule="cosine")
    above = _trial(plan, 1, learning_rate=2 * HIGH, optimizer="adamw", schedule="cosine")
    predictions = Predictions(proxy="exact_harm", predictions=stated, constants=[], seconds=0.0)
    first, second = compare(claim, predictions, [trial, above]).checks[:2]
    assert first.status == "not available" and first.text.startswith(reason)
    assert first.prediction == sgd.name
    assert second.status == "not available" and second.prediction is None
    assert second.text == "not predicted before the attack"


def test_adamw_with_weight_decay_is_refused_at_the_upper_end(tmp_path: Path) -> None:
    _, _, classes, d, norm = _class_setting(tmp_path)
    decayed = classes[0].config.model_copy(update={"weight_decay": 0.01})
    radii, start = attack_radii(decayed, d, norm)  # one planned attack: its own radii
    assert radii and start is None
    with pytest.raises(HftaInputError, match="weight decay"):
        attack_radii(decayed, d, norm, upper_end=True)


def test_the_lower_end_does_not_bound_the_trials(tmp_path: Path) -> None:
    """R_t at a trial's rate exceeds R_t at the range's lower end: a prediction stated at LOW
    would certify more steps than such a trial needs to leave the flip radius; at HIGH it
    cannot (R_t at HIGH is at least the trial's at every t)."""
    claim, _, classes, d, norm = _class_setting(tmp_path)
    full = classes[0]
    assert search_high(claim) == full.config.learning_rate == HIGH
    at = {lr: step_radii(full.config.model_copy(update={"learning_rate": lr}), d, norm)
          for lr in (LOW, 3e-3, HIGH)}
    trial = at[3e-3]
    assert all(r <= h for r, h in zip(trial, at[HIGH], strict=True))
    assert any(r > low for r, low in zip(trial, at[LOW], strict=True))
    rho = trial[len(trial) // 2]  # a flip radius the trial passes at mid-budget
    wrong, right = steps_beyond(rho, at[LOW]), steps_beyond(rho, at[HIGH])
    reached = steps_beyond(rho, trial)
    assert reached is not None and right is not None and right <= reached
    assert wrong is None or wrong > reached


@settings(max_examples=15, deadline=None)
@given(
    optimizer=st.sampled_from(["adamw", "adam", "sgd"]),
    schedule=st.sampled_from(["cosine", "linear", "constant"]),
    fraction=st.floats(min_value=0.0, max_value=1.0),
)
def test_the_upper_end_bounds_every_rate_of_the_range(
    optimizer: str, schedule: str, fraction: float
) -> None:
    """R_t(lr) <= R_t(hi) at every t for every lr in [lo, hi] (log-uniform position
    ``fraction``): the monotonicity the class prediction rests on."""
    lr = LOW * (HIGH / LOW) ** fraction
    base = AttackConfig.model_validate({"optimizer": optimizer, "schedule": schedule,
                                        "budget_steps": 12, "learning_rate": HIGH})
    upper = step_radii(base, 1000, 5.0)
    inside = step_radii(base.model_copy(update={"learning_rate": lr}), 1000, 5.0)
    assert all(r <= u * (1 + 1e-12) for r, u in zip(inside, upper, strict=True))


def test_a_trial_finds_its_class_by_name(tmp_path: Path) -> None:
    claim, plan, classes, _, _ = _class_setting(tmp_path)
    trial = _trial(plan, 0, learning_rate=LOW, optimizer="adamw", schedule="cosine",
                   method="lora")
    assert class_name(trial.config, HIGH) == classes[1].name
    stated = [predict(c, phi=0.5, estimate=None, constants=None, radii=None) for c in classes]
    found = covering(claim, stated, trial)
    assert found is not None and found.run == classes[1].name
    grid_run = AttackRun("grid", "grid-000", trial.config, trial.trajectory)
    assert covering(claim, stated, grid_run) is None  # only search trials use a class
