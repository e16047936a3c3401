"""The attack's lean training forward pass gives the model's own loss and gradients bit for bit.

``empirical.engine.training_forward`` computes a GPT-2's training loss as a functional pass
(transformers' operations in transformers' order) and checks each kind of batch at its first
use against the model's own forward pass. The ground truth here is the model's own forward
pass (``causal_lm_loss``) and its backward pass into ``.grad``:

* On the embedded model and the default attack's batches (16 × 17 tokens) the lean loss and
  every parameter's ``.grad`` equal the model's own (``torch.equal``), directly and through
  ``training_loss`` (whose first use is the check: it writes no ``.grad``, and the gradients
  after the caller's backward pass are the model's own), for the full model, a head-only
  model (``untie_head``) and a backward pass of loss / 2 (gradient accumulation).
* Short real attacks (default, head-only, gradient accumulation) record every trajectory
  column the same with the lean pass and with it switched off (``own_forward_only``), and the
  lean pass was taken.

Negative controls: a forward pass with the fused tanh-GELU (other bits) and one whose loss is
the same but whose backward pass is scaled by 1 + 10⁻⁶ are both caught by the first-use check,
which then returns the model's own loss and gradients; with the check bypassed, the second
changes the attack's trajectory (so the trajectory comparison can fail). A model with dropout
p > 0, a hooked model, a model in evaluation mode, a LoRA (PEFT) wrapper, a model with no
trained parameter, a batch with another key and a pass without gradients take the model's
own forward pass.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional

import empirical.engine.training_forward as training_forward
from empirical.datasets.text import IGNORE_INDEX
from empirical.engine.attack import (
    AttackConfig,
    LoraSettings,
    _apply_lora,
    attack,
    encode_on,
    resolve_data,
    untie_head,
)
from empirical.engine.training_forward import (
    gpt2_training_loss,
    lean_supported,
    own_forward_only,
    training_loss,
)
from empirical.measurement.hvp import causal_lm_loss
from empirical.measurement.proxies import context_length
from tests.markers import EMBEDDED_SLOW

pytestmark = EMBEDDED_SLOW

Batch = dict[str, Tensor]

#: transformers' GELU as the lean pass writes it (before any test replaces it)
GELU_NEW = training_forward._gelu_new


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with no kind of batch checked yet."""
    monkeypatch.setattr(training_forward, "_EXACT", {})
    yield


@pytest.fixture(scope="module")
def batch(embedded: Any) -> Batch:
    """The default attack's first 16 encoded examples (16 × 17 tokens)."""
    model, tokenizer = embedded
    splits = resolve_data(AttackConfig())
    encoded = encode_on(tokenizer, splits.attack, context_length(model), torch.device("cpu"))
    return {name: tensor[:16] for name, tensor in encoded.items()}


def training_copy(embedded: Any) -> nn.Module:
    """A copy of the embedded model in training mode without the key/value cache, as the
    attack runs it."""
    model: Any = copy.deepcopy(embedded[0])
    model.config.use_cache = False
    model.train()
    return model  # type: ignore[no-any-return]


def loss_and_grads(model: nn.Module, loss: Callable[[], Tensor], divisor: int = 1) -> list[Any]:
    """[loss, every parameter's ``.grad`` (None where none)] after one backward pass of
    loss / ``divisor`` from zero gradients."""
    model.zero_grad(set_to_none=True)
    value = loss()
    torch.autograd.backward(value if divisor == 1 else value / divisor)
    return [value.detach(), *(p.grad for p in model.parameters())]


def same(first: list[Any], second: list[Any]) -> bool:
    return len(first) == len(second) and all(
        (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
        for a, b in zip(first, second, strict=True)
    )


def test_lean_loss_and_gradients_equal_the_models_own(embedded: Any, batch: Batch) -> None:
    model = training_copy(embedded)
    assert lean_supported(model, batch)
    own = loss_and_grads(model, lambda: causal_lm_loss(model, batch))
    assert same(own, loss_and_grads(model, lambda: gpt2_training_loss(model, **batch)))
    checked = loss_and_grads(model, lambda: training_loss(model, batch))  # the first use
    assert list(training_forward._EXACT.values()) == [True]
    assert same(own, checked)
    assert same(own, loss_and_grads(model, lambda: training_loss(model, batch)))


def padded(batch: Batch) -> Batch:
    """``batch`` with padding: its first rows right-padded (their last 3 positions masked,
    unsupervised), the next left-padded (the first 2), one row with every label −100."""
    ids, mask, labels = (batch[k].clone() for k in ("input_ids", "attention_mask", "labels"))
    mask[:4, -3:], labels[:4, -3:] = 0, IGNORE_INDEX
    mask[4:8, :2], labels[4:8, :2] = 0, IGNORE_INDEX
    labels[8] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_padded_batches_are_equal_too(embedded: Any, batch: Batch) -> None:
    """Masked keys (right and left padding) and a row with no supervised token: the same
    loss and gradients, and the check agrees."""
    model, ragged = training_copy(embedded), padded(batch)
    assert not torch.equal(ragged["attention_mask"], batch["attention_mask"])
    own = loss_and_grads(model, lambda: causal_lm_loss(model, ragged))
    assert same(own, loss_and_grads(model, lambda: gpt2_training_loss(model, **ragged)))
    assert same(own, loss_and_grads(model, lambda: training_loss(model, ragged)))
    assert list(training_forward._EXACT.values()) == [True]


def test_a_batch_without_supervised_tokens_records_no_verdict(embedded: Any, batch: Batch) -> None:
    """Its loss is NaN (0/0), which equals nothing: the check must not turn the lean pass
    off for the kind on its account; the next batch of the kind is checked and passes."""
    model = training_copy(embedded)
    empty = {**batch, "labels": torch.full_like(batch["labels"], IGNORE_INDEX)}
    assert not bool(torch.isfinite(training_loss(model, empty)))
    assert training_forward._EXACT == {}
    assert same(
        loss_and_grads(model, lambda: causal_lm_loss(model, batch)),
        loss_and_grads(model, lambda: training_loss(model, batch)),
    )
    assert list(training_forward._EXACT.values()) == [True]


def test_adapters_injected_in_place_take_the_models_own_pass(embedded: Any, batch: Batch) -> None:
    """LoRA layers put into a plain GPT-2 in place (peft's ``inject_adapter_in_model``): the
    model's class is still GPT-2's, but the adapters' modules are not transformers' or
    torch's, so neither the lean training pass nor the evaluation's fast path is taken."""
    from peft import LoraConfig, inject_adapter_in_model

    from empirical.measurement.scoring import fast_path_supported

    model = training_copy(embedded)
    injected: Any = inject_adapter_in_model(
        LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True), training_copy(embedded)
    )
    assert type(injected) is type(model) and lean_supported(model, batch)
    assert not lean_supported(injected, batch)
    assert fast_path_supported(model.eval()) and not fast_path_supported(injected.eval())


def test_the_check_writes_no_gradient(embedded: Any, batch: Batch) -> None:
    model = training_copy(embedded)
    model.zero_grad(set_to_none=True)
    training_loss(model, batch)
    assert all(p.grad is None for p in model.parameters())


def test_head_only_and_accumulation_are_checked_and_equal(embedded: Any, batch: Batch) -> None:
    model = training_copy(embedded)
    own = loss_and_grads(model, lambda: causal_lm_loss(model, batch), divisor=2)
    assert same(own, loss_and_grads(model, lambda: training_loss(model, batch, divisor=2), 2))
    head = untie_head(training_copy(embedded))
    assert lean_supported(head, batch)
    own = loss_and_grads(head, lambda: causal_lm_loss(head, batch))
    assert sum(g is not None for g in own[1:]) == 1  # the head's alone
    assert same(own, loss_and_grads(head, lambda: training_loss(head, batch)))
    assert list(training_forward._EXACT.values()) == [True, True]  # two kinds, both checked


def fused_gelu(x: Tensor) -> Tensor:
    """The fused tanh-GELU: the same function, other bits (the module docstring)."""
    return functional.gelu(x, approximate="tanh")


def gelu_with_scaled_backward(x: Tensor) -> Tensor:
    """transformers' GELU with the same forward bits and a backward pass × (1 + 10⁻⁶)."""
    value = GELU_NEW(x)
    return value + (value - value.detach()) * 1e-6


@pytest.mark.parametrize("wrong", [fused_gelu, gelu_with_scaled_backward])
def test_a_wrong_lean_pass_is_caught_and_the_models_own_is_used(
    embedded: Any, batch: Batch, monkeypatch: pytest.MonkeyPatch, wrong: Callable[..., Tensor]
) -> None:
    model = training_copy(embedded)
    own = loss_and_grads(model, lambda: causal_lm_loss(model, batch))
    monkeypatch.setattr(training_forward, "_gelu_new", wrong)
    wrong_pass = loss_and_grads(model, lambda: gpt2_training_loss(model, **batch))
    assert not same(own, wrong_pass)  # the perturbation changes bits
    if wrong is gelu_with_scaled_backward:
        assert torch.equal(own[0], wrong_pass[0])  # only the gradients differ
    assert same(own, loss_and_grads(model, lambda: training_loss(model, batch)))  # checked
    assert list(training_forward._EXACT.values()) == [False]
    assert same(own, loss_and_grads(model, lambda: training_loss(model, batch)))  # for good


def test_models_the_lean_pass_does_not_replicate_take_their_own(
    embedded: Any, batch: Batch
) -> None:
    model = training_copy(embedded)
    dropping: Any = training_copy(embedded)
    dropping.transformer.h[0].attn.attn_dropout.p = 0.1
    hooked: Any = training_copy(embedded)
    hooked.transformer.h[1].mlp.register_forward_hook(lambda module, args, output: output)
    lora = _apply_lora(training_copy(embedded), LoraSettings(r=2))
    lora.train()
    frozen = training_copy(embedded).requires_grad_(False)
    assert lean_supported(model, batch)
    for other in (dropping, hooked, lora, frozen):
        assert not lean_supported(other, batch)
    assert not lean_supported(model.eval(), batch)
    assert not lean_supported(model.train(), {**batch, "position_ids": batch["input_ids"]})
    with torch.no_grad():
        assert not lean_supported(model, batch)
    with own_forward_only():
        assert same(
            loss_and_grads(model, lambda: causal_lm_loss(model, batch)),
            loss_and_grads(model, lambda: training_loss(model, batch)),
        )
    assert training_forward._EXACT == {}  # none of them reached the lean pass


def run(config: AttackConfig, embedded: Any, lean: bool) -> dict[str, Any]:
    model, tokenizer = embedded
    if lean:
        return attack(config, model=model, tokenizer=tokenizer).trajectory.comparable()
    with own_forward_only():
        return attack(config, model=model, tokenizer=tokenizer).trajectory.comparable()


CONFIGS = {
    "default": AttackConfig(budget_steps=20, eval_every=10),
    "head": AttackConfig(budget_steps=10, eval_every=10, method="head", learning_rate=3e-2),
    "accumulation": AttackConfig(budget_steps=10, eval_every=10, batch_size=8, grad_accumulation=2),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_attack_records_the_same_trajectory_with_the_lean_pass(
    embedded: Any, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    calls = [0]
    lean_pass = training_forward.gpt2_training_loss

    def counted(*args: Any, **kwargs: Any) -> Tensor:
        calls[0] += 1
        return lean_pass(*args, **kwargs)

    monkeypatch.setattr(training_forward, "gpt2_training_loss", counted)
    config = CONFIGS[name]
    lean = run(config, embedded, lean=True)
    assert calls[0] == config.budget_steps * config.grad_accumulation  # the check's included
    assert list(training_forward._EXACT.values()) == [True]
    assert lean == run(config, embedded, lean=False)


def test_the_trajectory_comparison_sees_a_wrong_lean_pass(
    embedded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the first-use check bypassed, a lean pass whose backward is off by 10⁻⁶ changes
    the recorded trajectory: the comparison above can fail."""
    config = CONFIGS["default"]

    def unchecked(model: nn.Module, batch: Batch, divisor: int, kind: tuple[object, ...]) -> Tensor:
        training_forward._EXACT[kind] = True
        return gpt2_training_loss(model, **batch)

    monkeypatch.setattr(training_forward, "_gelu_new", gelu_with_scaled_backward)
    monkeypatch.setattr(training_forward, "_first_use", unchecked)
    assert run(config, embedded, lean=True) != run(config, embedded, lean=False)
