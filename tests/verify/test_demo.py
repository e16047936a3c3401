"""The embedded default (claims/demo.toml): its design, and a scaled-down run of every step."""

from __future__ import annotations

from pathlib import Path

import pytest

from empirical.verify.claim import DEFAULT_CLAIM, Claim, load_claim, resolve_data
from theory.verdict import Status


def test_the_demo_is_sized_for_ninety_seconds() -> None:
    claim = load_claim(DEFAULT_CLAIM)
    attacks = len(claim.threat_model.attack_settings())
    assert 2 <= attacks <= 6
    assert claim.threat_model.budget_steps <= 200
    assert len(claim.threat_model.seeds) >= 2
    assert claim.defence.hyperparameters["steps"] <= 200
    assert claim.trainability is not None and claim.trainability.budget_steps <= 100
    assert claim.search.strategy == "grid"


def test_the_demo_holds_out_the_attack_data_from_the_defence() -> None:
    claim = load_claim(DEFAULT_CLAIM)
    data = resolve_data(claim, DEFAULT_CLAIM)
    assert data.ids("defence").isdisjoint(data.ids("attack") | data.ids("evaluation"))
    assert data.categories("attack") == data.categories("defence") == ["flip", "next"]
    assert len(data.evaluation) == 200 and len(data.reference) == 200


def _scaled_down(claim: Claim) -> Claim:
    """The demo with every loop cut short (same code path, seconds instead of a minute)."""
    assert claim.trainability is not None
    return claim.model_copy(
        update={
            "defence": claim.defence.model_copy(
                update={"hyperparameters": {**claim.defence.hyperparameters, "steps": 10}}
            ),
            "threat_model": claim.threat_model.model_copy(
                update={"budget_steps": 20, "learning_rates": (3e-4,), "seeds": (0,)}
            ),
            "harm": claim.harm.model_copy(update={"eval_every_steps": 10}),
            "trainability": claim.trainability.model_copy(
                update={"budget_steps": 20, "eval_every_steps": 10}
            ),
            "theory": claim.theory.model_copy(
                update={"beta_every_steps": 20, "segment_samples": 1}
            ),
        }
    )


@pytest.mark.slow
def test_a_scaled_down_demo_runs_every_step(tmp_path: Path) -> None:
    from empirical.outputs import claim_output, publish
    from empirical.verify.figures import figures
    from empirical.verify.pipeline import Workspace, prepare, verify
    from empirical.verify.report import write_outputs

    claim = _scaled_down(load_claim(DEFAULT_CLAIM))
    workspace = Workspace(tmp_path / "demo.cache")
    outcome = verify(prepare(claim, DEFAULT_CLAIM), workspace, options=None)
    assert set(outcome.conditions) == {
        "weak_resistance", "stability", "generalization_in_domain", "trainability"
    }
    assert outcome.defence.name == "adversarial-loss" and not outcome.defence.cached
    assert outcome.defence.record is not None
    assert outcome.defence.record["hyperparameters"]["steps"] == 10
    assert outcome.original_worst is not None
    assert outcome.theory.violations == 0
    assert all(v.status in set(Status) for v in outcome.conditions.values())
    write_outputs(outcome, workspace.root / "partial", figures(outcome))
    publish(workspace.root / "partial", claim_output(tmp_path / "demo", "verify"))
    assert (tmp_path / "demo" / "figures" / "figure2_loss.png").is_file()

    again = verify(prepare(claim, DEFAULT_CLAIM), workspace, options=None)
    assert again.defence.cached  # the immunized model is reused, keyed by its inputs
    assert again.defence.immunized_model == outcome.defence.immunized_model
