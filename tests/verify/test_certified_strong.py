"""Strong resistance for an unbounded class declared in ``[[certify.classes]]``
(``empirical.verify.certified``): clipped SGD with ``schedule = "exponential"``, a ``decay`` and
no ``budget_steps`` is certified for every t (T6's R_∞), the record says so with the class's
assumptions, and its strongest attack runs to the horizon (1% of R_∞ left).

Set-up: the stand-in claim and attacker of ``test_stages`` (M* = M = the embedded weights,
smallest head-only harm radius about 0.5; the stand-in moves ``step_factor`` × lr per step in
a straight line, whatever the schedule).

Negative controls: a stand-in that ignores the decay (0.5 × lr every step) leaves the ball
B(W_0, R_t) and T11's check on the strongest attack reports the contradiction; a class with
γ close to 1 is not certified and runs no attack.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empirical.models.model import EMBEDDED_MODEL_DIR
from empirical.verify.api import VerifyResult, verify_claim
from empirical.verify.claim import parse_claim
from empirical.verify.stages import Services
from empirical.verify.workspace import VerifyOptions
from tests.verify.test_stages import CLAIM, StandIn

pytestmark = pytest.mark.slow


def _unbounded(rate: float, decay: float) -> str:
    return f"""
[[certify.classes]]
optimizer = "sgd"
max_learning_rate = {rate}
schedule = "exponential"
decay = {decay}
clip = 1.0
"""


def _verify(tmp_path: Path, certify: str, attacker: StandIn) -> VerifyResult:
    claim_file = tmp_path / "claim.toml"
    claim_file.write_text(CLAIM.format(original=EMBEDDED_MODEL_DIR) + certify, encoding="utf-8")
    return verify_claim(
        claim_file,
        tmp_path / "out",
        options=VerifyOptions(progress=False),
        services=Services(run_attacks=attacker, measure_path=False),
    )


def test_the_claim_accepts_an_unbounded_class() -> None:
    claim = parse_claim(CLAIM.format(original=EMBEDDED_MODEL_DIR) + _unbounded(1e-3, 0.95))
    (cls,) = claim.certify.classes
    assert cls.budget_steps is None and cls.decay == 0.95 and cls.unbounded


def test_an_unbounded_class_is_certified_for_every_t(tmp_path: Path) -> None:
    attacker = StandIn(step_factor=0.1)  # 0.1 lr t <= lr (1 - 0.95^t)/0.05 up to the horizon
    result = _verify(tmp_path, _unbounded(1e-3, 0.95), attacker)
    written = json.loads((result.out / "verdict.json").read_text(encoding="utf-8"))
    (item,) = written["certification"]["classes"]
    assert item["status"] == "certified" and item["immunized"]["resistance"] == "strong"
    assert item["immunized"]["reachable_radius"] == pytest.approx(0.02, rel=1e-9)
    assert "strong resistance certified for this class (every t, R_inf = 0.02)" in item["text"]
    assert "contract with c = gamma exactly" in item["text"]  # the assumptions
    assert "until the remaining reach is below 1% of R_inf" in item["text"]
    (head,) = [c for c in attacker.ran if c.method == "head"]
    assert head.schedule == "exponential" and head.decay == 0.95
    assert head.budget_steps == item["immunized"]["listed_steps"] == 90  # 0.95^90 < 0.01
    assert item["check"]["status"] == "holds" and item["strongest_broke"] is False


@pytest.mark.negative_control
def test_an_attack_that_ignores_the_decay_contradicts_the_certificate(tmp_path: Path) -> None:
    result = _verify(tmp_path, _unbounded(1e-3, 0.95), StandIn())  # 0.5 lr per step
    written = json.loads((result.out / "verdict.json").read_text(encoding="utf-8"))
    (item,) = written["certification"]["classes"]
    assert item["status"] == "certified"
    assert item["check"]["status"] == "violated" and item["check"]["violations"] > 0
    assert written["warnings"][0].startswith("CERTIFICATE CONTRADICTED")


@pytest.mark.negative_control
def test_gamma_close_to_one_is_not_certified_and_attacks_nothing(tmp_path: Path) -> None:
    attacker = StandIn()
    result = _verify(tmp_path, _unbounded(1e-2, 0.999), attacker)  # R_inf = 10
    item = result.record["certification"]["classes"][0]
    assert item["status"] == "not certified" and item["immunized"]["resistance"] == "strong"
    assert item["strongest_attack"] is None
    assert not [c for c in attacker.ran if c.method == "head"]
