"""Packed teacher-forced scoring gives the per-batch passes' numbers bit for bit.

``empirical.measurement.proxies.pack_for_scoring`` regroups the evaluation and reference sets'
cached batches by padded length, drops the last input column and scores them in a few large
passes (``score_packed``); the attack's ``Evaluator`` scores both sets that way. The ground
truth is the computation it replaced, written out in ``benchmarks.engine_bench``
(``per_batch_scores``, which the benchmark times against it): one forward pass per cached
batch of 64 with all its columns, the logits of every position but the last. ``score_packed``
now computes a GPT-2's logits only where they are scored (``empirical.measurement.scoring``,
tested against the model's own passes in tests/empirical/test_scoring.py), so these tests
hold that path to the per-batch numbers too.

* On θ_0 and on an attacked model, every per-example array (exact flags, summed token
  cross-entropies, token counts) is equal (``==``, not approximately).
* A whole attack (sampled harm: a continuous, bit-sensitive proxy) records the same harm and
  capability columns as the same attack whose proxies are the per-batch computation.
* The loop's step columns (loss, gradient norm, update norm, distance) equal a plain loop's
  (``clip_grad_norm_`` at every step, fresh vectors), on an attack where some steps clip
  and some do not: skipping the multiplication by a clipping factor of 1 and reusing the
  loop's buffers change no bit.

Negative controls: one weight moved by one unit in the last place changes the per-batch
numbers, so the ``==`` comparisons can fail on a single flipped bit; the plain loop without
clipping records other update norms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import pytest
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from benchmarks.engine_bench import per_batch_scores as per_batch
from benchmarks.engine_bench import plain_parts
from empirical.datasets.data import Example
from empirical.engine.attack import AttackConfig, attack, resolve_data
from empirical.measurement.proxies import (
    CapabilityProxy,
    EncodedSet,
    HarmProxy,
    TeacherForced,
    context_length,
    encode_for_scoring,
    pack_for_scoring,
    sampled_harm,
    score_packed,
    task_accuracy,
)
from empirical.models.model import load_model
from tests.markers import EMBEDDED_SLOW

pytestmark = EMBEDDED_SLOW

torch.set_num_threads(1)


def assert_equal(got: TeacherForced, want: TeacherForced) -> None:
    assert np.array_equal(got.exact, want.exact)
    assert np.array_equal(got.tokens, want.tokens)
    assert np.array_equal(got.loss_sum, want.loss_sum)  # bit for bit


class PerBatch:
    """A proxy (not a ``TeacherForcedProxy``: the evaluator calls it) that scores the way
    the evaluator did before packing, then applies ``inner``'s formula."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.name = cast("HarmProxy", inner).name
        self.higher_is_better = cast("HarmProxy", inner).higher_is_better

    def per_example(
        self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example]
    ) -> np.ndarray:
        encoded = encode_for_scoring(
            tokenizer, examples, limit=context_length(model), device=torch.device("cpu")
        )
        values: np.ndarray = self.inner.from_scores(  # type: ignore[attr-defined]
            per_batch(model, encoded), examples
        )
        return values

    def __call__(
        self, model: nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example]
    ) -> float:
        return float(self.per_example(model, tokenizer, examples).mean())


@pytest.fixture(scope="module")
def setting() -> tuple[nn.Module, PreTrainedTokenizerBase, EncodedSet, EncodedSet]:
    model, tokenizer = load_model()
    splits = resolve_data(AttackConfig())
    limit, cpu = context_length(model), torch.device("cpu")
    evaluation = encode_for_scoring(tokenizer, splits.evaluation, limit=limit, device=cpu)
    reference = encode_for_scoring(tokenizer, splits.reference, limit=limit, device=cpu)
    return model, tokenizer, evaluation, reference


def test_packed_scores_equal_the_per_batch_passes_bit_for_bit(
    setting: tuple[nn.Module, PreTrainedTokenizerBase, EncodedSet, EncodedSet],
) -> None:
    model, tokenizer, evaluation, reference = setting
    lengths = {int(b["input_ids"].shape[1]) for b in reference.batches}
    assert len(lengths) > 1  # the reference set mixes padded lengths: the grouping is tested
    attacked = attack(
        AttackConfig(budget_steps=30, eval_every=100, learning_rate=1e-3),
        model=model,
        tokenizer=tokenizer,
    ).model
    packed = pack_for_scoring([evaluation, reference])
    assert len(packed.groups) == len(lengths | {int(evaluation.batches[0]["input_ids"].shape[1])})
    for candidate in (model, attacked):
        got_evaluation, got_reference = score_packed(candidate, packed)
        assert_equal(got_evaluation, per_batch(candidate, evaluation))
        assert_equal(got_reference, per_batch(candidate, reference))
    # negative control: a one-ulp change of one weight changes the per-batch numbers
    before = per_batch(attacked, evaluation)
    with torch.no_grad():
        weight = next(attacked.parameters())  # the token embeddings
        weight[3, 0] = torch.nextafter(weight[3, 0], torch.tensor(float("inf")))
    assert not np.array_equal(per_batch(attacked, evaluation).loss_sum, before.loss_sum)


def test_attack_records_the_per_batch_numbers(
    setting: tuple[nn.Module, PreTrainedTokenizerBase, EncodedSet, EncodedSet],
) -> None:
    model, tokenizer, _, _ = setting
    config = AttackConfig(
        budget_steps=40, eval_every=5, harm_proxy="sampled_harm", learning_rate=1e-3
    )
    packed = attack(config, model=model, tokenizer=tokenizer).trajectory
    reference = attack(
        config,
        model=model,
        tokenizer=tokenizer,
        harm_proxy=cast("HarmProxy", PerBatch(sampled_harm())),
        capability_proxy=cast("CapabilityProxy", PerBatch(task_accuracy())),
    ).trajectory
    harms = [e.harm for e in packed.evaluations]
    assert len(set(harms)) > 5  # the harm moves: a continuous column, compared bit for bit
    assert harms == [e.harm for e in reference.evaluations]
    assert [e.capability for e in packed.evaluations] == [
        e.capability for e in reference.evaluations
    ]
    assert packed.to_columns() == reference.to_columns()  # every recorded column


def plain_loop(
    config: AttackConfig, model: nn.Module, tokenizer: PreTrainedTokenizerBase, *, clip: bool
) -> dict[str, list[float]]:
    """The attack's recorded step columns as a plain loop computes them: ``clip_grad_norm_``
    (multiplying by the clamped factor at every step), a fresh θ vector and fresh differences
    at every step."""
    from empirical.engine.attack import deterministic, flat_parameters, without_kv_cache
    from empirical.measurement.hvp import causal_lm_loss

    device = torch.device("cpu")
    columns: dict[str, list[float]] = {
        "train_loss": [], "grad_norm": [], "update_norm": [], "distance_from_start": []
    }
    with deterministic(config.seed, device):
        model, parameters, stream, optimizer, scheduler = plain_parts(config, model, tokenizer)
        start = previous = flat_parameters(parameters)
        model.train()
        with without_kv_cache(model):
            for _ in range(config.budget_steps):
                loss = causal_lm_loss(model, next(stream))
                torch.autograd.backward(loss)
                grads = [p.grad for p in parameters if p.grad is not None]
                if clip:
                    assert config.max_grad_norm is not None
                    norm = torch.nn.utils.clip_grad_norm_(
                        parameters, config.max_grad_norm, foreach=True
                    )
                else:
                    norm = torch.nn.utils.get_total_norm(grads, foreach=True)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                current = flat_parameters(parameters)
                columns["train_loss"].append(float(loss.detach()))
                columns["grad_norm"].append(float(norm))
                columns["update_norm"].append(float((current - previous).norm()))
                columns["distance_from_start"].append(float((current - start).norm()))
                previous = current
    return columns


def test_the_loop_records_what_a_plain_loop_computes(
    setting: tuple[nn.Module, PreTrainedTokenizerBase, EncodedSet, EncodedSet],
) -> None:
    """The loop clips only where the factor is below 1 and reuses its buffers; its columns
    equal a plain loop's bit for bit, on an attack where some steps clip and some do not."""
    model, tokenizer, _, _ = setting
    config = AttackConfig(budget_steps=30, eval_every=100, learning_rate=1e-3, max_grad_norm=5.0)
    trajectory = attack(config, model=model, tokenizer=tokenizer).trajectory
    plain = plain_loop(config, model, tokenizer, clip=True)
    norms = plain["grad_norm"]
    assert any(n > 5.0 for n in norms) and any(n < 5.0 for n in norms)  # both paths taken
    recorded = trajectory.to_columns()
    for name in ("train_loss", "grad_norm", "update_norm"):
        assert recorded[name][:-1] == plain[name], name  # step s = 0 … n−1
    assert recorded["distance_from_start"][1:] == plain["distance_from_start"]  # θ_1 … θ_n
    # negative control: without clipping the same comparison fails
    unclipped = plain_loop(config, model, tokenizer, clip=False)
    assert trajectory.to_columns()["update_norm"][:-1] != unclipped["update_norm"]
