"""The fast teacher-forced scoring gives the model's own numbers bit for bit.

``empirical.measurement.scoring`` computes a GPT-2's logits only where the proxies read them
(the last block from the first supervised position on, the prompt prefix that rows share
once per distinct prefix), and ``score_packed`` scores with it. The ground truth is the path
it replaced, kept here as ``reference_scores``: the model's own forward pass
(``model(input_ids, attention_mask).logits``) over the same packed passes, the same
arg-max and cross-entropy.

* At θ_0 and after 30 attack steps, every per-example array (exact flags, summed token
  cross-entropies, token counts) and every teacher-forced proxy's per-example values (exact
  harm, sampled harm, task accuracy, reference loss) are equal (``==``), and the fast path
  was taken (a shared prefix and a sliced last block on every pass, each kind checked once).
* ``gpt2_logits`` equals the model's logits at the computed positions on every pass.
* ``encode_for_scoring`` and the plans are data-only: each row's shared prefix is its
  representative's.

Negative controls: a one-ulp change of one weight of the last block's MLP changes the fast
logits (so ``==`` can fail on one bit where only the scored positions are computed); rows
given another row's prefix (a wrong prefix map) get other logits; a last block sliced to 2
query rows (below ``MIN_QUERY_ROWS``) gets other bits on this machine; a fast path that is
wrong is caught by the first-use check and the model's own logits are returned, and one
wrong only at another pass size is caught at that size's first use; a model with a hook or
in training mode is not given the fast path.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import empirical.measurement.scoring as scoring
from empirical.datasets.data import Example
from empirical.datasets.text import IGNORE_INDEX
from empirical.engine.attack import AttackConfig, attack, resolve_data
from empirical.measurement.hvp import evaluation_mode
from empirical.measurement.proxies import (
    EncodedSet,
    PackedSets,
    TeacherForced,
    _classes_first,
    context_length,
    encode_for_scoring,
    exact_harm,
    pack_for_scoring,
    reference_loss,
    sampled_harm,
    score_packed,
    task_accuracy,
)
from empirical.measurement.scoring import (
    MIN_QUERY_ROWS,
    ScoringPass,
    attention_bias,
    fast_path_supported,
    gpt2_logits,
    scored_logits,
)
from empirical.models.model import load_model
from tests.markers import EMBEDDED_SLOW

pytestmark = EMBEDDED_SLOW

Setting = tuple[nn.Module, nn.Module, list[Example], list[Example], EncodedSet, EncodedSet]


def reference_scores(model: nn.Module, packed: PackedSets) -> tuple[TeacherForced, ...]:
    """``score_packed`` as it was before the fast path: the model's own forward pass."""
    total = sum(packed.sizes)
    exact = np.zeros(total, dtype=bool)
    loss_sum = np.zeros(total, dtype=np.float64)
    tokens = np.zeros(total, dtype=np.int64)
    with evaluation_mode(model), torch.inference_mode():
        for group in packed.groups:
            for plan in group.passes:
                rows = slice(plan.begin, plan.end)
                predicted = model(
                    input_ids=group.input_ids[rows], attention_mask=group.attention_mask[rows]
                ).logits
                targets = group.targets[rows]
                supervised = targets != IGNORE_INDEX
                hits = (predicted.argmax(dim=-1) == targets) | ~supervised
                token_loss = nn.functional.cross_entropy(
                    predicted.transpose(1, 2).float(),
                    targets,
                    ignore_index=IGNORE_INDEX,
                    reduction="none",
                )
                where = group.origin[rows]
                exact[where] = hits.all(dim=1).numpy()
                loss_sum[where] = (token_loss * supervised).sum(dim=1).double().numpy()
                tokens[where] = supervised.sum(dim=1).numpy()
    bounds = np.cumsum((0, *packed.sizes))
    return tuple(
        TeacherForced(exact[a:b], loss_sum[a:b], tokens[a:b]) for a, b in itertools.pairwise(bounds)
    )


def assert_equal(got: TeacherForced, want: TeacherForced) -> None:
    assert np.array_equal(got.exact, want.exact)
    assert np.array_equal(got.tokens, want.tokens)
    assert np.array_equal(got.loss_sum, want.loss_sum)  # bit for bit


def passes(packed: PackedSets) -> Iterator[tuple[Tensor, Tensor, ScoringPass]]:
    for group in packed.groups:
        for plan in group.passes:
            rows = slice(plan.begin, plan.end)
            yield group.input_ids[rows], group.attention_mask[rows], plan


def first_computed(plan: ScoringPass, length: int) -> int:
    return max(plan.shared, min(plan.scored_from, length - MIN_QUERY_ROWS))


@pytest.fixture(scope="module")
def setting() -> Setting:
    loaded, tokenizer = load_model()
    model: nn.Module = loaded
    splits = resolve_data(AttackConfig())
    attacked = attack(
        AttackConfig(budget_steps=30, eval_every=100, learning_rate=1e-3),
        model=model,
        tokenizer=tokenizer,
    ).model
    limit, cpu = context_length(model), torch.device("cpu")
    evaluation = encode_for_scoring(tokenizer, splits.evaluation, limit=limit, device=cpu)
    reference = encode_for_scoring(tokenizer, splits.reference, limit=limit, device=cpu)
    model.eval()
    attacked.eval()
    return (
        model,
        attacked,
        list(splits.evaluation),
        list(splits.reference),
        evaluation,
        reference,
    )


@pytest.fixture(scope="module")
def exact_here(setting: Setting) -> bool:
    """Whether this machine's kernels give the fast path the model's own logits on every pass
    of both models (compared directly, not through the first-use check). A row subset's bits
    are a property of the kernels: true with the vectorized kernels of AVX2 and AVX-512 CPUs
    (measured, also with ``MKL_CBWR=AVX2``), false with MKL's ``COMPATIBLE`` code path and
    torch's unvectorized kernels, where every kind of pass falls back to the model's own."""
    model, attacked, _, _, evaluation, reference = setting
    packed = pack_for_scoring([evaluation, reference])
    with torch.inference_mode():
        return all(
            torch.equal(
                gpt2_logits(candidate, ids, attention_bias(mask, torch.float32), plan),
                candidate(input_ids=ids, attention_mask=mask).logits[
                    :, first_computed(plan, int(ids.shape[1])) :
                ],
            )
            for candidate in (model, attacked)
            for ids, mask, plan in passes(packed)
        )


def needs_exact_fast_path(exact_here: bool) -> None:
    """Skip a test of the fast path itself where the kernels never let it be taken (the
    scores are still the model's own: ``test_fast_scores_equal_the_models_own_bit_for_bit``)."""
    if not exact_here:
        pytest.skip("this machine's kernels give row subsets other bits: the fast path falls back")


def test_fast_scores_equal_the_models_own_bit_for_bit(setting: Setting, exact_here: bool) -> None:
    model, attacked, harmful, harmless, evaluation, reference = setting
    packed = pack_for_scoring([evaluation, reference])
    for _, _, plan in passes(packed):  # the fast path has something to skip on every pass
        assert plan.shared >= 1 and plan.scored_from >= plan.shared + 1
        assert len(plan.representatives) < (plan.end - plan.begin) // 4
    scoring._EXACT.clear()
    proxies = (exact_harm(), sampled_harm(), task_accuracy(), reference_loss())
    harm = []
    for candidate in (model, attacked):
        got = score_packed(candidate, packed)
        want = reference_scores(candidate, packed)
        harm.append(exact_harm().score(want[0], harmful))
        for got_set, want_set, examples in zip(got, want, (harmful, harmless), strict=True):
            assert_equal(got_set, want_set)
            for proxy in proxies:
                assert np.array_equal(
                    proxy.from_scores(got_set, examples), proxy.from_scores(want_set, examples)
                ), proxy.name
    # checked once per kind; the check's verdicts agree with the direct comparison
    assert scoring._EXACT and all(scoring._EXACT.values()) == exact_here
    assert harm[0] != harm[1]  # the attack moved the harm: two different models compared


def test_gpt2_logits_equal_the_models_logits_and_can_fail(
    setting: Setting, exact_here: bool
) -> None:
    needs_exact_fast_path(exact_here)
    _, attacked, _, _, evaluation, reference = setting
    packed = pack_for_scoring([evaluation, reference])
    assert fast_path_supported(attacked)
    shuffled_passes = 0
    with torch.inference_mode():
        for ids, mask, plan in passes(packed):
            start = first_computed(plan, int(ids.shape[1]))
            own = attacked(input_ids=ids, attention_mask=mask).logits[:, start:]
            bias = attention_bias(mask, torch.float32)
            assert torch.equal(gpt2_logits(attacked, ids, bias, plan), own)
            # negative control: rows given the next distinct prefix's keys and values
            wrong = (plan.prefix_of + 1) % len(plan.representatives)
            if len(plan.representatives) > 1:
                shuffled = dataclasses.replace(plan, prefix_of=wrong)
                assert not torch.equal(gpt2_logits(attacked, ids, bias, shuffled), own)
                shuffled_passes += 1
        assert shuffled_passes >= 4
        ids, mask, plan = next(passes(packed))
        # negative control: the last block sliced to 2 query rows takes other kernels here
        length = int(ids.shape[1])
        narrow = dataclasses.replace(plan, shared=0, scored_from=length - 2)
        bias = attention_bias(mask, torch.float32)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(scoring, "MIN_QUERY_ROWS", 2)
            narrow_logits = gpt2_logits(attacked, ids, bias, narrow)
        own = attacked(input_ids=ids, attention_mask=mask).logits
        assert not torch.equal(narrow_logits, own[:, length - 2 :])
        # negative control: one ulp in one weight of the last MLP changes the fast logits
        before = gpt2_logits(attacked, ids, bias, plan)
        changed: Any = load_model()[0]
        changed.eval()
        changed.load_state_dict(attacked.state_dict())
        weight = changed.transformer.h[-1].mlp.c_fc.weight
        weight[5, 7] = torch.nextafter(weight[5, 7], torch.tensor(float("inf")))
        assert not torch.equal(gpt2_logits(changed, ids, bias, plan), before)


def test_the_loss_layout_keeps_the_bits(setting: Setting, exact_here: bool) -> None:
    """The cross-entropy of the computed positions, laid out over all L positions
    (``_classes_first``), equals today's on the full logits; on the narrower tensor of the
    computed positions alone it does not (the negative control: the layout matters) where
    torch's kernels are vectorized (AVX2, AVX-512: the cross-entropy's reduction depends on
    the tensor's layout). torch's unvectorized kernels (``ATEN_CPU_CAPABILITY=default``, a CPU
    without AVX2) give the narrow tensor the same bits, so there the control has nothing to
    show; the equality above is asserted everywhere."""
    needs_exact_fast_path(exact_here)
    model, attacked, _, _, evaluation, reference = setting
    packed = pack_for_scoring([evaluation, reference])
    narrow_differs = 0
    with torch.inference_mode():
        for candidate in (model, attacked):
            for group in packed.groups:
                for plan in group.passes:
                    rows = slice(plan.begin, plan.end)
                    ids, mask, targets = (
                        group.input_ids[rows],
                        group.attention_mask[rows],
                        group.targets[rows],
                    )
                    full = candidate(input_ids=ids, attention_mask=mask).logits

                    def loss(logits: Tensor, wanted: Tensor) -> Tensor:
                        return nn.functional.cross_entropy(
                            logits, wanted, ignore_index=IGNORE_INDEX, reduction="none"
                        )

                    want = loss(full.transpose(1, 2).float(), targets)
                    sliced, first = scored_logits(candidate, ids, mask, plan)
                    assert first > 0
                    laid_out = _classes_first(sliced, first, int(targets.shape[1]))
                    assert torch.equal(loss(laid_out, targets), want)
                    narrow = loss(sliced.transpose(1, 2), targets[:, first:])
                    narrow_differs += not torch.equal(narrow, want[:, first:])
    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        assert narrow_differs >= 1, narrow_differs


def test_a_wrong_fast_path_is_caught_at_first_use(
    setting: Setting, exact_here: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_exact_fast_path(exact_here)
    model, _, _, _, evaluation, reference = setting
    packed = pack_for_scoring([evaluation, reference])
    ids, mask, plan = next(passes(packed))
    honest = scoring.gpt2_logits

    def off_by_a_bit(model: nn.Module, ids: Tensor, bias: Tensor, plan: ScoringPass) -> Tensor:
        logits = honest(model, ids, bias, plan)
        logits[0, 0, 0] = torch.nextafter(logits[0, 0, 0], torch.tensor(float("inf")))
        return logits

    monkeypatch.setattr(scoring, "gpt2_logits", off_by_a_bit)
    scoring._EXACT.clear()
    with torch.inference_mode():
        got, first = scored_logits(model, ids, mask, plan)
        assert list(scoring._EXACT.values()) == [False]
        assert first == 0 and torch.equal(got, model(input_ids=ids, attention_mask=mask).logits)
        again, first = scored_logits(model, ids, mask, plan)  # remembered: no second check
        assert first == 0 and torch.equal(again, got)
    monkeypatch.undo()
    scoring._EXACT.clear()
    with torch.inference_mode():  # the honest fast path, for contrast
        sliced, first = scored_logits(model, ids, mask, plan)
        assert first > 0 and list(scoring._EXACT.values()) == [True]
        assert torch.equal(sliced, model(input_ids=ids, attention_mask=mask).logits[:, first:])
    scoring._EXACT.clear()


def test_a_pass_of_another_size_is_checked_again(
    setting: Setting, exact_here: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel whose bits change with the number of rows (simulated: the fast path off by one
    bit on passes of another size than the first) is caught: the first-use check of one pass
    size does not speak for another, so the smaller pass of the same length, first computed
    position and shared prefix is checked and falls back to the model's own logits."""
    needs_exact_fast_path(exact_here)
    model, _, _, _, evaluation, reference = setting
    packed = pack_for_scoring([evaluation, reference])
    by_kind: dict[tuple[int, int, int], list[tuple[Tensor, Tensor, ScoringPass]]] = {}
    for ids, mask, plan in passes(packed):
        length = int(ids.shape[1])
        by_kind.setdefault((length, first_computed(plan, length), plan.shared), []).append(
            (ids, mask, plan)
        )
    same_kind = next(p for p in by_kind.values() if len({int(i.shape[0]) for i, _, _ in p}) > 1)
    big = max(same_kind, key=lambda p: int(p[0].shape[0]))
    small = min(same_kind, key=lambda p: int(p[0].shape[0]))
    honest = scoring.gpt2_logits

    def size_dependent(model: nn.Module, ids: Tensor, bias: Tensor, plan: ScoringPass) -> Tensor:
        logits = honest(model, ids, bias, plan)
        if ids.shape[0] != big[0].shape[0]:
            logits[0, 0, 0] = torch.nextafter(logits[0, 0, 0], torch.tensor(float("inf")))
        return logits

    monkeypatch.setattr(scoring, "gpt2_logits", size_dependent)
    scoring._EXACT.clear()
    try:
        with torch.inference_mode():
            _, first = scored_logits(model, *big)
            assert first > 0  # the first size passed its check
            got, first = scored_logits(model, *small)
            ids, mask, _ = small
            own = model(input_ids=ids, attention_mask=mask).logits
            assert torch.equal(got, own[:, first:]), "an unchecked pass size gave other bits"
            assert first == 0 and sorted(scoring._EXACT.values()) == [False, True]
    finally:
        scoring._EXACT.clear()


def test_plans_share_only_equal_prefixes_and_fast_path_needs_a_plain_model(
    setting: Setting,
) -> None:
    model: Any = setting[0]
    packed = pack_for_scoring([setting[4], setting[5]])
    for ids, mask, plan in passes(packed):
        chosen = plan.representatives[plan.prefix_of]
        prefix = plan.shared
        assert torch.equal(ids[chosen, :prefix], ids[:, :prefix])
        assert torch.equal(mask[chosen, :prefix], mask[:, :prefix])
        assert plan.shared <= first_computed(plan, int(ids.shape[1]))
    assert fast_path_supported(model)
    assert not fast_path_supported(nn.Linear(2, 2))
    handle = model.transformer.h[0].register_forward_hook(lambda *_: None)
    try:
        assert not fast_path_supported(model)
    finally:
        handle.remove()
    model.train()
    try:
        assert not fast_path_supported(model)
    finally:
        model.eval()


def test_a_hooked_model_is_scored_by_its_own_forward_pass(setting: Setting) -> None:
    """The fallback: the same numbers through the model's forward pass (and its hook)."""
    model, _, _, _, evaluation, _ = setting
    packed = pack_for_scoring([evaluation])
    calls: list[int] = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        (got,) = score_packed(model, packed)
    finally:
        handle.remove()
    assert len(calls) == sum(len(g.passes) for g in packed.groups)
    (want,) = reference_scores(model, packed)
    assert_equal(got, want)
