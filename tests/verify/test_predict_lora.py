"""Predictions for LoRA attackers (``empirical.verify.predict_lora``, T11 (vii)) on a real LoRA
attack of the embedded model.

One LoRA threat model (rank 8, α = 16, GPT-2's default targets; AdamW at a constant 3e-3
after 10% warm-up, 50 steps, φ = 0.1 so that the attack breaks the embedded model within the
budget) is predicted before the attack, then attacked for real with every iterate kept:

* the prediction is available, rests on (vii), and its adapters' start is the attack's own
  (the adapter count and ‖(A⁰, B⁰)‖ equal the attack's θ_0; another seed draws another A⁰);
* the attack breaks at or after the certified minimum ("held", not violated); negative
  control: the constants ×1e-6 push the prediction past the measured break (violated);
* the merged model's distance from θ_0 (``merged_displacement``, checked against peft's own
  ``get_delta_weight``) stays within the merged reach R_t of the prediction and within
  s (a_0 D_t + D_t²/2) of the measured adapter distance D_t at every step; negative controls:
  that reach without the a_0 term, and ×0.5, are exceeded by the measured merged distance;
* adapters with B⁰ ≠ 0 get no merged radius (the reach assumes B⁰ = 0);
* the planned rates of an exponential schedule are η γˢ, cached per γ (control: two decays
  in one work directory get their own rates).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from empirical.certify.margin_curvature import CurvatureEstimate
from empirical.engine.attack import AttackConfig, AttackOutcome, attack
from empirical.verify.claim import Claim
from empirical.verify.outcome import AttackRun
from empirical.verify.plan import AttackPlan, plan_attacks
from empirical.verify.predict import (
    Prediction,
    Predictions,
    compare,
    planned_attacks,
    predict,
    predict_attacks,
    schedule_rates,
    step_radii,
)
from empirical.verify.predict_lora import (
    LoraStart,
    lora_start,
    merged_displacement,
    merged_radii,
)
from empirical.verify.stages import prepare
from empirical.verify.workspace import Workspace
from tests.verify.test_stages import _claim
from theory.errors import HftaInputError
from theory.theorems.harm_radius import lora_reach

#: The stand-in claim turned into a LoRA threat model that breaks the embedded model.
LORA_CLAIM = {
    "max_grad_norm = 1.0": "max_grad_norm = 1.0\nlora = true",
    "learning_rates = [1e-3, 3e-3]": "learning_rates = [3e-3]",
    "seeds = [0, 1]": 'seeds = [0]\nschedules = ["constant"]',
    "budget_steps = 40": "budget_steps = 50",
    "phi = 0.5": "phi = 0.1",
}


@dataclass(frozen=True)
class LoraRun:
    """The LoRA claim's plan, its predictions, and the real attack with every iterate."""

    claim: Claim
    plan: AttackPlan
    workspace: Workspace
    predictions: Predictions
    outcome: AttackOutcome
    iterates: dict[int, torch.Tensor]

    @property
    def prediction(self) -> Prediction:
        return self.predictions.predictions[0]

    def start(self) -> LoraStart:
        return lora_start(planned_attacks(self.plan)[0].config, self.workspace)

    def merged(self) -> list[float]:
        """‖θ_t − θ_0‖ of the merged model at t = 1 … T."""
        first = self.iterates[0]
        return [
            merged_displacement(self.outcome.model, first, self.iterates[t])
            for t in range(1, len(self.iterates))
        ]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> LoraRun:
    claim = _claim(**LORA_CLAIM)
    prepared = prepare(claim)
    workspace = Workspace(tmp_path_factory.mktemp("lora"))
    plan = plan_attacks(claim, prepared.data, workspace, None)
    predictions = predict_attacks(claim, prepared.data, plan, workspace, None)
    (item,) = planned_attacks(plan)
    iterates: dict[int, torch.Tensor] = {}

    def keep(step: int, theta: torch.Tensor) -> None:
        iterates[step] = theta.detach().clone()

    outcome = attack(item.config, on_iterate=keep)
    return LoraRun(claim, plan, workspace, predictions, outcome, iterates)


@pytest.mark.slow
def test_lora_attacks_are_predicted_from_their_own_adapters(lora_run: LoraRun) -> None:
    prediction = lora_run.prediction
    assert prediction.available and prediction.minimum_steps is not None
    assert prediction.minimum_steps >= 1
    assert "(vii)" in prediction.basis and "a_0 = " in prediction.basis
    assert any("LoRA adapters" in a for a in prediction.assumptions)
    assert not any("full fine-tuning" in a for a in prediction.assumptions)
    start = lora_run.start()
    assert start.cached and start.b_norm == 0.0 and start.scale == 2.0  # alpha/r = 16/8
    first = lora_run.iterates[0]
    assert start.parameters == first.numel()
    assert start.norm == pytest.approx(float(torch.linalg.vector_norm(first.double())), rel=1e-6)
    config = planned_attacks(lora_run.plan)[0].config
    adapters = step_radii(config, start.parameters, start.norm)
    assert prediction.step_radii == pytest.approx(merged_radii(adapters, start))
    other = lora_start(config.model_copy(update={"seed": 1}))
    assert other.parameters == start.parameters and other.norm != start.norm


@pytest.mark.slow
def test_a_real_lora_attack_does_not_violate_its_prediction(lora_run: LoraRun) -> None:
    config = planned_attacks(lora_run.plan)[0].config
    run = AttackRun("grid", "grid-000", config, lora_run.outcome.trajectory)
    (check,) = compare(lora_run.claim, lora_run.predictions, [run]).checks
    assert check.status == "held", check.text
    assert check.measured_break is not None  # the attack broke: the check is not vacuous
    assert lora_run.prediction.minimum_steps is not None
    assert check.measured_break >= lora_run.prediction.minimum_steps
    cache = next(lora_run.workspace.theory.glob("margins-*.json"))
    estimate = CurvatureEstimate.model_validate_json(cache.read_text(encoding="utf-8"))
    (item,) = planned_attacks(lora_run.plan)
    wrong = predict(item, phi=lora_run.claim.harm.phi, estimate=estimate.scaled(1e-6),
                    constants="evaluation", radii=lora_run.prediction.step_radii)
    shrunk = lora_run.predictions.model_copy(update={"predictions": [wrong]})
    (control,) = compare(lora_run.claim, shrunk, [run]).checks
    assert control.status == "violated", control.text


@pytest.mark.slow
def test_the_merged_displacement_is_peft_s_delta_weight(lora_run: LoraRun) -> None:
    """At the end of the attack (B⁰ = 0) the merged displacement is the norm of every
    adapted layer's ``get_delta_weight``, computed by peft from the trained model."""
    final = max(lora_run.iterates)
    measured = merged_displacement(lora_run.outcome.model, lora_run.iterates[0],
                                   lora_run.iterates[final])
    from peft.tuners.lora import LoraLayer

    squares = 0.0
    with torch.no_grad():
        for module in lora_run.outcome.model.modules():
            if isinstance(module, LoraLayer):
                delta = module.get_delta_weight("default")  # type: ignore[operator]
                squares += float(delta.double().square().sum())
    assert measured > 0.0
    assert measured == pytest.approx(math.sqrt(squares), rel=1e-5)


@pytest.mark.slow
def test_the_merged_displacement_stays_within_the_lora_reach(lora_run: LoraRun) -> None:
    start, merged = lora_run.start(), lora_run.merged()
    distances = lora_run.outcome.trajectory.distance_from_start
    reach = lora_run.prediction.step_radii
    assert len(merged) == len(reach) == len(distances) - 1
    own, without_a0, halved = [], [], []
    for t, value in enumerate(merged, start=1):
        adapter = distances[t]
        assert adapter is not None
        assert value <= reach[t - 1] * (1 + 1e-6), f"step {t}: merged reach"
        bound = lora_reach(adapter, start.largest_init, start.scale)
        assert value <= bound * (1 + 1e-5) + 1e-7, f"step {t}: reach of the adapter distance"
        own.append(value / bound if bound else 0.0)
        without_a0.append(value > lora_reach(adapter, 0.0, start.scale) * (1 + 1e-5))
        halved.append(value > 0.5 * bound * (1 + 1e-5))
    assert max(own) <= 1.0
    assert any(without_a0), "the reach without a_0 was never exceeded"
    assert any(halved), "the reach x0.5 was never exceeded"


def test_a_method_t11_does_not_cover_gets_a_reason(tmp_path: Path) -> None:
    """Head-only fine-tuning (an untied copy of the head: another parameter space) gets no
    reachable radius from T11 (vii): ``predict_attacks`` states the reason instead."""
    from empirical.verify import predict as predict_module

    claim = _claim(**LORA_CLAIM)
    plan = plan_attacks(claim, prepare(claim).data, Workspace(tmp_path), None)
    head = predict_module.Planned("grid-000", plan.grid[0].model_copy(update={"method": "head"}))
    with pytest.raises(HftaInputError, match="T11 covers full fine-tuning and LoRA, not 'head'"):
        predict_module._radii(head, 0, None, Workspace(tmp_path), {})


def test_adapters_that_do_not_start_at_the_base_weights_are_refused() -> None:
    """T11 (vii) assumes B⁰ = 0 (the reach has no ‖B⁰‖ term): a start with B⁰ ≠ 0 gets no
    merged radius (``HftaInputError``, one line), while the same start with B⁰ = 0 gets
    theory's ``lora_reach`` of every adapter radius."""
    start = LoraStart(
        adapters=2, parameters=2048, norm=3.0, largest_init=0.7, b_norm=0.0, scale=2.0,
        seed=0, seconds=0.0,
    )
    assert merged_radii([0.1, 0.4], start) == [lora_reach(r, 0.7, 2.0) for r in (0.1, 0.4)]
    moved = start.model_copy(update={"b_norm": 0.25})
    with pytest.raises(HftaInputError, match="B != 0 at initialisation") as raised:
        merged_radii([0.1, 0.4], moved)
    assert "\n" not in str(raised.value)


def test_planned_rates_follow_the_exponential_decay_and_are_cached_per_decay(
    tmp_path: Path,
) -> None:
    """``schedule_rates`` of an exponential attack are η γˢ (the engine's own schedule), and
    its cache key holds γ: two attacks that differ only in γ get their own rates from one
    work directory (a key without γ would serve the first's rates to the second)."""
    workspace = Workspace(tmp_path)
    slow = AttackConfig(
        schedule="exponential", decay=0.9, learning_rate=0.01, warmup_fraction=0.0,
        budget_steps=6,
    )
    fast = slow.model_copy(update={"decay": 0.5})
    for config in (slow, fast, slow, fast):  # the second round reads the cache back
        gamma = config.decay
        assert gamma is not None
        want = [0.01 * gamma**s for s in range(6)]
        assert schedule_rates(config, workspace) == pytest.approx(want, rel=1e-12)
    assert len(list(workspace.theory.glob("rates-*.json"))) == 2
    cosine = AttackConfig(schedule="cosine", budget_steps=6)
    schedule_rates(cosine, workspace)  # without γ the key is the one earlier runs cached under
    inputs = ["cosine", cosine.learning_rate, cosine.warmup_fraction, 6]
    key = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:24]
    assert (workspace.theory / f"rates-{key}.json").is_file()
