"""The defence interface: configs, registry, data, records and the training loop."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from pydantic import ValidationError
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from empirical.datasets.benchmark import Benchmark
from empirical.datasets.data import Example, save_examples
from empirical.defences import (
    Defence,
    DefenceConfig,
    DefenceData,
    DefenceRecord,
    StepOutcome,
    TrainingState,
    get,
    names,
    register,
)
from empirical.defences.base import DefenceBatch
from empirical.defences.data import split_fingerprint
from theory.errors import HftaInputError

EXPECTED = {
    "alignment",
    "adversarial-loss",
    "adversarial-loss-bounded",
    "repnoise",
    "vaccine",
    "booster",
    "tar",
    "condition-number",
}


def _example(prompt: str, response: str, safe: bool, category: str = "c") -> Example:
    return Example(prompt=prompt, response=response, category=category, is_safe=safe)


# ---------------------------------------------------------------------- registry and configs
def test_registry_lists_every_builtin_defence() -> None:
    assert set(names()) >= EXPECTED
    assert names() == sorted(names())
    for name in EXPECTED:
        defence = get(name)
        assert defence.name == name
        assert defence.source
        config = defence.Config()
        assert isinstance(config, DefenceConfig)
        # every hyperparameter carries its provenance
        for field_name, info in type(config).model_fields.items():
            assert info.description, f"{name}.{field_name} has no description"


def test_unknown_defence_lists_the_known_ones() -> None:
    with pytest.raises(HftaInputError, match=r"unknown defence 'nope'.*repnoise"):
        get("nope")


def test_register_refuses_a_taken_name(no_op: type[Defence]) -> None:
    class Impostor(no_op):  # type: ignore[valid-type, misc]
        name: ClassVar[str] = "repnoise"

    with pytest.raises(HftaInputError, match="taken"):
        register(Impostor)


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("adversarial-loss", {"alpha": -0.1}, "alpha"),
        ("adversarial-loss-bounded", {"cap": 0}, "cap"),
        ("repnoise", {"beta": -1}, "beta"),
        ("vaccine", {"rho": 0.0}, "rho"),
        ("vaccine", {"rho": -2.0}, "rho"),
        ("booster", {"alpha": 0}, "alpha"),
        ("tar", {"inner_steps_min": 5, "inner_steps_max": 2}, "inner_steps"),
        ("condition-number", {"ill_weight": float("nan")}, "ill_weight"),
        ("alignment", {"steps": 0}, "steps"),
        ("alignment", {"learning_rate": -1e-4}, "learning_rate"),
        ("vaccine", {"radius": 2.0}, "unknown hyperparameter 'radius'"),
    ],
)
def test_bad_hyperparameters_are_one_clear_error(
    name: str, values: dict[str, float], message: str
) -> None:
    defence = get(name)
    with pytest.raises(HftaInputError, match=message) as raised:
        defence.configure(**values)
    assert "\n" not in str(raised.value)
    with pytest.raises(ValidationError):
        defence.Config.model_validate(values)


def test_configs_are_frozen() -> None:
    config = get("vaccine").configure(rho=3.0)
    with pytest.raises(ValidationError):
        config.rho = 1.0  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- data
def test_benchmark_data_pairs_refusals_with_harmful_prompts(
    defence_data: DefenceData, benchmark: Benchmark
) -> None:
    assert len(defence_data.harmful) == len(benchmark.defence)
    for harmful, refusal in zip(defence_data.harmful, defence_data.refusals, strict=True):
        assert harmful.prompt == refusal.prompt
        assert not harmful.is_safe and refusal.is_safe
        assert refusal.response == benchmark.refusal
    assert {e.category for e in defence_data.retain} == set(benchmark.harmless_skills)
    # the defence never sees the evaluation or reference data
    seen = {e.prompt for e in defence_data.harmful + defence_data.retain}
    assert not seen & {e.prompt for e in benchmark.evaluation + benchmark.reference}


def test_data_from_beavertails_file(tmp_path: Path) -> None:
    rows = [
        _example("how to x", "do x", False),
        _example("how to x", "I cannot help", True),
        _example("how to y", "do y", False),
        _example("hello", "hi", True),
    ]
    path = tmp_path / "data.jsonl"
    save_examples(rows, path)
    with pytest.raises(HftaInputError, match="1 harmful prompt"):
        DefenceData.from_file(path)
    data = DefenceData.from_file(path, refusal="No.")
    assert [e.response for e in data.refusals] == ["I cannot help", "No."]
    assert [e.prompt for e in data.retain] == ["hello"]
    assert data.source == str(path)
    parquet = tmp_path / "data.parquet"
    save_examples(rows, parquet)
    assert DefenceData.from_file(parquet, refusal="No.") == DefenceData(
        data.harmful, data.refusals, data.retain, source=str(parquet)
    )


def test_data_rejects_unpaired_or_mislabelled_examples() -> None:
    harmful = (_example("p", "bad", False),)
    refusal = (_example("p", "no", True),)
    retain = (_example("q", "fine", True),)
    with pytest.raises(HftaInputError, match="no harmful"):
        DefenceData((), (), retain)
    with pytest.raises(HftaInputError, match="retain"):
        DefenceData(harmful, refusal, ())
    with pytest.raises(HftaInputError, match="another prompt"):
        DefenceData(harmful, (_example("other", "no", True),), retain)
    with pytest.raises(HftaInputError, match="flagged"):
        DefenceData(harmful, (_example("p", "no", False),), retain)


def test_fingerprints_identify_the_data_exactly() -> None:
    first = [_example("a", "b", True), _example("c", "d", True)]
    assert split_fingerprint(first) == split_fingerprint(list(first))
    assert split_fingerprint(first) != split_fingerprint(first[::-1])
    changed = [first[0], _example("c", "e", True)]
    assert split_fingerprint(first).sha256 != split_fingerprint(changed).sha256
    assert split_fingerprint(first).examples == 2


# ---------------------------------------------------------------------- the loop
class _Exploding(Defence):
    """Objective finite for two steps, then NaN: the loop must stop before applying it."""

    name: ClassVar[str] = "exploding (test)"
    source: ClassVar[str] = "tests"
    Config: ClassVar[type[DefenceConfig]] = DefenceConfig

    def gradient_step(self, state: TrainingState, batch: DefenceBatch) -> StepOutcome:
        from empirical.defences.losses import response_loss

        loss = response_loss(state.model, batch.retain)
        torch.autograd.backward(loss)
        value = float(loss.detach()) if state.step < 2 else math.nan
        return StepOutcome(total=value, components={"retain_ce": value})


@pytest.mark.slow
def test_no_op_leaves_the_model_and_the_caller_untouched(
    embedded: tuple[PreTrainedModel, PreTrainedTokenizerFast],
    defence_data: DefenceData,
    no_op: type[Defence],
) -> None:
    model, tokenizer = embedded
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = no_op().apply(model, tokenizer, defence_data, DefenceConfig(steps=3))
    assert result.model is not model
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, before[key])
        assert torch.equal(model.state_dict()[key], before[key])
    assert len(result.record.curve) == 3
    assert result.record.data == defence_data.fingerprints()


@pytest.mark.slow
def test_divergence_stops_before_the_bad_step(
    embedded: tuple[PreTrainedModel, PreTrainedTokenizerFast], defence_data: DefenceData
) -> None:
    model, tokenizer = embedded
    result = _Exploding().apply(model, tokenizer, defence_data, DefenceConfig(steps=5))
    assert result.record.diverged_at == 2
    assert len(result.record.curve) == 2
    assert "not finite" in (result.record.divergence_reason or "")
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


@pytest.mark.slow
def test_same_seed_same_curve_and_record_roundtrip(
    embedded: tuple[PreTrainedModel, PreTrainedTokenizerFast],
    defence_data: DefenceData,
    tmp_path: Path,
) -> None:
    model, tokenizer = embedded
    defence = get("adversarial-loss")
    config = defence.configure(steps=4, seed=3)
    first = defence.apply(model, tokenizer, defence_data, config)
    second = defence.apply(model, tokenizer, defence_data, config)
    assert first.record.curve == second.record.curve
    other = defence.apply(model, tokenizer, defence_data, defence.configure(steps=4, seed=4))
    assert other.record.curve != first.record.curve
    path = first.record.save(tmp_path / "record.json")
    loaded = DefenceRecord.load(path)
    assert loaded == first.record
    assert loaded.hyperparameters["alpha"] == 0.1
    assert set(loaded.curve[0].components) == {"refusal_ce", "harmful_ce_differing", "retain_ce"}
    assert loaded.component_series("total") == [s.total for s in loaded.curve]
    with pytest.raises(HftaInputError, match="no component"):
        loaded.component_series("nope")


def test_record_load_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"defence": "x"}')
    with pytest.raises(HftaInputError, match="not a defence record"):
        DefenceRecord.load(path)
    with pytest.raises(HftaInputError, match="not found"):
        DefenceRecord.load(tmp_path / "missing.json")


def test_apply_rejects_another_defences_config(
    embedded: tuple[PreTrainedModel, PreTrainedTokenizerFast], defence_data: DefenceData
) -> None:
    model, tokenizer = embedded
    with pytest.raises(HftaInputError, match="expected a VaccineConfig"):
        get("vaccine").apply(model, tokenizer, defence_data, get("tar").Config())
    with pytest.raises(HftaInputError, match="exceeds the model's context"):
        get("vaccine").apply(
            model, tokenizer, defence_data, get("vaccine").configure(max_length=999)
        )
