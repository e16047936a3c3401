"""Bring your own model and data: LoRA targets from the architecture, attacks on the user's
files, on locally built Llama- and GPT-NeoX-architecture models (not only GPT-2).

The models are random-init, built here with the embedded character tokenizer; the data files
are the user's (written here in BeaverTails form, docs/data.md): a made-up "reverse a word"
skill stands for the harmful one, copying a word for the harmless reference (no harmful text).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

from empirical.engine.attack import AttackConfig, LoraSettings, attack
from empirical.engine.lora import (
    AUTO,
    linear_module_names,
    model_type_of,
    resolve_target_modules,
    target_modules_for_type,
)
from empirical.models.model import load_model, save_model
from empirical.testing import strategies as hst
from theory.errors import HftaInputError

LETTERS = "abcdefghij"


def _build(kind: str, directory: Path) -> Path:
    _, tokenizer = load_model(None)
    torch.manual_seed(0)
    if kind == "llama":
        model: torch.nn.Module = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.eos_token_id,
        ))
    else:
        model = GPTNeoXForCausalLM(GPTNeoXConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.eos_token_id,
        ))
    save_model(model, tokenizer, directory)  # type: ignore[arg-type]
    return directory


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {kind: _build(kind, root / kind) for kind in ("llama", "gpt_neox")}


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def user_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three files, one per data role, disjoint words."""
    rng = random.Random(0)
    words = sorted({"".join(rng.choice(LETTERS) for _ in range(5)) for _ in range(400)})
    rng.shuffle(words)
    root = tmp_path_factory.mktemp("data")

    def rows(chunk: list[str], skill: str, safe: bool) -> list[dict[str, object]]:
        return [
            {"prompt": f"{skill} {w}=", "response": w[::-1] if skill == "rev" else w,
             "category": skill, "is_safe": safe}
            for w in chunk
        ]

    return {
        "attack": _write(root / "attack.jsonl", rows(words[:64], "rev", False)),
        "evaluation": _write(root / "evaluation.jsonl", rows(words[64:96], "rev", False)),
        "reference": _write(root / "reference.jsonl", rows(words[96:128], "copy", True)),
    }


# --------------------------------------------------------------------------- inference
def test_targets_follow_peft_per_architecture(models: dict[str, Path]) -> None:
    llama, _ = load_model(models["llama"])
    neox, _ = load_model(models["gpt_neox"])
    gpt2, _ = load_model(None)
    assert resolve_target_modules(llama, AUTO) == target_modules_for_type("llama")
    assert resolve_target_modules(llama) == ("q_proj", "v_proj")
    assert resolve_target_modules(neox, AUTO) == ("query_key_value",)
    # GPT-2 keeps the toolkit's targets (peft alone would adapt c_attn only); the default
    # settings ask for "auto", so every architecture gets its own targets
    assert LoraSettings().target_modules == AUTO
    assert resolve_target_modules(gpt2, AUTO) == ("c_attn", "c_proj")
    assert resolve_target_modules(llama, LoraSettings().target_modules) == ("q_proj", "v_proj")
    assert model_type_of(models["gpt_neox"]) == "gpt_neox"
    assert model_type_of(models["llama"] / "nowhere") is None


def test_explicit_targets_are_kept_and_checked(models: dict[str, Path]) -> None:
    llama, _ = load_model(models["llama"])
    assert resolve_target_modules(llama, ("q_proj", "k_proj", "o_proj")) == (
        "q_proj", "k_proj", "o_proj"
    )
    with pytest.raises(HftaInputError, match=r"\['c_attn'\] not found.*'q_proj'"):
        resolve_target_modules(llama, ("q_proj", "c_attn"))


def test_an_architecture_without_a_peft_default_gets_every_linear_but_the_head() -> None:
    class Config:
        model_type = "made_up_architecture"

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = Config()
            self.mix = torch.nn.Linear(4, 4)
            self.gate = torch.nn.Linear(4, 4)
            self.head = torch.nn.Linear(4, 9)

        def get_output_embeddings(self) -> torch.nn.Module:
            return self.head

    assert target_modules_for_type("made_up_architecture") is None
    assert resolve_target_modules(Tiny()) == ("gate", "mix")
    assert linear_module_names(Tiny()) == ("gate", "mix")


@pytest.mark.negative_control
def test_gpt2_names_on_llama_are_refused_as_before(models: dict[str, Path]) -> None:
    llama, _ = load_model(models["llama"])
    with pytest.raises(HftaInputError, match="not found"):
        gpt2_names = LoraSettings(target_modules=("c_attn", "c_proj")).target_modules
        resolve_target_modules(llama, gpt2_names)


# --------------------------------------------------------------------------- real attacks
def _adapter_parameters(model: torch.nn.Module, targets: tuple[str, ...], r: int) -> int:
    """r·(in + out) per adapted linear layer: LoRA's A (r × in) and B (out × r)."""
    total = 0
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in targets and isinstance(module, torch.nn.Linear):
            total += r * (module.in_features + module.out_features)
    return total


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama", "gpt_neox"])
def test_a_lora_attack_on_a_local_model_with_the_users_data(
    kind: str, models: dict[str, Path], user_data: dict[str, Path]
) -> None:
    config = AttackConfig(
        model=models[kind], data=user_data["attack"], evaluation_data=user_data["evaluation"],
        reference_data=user_data["reference"], method="lora",
        lora=LoraSettings(r=2, alpha=4, target_modules=AUTO), optimizer="adamw",
        learning_rate=1e-2, budget_steps=6, eval_every=3, batch_size=8, seed=0,
    )
    trajectory = attack(config).trajectory
    base, _ = load_model(models[kind])
    targets = resolve_target_modules(base, AUTO)
    assert trajectory.trainable_parameters == _adapter_parameters(base, targets, 2)
    assert trajectory.n_steps == 6 and not trajectory.diverged
    resolved = trajectory.config["resolved"]
    assert resolved["evaluation_examples"] == 32  # the user's evaluation file, not the benchmark
    assert trajectory.train_loss[-1] is not None and trajectory.train_loss[0] is not None
    assert trajectory.train_loss[-1] < trajectory.train_loss[0]  # it trained on the user's data


@pytest.mark.slow
def test_attack_configs_use_the_users_model_and_data(
    models: dict[str, Path], user_data: dict[str, Path]
) -> None:
    """The README's property-test snippet on a Llama-architecture model with the user's data."""
    seen: list[AttackConfig] = []

    @settings(max_examples=3, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(config=hst.attack_configs(
        model=models["llama"], data=user_data["attack"],
        evaluation_data=user_data["evaluation"], reference_data=user_data["reference"],
        methods=("lora",), budget=(2, 3), batch_sizes=(4,), probe_size=4,
    ))
    def run(config: AttackConfig) -> None:
        seen.append(config)
        assert config.lora.target_modules == ("q_proj", "v_proj")
        assert config.data == user_data["attack"]
        trajectory = attack(config).trajectory
        assert trajectory.config["resolved"]["evaluation_examples"] == 32
        assert trajectory.n_steps == config.budget_steps

    run()
    assert seen


def test_every_example_file_in_docs_data_md_loads(tmp_path: Path) -> None:
    """docs/data.md's example rows are valid data files (``load_examples``)."""
    import re

    from empirical.datasets.data import load_examples

    text = (Path(__file__).parents[2] / "docs" / "data.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    assert len(blocks) >= 7  # one per role
    for index, block in enumerate(blocks):
        path = tmp_path / f"role{index}.jsonl"
        path.write_text(block, encoding="utf-8")
        examples = load_examples(path)
        assert len(examples) == len(block.strip().splitlines())
    broken = tmp_path / "broken.jsonl"  # negative control: a row without is_safe is refused
    broken.write_text('{"prompt": "rev abc=", "response": "cba", "category": "rev"}\n')
    with pytest.raises(HftaInputError, match="is_safe"):
        load_examples(broken)


@pytest.mark.slow
def test_the_readme_property_snippet_on_a_llama_with_the_users_data(
    models: dict[str, Path], user_data: dict[str, Path]
) -> None:
    """README's "run the properties against your own model" snippet, with ``data=``, on a
    Llama-architecture model: attacks with β and G measured on the path obey every bound."""
    from empirical import certify

    checked: list[int] = []

    @settings(max_examples=2, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(config=hst.attack_configs(
        model=models["llama"], data=user_data["attack"],
        evaluation_data=user_data["evaluation"], reference_data=user_data["reference"],
        optimizers=("sgd", "adamw"), budget=(3, 4), batch_sizes=(4,), probe_size=4,
    ))
    def test_my_defence_obeys_the_bounds(config: AttackConfig) -> None:
        measured = certify.attack_and_measure(config)
        for check in measured.check_all():
            assert check.violations == 0, check
            checked.append(check.instances)

    test_my_defence_obeys_the_bounds()
    assert sum(checked) > 0
