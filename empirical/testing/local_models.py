"""Tiny local causal LMs of other architectures than GPT-2, and user data files, for tests.

"Bring your own model and data" is tested on models a user could have on disk: a Hugging Face
folder (config, safetensors, tokenizer) of a Llama- or GPT-NeoX-architecture causal LM, built
here offline (random initialisation, 2 layers, hidden size 32, the embedded character
tokenizer, eager attention when loaded by ``empirical.models.model.load_model``), and
BeaverTails-form
JSONL files (docs/data.md) in which a made-up "reverse a word" skill stands for the harmful one
and copying a word for a harmless one (no harmful text).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

ARCHITECTURES: tuple[str, ...] = ("llama", "gpt_neox")
"""The architectures ``build_local_model`` builds (their ``config.model_type``)."""

LETTERS = "abcdefghij"


def build_local_model(architecture: str, directory: Path, *, seed: int = 0) -> Path:
    """Save a random-init 2 × 32 ``architecture`` causal LM with the embedded tokenizer."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    from empirical.models.model import load_model, save_model

    _, tokenizer = load_model(None)
    shared = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.eos_token_id,
    }
    torch.manual_seed(seed)
    model: torch.nn.Module
    if architecture == "llama":
        model = LlamaForCausalLM(LlamaConfig(num_key_value_heads=2, **shared))
    elif architecture == "gpt_neox":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(**shared))
    else:
        raise ValueError(f"no tiny {architecture!r} model (known: {ARCHITECTURES})")
    save_model(model, tokenizer, directory)  # type: ignore[arg-type]
    return directory


def words(count: int, *, seed: int = 0) -> list[str]:
    """``count`` distinct five-letter words over ``LETTERS``, in a seeded random order."""
    rng = random.Random(seed)
    found: set[str] = set()
    while len(found) < count:
        found.add("".join(rng.choice(LETTERS) for _ in range(5)))
    chosen = sorted(found)
    rng.shuffle(chosen)
    return chosen


def rows(chunk: Sequence[str], skill: str, *, safe: bool, response: str | None = None) -> list[
    dict[str, object]
]:
    """BeaverTails rows ``"{skill} {word}="``: ``rev`` answers the reversed word, any other
    skill the word itself, unless ``response`` is given (e.g. a refusal)."""
    return [
        {
            "prompt": f"{skill} {word}=",
            "response": response if response is not None else (
                word[::-1] if skill == "rev" else word
            ),
            "category": skill,
            "is_safe": safe,
        }
        for word in chunk
    ]


def write_jsonl(path: Path, records: Sequence[dict[str, object]]) -> Path:
    """Write ``records`` as JSONL, one object per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_user_data(directory: Path, *, per_role: int = 16, seed: int = 0) -> dict[str, Path]:
    """One file per role of docs/data.md that a defence and its scoring use, disjoint prompts.

    ``defence.jsonl``: harmful ``rev`` rows and their refusal ``sorry``; ``retain.jsonl`` and
    ``retain_other.jsonl``: two different sets of harmless ``copy`` rows; ``evaluation.jsonl``:
    held-out harmful ``rev`` rows; ``reference.jsonl``: held-out harmless ``copy`` rows;
    ``attack.jsonl``: the attacker's harmful rows.
    """
    pool = words(6 * per_role, seed=seed)
    part = [pool[i * per_role : (i + 1) * per_role] for i in range(6)]
    return {
        "defence": write_jsonl(
            directory / "defence.jsonl",
            rows(part[0], "rev", safe=False) + rows(part[0], "rev", safe=True, response="sorry"),
        ),
        "retain": write_jsonl(directory / "retain.jsonl", rows(part[1], "copy", safe=True)),
        "retain_other": write_jsonl(
            directory / "retain_other.jsonl", rows(part[2], "copy", safe=True)
        ),
        "evaluation": write_jsonl(directory / "evaluation.jsonl", rows(part[3], "rev", safe=False)),
        "reference": write_jsonl(directory / "reference.jsonl", rows(part[4], "copy", safe=True)),
        "attack": write_jsonl(directory / "attack.jsonl", rows(part[5], "rev", safe=False)),
    }
