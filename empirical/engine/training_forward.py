r"""The attack's training loss of a GPT-2 as a lean functional forward pass, bit for bit.

The attack minimises the model's own mean token cross-entropy on a minibatch B
(``empirical.measurement.hvp.causal_lm_loss``, transformers' ``ForCausalLMLoss``):

    L_B(θ) = (1 / |S|) Σ_{(b, p) ∈ S} −log softmax(z_{b,p}(θ))[y_{b,p+1}],

S the positions whose next token is supervised (label ≠ −100), z_{b,p} the logits of row b
at position p. ``gpt2_training_loss`` computes z and L_B with the operations of transformers'
``modeling_gpt2`` (transformers 5.25, the installed version) in the same order, on the model's own
parameter tensors, out of place, so that autograd records the same backward graph:

* h⁰ = wte(x) + wpe(0 … L − 1) (``GPT2Model``; the embedding dropout is the identity at p = 0);
* per block: a = LN₁(h); [q k v] = ``addmm``(b_attn, a, W_attn) (``Conv1D``), split into
  heads; A = softmax(q kᵀ · d_h^{−1/2} + M) with M the additive mask of eager attention
  (``scoring.attention_bias``: 0 where key k ≤ query q is a real token, the dtype's minimum
  elsewhere, the tensor transformers' mask factory builds); h ← ``addmm``(A v) + h;
  h ← h + ``addmm``(gelu_new(``addmm``(LN₂(h)))) with transformers' ``NewGELUActivation``
  0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) written as it is;
* z = LN_f(h) W_headᵀ, ``.float()``, labels padded with −100 and shifted one to the left,
  ``cross_entropy`` (mean, ``ignore_index`` −100).

What it leaves out changes no number: the key/value cache (the attack runs without it), the
causal-mask factory (the same tensor built directly), the dropout calls (every dropout
probability must be 0: at p = 0 ``dropout`` returns its input and records no node; a model
with p > 0 takes its own forward pass, which draws random numbers), the module calls and
their Python. Whether two graphs of the same operations give the same bits forward *and
backward* is still a property of the kernels that run them, so ``training_loss`` checks each
kind of batch (shapes, dtypes, device, threads, model dimensions, which parameters are
trained, the backward's divisor) at its first use in a process (``_EXACT``): the loss and
every trained parameter's gradient of that batch against the model's own forward pass,
``torch.equal``; a kind that differs takes the model's own forward pass for good. The check
writes no ``.grad`` (``torch.autograd.grad`` on retained graphs) and returns the loss whose
gradients it compared, so the attack's first step is the same either way. Any model other
than a plain ``GPT2LMHeadModel`` in training mode with eager attention, ``gelu_new``, no
cross-attention, no reordered or layer-scaled attention, a head without bias, no hooks, no
gradient checkpointing and transformers' causal-LM loss takes its own forward pass: a PEFT
(LoRA) wrapper among them. A head-only model (``attack.untie_head``) is a plain GPT-2 with an
untied head and takes the lean pass, checked the same way.

Measured on the embedded model (2 blocks, d = 64, the default attack's batches of 16 × 17
tokens; ``time.process_time``, one thread, 2 cores shared with other jobs, so medians of
interleaved pairs in one process): the model's own forward and backward pass took 1.10-1.14
times the CPU time of the lean one (5.96-7.49 against 5.43-6.39 ms, medians of four runs of
15 pairs of 40 passes, ``benchmarks/engine_bench.py``'s ``lean_forward_speedup``, the
per-step check of the kind included, ≈ 45 µs of it); its forward pass alone (graph
recorded) 1.18 times (3.49-3.92 against 2.94-3.25 ms, two runs of 15 pairs). In the attack
loop (``python -m benchmarks.profile_step breakdown``, 100 steps in lockstep with
``transformers.Trainer``) the forward phase took 2.91 ms against the Trainer's 3.55 (its
``compute_loss``: the model's own pass) and the backward pass 3.22 against 3.21: the same
backward graph; the gain is the forward's Python and dispatch. Every trajectory
column of the default attack (200 steps), a probed, curvature-recording SGD attack, a
head-only attack and a gradient-accumulation attack is the same with the lean pass and with
``own_forward_only`` (tests/empirical/test_training_forward.py checks short ones).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

from empirical.datasets.text import IGNORE_INDEX
from empirical.measurement.hvp import causal_lm_loss
from empirical.measurement.numerics import numeric_settings
from empirical.measurement.scoring import (
    GELU_SCALE,
    attention_bias,
    block_projections,
    library_module,
    replicated_config,
)

#: whether the lean pass gave the model's own loss and gradients bit for bit, per kind of
#: batch (``_kind``), checked once per process on the first batch of that kind.
_EXACT: dict[tuple[object, ...], bool] = {}

#: the lean pass is tried at all (``own_forward_only`` switches it off, for comparisons).
_ENABLED: list[bool] = [True]

_BATCH_KEYS = frozenset({"input_ids", "attention_mask", "labels"})

@contextlib.contextmanager
def own_forward_only() -> Iterator[None]:
    """Inside, ``training_loss`` is always the model's own forward pass (the ground truth
    the lean pass is compared with)."""
    previous = _ENABLED[0]
    _ENABLED[0] = False
    try:
        yield
    finally:
        _ENABLED[0] = previous


def _gelu_new(x: Tensor) -> Tensor:
    """transformers' ``NewGELUActivation``, the same expression (out of place)."""
    return 0.5 * x * (1.0 + torch.tanh(GELU_SCALE * (x + 0.044715 * torch.pow(x, 3.0))))


def lean_supported(model: nn.Module, batch: Mapping[str, Tensor]) -> bool:
    """Whether ``gpt2_training_loss`` replicates ``causal_lm_loss(model, batch)``: see the
    module docstring for the conditions; ``batch`` holds exactly 2-D ``input_ids``,
    ``attention_mask`` and ``labels`` of one shape, and gradients are being recorded."""
    return _kind(model, batch, 1) is not None


def _trained_flags(model: nn.Module, mlp: type[nn.Module]) -> tuple[bool, ...] | None:
    """``requires_grad`` of every parameter of every module of ``model`` (one walk, paid at
    every step: ``model.modules()`` builds names and costs more than all of this), or
    ``None`` where a module has a hook, gradient checkpointing, a dropout with p > 0, an MLP
    (of type ``mlp``) whose activation is not ``NewGELUActivation``, or a class that is not
    transformers' or torch's (``scoring.library_module``)."""
    from transformers.activations import NewGELUActivation

    flags: list[bool] = []
    pending: list[nn.Module | None] = [model]
    while pending:
        module = pending.pop()
        if module is None:
            continue
        if (
            module._forward_hooks
            or module._forward_pre_hooks
            or module._backward_hooks
            or module._backward_pre_hooks
            or vars(module).get("gradient_checkpointing", False)
            or (isinstance(module, nn.Dropout) and module.p != 0.0)
            or (type(module) is mlp and type(module._modules["act"]) is not NewGELUActivation)
            or not library_module(module)
        ):
            return None
        for parameter in module._parameters.values():
            if parameter is not None:
                flags.append(parameter.requires_grad)
        pending.extend(module._modules.values())
    return tuple(flags)


def _kind(model: nn.Module, batch: Mapping[str, Tensor], divisor: int) -> tuple[object, ...] | None:
    """What the kernels' bits may depend on: the batch's shapes and dtypes, the model's
    dimensions, dtypes and device, the process's numeric settings (threads, matmul precision,
    autocast, TF32, deterministic algorithms: ``empirical.measurement.numerics``), which
    parameters are trained, the divisor;
    ``None`` where ``gpt2_training_loss`` is not the model's forward pass (the module
    docstring's conditions). Paid at every step (≈ 45 µs CPU on the embedded model)."""
    gpt2 = sys.modules.get("transformers.models.gpt2.modeling_gpt2")  # loaded with any GPT-2
    if gpt2 is None or type(model) is not gpt2.GPT2LMHeadModel or not model.training:
        return None
    if set(batch) != _BATCH_KEYS or not torch.is_grad_enabled():
        return None
    shape = batch["input_ids"].shape
    if len(shape) != 2 or any(batch[name].shape != shape for name in _BATCH_KEYS):
        return None
    lm: Any = model
    config, head = lm.config, lm.lm_head
    if not replicated_config(config):
        return None
    from transformers.loss.loss_utils import ForCausalLMLoss

    if head.bias is not None or lm.loss_function is not ForCausalLMLoss:
        return None
    trained = _trained_flags(model, gpt2.GPT2MLP)
    if trained is None or not any(trained):  # nothing to differentiate: the model's own pass
        return None
    return (
        tuple((name, tuple(t.shape), t.dtype) for name, t in sorted(batch.items())),
        config.n_embd, config.n_head, config.n_layer, config.n_inner, config.vocab_size,
        config.use_cache, head.weight.dtype, lm.transformer.wte.weight.dtype,
        head.weight.device.type, numeric_settings(), divisor, trained,
    )  # fmt: skip


def _attention(block: Any, hidden: Tensor, bias: Tensor) -> Tensor:
    """``GPT2Attention`` of eager attention on ``LN₁(hidden)`` plus the residual."""
    rows, length, width = hidden.shape
    attention = block.attn
    heads = int(attention.num_heads)
    query, key, value = block_projections(block, hidden)
    query = query.view(rows, length, heads, width // heads).transpose(1, 2)
    weights = torch.matmul(query, key.transpose(-1, -2)) * attention.scaling
    weights = functional.softmax(weights + bias, dim=-1)
    mixed = torch.matmul(weights, value).transpose(1, 2)
    mixed = mixed.reshape(rows, length, width).contiguous()
    out = torch.addmm(attention.c_proj.bias, mixed.view(-1, width), attention.c_proj.weight)
    return out.view(rows, length, width) + hidden


def _feed_forward(block: Any, hidden: Tensor) -> Tensor:
    """``hidden`` plus ``GPT2MLP`` of ``LN₂(hidden)``."""
    rows, length, width = hidden.shape
    ln_2, mlp = block.ln_2, block.mlp
    normed = functional.layer_norm(hidden, ln_2.normalized_shape, ln_2.weight, ln_2.bias, ln_2.eps)
    inner = _gelu_new(torch.addmm(mlp.c_fc.bias, normed.view(-1, width), mlp.c_fc.weight))
    out = torch.addmm(mlp.c_proj.bias, inner, mlp.c_proj.weight)
    return hidden + out.view(rows, length, width)


def gpt2_training_loss(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, labels: Tensor
) -> Tensor:
    """L_B of a model that ``lean_supported`` accepts, as the functional pass of the module
    docstring (autograd records it; nothing is written in place)."""
    lm: Any = model
    body = lm.transformer
    length = int(input_ids.shape[1])
    positions = torch.arange(length, device=input_ids.device).unsqueeze(0)
    hidden = body.wte(input_ids) + body.wpe(positions)
    bias = attention_bias(attention_mask, hidden.dtype)
    for block in body.h:
        hidden = _feed_forward(block, _attention(block, hidden, bias))
    ln_f = body.ln_f
    hidden = functional.layer_norm(hidden, ln_f.normalized_shape, ln_f.weight, ln_f.bias, ln_f.eps)
    logits = functional.linear(hidden, lm.lm_head.weight).float()
    shifted = functional.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].contiguous()
    return functional.cross_entropy(
        logits.view(-1, logits.shape[-1]), shifted.view(-1), ignore_index=IGNORE_INDEX
    )


def _first_use(
    model: nn.Module, batch: Mapping[str, Tensor], divisor: int, kind: tuple[object, ...]
) -> Tensor:
    """Check a new kind of batch (the module docstring) and record the verdict in ``_EXACT``;
    returns the loss whose gradients were compared (the lean one where they agree, the
    model's own otherwise), its graph kept for the caller's backward pass. No ``.grad``
    is written. One graph at a time: the model's own pass is differentiated and freed
    before the lean pass runs (at most one graph and two sets of gradients alive, not two
    graphs: the first step needs no more memory than the check's gradients beyond a normal
    step); where the two differ the model's own pass runs again (deterministic: the same
    bits). A non-finite loss records no verdict (NaN equals nothing: a batch with no
    supervised token would otherwise turn the lean pass off for its kind)."""
    trained = [p for p in model.parameters() if p.requires_grad]

    def gradients(loss: Tensor, keep: bool) -> tuple[Tensor | None, ...]:
        target = loss if divisor == 1 else loss / divisor
        found: tuple[Tensor | None, ...] = torch.autograd.grad(
            target, trained, retain_graph=keep, allow_unused=True
        )
        return found

    own_loss = causal_lm_loss(model, batch)
    own_value = own_loss.detach()
    own = gradients(own_loss, keep=False)
    del own_loss  # its graph is freed
    lean_loss = gpt2_training_loss(model, **batch)
    if not bool(torch.isfinite(own_value)):
        return causal_lm_loss(model, batch)
    same = torch.equal(own_value, lean_loss.detach()) and all(
        (mine is None and theirs is None)
        or (mine is not None and theirs is not None and torch.equal(mine, theirs))
        for mine, theirs in zip(own, gradients(lean_loss, keep=True), strict=True)
    )
    _EXACT[kind] = same
    return lean_loss if same else causal_lm_loss(model, batch)


def training_loss(model: nn.Module, batch: Mapping[str, Tensor], *, divisor: int = 1) -> Tensor:
    """``causal_lm_loss(model, batch)`` in training mode, by the lean pass where it is the
    same bit for bit for this kind of batch (checked at the kind's first use), its gradients
    included: the caller back-propagates the loss (``divisor`` 1) or loss / ``divisor``
    (gradient accumulation), and the check compares the gradients of exactly that."""
    kind = _kind(model, batch, divisor) if _ENABLED[0] else None
    if kind is None:
        return causal_lm_loss(model, batch)
    exact = _EXACT.get(kind)
    if exact is None:
        return _first_use(model, batch, divisor, kind)
    if not exact:
        return causal_lm_loss(model, batch)
    return gpt2_training_loss(model, **batch)
