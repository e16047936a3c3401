"""Evaluators in one process share their encoded sets and the scores of the same θ₀.

``empirical.engine.evaluation_cache``: ``SETS`` holds an evaluator's encoded and packed sets
keyed by the tokenizer's content, the examples, the limits, the device and the batch sizes;
``FIRST_SCORES`` the teacher-forced scores of an evaluator's first evaluation keyed by those
and by the exact bytes of the model's parameters and buffers. The ground truth is an
evaluator with both caches empty (the computation of every earlier release).

* A second evaluator with a freshly loaded model and tokenizer (as each attack of a
  verification has) encodes nothing and scores nothing at its first evaluation, and returns
  the numbers of an uncached evaluator, ``==``; its second evaluation is scored.
* Whole attacks: the trajectory of an attack run with both caches warm equals, field for
  field (timing aside), the one run with both empty.
* Fingerprints: equal for equal content (two loads, a deep copy), different for a tokenizer
  with another pad token, chat template or vocabulary and for a model with one weight moved
  by one unit in the last place, another thread count, another activation module or another
  attention scaling; none for a model with a forward hook or another architecture.

Negative controls: one weight moved by one ulp misses the score cache and is scored afresh,
and those scores differ from θ₀'s (so a stale hit would be seen); another batch size or
other examples miss the sets cache; the table evicts its least recently used entry.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pytest
import torch
from torch import nn

from empirical.engine import evaluation_cache
from empirical.engine.attack import AttackConfig, attack, resolve_data
from empirical.engine.evaluation_cache import (
    FIRST_SCORES,
    SETS,
    LeastRecentlyUsed,
    model_fingerprint,
    tokenizer_fingerprint,
)
from empirical.engine.evaluator import Evaluator
from empirical.measurement import proxies
from empirical.measurement.proxies import CapabilityProxy, HarmProxy, sampled_harm, task_accuracy
from empirical.models.model import load_model
from tests.markers import EMBEDDED_SLOW

pytestmark = EMBEDDED_SLOW


@pytest.fixture(autouse=True)
def empty_caches() -> Iterator[None]:
    SETS.clear()
    FIRST_SCORES.clear()
    yield
    SETS.clear()
    FIRST_SCORES.clear()


class Counted:
    """Counts the calls of a module function it replaces."""

    def __init__(self, module: object, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.wrapped = getattr(module, name)
        monkeypatch.setattr(module, name, self)

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        return self.wrapped(*args, **kwargs)


def evaluator(tokenizer: object, batch_size: int = 64, size: int = 120) -> Evaluator:
    splits = resolve_data(AttackConfig())
    return Evaluator(
        tokenizer,  # type: ignore[arg-type]
        splits.evaluation[:size],
        splits.reference[:size],
        harm_proxy=cast("HarmProxy", sampled_harm(batch_size=batch_size)),
        capability_proxy=cast("CapabilityProxy", task_accuracy()),
        max_length=1 << 30,
        device=torch.device("cpu"),
    )


def uncached(model: nn.Module, tokenizer: object) -> tuple[float | None, ...]:
    SETS.clear()
    FIRST_SCORES.clear()
    try:
        return evaluator(tokenizer)(model)
    finally:
        SETS.clear()
        FIRST_SCORES.clear()


def nudged(model: nn.Module) -> nn.Module:
    """A copy with one weight moved by one unit in the last place."""
    other: Any = copy.deepcopy(model)
    with torch.no_grad():
        weight = other.transformer.h[0].mlp.c_fc.weight
        weight[0, 0] = torch.nextafter(weight[0, 0], torch.tensor(float("inf")))
    return cast("nn.Module", other)


def test_a_second_evaluator_reuses_the_sets_and_the_first_scores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, tokenizer = load_model()
    want = uncached(model, tokenizer)
    encodes = Counted(proxies, "encode_for_scoring", monkeypatch)
    scores = Counted(proxies, "score_packed", monkeypatch)
    first = evaluator(tokenizer)
    assert first(model) == want
    assert (encodes.calls, scores.calls) == (2, 1)  # cold: both sets encoded, one scoring
    again, fresh = load_model()  # a new attack: the model and the tokenizer loaded again
    second = evaluator(fresh)
    assert second(again) == want
    assert (encodes.calls, scores.calls) == (2, 1)  # nothing encoded, nothing scored
    assert second._packed is first._packed
    cached = FIRST_SCORES.get(next(iter(FIRST_SCORES._entries)))
    assert cached is not None and cached[0] is not None
    assert not cached[0].loss_sum.flags.writeable  # shared arrays cannot be written
    assert second(again) == want and scores.calls == 2  # a later evaluation is scored
    # negative control: one ulp of one weight is another model: scored, and scored otherwise
    moved = nudged(again)
    third = evaluator(fresh)
    got = third(moved)
    assert scores.calls == 3 and encodes.calls == 2
    assert got == uncached(moved, fresh)
    assert got != want


def test_other_sets_miss_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = load_model()
    encodes = Counted(proxies, "encode_for_scoring", monkeypatch)
    evaluator(tokenizer)(model)
    evaluator(tokenizer, batch_size=32)(model)
    evaluator(tokenizer, size=100)(model)
    assert encodes.calls == 6 and len(SETS) == 3
    evaluator(tokenizer, batch_size=32)(model)
    assert encodes.calls == 6


def test_fingerprints_follow_the_content() -> None:
    model, tokenizer = load_model()
    again, fresh = load_model()
    assert tokenizer_fingerprint(tokenizer) == tokenizer_fingerprint(fresh)
    assert (
        model_fingerprint(model)
        == model_fingerprint(again)
        == model_fingerprint(copy.deepcopy(model))
    )
    assert model_fingerprint(nudged(model)) != model_fingerprint(model)
    one_thread = model_fingerprint(model)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert model_fingerprint(model) != one_thread
    finally:
        torch.set_num_threads(threads)
    block: nn.Module = cast("Any", model).transformer.h[0]
    handle = block.register_forward_hook(lambda *_: None)
    try:
        assert model_fingerprint(model) is None
    finally:
        handle.remove()
    assert model_fingerprint(nn.Linear(2, 2)) is None
    swapped: Any = copy.deepcopy(model)
    swapped.transformer.h[1].mlp.act = nn.ReLU()  # same tensors, another forward pass
    assert model_fingerprint(swapped) != model_fingerprint(model)
    rescaled: Any = copy.deepcopy(model)
    rescaled.transformer.h[0].attn.scaling *= 2.0  # a plain attribute the forward reads
    assert model_fingerprint(rescaled) != model_fingerprint(model)
    reference = tokenizer_fingerprint(fresh)
    fresh.chat_template = "{{ messages[0]['content'] }}"
    assert tokenizer_fingerprint(fresh) != reference
    _, other = load_model()
    other.pad_token = other.eos_token
    assert tokenizer_fingerprint(other) != reference
    _, grown = load_model()
    grown.add_tokens(["<extra>"])
    assert tokenizer_fingerprint(grown) != reference


def test_the_table_evicts_the_least_recently_used_entry() -> None:
    table: LeastRecentlyUsed[int] = LeastRecentlyUsed(2)
    table.put("a", 1)
    table.put("b", 2)
    assert table.get("a") == 1  # "b" is now the least recently used
    table.put("c", 3)
    assert (table.get("a"), table.get("b"), table.get("c"), len(table)) == (1, None, 3, 2)
    assert evaluation_cache.SETS.size == evaluation_cache.SETS_CACHED


def test_attacks_with_warm_caches_record_what_cold_ones_do() -> None:
    model, tokenizer = load_model()
    config = AttackConfig(budget_steps=20, eval_every=10, harm_proxy="sampled_harm")

    def run() -> dict[str, Any]:
        trajectory = attack(config, model=model, tokenizer=tokenizer).trajectory
        return trajectory.comparable()

    cold = run()
    assert len(SETS) == 1 and len(FIRST_SCORES) == 1
    scored: list[int] = []
    score_packed = proxies.score_packed

    def counted(*args: Any, **kwargs: Any) -> Any:
        scored.append(1)
        return score_packed(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(proxies, "score_packed", counted)
        warm = run()
    assert warm == cold
    assert len(scored) == 2  # steps 10 and 20 scored; theta_0's scores came from the cache
    SETS.clear()
    FIRST_SCORES.clear()
    assert run() == cold
    evaluations = cast("list[dict[str, float]]", cold["evaluations"])
    assert len(evaluations) == 3
    assert len({e["harm"] for e in evaluations}) == 3  # the harm moves with the model
    assert np.isfinite([e["harmful_loss"] for e in evaluations]).all()
