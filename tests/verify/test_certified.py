"""Certified resistance for the claim's declared attacker classes (``empirical.verify.certified``):
T11's certificate on M* and on the baseline M before any attack, the strongest attack of a
certified class run on M*, all of it in verdict.json, report.md and report.html.

Set-up: the stand-in claim of ``test_stages`` (no defence, so M* and M are the same embedded
weights, whose smallest head-only harm radius on these prompts is about 0.5) and its stand-in
attacker (an attack at a rate above 2e-3 breaks M* at step 20, below never).

Negative controls: a class M is certified for too is flagged as a certificate without a
control; a certified class whose strongest attack breaks M* is a contradiction of T11 and
leads the warnings; a class too wide for the radii is not certified and runs no attack; a
class the certificate cannot bound (weight decay with SGD, momentum) is refused as bad input.
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
from theory.errors import HftaInputError


def _certify(rate: float, budget: int = 100, extra: str = "") -> str:
    return f"""
[[certify.classes]]
optimizer = "sgd"
max_learning_rate = {rate}
schedule = "constant"
budget_steps = {budget}
clip = 1.0
{extra}"""


def _verify(tmp_path: Path, certify: str, attacker: StandIn) -> VerifyResult:
    claim_file = tmp_path / "claim.toml"
    text = CLAIM.format(original=EMBEDDED_MODEL_DIR) + certify
    claim_file.write_text(text, encoding="utf-8")
    return verify_claim(
        claim_file,
        tmp_path / "out",
        options=VerifyOptions(progress=False),
        services=Services(run_attacks=attacker, measure_path=False),
    )


def test_a_certified_class_is_in_the_verdict_with_its_control(tmp_path: Path) -> None:
    attacker = StandIn()
    result = _verify(tmp_path, _certify(1e-3), attacker)  # R_T = 0.1 < every radius
    written = json.loads((result.out / "verdict.json").read_text(encoding="utf-8"))
    (item,) = written["certification"]["classes"]
    assert item["status"] == "certified" and item["immunized"]["harm_ceiling"] == 0.0
    assert item["immunized"]["reachable_radius"] == pytest.approx(0.1)
    # M is the same weights: certified too, which the verdict must flag
    assert item["original"]["status"] == "certified" and item["baseline_refused"] is False
    assert any(w.startswith("certificate without a control") for w in written["warnings"])
    # the strongest attack of the class ran on M*, and T11's check held on it
    (head,) = [c for c in attacker.ran if c.method == "head"]
    assert head.learning_rate == 1e-3 and head.budget_steps == 100 and head.model is None
    assert item["strongest_broke"] is False and item["check"]["status"] == "holds"
    report = (result.out / "report.md").read_text(encoding="utf-8")
    assert "## Certified resistance (before any attack)" in report
    assert "| head-only sgd lr <= 0.001 constant (warm-up 0) T = 100 clip 1 | **certified** |" in (
        report
    )
    html = (result.out / "report.html").read_text(encoding="utf-8")
    assert 'id="certification-table"' in html
    assert result.exit_code == 1  # the stand-in attack at 3e-3 breaks M*: resistance violated


def test_a_certified_model_that_breaks_contradicts_the_theorem(tmp_path: Path) -> None:
    """R_T = 0.3 is still below every radius, so the class is certified; the stand-in attacker
    breaks M* at rate 3e-3 anyway, which T11 forbids: the verdict must lead with it."""
    result = _verify(tmp_path, _certify(3e-3), StandIn())
    written = json.loads((result.out / "verdict.json").read_text(encoding="utf-8"))
    (item,) = written["certification"]["classes"]
    assert item["status"] == "certified" and item["strongest_broke"] is True
    assert item["check"]["status"] == "violated"
    assert written["warnings"][0].startswith("CERTIFICATE CONTRADICTED")


def test_a_class_too_wide_is_not_certified_and_attacks_nothing(tmp_path: Path) -> None:
    attacker = StandIn()
    result = _verify(tmp_path, _certify(0.05), attacker)  # R_T = 5
    item = result.record["certification"]["classes"][0]
    assert item["status"] == "not certified" and item["original"]["status"] == "not certified"
    assert item["immunized"]["certified_steps"] is not None
    assert item["strongest_attack"] is None
    assert not [c for c in attacker.ran if c.method == "head"]


def test_a_claim_without_classes_has_no_certification(tmp_path: Path) -> None:
    result = _verify(tmp_path, "", StandIn())
    assert result.record["certification"] is None
    assert "Certified resistance" not in (result.out / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("certify", "message"),
    [
        (_certify(1e-3, extra="weight_decay = 0.01"), "weight decay"),
        (_certify(1e-3, extra="momentum = 0.9"), "momentum"),
        (_certify(-1.0), "max_learning_rate"),
    ],
)
def test_an_unbounded_or_malformed_class_is_bad_input(certify: str, message: str) -> None:
    text = CLAIM.format(original=EMBEDDED_MODEL_DIR) + certify
    with pytest.raises(HftaInputError, match=message):
        parse_claim(text)
