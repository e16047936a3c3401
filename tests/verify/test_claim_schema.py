"""The claim format's JSON Schema (docs/claim.schema.json): committed = generated, and it
accepts the bundled claims and refuses what the loader refuses."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest

from empirical.verify.claim import Claim
from empirical.verify.claim_schema import SCHEMA_FILE, schema_text

CLAIMS = sorted((Path(__file__).resolve().parents[2] / "claims").glob("*.toml"))


def test_the_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "regenerate with: .venv/bin/python -m empirical.verify.claim_schema"
    )


@pytest.mark.negative_control
def test_a_changed_claim_model_changes_the_schema() -> None:
    class Wider(Claim):
        surprise: int = 0

    assert json.dumps(Wider.model_json_schema(), sort_keys=True) != json.dumps(
        Claim.model_json_schema(), sort_keys=True
    )


@pytest.mark.parametrize("path", CLAIMS, ids=[p.stem for p in CLAIMS])
def test_every_bundled_claim_validates(path: Path) -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(tomllib.loads(path.read_text()))


@pytest.mark.negative_control
def test_the_schema_refuses_an_unknown_key_and_a_wrong_type() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    demo = tomllib.loads((CLAIMS[0].parent / "demo.toml").read_text())
    typo = {**demo, "threat_model": {**demo["threat_model"], "budget_step": 10}}
    assert not validator.is_valid(typo)
    wrong = {**demo, "harm": {**demo["harm"], "phi": "half"}}
    assert not validator.is_valid(wrong)
    assert validator.is_valid(demo)
