"""The typed verdict document: docs/verdict.schema.json is the model's schema, a verdict.json
the verifier writes round-trips through the model and validates against the published schema
(the ``jsonschema`` package, draft 2020-12), and the model refuses what the schema refuses.

Every check has a negative control: a changed model changes the schema, a wrong type or a
condition with another kind's evidence is refused, a non-JSON extra entry is refused.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from empirical.verify import html
from empirical.verify.document import (
    SCHEMA_PATH,
    VERDICT_SCHEMA,
    ResistanceCondition,
    ResistanceEvidence,
    StabilityCondition,
    TrainabilityCondition,
    VerdictDocument,
    evidence_of,
    schema,
    schema_text,
)
from empirical.verify.figures import figures
from empirical.verify.report import document, write_outputs
from tests.verify.test_report import _outcome

VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
"""The published schema, as a consumer of verdict.json would use it."""


def _schema_errors(record: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in VALIDATOR.iter_errors(record)]


def _round_trip(path: Path) -> tuple[str, VerdictDocument]:
    """``verdict.json`` → model → JSON text (what the writer would write again)."""
    text = path.read_text(encoding="utf-8")
    model = VerdictDocument.model_validate(json.loads(text))
    return model.to_json(), model


# --------------------------------------------------------------------------- the schema
def test_the_published_schema_is_the_models() -> None:
    assert Path(__file__).resolve().parents[2] / "docs" / "verdict.schema.json" == SCHEMA_PATH
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "docs/verdict.schema.json is stale: run `python -m empirical.verify.document`"
    )
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["properties"]["schema_version"]["const"] == VERDICT_SCHEMA == 4


@pytest.mark.negative_control
def test_a_changed_model_changes_the_schema() -> None:
    class Changed(VerdictDocument):
        reviewer: str = ""

    assert schema_text(Changed) != SCHEMA_PATH.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- round trips
@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verdict over real judge verdicts, written by the verifier's own writer."""
    folder = tmp_path_factory.mktemp("written") / "out"
    outcome = _outcome(broken=True)
    write_outputs(outcome, folder, figures(outcome))
    return folder


def test_a_written_verdict_round_trips_and_validates(written: Path) -> None:
    path = written / "verdict.json"
    text, model = _round_trip(path)
    assert text == path.read_text(encoding="utf-8")
    assert _schema_errors(json.loads(text)) == []
    assert html.load_verdict(written) == model  # the page reads the same records


def test_write_outputs_returns_what_it_wrote(tmp_path: Path) -> None:
    outcome = _outcome()
    returned = write_outputs(outcome, tmp_path / "out")
    assert returned == json.loads((tmp_path / "out" / "verdict.json").read_text())
    assert returned == document(outcome).model_dump(mode="json")


@pytest.mark.negative_control
@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("conditions", "weak_resistance", "evidence", "runs"), "two"),
        (("conditions", "weak_resistance", "status"), "probably"),
        (("bounds", 0, "violations"), None),
        (("schema_version",), 1),
        (("unknown_field",), 1),
    ],
)
def test_a_wrong_document_is_refused_by_schema_and_model(
    written: Path, where: tuple[str | int, ...], value: object
) -> None:
    record = json.loads((written / "verdict.json").read_text(encoding="utf-8"))
    changed = copy.deepcopy(record)
    target: Any = changed
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    assert _schema_errors(changed)
    with pytest.raises(ValidationError):
        VerdictDocument.model_validate(changed)
    assert _schema_errors(record) == []  # the unchanged document passes both


@pytest.mark.negative_control
def test_a_condition_with_another_kinds_evidence_is_refused(written: Path) -> None:
    record = json.loads((written / "verdict.json").read_text(encoding="utf-8"))
    entry = record["conditions"].pop("generalization_in_domain")
    record["conditions"]["stability"] = entry  # resistance evidence under "stability"
    with pytest.raises(ValidationError, match="condition stability has resistance evidence"):
        VerdictDocument.model_validate(record)


@pytest.mark.negative_control
def test_inconsistent_totals_are_refused(written: Path) -> None:
    record = json.loads((written / "verdict.json").read_text(encoding="utf-8"))
    with pytest.raises(ValidationError, match="bound_violations"):
        VerdictDocument.model_validate(record | {"bound_violations": 7})
    with pytest.raises(ValidationError, match="exit code 0 with verdict violated"):
        VerdictDocument.model_validate(record | {"exit_code": 0})


# --------------------------------------------------------------------------- evidence
def test_an_entry_theory_adds_is_kept_flat_and_typed() -> None:
    outcome = _outcome()
    evidence = dict(outcome.conditions["weak_resistance"].evidence)
    typed = evidence_of("weak_resistance", {**evidence, "new_number": 1.5, "new": {"a": [1]}})
    assert isinstance(typed, ResistanceEvidence)
    assert typed.extra == {"new_number": 1.5, "new": {"a": [1]}}
    dumped = typed.model_dump(mode="json")
    assert dumped["new_number"] == 1.5 and dumped["runs"] == evidence["runs"]
    assert evidence_of("weak_resistance", evidence).extra == {}


@pytest.mark.negative_control
def test_evidence_of_the_wrong_shape_or_not_json_is_refused() -> None:
    evidence = dict(_outcome().conditions["weak_resistance"].evidence)
    with pytest.raises(ValidationError):
        evidence_of("weak_resistance", {**evidence, "odd": object()})  # not a JSON value
    with pytest.raises(ValidationError):
        evidence_of("stability", evidence)  # resistance evidence is not stability evidence
    with pytest.raises(KeyError):
        evidence_of("resilience", evidence)


def test_the_page_uses_the_shared_records() -> None:
    assert html.VerdictDocument is VerdictDocument
    for name in ("ConditionRecord", "BoundRecord", "RunRecord", "RestsOn"):
        assert not hasattr(html, name)


# --------------------------------------------------------------------------- a real run
@pytest.mark.slow
def test_a_real_verdict_round_trips_and_validates(tmp_path: Path) -> None:
    """The scaled-down demo (real model, defence, attacks, stability, trainability and the
    theory checks with the worst attack measured again): every kind of condition, the
    defence's record and the measured constants round-trip and validate."""
    from empirical.verify.claim import DEFAULT_CLAIM, load_claim
    from empirical.verify.pipeline import Workspace, prepare, verify
    from tests.verify.test_demo import _scaled_down

    claim = _scaled_down(load_claim(DEFAULT_CLAIM))
    workspace = Workspace(tmp_path / "work")
    outcome = verify(prepare(claim, DEFAULT_CLAIM), workspace)
    out = tmp_path / "out"
    write_outputs(outcome, out, figures(outcome))
    text, model = _round_trip(out / "verdict.json")
    assert text == (out / "verdict.json").read_text(encoding="utf-8")
    assert _schema_errors(json.loads(text)) == []
    kinds = {type(c) for c in model.conditions.values()}
    assert kinds == {ResistanceCondition, StabilityCondition, TrainabilityCondition}
    assert model.defence.record is not None and model.defence.record.curve
    assert model.theory.worst_constants is not None
    assert model.worst_attack is not None and model.worst_attack.original is not None
