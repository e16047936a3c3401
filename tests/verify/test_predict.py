"""Predictions before the attacks (``empirical.verify.predict``, ``empirical.certify.margins``):
stated before any attack runs, written into verdict.json, report.md and report.html, compared
with the measured breaks afterwards, and caught when the constants are wrong (negative
controls: constants shrunk, reachable radii shrunk). The verifier's constants are T11 (iv)-(v)
(``estimate_curvature``); the first version's (``estimate_margins``) are still checked, as
``predict`` still accepts them (the benchmark compares both)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from empirical.certify.margin_curvature import (
    CurvatureEstimate,
    LossCurvatureEstimate,
    estimate_curvature,
)
from empirical.certify.margins import MarginEstimate, estimate_margins
from empirical.engine.attack import AttackConfig
from empirical.measurement.proxies import teacher_forced
from empirical.models.model import EMBEDDED_MODEL_DIR, load_model
from empirical.verify import predict as predict_module
from empirical.verify.api import verify_claim
from empirical.verify.claim import Claim, ClaimData
from empirical.verify.outcome import AttackRun
from empirical.verify.plan import AttackPlan, named_runs, plan_attacks
from empirical.verify.predict import (
    Predictions,
    compare,
    median_ratio,
    planned_attacks,
    predict,
    predict_attacks,
    step_radii,
)
from empirical.verify.stages import Services, prepare, verify
from empirical.verify.theory import start_point
from empirical.verify.workspace import Log, VerifyOptions, Workspace
from tests.verify._recorders import PredictRecorder
from tests.verify.test_stages import CLAIM, StandIn, _claim, _trajectory
from theory.theorems.harm_radius import certified_steps

POINTS = 2
"""Ball points for the tests' own margin estimates (the verifier uses ``BALL_POINTS``)."""


class OrderedStandIn(StandIn):
    """The stand-in attacker, writing into the same event list as ``PredictRecorder``."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def __call__(self, configs: Any, **options: Any) -> Any:
        self.events.extend(f"attack {c.learning_rate:g}" for c in configs)
        return super().__call__(configs, **options)


def _setting(tmp_path: Path) -> tuple[Claim, AttackPlan, list[AttackRun], CurvatureEstimate]:
    """The stand-in claim's plan, its grid's stand-in runs (lr 3e-3 breaks at step 20) and
    a real estimate of the embedded model's margin constants on its evaluation prompts."""
    claim = _claim()
    prepared = prepare(claim)
    plan = plan_attacks(claim, prepared.data, Workspace(tmp_path), None)
    runs = named_runs("grid", "grid", plan.grid, [_trajectory(c) for c in plan.grid])
    d, norm = start_point(None)
    radius = max(step_radii(c, d, norm)[-1] for c in plan.grid)
    model, tokenizer = load_model(None)
    estimate = estimate_curvature(
        model, tokenizer, prepared.data.evaluation, radius=radius, phi=claim.harm.phi,
        directions=1, random_points=POINTS,
    )
    return claim, plan, runs, estimate


def _predictions(
    claim: Claim,
    plan: AttackPlan,
    estimate: MarginEstimate | CurvatureEstimate,
    radius_factor: float = 1.0,
) -> Predictions:
    d, norm = start_point(None)
    found = [
        predict(
            p,
            phi=claim.harm.phi,
            estimate=estimate,
            constants="evaluation",
            radii=[radius_factor * r for r in step_radii(p.config, d, norm)],
        )
        for p in planned_attacks(plan)
    ]
    return Predictions(proxy="exact_harm", predictions=found, constants=[], seconds=0.0)


# --------------------------------------------------------------------------- margins
def test_margins_decide_exact_harm_as_the_proxy_does() -> None:
    """min_k m_ik > 0 iff teacher forcing reproduces example i exactly: the embedded model
    reproduces its harmless reference answers (margins all positive) and none of the held-out
    harmful ones (a negative margin each), so both sides of the equivalence are exercised."""
    data = prepare(_claim()).data
    model, tokenizer = load_model(None)
    examples = [*data.reference, *data.evaluation]
    estimate = estimate_margins(model, tokenizer, examples, radius=0.0, points=1)
    exact = teacher_forced(model, tokenizer, examples).exact
    positive = [min(m) > 0 for m in estimate.margins]
    assert positive == exact.tolist()
    assert any(positive) and not all(positive)
    # the harmless reference answers are never counted as harm, so their radius is None
    assert estimate.radii[: len(data.reference)] == [None] * len(data.reference)
    counted = estimate.radii[len(data.reference) :]
    assert all(r is not None and r > 0 for r in counted)  # the model is not harmful at theta_0


def test_the_lipschitz_estimate_is_the_margin_gradient_norm() -> None:
    """On a ball of radius 0 every sampled point is theta_0, so L_ik must be the norm of the
    margin's autograd gradient there; and a step eps along that gradient moves the margin by
    eps L_ik to first order, so L_ik / 2 would not bound the change (the estimate is tight,
    and a wrong factor in it would fail here)."""
    from empirical.datasets.text import IGNORE_INDEX, encode

    data = prepare(_claim()).data
    model, tokenizer = load_model(None)
    example = data.evaluation[0]
    estimate = estimate_margins(model, tokenizer, [example], radius=0.0, points=1)
    k = min(range(len(estimate.margins[0])), key=lambda j: estimate.margins[0][j])
    batch = encode(tokenizer, [example], 32)
    targets = batch["labels"][0, 1:]
    position = int((targets != IGNORE_INDEX).nonzero()[k, 0])
    wanted = int(targets[position])
    parameters = [p for p in model.parameters() if p.requires_grad]

    def margin() -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"]).logits[0, position]
        others = logits.clone()
        others[wanted] = -math.inf
        value: torch.Tensor = logits[wanted] - others.max()
        return value

    start = margin()
    assert float(start.detach()) == pytest.approx(estimate.margins[0][k], abs=1e-4)
    gradients = torch.autograd.grad(start, parameters)
    norm = math.sqrt(sum(float(g.square().sum()) for g in gradients))
    lipschitz = estimate.lipschitz[0][k]
    assert lipschitz == pytest.approx(norm, rel=1e-4)
    eps = 1e-4
    with torch.no_grad():
        for p, g in zip(parameters, gradients, strict=True):
            p.add_(eps * g / norm)
        change = float(margin() - start)
    assert change == pytest.approx(eps * lipschitz, rel=0.05)
    assert change > eps * lipschitz / 2


# --------------------------------------------------------------------------- before attacks
def test_predict_runs_before_any_attack(tmp_path: Path) -> None:
    events: list[str] = []
    services = Services(
        run_attacks=OrderedStandIn(events), measure_path=False, predict=PredictRecorder(events)
    )
    result = verify(prepare(_claim()), Workspace(tmp_path), services=services)
    assert events[0] == "predict" and events.count("predict") == 1
    assert len(events) == 1 + 5  # 4 grid attacks and the original, all after the prediction
    predictions = result.predictions
    assert predictions is not None and len(predictions.predictions) == 4
    assert [p.run for p in predictions.predictions] == [r.name for r in result.runs[:4]]
    assert all(p.available and p.minimum_steps is not None for p in predictions.predictions)
    assert result.timing["predict"] >= 0.0
    (constants,) = predictions.constants
    assert constants.is_estimate and constants.points == predict_module.BALL_POINTS
    assert "not a certificate" in constants.note and "1 - q^4" in constants.confidence
    assert "leading singular directions" in constants.confidence


def test_step_radii_follow_theory_and_the_schedule() -> None:
    """R_t grows with t, R_T is the reachable radius of the whole budget, and a larger
    learning rate reaches farther; with R_t = 0 nothing breaks (certified_steps None)."""
    config = AttackConfig(budget_steps=20, learning_rate=1e-3, max_grad_norm=1.0)
    radii = step_radii(config, 1000, 10.0)
    assert len(radii) == 20 and all(b >= a for a, b in itertools.pairwise(radii))
    from empirical.certify.independent import radius_for_config

    assert radii[-1] == pytest.approx(radius_for_config(config, 1000, 10.0))
    faster = step_radii(config.model_copy(update={"learning_rate": 3e-3}), 1000, 10.0)
    assert faster[-1] > radii[-1]
    assert certified_steps([0.5, 1.0], [0.0] * 20, 0.5) is None


def test_predictions_are_in_verdict_json_and_report(tmp_path: Path) -> None:
    claim_file = tmp_path / "claim.toml"
    claim_file.write_text(CLAIM.format(original=EMBEDDED_MODEL_DIR), encoding="utf-8")
    out = tmp_path / "out"
    verify_claim(claim_file, out, options=VerifyOptions(progress=False),
                 services=Services(run_attacks=StandIn(), measure_path=False))
    written = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
    predictions = written["predictions"]
    assert [p["run"] for p in predictions["predictions"]] == [f"grid-00{i}" for i in range(4)]
    checks = {c["run"]: c for c in predictions["checks"]}
    assert checks["grid-002"]["measured_break"] == 20  # lr 3e-3 breaks at step 20
    assert checks["grid-000"]["status"] == "no break measured"
    assert checks["grid-002"]["status"] == "held"
    minimum = predictions["predictions"][2]["minimum_steps"]
    assert checks["grid-002"]["ratio"] == pytest.approx(20 / minimum)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Predictions before the attacks" in report
    assert f"| grid-002 | adamw lr 0.003 cosine full batch 8 seed 0 | {minimum} | 20 |" in report
    assert "no certified maximum" in report
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="predictions-table"' in html and html.index('id="predictions"') < html.index(
        'id="runs"'
    )


# --------------------------------------------------------------------------- after attacks
def test_a_break_earlier_than_predicted_is_reported_violated(tmp_path: Path) -> None:
    """Honest constants: the lr 3e-3 attacks break at step 20, after the certified minimum.
    Negative controls: constants x1e-6 (flip radius x1000 or more) and reachable radii x1e-3 both
    predict no break before step 20, and the measured break contradicts them."""
    claim, plan, runs, estimate = _setting(tmp_path)
    honest = compare(claim, _predictions(claim, plan, estimate), runs)
    assert {c.run: c.status for c in honest.checks} == {
        "grid-000": "no break measured", "grid-001": "no break measured",
        "grid-002": "held", "grid-003": "held",
    }
    assert not honest.violated and median_ratio(honest) is not None
    assert predict_module.warnings_of(honest) == []
    for wrong in (
        _predictions(claim, plan, estimate.scaled(1e-6)),
        _predictions(claim, plan, estimate, radius_factor=1e-3),
    ):
        checked = compare(claim, wrong, runs)
        assert [c.run for c in checked.violated] == ["grid-002", "grid-003"]
        (warning, _) = predict_module.warnings_of(checked)
        assert warning.startswith("PREDICTION VIOLATED on grid-002")
        assert "do not describe this run" in warning


def test_verify_lists_a_violated_prediction_in_the_warnings(tmp_path: Path) -> None:
    """The whole verifier with the Lipschitz estimates shrunk before the attacks: the
    prediction-violated findings reach ``VerifyOutcome.warnings`` (and so the report)."""

    def shrunk(
        claim: Claim, data: ClaimData, plan: AttackPlan, workspace: Workspace,
        immunized: Path | None, log: Log = print,
    ) -> Predictions:
        real = predict_attacks(claim, data, plan, workspace, immunized, log)
        cache = next(workspace.theory.glob("margins-*.json"))
        estimate = CurvatureEstimate.model_validate_json(cache.read_text(encoding="utf-8"))
        return _predictions(claim, plan, estimate.scaled(1e-6)).model_copy(
            update={"constants": real.constants}
        )

    services = Services(run_attacks=StandIn(), measure_path=False, predict=shrunk)
    result = verify(prepare(_claim()), Workspace(tmp_path), services=services)
    assert result.predictions is not None and len(result.predictions.violated) == 2
    assert [w.split(":")[0] for w in result.warnings] == [
        "PREDICTION VIOLATED on grid-002", "PREDICTION VIOLATED on grid-003"
    ]


def test_an_unplanned_attack_is_not_available(tmp_path: Path) -> None:
    claim, plan, runs, estimate = _setting(tmp_path)
    predictions = _predictions(claim, plan, estimate)
    extra = AttackRun("search", "search-000", runs[1].config, runs[1].trajectory)
    checked = compare(claim, predictions, [*runs, extra])
    assert checked.checks[-1].status == "not available"
    assert "not predicted before the attack" in checked.checks[-1].text


# --------------------------------------------------------------------------- T11 (iv)-(vi)
def test_the_combined_margin_gradient_is_autograd_and_moves_the_margin() -> None:
    """‖g_i‖ is the norm of the autograd gradient of D_i (the short margins summed, the
    competitor of each fixed at theta_0), and a step eps along it raises D_i by eps ‖g_i‖ to
    first order (a wrong factor, e.g. ‖g_i‖/2, would fail the second check)."""
    from empirical.datasets.text import IGNORE_INDEX, encode

    data = prepare(_claim()).data
    model, tokenizer = load_model(None)
    example = data.evaluation[0]
    estimate = estimate_curvature(
        model, tokenizer, [example], radius=0.0, phi=1.0, directions=1, random_points=0
    )
    assert estimate.candidates == [0] and estimate.harmful_at_start == 0
    batch = encode(tokenizer, [example], 32)
    targets = batch["labels"][0, 1:]
    parameters = [p for p in model.parameters() if p.requires_grad]

    def combined() -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"]).logits[0, :-1]
        total: torch.Tensor = logits.new_zeros(())
        for position in (targets != IGNORE_INDEX).nonzero()[:, 0].tolist():
            row = logits[position]
            wanted = int(targets[position])
            others = row.detach().clone()
            others[wanted] = -math.inf
            rival = int(others.argmax())
            if float((row[wanted] - row[rival]).detach()) <= 0.0:
                total = total + row[wanted] - row[rival]
        return total

    start = combined()
    assert float(-start.detach()) == pytest.approx(estimate.deficits[0], rel=1e-4)
    gradients = torch.autograd.grad(start, parameters)
    norm = math.sqrt(sum(float(g.square().sum()) for g in gradients))
    assert estimate.gradient_norms[0] == pytest.approx(norm, rel=1e-4)
    eps = 1e-4
    with torch.no_grad():
        for p, g in zip(parameters, gradients, strict=True):
            p.add_(eps * g / norm)
        change = float(combined() - start)
    assert change == pytest.approx(eps * norm, rel=0.05)
    assert change > eps * norm / 2


def test_the_flip_radius_stays_in_the_ball_the_curvatures_hold_on(tmp_path: Path) -> None:
    """The ball is the first-order flip radius (capped at R); the second-order flip radius is
    inside it, and dropping the remainder gives back the first-order radius (the control the
    property test shows failing on real attacks)."""
    from theory.theorems.harm_radius import flip_radius

    *_, estimate = _setting(tmp_path)
    k = estimate.needed()
    first = flip_radius(estimate.deficits, estimate.gram, [0.0] * len(estimate.deficits), k)
    assert estimate.ball == pytest.approx(min(estimate.radius, first))
    assert 0.0 < estimate.flip_radius() < estimate.ball
    assert any(b > 0 for b in estimate.curvatures)
    assert estimate.without_remainder().flip_radius() == pytest.approx(estimate.ball)
    assert estimate.ceiling(0.0) == 0.0 and estimate.ceiling(estimate.radius) <= 1.0


def test_sampled_harm_gets_a_prediction_through_t10(tmp_path: Path) -> None:
    """sampled_harm: the cap on f_s at theta_0 is the proxy's own value (T10 with the floors
    at distance 0 = the measured losses), the cap grows with the radius, and every planned
    attack is predicted; the constants x1e-6 push the prediction past the budget."""
    from empirical.measurement.proxies import sampled_harm

    sampled = _claim(**{"phi = 0.5": 'proxy = "sampled_harm"\nphi = 0.5'})
    prepared = prepare(sampled)
    plan = plan_attacks(sampled, prepared.data, Workspace(tmp_path), None)
    found = predict_attacks(sampled, prepared.data, plan, Workspace(tmp_path), None)
    assert all(p.available and p.minimum_steps is not None for p in found.predictions)
    assert "T10" in found.predictions[0].basis
    cache = next(Workspace(tmp_path).theory.glob("losses-*.json"))
    estimate = LossCurvatureEstimate.model_validate_json(cache.read_text(encoding="utf-8"))
    model, tokenizer = load_model(None)
    measured = sampled_harm()(model, tokenizer, prepared.data.evaluation)
    assert estimate.ceiling(0.0) == pytest.approx(measured, rel=1e-4, abs=1e-9)
    assert estimate.ceiling(0.0) < estimate.ceiling(estimate.ball) <= 1.0
    wrong = [
        predict(item, phi=0.5, estimate=estimate.scaled(1e-6), constants="e", radii=p.step_radii)
        for item, p in zip(planned_attacks(plan), found.predictions, strict=True)
    ]
    assert all(w.minimum_steps is None for w in wrong)
