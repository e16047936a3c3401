"""What an ``Evaluator`` computes that another one in the same process can reuse: the encoded
and packed evaluation sets, and the teacher-forced scores of its first iterate.

A verification (``hfta verify``) runs many attacks from the same model θ₀ with the same
evaluation and reference sets, each attack loading the model and its tokenizer afresh
(``empirical.engine.attack``), and each attack evaluates θ₀ at step 0. Two caches, each a
least-recently-used table of a few entries held for the life of the process:

* **Sets** (``SETS``): the ``EncodedSet``s and their ``PackedSets`` (tokenizing, padding and
  planning the passes), keyed by everything they are a function of: the tokenizer's
  content (``tokenizer_fingerprint``), the examples, the context limit and ``max_length``,
  the device, the batch sizes and whether responses must fit whole. A hit is the tensors the
  encoding would build again, so every number scored from it is the same.
* **Scores of the first iterate** (``FIRST_SCORES``): the ``TeacherForced`` results of an
  evaluator's first evaluation (θ₀ in an attack), keyed by the sets' key and
  ``model_fingerprint``: the model's class, its configuration, its modules' classes and
  plain attributes (``module_state``), the process's numeric settings
  (``empirical.measurement.numerics``: threads, matmul precision, autocast, TF32) and the exact
  bytes (with names, shapes, dtypes and devices) of every parameter and buffer its forward
  pass reads. The scoring is a deterministic function of those (same inputs, same kernels,
  same process: ``empirical.measurement.scoring``'s fast path gives the model's own bits,
  checked at first use), so a hit is the very arrays the scoring would compute; they are
  stored read-only. Only a plain GPT-2 without hooks is fingerprinted: its forward pass is
  its configuration (with the module attributes set from it at construction) and its
  tensors; a wrapped or hooked model (PEFT adapters with their scaling, forward hooks) reads
  state outside them and is scored afresh every time.

Costs (measured on the 2-core machine shared with other jobs, ``time.process_time``):
``tokenizer_fingerprint`` of the embedded character tokenizer 0.1 ms; the serialization and
sha256 of a 50,000-token BPE tokenizer (GPT-2's size, built for the measurement) 16-18 ms.
``model_fingerprint`` of the embedded model (105,792 parameters) 0.4-0.9 ms; sha256 ran at
1.8 GB/s here, so a 124M-parameter float32 model (496 MB) costs ≈ 0.28 s by arithmetic,
while the evaluation it may save needs ≈ 2 · 124M FLOP per token of the sets (0.25 TFLOP
per thousand tokens). An evaluator fingerprints the model at its first evaluation only.

Measured on the default attack (``AttackConfig()``: 11 evaluations of 300 evaluation and 400
reference examples; one thread, process CPU, 9 interleaved rounds in one process against the
code before these caches and the faster encoding, medians): the first evaluation of a later
attack of the same model took 2.2 ms against 80 ms, its evaluations 0.24 of the attack's CPU
time against 0.28; every trajectory equal to the earlier code's. Four 75-step attacks (lr
1e-4 and 3e-4, two seeds, evaluations at 0, 25, 50 and 75, each loading the model): their
evaluations 0.64 s CPU against 0.86 (4 interleaved rounds).
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import torch
from torch import nn

from empirical.measurement.numerics import numeric_settings
from empirical.measurement.scoring import unhooked_library_modules

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from empirical.engine.evaluator import PreparedSets
    from empirical.measurement.proxies import TeacherForced

Value = TypeVar("Value")

#: entries of ``SETS``: an evaluator's prepared sets (a verification uses one pair of sets).
SETS_CACHED: int = 4

#: entries of ``FIRST_SCORES``: a verification's models (original, immunized, LoRA-wrapped
#: ones are not cached) times its sets.
SCORES_CACHED: int = 8


class LeastRecentlyUsed(Generic[Value]):
    """A table of at most ``size`` entries; the least recently used one leaves first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Value | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Value) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


SETS: LeastRecentlyUsed[PreparedSets] = LeastRecentlyUsed(SETS_CACHED)
"""Prepared sets of ``empirical.engine.evaluator.Evaluator`` (``PreparedSets``)."""

FIRST_SCORES: LeastRecentlyUsed[tuple[TeacherForced | None, TeacherForced | None]] = (
    LeastRecentlyUsed(SCORES_CACHED)
)
"""Scores of an evaluator's first evaluation, keyed by (sets key, ``model_fingerprint``)."""


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """sha256 of what ``empirical.datasets.text.encode`` reads from ``tokenizer``: its class,
    its whole tokenization pipeline (``backend_tokenizer.to_str()``: normalizer,
    pre-tokenizer, model with vocabulary and merges, post-processor, added tokens), its chat
    template, special tokens, pad and EOS ids and ``split_special_tokens``. ``None`` for a
    tokenizer without a ``tokenizers`` backend (its state cannot be read whole: not cached)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    to_str = getattr(backend, "to_str", None)
    if not callable(to_str):
        return None
    kind = type(tokenizer)
    wrapper = (
        f"{kind.__module__}.{kind.__qualname__}",
        getattr(tokenizer, "chat_template", None),
        getattr(tokenizer, "special_tokens_map", None),
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        getattr(tokenizer, "split_special_tokens", None),
    )
    digest = hashlib.sha256(repr(wrapper).encode())
    digest.update(str(to_str()).encode())
    return digest.hexdigest()


def module_state(name: str, module: nn.Module) -> tuple[object, ...]:
    """A module's name, class and plain attributes (numbers, strings, flags and tuples of
    them: a layer norm's ε, an attention's scaling and head count), its mode aside."""
    kind = type(module)
    plain = sorted(
        (key, value)
        for key, value in vars(module).items()
        if not key.startswith("_") and key != "training" and _plain(value)
    )
    return name, f"{kind.__module__}.{kind.__qualname__}", plain


def _plain(value: object) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    return isinstance(value, tuple) and all(_plain(v) for v in value)


def model_fingerprint(model: nn.Module) -> str | None:
    """sha256 of everything a plain GPT-2's evaluation reads (see the module docstring), or
    ``None`` for any other model (not cached): another class, a hook, or a module whose class
    is neither transformers' nor torch's (e.g. adapters injected in place by peft's
    ``inject_adapter_in_model``, whose scaling and switches live outside the tensors)."""
    gpt2 = sys.modules.get("transformers.models.gpt2.modeling_gpt2")
    if gpt2 is None or type(model) is not gpt2.GPT2LMHeadModel:
        return None
    if not unhooked_library_modules(model):
        return None
    lm: Any = model
    config = lm.config
    settings = (
        config.to_json_string(use_diff=False),
        config._attn_implementation,
        torch.__version__,
        *numeric_settings(),
    )
    digest = hashlib.sha256(repr(settings).encode())
    digest.update(repr([module_state(name, m) for name, m in model.named_modules()]).encode())
    tensors = [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]
    for name, tensor in tensors:
        digest.update(repr((name, tensor.dtype, tuple(tensor.shape), str(tensor.device))).encode())
        raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8).cpu()
        digest.update(raw.numpy().data)
    return digest.hexdigest()


def read_only(scored: TeacherForced | None) -> TeacherForced | None:
    """``scored`` with arrays that cannot be written (a cached score is shared)."""
    if scored is None:
        return None
    for array in (scored.exact, scored.loss_sum, scored.tokens):
        if isinstance(array, np.ndarray):
            array.setflags(write=False)
    return scored
