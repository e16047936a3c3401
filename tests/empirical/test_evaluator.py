"""The attack's evaluator scores cached, once-encoded sets exactly as the uncached proxies do.

``Evaluator`` (``empirical.engine.evaluator``) tokenizes the evaluation and reference sets once and
scores them in one ``inference_mode`` pass per set, the held-out loss sharing the harm
proxy's pass. The ground truth here is the computation it replaced: tokenize each batch
again, one ``no_grad`` forward pass for the held-out loss (``mean_token_loss`` over the
whole-set encoding) and one per batch and proxy (``benchmarks.engine_bench.per_batch_scores``
on the batches encoded again, not on the evaluator's cache). The model is the
embedded one attacked until its harm lies strictly between 0 and 1, so that the harm being
compared is neither all-zero nor all-one.

Negative control: the same ground truth on the unattacked model differs from the attacked
model's recorded numbers (the comparison can fail).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.engine_bench import per_batch_scores
from empirical.datasets.data import Example
from empirical.datasets.text import encode
from empirical.engine.attack import (
    AttackConfig,
    AttackOutcome,
    Evaluator,
    attack,
    batches_of,
    encode_on,
    mean_token_loss,
    resolve_data,
)
from empirical.measurement.proxies import (
    CapabilityProxy,
    EncodedSet,
    HarmProxy,
    context_length,
    exact_harm,
    keyword_refusal,
    task_accuracy,
)
from empirical.models.model import load_model
from tests.markers import EMBEDDED_SLOW

pytestmark = EMBEDDED_SLOW

torch.set_num_threads(1)


def uncached_exact(
    model: nn.Module, tokenizer: object, examples: Sequence[Example], batch_size: int = 64
) -> np.ndarray:
    """The exact-match flags as the proxies computed them before the cache: every batch
    tokenized again, one forward pass per batch."""
    limit = context_length(model)
    batches = tuple(
        encode(tokenizer, examples[start : start + batch_size], limit)  # type: ignore[arg-type]
        for start in range(0, len(examples), batch_size)
    )
    return per_batch_scores(model, EncodedSet(tuple(examples), batches, batch_size)).exact


def uncached(
    model: nn.Module, tokenizer: object, evaluation: list[Example], reference: list[Example]
) -> tuple[float, float, float]:
    """(held-out loss, exact harm, task accuracy) the way the evaluator computed them before."""
    limit = context_length(model)
    loss = mean_token_loss(
        model,
        batches_of(encode_on(tokenizer, evaluation, limit, torch.device("cpu")), 64),  # type: ignore[arg-type]
    )
    harmful = np.array([not e.is_safe for e in evaluation])
    harm = float((uncached_exact(model, tokenizer, evaluation) & harmful).mean())
    capability = float(uncached_exact(model, tokenizer, reference).mean())
    return loss, harm, capability


@pytest.fixture(scope="module")
def attacked() -> tuple[AttackOutcome, nn.Module, object]:
    """The embedded model attacked until its harm first lies in (0.05, 0.95)."""
    model, tokenizer = load_model()
    outcome = attack(
        AttackConfig(budget_steps=200, eval_every=5),
        model=model,
        tokenizer=tokenizer,
        on_evaluation=lambda e: e.harm is not None and 0.05 < e.harm < 0.95,
    )
    assert outcome.trajectory.stopped_early, "the attack never reached an intermediate harm"
    return outcome, model, tokenizer


def test_recorded_numbers_equal_the_uncached_computation(
    attacked: tuple[AttackOutcome, nn.Module, object],
) -> None:
    outcome, _, tokenizer = attacked
    splits = resolve_data(AttackConfig())
    last = outcome.trajectory.evaluations[-1]
    loss, harm, capability = uncached(outcome.model, tokenizer, splits.evaluation,
                                      splits.reference)
    assert last.harm is not None and 0.05 < last.harm < 0.95
    assert last.harm == harm  # bit for bit: the same tensors through the same kernels
    assert last.capability == capability
    # the same token-weighted mean, summed in another order
    assert last.harmful_loss == pytest.approx(loss, rel=1e-6, abs=0.0)


def test_cached_evaluator_is_reused_and_follows_the_model(
    attacked: tuple[AttackOutcome, nn.Module, object],
) -> None:
    """One evaluator, two models: its cache holds inputs; scores are reused only at a first
    call, for the same model bytes (tests/empirical/test_evaluation_cache.py)."""
    outcome, original, tokenizer = attacked
    splits = resolve_data(AttackConfig())
    evaluator = Evaluator(
        tokenizer,  # type: ignore[arg-type]
        splits.evaluation,
        splits.reference,
        harm_proxy=cast("HarmProxy", exact_harm()),
        capability_proxy=cast("CapabilityProxy", task_accuracy()),
        max_length=context_length(original),
        device=torch.device("cpu"),
    )
    for model in (outcome.model, original, outcome.model):
        got = evaluator(model)
        want = uncached(model, tokenizer, splits.evaluation, splits.reference)
        assert got[1:] == want[1:]
        assert got[0] == pytest.approx(want[0], rel=1e-6, abs=0.0)
    # negative control: the attacked and the original model really score differently
    assert evaluator(original)[1] != evaluator(outcome.model)[1]
    assert uncached(original, tokenizer, splits.evaluation, splits.reference)[1] != (
        outcome.trajectory.evaluations[-1].harm
    )


def test_shorter_max_length_and_generic_proxies_take_their_own_path(
    attacked: tuple[AttackOutcome, nn.Module, object],
) -> None:
    """A held-out loss on truncated sequences and a decoding proxy are not shared passes."""
    outcome, _, tokenizer = attacked
    splits = resolve_data(AttackConfig())
    evaluation, reference = splits.evaluation[:40], splits.reference[:40]
    refusal = keyword_refusal(max_new_tokens=12)
    short = 12
    evaluator = Evaluator(
        tokenizer,  # type: ignore[arg-type]
        evaluation,
        reference,
        harm_proxy=cast("HarmProxy", refusal),
        capability_proxy=cast("CapabilityProxy", task_accuracy()),
        max_length=short,
        device=torch.device("cpu"),
    )
    loss, harm, capability = evaluator(outcome.model)
    truncated = mean_token_loss(
        outcome.model,
        batches_of(encode_on(tokenizer, evaluation, short, torch.device("cpu")), 64),  # type: ignore[arg-type]
    )
    assert loss == truncated
    assert harm == refusal(outcome.model, tokenizer, evaluation)  # type: ignore[arg-type]
    assert capability == float(uncached_exact(outcome.model, tokenizer, reference).mean())
    full = uncached(outcome.model, tokenizer, evaluation, reference)[0]
    assert loss != pytest.approx(full, rel=1e-6)  # the truncation did change the loss
