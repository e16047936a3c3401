"""The first evaluation's preparation builds the same tensors and plans as before, faster.

``empirical.measurement.proxies.encode_for_scoring`` now tokenizes a whole set in two batched
calls (prompts, responses) and builds each batch's tensors from the token lists at once
(``empirical.datasets.text.tokenize_examples`` and ``encode_tokenized``); the whole-response
check reads the same token lists instead of tokenizing the responses a third time.
``empirical.measurement.scoring.plan_pass`` counts the distinct prefixes of each length by
refining the rows' classes one column at a time instead of a ``unique`` over P-column rows.
The ground truth is the code they replaced, written out here: one tokenizer call per text,
batch by batch, one row at a time (``reference_batches``), and the ``unique``-per-length
planner (``reference_plan``).

* Every batch (``input_ids``, ``attention_mask``, ``labels``: dtype, shape and values) is
  equal on the embedded benchmark's three splits and, under hypothesis, on random examples
  (empty prompts and responses, truncation at a short limit, batch sizes 1-7) with three
  tokenizers: the character tokenizer, one with a chat template, and one that adds a special
  token in front of a text (so prompts, tokenized with special tokens, and responses,
  without, need their separate calls).
* The errors are the same ones (a prompt that leaves no room; a response cut by the limit).
* Every plan (first scored column, shared prefix length, representatives, each row's prefix)
  is equal on the embedded evaluation's passes and on random ids and masks drawn from a
  small vocabulary, so that prefixes are shared at many lengths.

Negative controls: encoding the prompts without their special token gives other tensors
(the comparison sees the two calls' difference); a planner blind to the attention mask
gives another plan on rows that differ only there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers.processors import TemplateProcessing
from torch import Tensor
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from empirical.datasets.benchmark import TOKENIZER_ALPHABET, WORD_LETTERS
from empirical.datasets.data import Example
from empirical.datasets.text import IGNORE_INDEX, format_prompt
from empirical.engine.attack import AttackConfig, resolve_data
from empirical.measurement.proxies import encode_for_scoring, pack_for_scoring
from empirical.measurement.scoring import MIN_QUERY_ROWS, ScoringPass, plan_pass
from empirical.models.model import build_char_tokenizer, load_model
from tests.markers import needs_embedded
from theory.errors import HftaInputError

CPU = torch.device("cpu")
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def plain_tokenizer() -> PreTrainedTokenizerFast:
    return build_char_tokenizer(TOKENIZER_ALPHABET)


def templated_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = build_char_tokenizer(TOKENIZER_ALPHABET + "<>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def marked_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer whose ``add_special_tokens=True`` puts ``<eos>`` before the text."""
    tokenizer = build_char_tokenizer(TOKENIZER_ALPHABET)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<eos> $A", special_tokens=[("<eos>", int(tokenizer.eos_token_id))]
    )
    return tokenizer


TOKENIZERS: dict[str, Callable[[], PreTrainedTokenizerFast]] = {
    "plain": plain_tokenizer,
    "templated": templated_tokenizer,
    "marked": marked_tokenizer,
}


def reference_encode(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    max_length: int,
    *,
    special: bool | None = None,
) -> dict[str, Tensor]:
    """``encode`` as it was: one tokenizer call per text, the tensors filled row by row.
    ``special`` overrides whether the prompts get special tokens (the negative control)."""
    pad, eos = int(tokenizer.pad_token_id), int(tokenizer.eos_token_id)  # type: ignore[arg-type]
    templated = bool(getattr(tokenizer, "chat_template", None))
    with_special = (not templated) if special is None else special
    sequences = []
    for example in examples:
        prompt = format_prompt(tokenizer, example.prompt)
        prompt_ids = list(tokenizer(prompt, add_special_tokens=with_special)["input_ids"])
        response = tokenizer(example.response, add_special_tokens=False)["input_ids"]
        if len(prompt_ids) >= max_length:
            raise HftaInputError("no room")
        sequences.append(([*prompt_ids, *response, eos][:max_length], len(prompt_ids)))
    length = max(len(ids) for ids, _ in sequences)
    input_ids = torch.full((len(sequences), length), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    labels = torch.full((len(sequences), length), IGNORE_INDEX, dtype=torch.long)
    for row, (ids, prompt_length) in enumerate(sequences):
        tensor = torch.tensor(ids, dtype=torch.long)
        input_ids[row, : len(ids)] = tensor
        attention_mask[row, : len(ids)] = 1
        labels[row, prompt_length : len(ids)] = tensor[prompt_length:]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def reference_batches(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    limit: int,
    batch_size: int,
    *,
    special: bool | None = None,
) -> list[dict[str, Tensor]]:
    """``encode_for_scoring``'s batches as they were: ``encode`` of each slice on its own."""
    return [
        reference_encode(tokenizer, examples[start : start + batch_size], limit, special=special)
        for start in range(0, len(examples), batch_size)
    ]


def same_batches(got: Sequence[dict[str, Tensor]], want: Sequence[dict[str, Tensor]]) -> bool:
    return len(got) == len(want) and all(
        set(g) == set(w) and all(g[k].dtype == w[k].dtype and torch.equal(g[k], w[k]) for k in w)
        for g, w in zip(got, want, strict=True)
    )


phrases = st.text(alphabet=WORD_LETTERS + " =", min_size=0, max_size=10)
examples = st.builds(
    Example, prompt=phrases, response=phrases, category=st.just("c"), is_safe=st.booleans()
)


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(examples, min_size=1, max_size=12),
    limit=st.integers(min_value=2, max_value=30),
    batch_size=st.integers(min_value=1, max_value=7),
    name=st.sampled_from(sorted(TOKENIZERS)),
)
def test_batches_equal_the_per_text_encoding(
    items: list[Example], limit: int, batch_size: int, name: str
) -> None:
    tokenizer = TOKENIZERS[name]()
    try:
        want = reference_batches(tokenizer, items, limit, batch_size)
    except HftaInputError:
        with pytest.raises(HftaInputError, match="no room for a response"):
            encode_for_scoring(
                tokenizer, items, limit=limit, device=CPU, batch_size=batch_size,
                whole_responses=False,
            )  # fmt: skip
        return
    got = encode_for_scoring(
        tokenizer, items, limit=limit, device=CPU, batch_size=batch_size, whole_responses=False
    )
    assert same_batches(got.batches, want)
    cut = [
        i
        for i, b in enumerate(want)
        for row in range(int(b["labels"].shape[0]))
        if int((b["labels"][row] != IGNORE_INDEX).sum())
        < len(
            tokenizer(items[i * batch_size + row].response, add_special_tokens=False)["input_ids"]
        )
        + 1
    ]
    if cut:  # a cut response: refused when responses must be whole
        with pytest.raises(HftaInputError, match="exceed the model's context"):
            encode_for_scoring(tokenizer, items, limit=limit, device=CPU, batch_size=batch_size)
    else:
        whole = encode_for_scoring(tokenizer, items, limit=limit, device=CPU, batch_size=batch_size)
        assert same_batches(whole.batches, want)


def test_edge_cases_and_the_negative_control() -> None:
    items = [
        Example(prompt="copy abc=", response="", category="c", is_safe=True),
        Example(prompt="", response="abc", category="c", is_safe=False),
        Example(prompt="next abcde=", response="bcdef", category="c", is_safe=False),
    ]
    for name, make in TOKENIZERS.items():
        tokenizer = make()
        longest = max(len(reference_encode(tokenizer, [e], 64)["labels"][0]) for e in items)
        for limit in (longest - 4, longest - 1, 64):  # responses cut, then whole
            got = encode_for_scoring(
                tokenizer, items, limit=limit, device=CPU, batch_size=2, whole_responses=False
            )
            assert same_batches(got.batches, reference_batches(tokenizer, items, limit, 2)), name
    marked = marked_tokenizer()
    got = encode_for_scoring(marked, items, limit=64, device=CPU, batch_size=2)
    assert same_batches(got.batches, reference_batches(marked, items, 64, 2))
    # negative control: prompts tokenized without their special token are other tensors
    assert not same_batches(got.batches, reference_batches(marked, items, 64, 2, special=False))
    long_prompt = [Example(prompt="copy abcdefgh=", response="x", category="c", is_safe=True)]
    with pytest.raises(HftaInputError, match="example 0: prompt has 15 tokens"):
        encode_for_scoring(marked_tokenizer(), long_prompt, limit=14, device=CPU)
    with pytest.raises(HftaInputError, match=r"example 2: .*\(3 response token\(s\) cut\)"):
        encode_for_scoring(plain_tokenizer(), items, limit=14, device=CPU)


def reference_plan(
    input_ids: Tensor, attention_mask: Tensor, targets: Tensor, begin: int, end: int
) -> ScoringPass:
    """``plan_pass`` as it was: a ``unique`` over the P-column prefixes for every P."""
    ids, mask = input_ids[begin:end], attention_mask[begin:end]
    rows, length = (int(n) for n in ids.shape)
    columns = (targets[begin:end] != IGNORE_INDEX).any(dim=0).nonzero()
    scored_from = int(columns[0]) if len(columns) else length
    none = torch.zeros(0, dtype=torch.long)
    best = (rows * length, 0, none, none)
    for prefix in range(1, min(scored_from, length - MIN_QUERY_ROWS) + 1):
        keys = torch.cat((ids[:, :prefix], mask[:, :prefix].to(ids.dtype)), dim=1)
        distinct, prefix_of = torch.unique(keys, dim=0, return_inverse=True)
        if int(distinct.shape[0]) * length >= best[0]:
            break
        cost = int(distinct.shape[0]) * length + rows * (length - prefix)
        if cost < best[0]:
            first = torch.full((int(distinct.shape[0]),), rows)
            first.scatter_reduce_(0, prefix_of, torch.arange(rows), reduce="amin")
            best = (cost, prefix, first, prefix_of)
    return ScoringPass(begin, end, scored_from, best[1], best[2], best[3])


def same_plan(got: ScoringPass, want: ScoringPass) -> bool:
    return (
        (got.begin, got.end, got.scored_from, got.shared)
        == (want.begin, want.end, want.scored_from, want.shared)
        and torch.equal(got.representatives, want.representatives)
        and torch.equal(got.prefix_of, want.prefix_of)
    )


@settings(max_examples=120, deadline=None)
@given(
    rows=st.integers(min_value=1, max_value=24),
    length=st.integers(min_value=1, max_value=14),
    vocabulary=st.integers(min_value=1, max_value=4),
    kinds=st.integers(min_value=1, max_value=6),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_plans_equal_the_unique_per_length_planner(
    rows: int, length: int, vocabulary: int, kinds: int, seed: int
) -> None:
    """Rows drawn from ``kinds`` id patterns and ``kinds`` mask patterns (so prefixes and
    masks repeat) with a few ids changed at random, supervised from a random column in
    their second half on (a response after its prompt)."""
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.randint(0, vocabulary, (kinds, length), generator=generator) + 7
    ids = patterns[torch.randint(0, kinds, (rows,), generator=generator)]
    ids = torch.where(
        torch.rand(rows, length, generator=generator) < 0.1,
        torch.randint(7, 7 + vocabulary, (rows, length), generator=generator),
        ids,
    )
    masks = torch.randint(0, 2, (kinds, length), generator=generator)
    masks[0] = 1
    mask = masks[torch.randint(0, kinds, (rows,), generator=generator)]
    prompts = torch.randint(length // 2, length + 1, (rows, 1), generator=generator)
    targets = torch.where(torch.arange(length) >= prompts, ids, IGNORE_INDEX)  # responses
    begin = int(torch.randint(0, rows, (1,), generator=generator))
    got = plan_pass(ids, mask, targets, begin, rows)
    assert same_plan(got, reference_plan(ids, mask, targets, begin, rows))


def test_a_mask_blind_planner_is_caught() -> None:
    """Rows equal in their ids and different in their attention masks (left-padding-like
    patterns in columns 0-2) share no prefix; blind to the mask, all 8 would share one."""
    ids = torch.full((8, 12), 9)
    mask = torch.ones(8, 12, dtype=torch.long)
    for row in range(8):
        for column in range(3):
            mask[row, column] = (row >> column) & 1
    targets = torch.full((8, 12), IGNORE_INDEX)
    targets[:, 9:] = 9
    got = plan_pass(ids, mask, targets, 0, 8)
    assert same_plan(got, reference_plan(ids, mask, targets, 0, 8))
    assert got.shared == 0
    blind = reference_plan(ids, torch.ones_like(mask), targets, 0, 8)
    assert blind.shared == 8 and not same_plan(got, blind)


@pytest.mark.slow
@needs_embedded
def test_the_embedded_benchmark_encodes_and_plans_as_before() -> None:
    model, tokenizer = load_model()
    limit = int(model.config.n_positions)
    splits = resolve_data(AttackConfig())
    sets = []
    for items in (splits.evaluation, splits.reference, splits.attack):
        for batch_size in (64, 7):
            got = encode_for_scoring(
                tokenizer, items, limit=limit, device=CPU, batch_size=batch_size
            )
            assert same_batches(got.batches, reference_batches(tokenizer, items, limit, batch_size))
            if batch_size == 64:
                sets.append(got)
    packed = pack_for_scoring(sets[:2])
    plans = [(group, plan) for group in packed.groups for plan in group.passes]
    assert len(plans) >= 4 and any(plan.shared > 0 for _, plan in plans)
    for group, plan in plans:
        want = reference_plan(
            group.input_ids, group.attention_mask, group.targets, plan.begin, plan.end
        )
        assert same_plan(plan, want)
