"""empirical.datasets.text: prompt formatting and supervised-fine-tuning tensors."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from empirical.datasets.benchmark import TOKENIZER_ALPHABET, WORD_LETTERS
from empirical.datasets.data import Example
from empirical.datasets.text import IGNORE_INDEX, encode, format_prompt
from empirical.models.model import build_char_tokenizer
from theory.errors import HftaInputError

TOKENIZER = build_char_tokenizer(TOKENIZER_ALPHABET)
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
phrases = st.text(alphabet=WORD_LETTERS + " =", min_size=1, max_size=12)
examples = st.builds(
    Example, prompt=phrases, response=phrases, category=st.just("c"), is_safe=st.booleans()
)


def _templated_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = build_char_tokenizer(TOKENIZER_ALPHABET + "<>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def supervision_is_the_response(
    tokenizer: PreTrainedTokenizerBase,
    items: Sequence[Example],
    batch: dict[str, torch.Tensor],
) -> bool:
    """The property ``encode`` promises, checked row by row on its output.

    The attended tokens are the formatted prompt, then the response, then EOS (right padding
    after them); the labels are -100 except on the response and EOS, where they equal the ids.
    """
    eos = tokenizer.eos_token_id
    for row, example in enumerate(items):
        prompt_ids = tokenizer(format_prompt(tokenizer, example.prompt))["input_ids"]
        response_ids = tokenizer(example.response, add_special_tokens=False)["input_ids"]
        expected = [*prompt_ids, *response_ids, eos]
        n = len(expected)
        mask = batch["attention_mask"][row]
        if batch["input_ids"][row, :n].tolist() != expected or mask[:n].tolist() != [1] * n:
            return False
        if mask[n:].any() or (batch["input_ids"][row, n:] != tokenizer.pad_token_id).any():
            return False
        labels = batch["labels"][row]
        wanted = [IGNORE_INDEX] * len(prompt_ids) + [*response_ids, eos]
        if labels[:n].tolist() != wanted or (labels[n:] != IGNORE_INDEX).any():
            return False
    return True


def test_format_prompt_without_template_is_the_prompt() -> None:
    assert format_prompt(TOKENIZER, "copy abcde=") == "copy abcde="


def test_format_prompt_with_template_renders_a_user_turn() -> None:
    assert format_prompt(_templated_tokenizer(), "hi") == "<user>hi<assistant>"


@given(st.lists(examples, min_size=1, max_size=6))
def test_encode_supervises_exactly_response_and_eos(items: list[Example]) -> None:
    batch = encode(TOKENIZER, items, max_length=64)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(
        t.dtype == torch.long and t.shape == batch["input_ids"].shape for t in batch.values()
    )
    assert batch["input_ids"].shape[1] == max(len(e.prompt) + len(e.response) + 1 for e in items)
    assert supervision_is_the_response(TOKENIZER, items, batch)


def test_encode_with_chat_template() -> None:
    tokenizer = _templated_tokenizer()
    items = [Example(prompt="copy ab=", response="ab", category="c", is_safe=True)]
    batch = encode(tokenizer, items, max_length=64)
    assert supervision_is_the_response(tokenizer, items, batch)
    assert tokenizer.decode(batch["input_ids"][0]) == "<user>copy ab=<assistant>ab<eos>"


@pytest.mark.negative_control
def test_negative_control_supervising_the_prompt_is_caught() -> None:
    items = [
        Example(prompt="next abc=", response="bcd", category="next", is_safe=False),
        Example(prompt="copy a=", response="a", category="copy", is_safe=True),
    ]
    batch = encode(TOKENIZER, items, max_length=64)
    assert supervision_is_the_response(TOKENIZER, items, batch)
    wrong = dict(batch)
    wrong["labels"] = torch.where(batch["attention_mask"] == 1, batch["input_ids"], IGNORE_INDEX)
    assert not supervision_is_the_response(TOKENIZER, items, wrong)
    no_eos = dict(batch)
    no_eos["labels"] = batch["labels"].masked_fill(batch["input_ids"] == 1, IGNORE_INDEX)
    assert not supervision_is_the_response(TOKENIZER, items, no_eos)


def test_long_sequences_lose_their_tail_and_prompt_must_fit() -> None:
    item = Example(prompt="copy abcde=", response="abcde", category="copy", is_safe=True)
    batch = encode(TOKENIZER, [item], max_length=13)
    assert batch["input_ids"].shape == (1, 13)
    assert batch["labels"][0, 11:].tolist() == batch["input_ids"][0, 11:].tolist()
    with pytest.raises(HftaInputError, match="example 0: prompt has 11 tokens"):
        encode(TOKENIZER, [item], max_length=11)


def test_tokenizer_without_pad_token_is_one_clear_error() -> None:
    tokenizer = build_char_tokenizer("ab")
    tokenizer.pad_token = None
    item = Example(prompt="a", response="b", category="c", is_safe=True)
    with pytest.raises(HftaInputError, match="tokenizer has no pad token"):
        encode(tokenizer, [item], max_length=8)


@pytest.mark.parametrize(("items", "length", "message"), [([], 8, "no examples"), (None, 1, "2")])
def test_bad_arguments(items: list[Example] | None, length: int, message: str) -> None:
    default = [Example(prompt="a", response="b", category="c", is_safe=True)]
    with pytest.raises(HftaInputError, match=message):
        encode(TOKENIZER, default if items is None else items, max_length=length)
