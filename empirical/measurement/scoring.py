r"""Teacher-forced logits of a GPT-2 computed only where they are scored, bit for bit.

The teacher-forced proxies (``empirical.measurement.proxies``: exact harm, sampled harm, task
accuracy, reference loss) read the logits at the supervised positions p ≥ s of each row (the
response and its EOS; s the first supervised position), never at the prompt's. In a causal
model position p's state in every block depends on the tokens 0 … p only, so two savings
change no number:

* Last block on the scored positions. The last block's output at p ≥ s needs its keys and
  values K^(n), V^(n) at every position but its query, attention, output projection, MLP,
  the final layer norm and the head only at p ≥ s; every earlier block still runs on every
  position (its outputs are the next block's keys and values).
* Shared prefixes once. Rows whose first P tokens (and attention-mask entries) agree have the
  same states at positions 0 … P − 1 in every block: those are computed once per distinct
  prefix (``ScoringPass.representatives``) and every row runs only positions P … L − 1,
  attending to the gathered keys and values of its prefix. ``plan_pass`` picks P ≤ s
  minimising U·L + rows·(L − P) (U distinct prefixes of length P).

On the embedded model (2 blocks, d = 64, 12- and 16-token rows scored from position 10, every
prompt starting with one of a few 5-character task words) a pass of 16-token rows computes
positions 5 … 15 of the first block and of the last block's projections, and positions
10 … 15 of the rest of the last block (12-token rows: 5 … 11 and 8 … 11, ``MIN_QUERY_ROWS``),
for 1-3 distinct prefixes per pass (the default evaluation's six passes, counted).

``gpt2_logits`` is a functional forward pass over the model's own modules' weights with
transformers' GPT-2 operations (eager attention, ``gelu_new``, ``Conv1D``'s ``addmm``;
``modeling_gpt2`` of transformers 5) in the same order; it differs from
``model(input_ids, attention_mask).logits`` in what it does not do (no key/value cache, no
causal-mask factory: the additive mask, 0 where a key is visible and the dtype's minimum
elsewhere, is the same tensor built directly; dropout is off in evaluation), in writing the
tanh-GELU's chain in place (each element sees the same IEEE operations in the same order:
0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))) and in the row subsets above. Whether a row
subset of a kernel's input gives the full input's bits is a property of the kernel, not of
the maths: on the machine this was written on (MKL, AVX-512, one thread) a batched ``matmul``
with at most 3 query rows takes another code path and changes the last bits (every batch
size, every key length from 8 to 32 tried) while 4 or more give the full pass's bits, hence
``MIN_QUERY_ROWS``. So ``scored_logits`` checks each kind of pass at its first use in a
process (``_EXACT``) against the model's own forward pass, ``==``, and a kind that differs
falls back to the model's forward pass for good: the numbers are the model's own either way.
Any model other than a plain ``GPT2LMHeadModel`` with eager attention in evaluation mode (a
PEFT wrapper, a hooked model, another architecture) takes the model's forward pass.

Measured on the embedded model's default evaluation (300 evaluation and 400 reference
examples; ``time.process_time``, one thread, interleaved rounds in one process on 2 cores
shared with other jobs, medians): one evaluation's scoring took 0.35× and 0.31× the CPU time
of the model's forward passes in two runs of 15 pairs (44.5 against 126.4 ms, 46.3 against
145.0 ms), and the default attack's evaluations 0.27 and 0.25 of its CPU time against 0.49
and 0.44 (two runs of 7 interleaved pairs of whole attacks). In one ablation (11 rounds): the
model's forward passes 99.5 ms, the functional pass 97.5, with the in-place GELU 78.8, with
the last block sliced 59.4; sharing the prefixes took a further 19% off the forward passes
(49.4 → 40.1 ms, 11 rounds). A fused ``gelu(approximate="tanh")`` and
intra-op threads are not used: the first changes bits, the second added CPU time (2 threads
on the shared machine: 8× the CPU time, 8× the wall time).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

from empirical.datasets.text import IGNORE_INDEX
from empirical.measurement.numerics import numeric_settings

#: the fewest query rows a sliced last block keeps (see the module docstring: fewer rows took
#: another batched-matmul kernel with other bits, measured on this project's CPU build).
MIN_QUERY_ROWS: int = 4

#: whether the fast path gave the model's own logits bit for bit, per (length, first
#: computed position, shared prefix, rows, distinct prefixes, model dimensions, dtype, device,
#: the numeric settings of ``empirical.measurement.numerics``: threads, precision, autocast …),
#: checked once per process on the first ``PROBE_ROWS`` rows of the first such pass
#: (a row's logits do not depend on the other rows of its pass: ``score_packed``'s packing
#: rests on that too). The rows and the distinct prefixes set the row counts of the sliced
#: passes' matrix products, and a kernel's bits can depend on those (``MIN_QUERY_ROWS``): a
#: check at one pass size does not speak for another.
_EXACT: dict[tuple[object, ...], bool] = {}

#: rows of a pass the fast path's first use of a kind of pass is checked on.
PROBE_ROWS: int = 16

#: √(2/π) of transformers' ``NewGELUActivation`` (the training pass's GELU uses it too)
GELU_SCALE = math.sqrt(2.0 / math.pi)


#: the GPT-2 configuration whose forward pass ``gpt2_logits`` and the training pass of
#: ``empirical.engine.training_forward`` write out (transformers' ``modeling_gpt2``)
REPLICATED_CONFIG: dict[str, object] = {
    "_attn_implementation": "eager",
    "activation_function": "gelu_new",
    "add_cross_attention": False,
    "reorder_and_upcast_attn": False,
    "scale_attn_by_inverse_layer_idx": False,
}


def replicated_config(config: object) -> bool:
    """Whether a GPT-2 configuration is ``REPLICATED_CONFIG``'s."""
    return all(getattr(config, name, None) == value for name, value in REPLICATED_CONFIG.items())


def fast_path_supported(model: nn.Module) -> bool:
    """A plain transformers ``GPT2LMHeadModel`` in evaluation mode whose forward pass
    ``gpt2_logits`` replicates: eager attention, ``gelu_new``, no cross-attention, no
    upcast/reordered or layer-scaled attention, a head without bias, no module hooks, every
    module transformers' or torch's."""
    gpt2 = sys.modules.get("transformers.models.gpt2.modeling_gpt2")  # loaded with any GPT-2
    if gpt2 is None or type(model) is not gpt2.GPT2LMHeadModel or model.training:
        return False
    lm: Any = model
    if not replicated_config(lm.config) or lm.lm_head.bias is not None:
        return False
    return unhooked_library_modules(model)


def unhooked_library_modules(model: nn.Module) -> bool:
    """Whether every module of ``model`` is transformers' or torch's (``library_module``) and
    none has a forward hook: its forward pass is then its classes, attributes and tensors."""
    return not any(
        m._forward_hooks or m._forward_pre_hooks or not library_module(m) for m in model.modules()
    )


def library_module(module: nn.Module) -> bool:
    """Whether ``module``'s class is transformers' or torch's: a module of another origin in a
    GPT-2 (adapters injected in place, e.g. by peft's ``inject_adapter_in_model``) computes
    something ``gpt2_logits`` does not, which a first-use check at initialisation (adapters
    at zero) could not see."""
    origin = type(module).__module__
    return origin.startswith("transformers.") or origin.startswith("torch.nn.")


def attention_bias(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, 1, L, L) additive mask of eager attention: 0 where key k ≤ query q is a real token
    (``attention_mask`` 1), the dtype's minimum elsewhere (transformers' ``eager_mask``)."""
    length = int(attention_mask.shape[1])
    causal = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()
    visible = causal[None, None] & attention_mask[:, None, None, :].bool()
    zero = torch.zeros((), dtype=dtype, device=attention_mask.device)
    return torch.where(visible, zero, torch.finfo(dtype).min)


def _gelu_new_(x: Tensor) -> Tensor:
    """transformers' ``NewGELUActivation`` in place: 0.5·x·(1 + tanh(c·(x + 0.044715·x³)))."""
    inner = torch.pow(x, 3.0)
    inner.mul_(0.044715).add_(x).mul_(GELU_SCALE).tanh_().add_(1.0)
    return x.mul_(0.5).mul_(inner)


def block_projections(block: Any, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A block's queries (B, T, D), keys and values (B, H, T, D/H) of ``hidden`` (B, T, D)."""
    rows, tail, width = hidden.shape
    attention = block.attn
    heads = int(attention.num_heads)
    normed = functional.layer_norm(
        hidden, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps
    )
    projected = torch.addmm(
        attention.c_attn.bias, normed.view(-1, width), attention.c_attn.weight
    ).view(rows, tail, 3 * width)
    query, key, value = torch.split(projected, width, dim=2)
    key = key.view(rows, tail, heads, width // heads).transpose(1, 2)
    value = value.view(rows, tail, heads, width // heads).transpose(1, 2)
    return query, key, value


def _block(
    block: Any, hidden: Tensor, bias: Tensor, shared: tuple[Tensor, Tensor] | None, start: int
) -> tuple[Tensor, Tensor, Tensor]:
    """One GPT-2 block on the rows' positions P … L − 1 (``hidden``: (B, L − P, D)), the keys
    and values of positions 0 … P − 1 given (``shared``, (B, H, P, D/H) each; ``None``: P = 0):
    the output at positions P + ``start`` … L − 1 and the keys and values of P … L − 1."""
    rows, tail, width = hidden.shape
    attention = block.attn
    heads = int(attention.num_heads)
    size, kept = width // heads, tail - start
    prefix = 0 if shared is None else int(shared[0].shape[2])
    query, own_key, own_value = block_projections(block, hidden)
    key, value = own_key, own_value
    if shared is not None:
        key, value = torch.cat((shared[0], key), dim=2), torch.cat((shared[1], value), dim=2)
    query = query[:, start:].reshape(rows, kept, heads, size).transpose(1, 2)
    weights = torch.matmul(query, key.transpose(-1, -2)) * attention.scaling
    weights = functional.softmax(weights + bias[:, :, prefix + start :], dim=-1)
    mixed = torch.matmul(weights, value).transpose(1, 2).reshape(rows * kept, width)
    out = torch.addmm(attention.c_proj.bias, mixed.contiguous(), attention.c_proj.weight)
    hidden = out.view(rows, kept, width).add_(hidden[:, start:])
    normed = functional.layer_norm(
        hidden, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps
    )
    mlp = block.mlp
    inner = _gelu_new_(torch.addmm(mlp.c_fc.bias, normed.view(-1, width), mlp.c_fc.weight))
    out = torch.addmm(mlp.c_proj.bias, inner, mlp.c_proj.weight)
    return out.view(rows, kept, width).add_(hidden), own_key, own_value


@dataclass(frozen=True)
class ScoringPass:
    """One forward pass of teacher-forced scoring: rows ``begin`` … ``end`` − 1 of a packed
    group, planned once from the data (``plan_pass``), reused at every evaluation.

    Attributes:
        begin, end: the rows of the group.
        scored_from: s, the first column with a supervised target in any row (L if none).
        shared: P, the positions 0 … P − 1 computed once per distinct prefix (0: none).
        representatives: (U,) int64, one row (within the pass) per distinct prefix of P
            tokens (and attention-mask entries).
        prefix_of: (rows,) int64, each row's prefix among ``representatives``.
    """

    begin: int
    end: int
    scored_from: int
    shared: int
    representatives: Tensor
    prefix_of: Tensor


def plan_pass(
    input_ids: Tensor, attention_mask: Tensor, targets: Tensor, begin: int, end: int
) -> ScoringPass:
    """The ``ScoringPass`` of rows ``begin`` … ``end`` − 1: s from ``targets`` (−100 where not
    supervised), P minimising the positions computed, U·L + rows·(L − P), over
    0 ≤ P ≤ min(s, L − ``MIN_QUERY_ROWS``); the representatives in the order of a
    ``torch.unique`` of the P-column prefixes (ids, then mask entries)."""
    ids, mask = input_ids[begin:end], attention_mask[begin:end]
    rows, length = (int(n) for n in ids.shape)
    columns = (targets[begin:end] != IGNORE_INDEX).any(dim=0).nonzero()
    scored_from = int(columns[0]) if len(columns) else length
    none = torch.zeros(0, dtype=torch.long, device=ids.device)
    best_cost, best_prefix = rows * length, 0
    # the rows' classes of equal prefixes, refined one column at a time: two rows share a
    # prefix of P + 1 tokens iff they share the one of P and agree at column P (one 1-D
    # ``unique`` of (class, token, mask) per P instead of a ``unique`` of P-column rows)
    classes = torch.zeros(rows, dtype=torch.long, device=ids.device)
    token, masked = ids - ids.min(), (mask - mask.min()).to(ids.dtype)  # ≥ 0: no collisions
    span = int(masked.max()) + 1
    scale = (int(token.max()) + 1) * span
    for prefix in range(1, min(scored_from, length - MIN_QUERY_ROWS) + 1):
        column = token[:, prefix - 1] * span + masked[:, prefix - 1]
        distinct, classes = torch.unique(classes * scale + column, return_inverse=True)
        if int(distinct.shape[0]) * length >= best_cost:
            break  # U only grows with P: no longer prefix costs less
        cost = int(distinct.shape[0]) * length + rows * (length - prefix)
        if cost < best_cost:
            best_cost, best_prefix = cost, prefix
    if best_prefix == 0:
        return ScoringPass(begin, end, scored_from, 0, none, none)
    keys = torch.cat((ids[:, :best_prefix], mask[:, :best_prefix].to(ids.dtype)), dim=1)
    distinct, prefix_of = torch.unique(keys, dim=0, return_inverse=True)
    first = torch.full((int(distinct.shape[0]),), rows, device=ids.device)
    order = torch.arange(rows, device=ids.device)
    first.scatter_reduce_(0, prefix_of, order, reduce="amin")
    return ScoringPass(begin, end, scored_from, best_prefix, first, prefix_of)


def gpt2_logits(model: nn.Module, input_ids: Tensor, bias: Tensor, plan: ScoringPass) -> Tensor:
    """(B, L − t, V), t = max(P, min(s, L − ``MIN_QUERY_ROWS``)): the logits of positions
    t … L − 1 of a model that ``fast_path_supported`` accepts (see the module docstring).
    ``bias`` is ``attention_bias`` of the rows' attention mask."""
    lm: Any = model
    body = lm.transformer
    length = int(input_ids.shape[1])
    prefix = plan.shared
    start = max(prefix, min(plan.scored_from, length - MIN_QUERY_ROWS))
    embedded = functional.embedding(input_ids, body.wte.weight).add_(body.wpe.weight[:length])
    hidden = embedded[:, prefix:]
    distinct = embedded[plan.representatives] if prefix else None
    distinct_bias = bias[plan.representatives] if prefix else bias
    last = len(body.h) - 1
    for index, block in enumerate(body.h):
        shared = None
        if distinct is not None:  # the prefixes' keys and values (and their block outputs)
            if index < last:
                distinct, key, value = _block(block, distinct, distinct_bias, None, 0)
            else:
                _, key, value = block_projections(block, distinct)
            shared = (key[:, :, :prefix][plan.prefix_of], value[:, :, :prefix][plan.prefix_of])
        queries_from = start - prefix if index == last else 0
        hidden = _block(block, hidden, bias, shared, queries_from)[0]
    ln_f = body.ln_f
    hidden = functional.layer_norm(hidden, (hidden.shape[-1],), ln_f.weight, ln_f.bias, ln_f.eps)
    logits: Tensor = functional.linear(hidden, lm.lm_head.weight)
    return logits


def scored_logits(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, plan: ScoringPass
) -> tuple[Tensor, int]:
    """``(logits, t)``: the (B, L − t, V) logits of positions t … L − 1, equal to the model's
    forward pass there bit for bit (``model(input_ids, attention_mask).logits[:, t:]``), with
    t ≤ s (``plan.scored_from``): every supervised position is among them. t = 0 where the
    model's own forward pass computed them. Call under ``torch.inference_mode`` with the model
    in evaluation mode; ``plan`` is ``plan_pass`` of these rows."""
    rows, length = (int(n) for n in input_ids.shape)
    start = max(plan.shared, min(plan.scored_from, length - MIN_QUERY_ROWS))
    if start == 0 or not fast_path_supported(model):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits, 0
    lm: Any = model
    weight: Tensor = lm.lm_head.weight
    config = lm.config
    key = (
        length, start, plan.shared, rows, int(plan.representatives.shape[0]),
        config.n_embd, config.n_head, config.n_layer,
        int(lm.transformer.h[0].mlp.c_fc.weight.shape[1]), int(weight.shape[0]),
        weight.dtype, weight.device.type, numeric_settings(),
    )  # fmt: skip
    exact = _EXACT.get(key)
    if exact is False:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits, 0
    logits = gpt2_logits(model, input_ids, attention_bias(attention_mask, weight.dtype), plan)
    if exact is None:  # the first pass of this kind: its first rows against the model's own
        probe = min(rows, PROBE_ROWS)
        own = model(input_ids=input_ids[:probe], attention_mask=attention_mask[:probe]).logits
        _EXACT[key] = bool(torch.equal(logits[:probe], own[:, start:]))
        if not _EXACT[key]:
            return scored_logits(model, input_ids, attention_mask, plan)  # now the fallback
    return logits, start
