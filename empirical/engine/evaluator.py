"""Measuring an iterate of an attack: the held-out harmful loss, the harm proxy f and the
capability proxy g (``Evaluator``), each evaluation set tokenized once and scored in packed
teacher-forced passes (``empirical.measurement.proxies``, ``empirical.measurement.scoring``).
Used by the attack loop (``empirical.engine.attack``) and the Trainer callback
(``empirical.engine.monitor``) alike, so both record the same numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, cast

import numpy as np
import torch
from torch import Tensor, nn

from empirical.datasets.data import Example
from empirical.engine.attack_config import HarmProxyName
from empirical.measurement.hvp import causal_lm_loss, evaluation_mode
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from empirical.measurement.proxies import (
        CapabilityProxy,
        EncodedSet,
        HarmProxy,
        PackedSets,
        TeacherForced,
        TeacherForcedProxy,
    )


class PreparedSets(NamedTuple):
    """An evaluator's encoded data (``None``: not used): the held-out loss's own batches
    (only where ``max_length`` truncates), the evaluation and the reference set for
    teacher-forced scoring, and their packing."""

    loss_batches: list[dict[str, Tensor]] | None
    evaluation: EncodedSet | None
    reference: EncodedSet | None
    packed: PackedSets | None


def encode_on(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    max_length: int,
    device: torch.device,
) -> dict[str, Tensor]:
    """``empirical.datasets.text.encode`` moved to ``device`` once."""
    from empirical.datasets.text import encode

    return {k: v.to(device) for k, v in encode(tokenizer, examples, max_length).items()}


def batches_of(tensors: Mapping[str, Tensor], batch_size: int) -> list[dict[str, Tensor]]:
    """Consecutive slices of ``batch_size`` rows (the last one shorter)."""
    size = int(next(iter(tensors.values())).shape[0])
    return [
        {k: v[start : start + batch_size] for k, v in tensors.items()}
        for start in range(0, size, batch_size)
    ]


def mean_token_loss(model: nn.Module, batches: Sequence[Mapping[str, Tensor]]) -> float:
    """Token-weighted mean of the model's own causal-LM loss over ``batches`` (no gradient):
    Σ_b L_b · n_b / Σ_b n_b with n_b the supervised (label ≠ −100) next-token targets."""
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    with evaluation_mode(model), torch.no_grad():
        for batch in batches:
            targets = int((batch["labels"][:, 1:] != -100).sum())
            if targets == 0:
                continue
            total += causal_lm_loss(model, batch).double().cpu() * targets
            count += targets
    if count == 0:
        raise HftaInputError("no supervised tokens in the held-out data")
    return float(total) / count


class Evaluator:
    """Measures an iterate: held-out harmful loss, harm proxy f, capability proxy g.

    Each data set is tokenized once, at the first call (``empirical.measurement.proxies.
    encode_for_scoring``: the same batches the proxies build, cached on the model's device),
    and every later evaluation reuses the tensors; another evaluator of the same sets in the
    same process (the next attack of a verification) takes them from the process's cache,
    and its first evaluation of the same model bytes (θ₀ again) takes the scores too
    (``empirical.engine.evaluation_cache``). A proxy that is a function of one
    teacher-forced pass (``TeacherForcedProxy``: exact harm, task accuracy, reference loss)
    is scored under ``torch.inference_mode``, the evaluation and the reference set together
    in a few large forward passes (``pack_for_scoring``: rows grouped by the length their
    batch was padded to, the last input column dropped; the numbers of the per-batch passes
    bit for bit, see ``score_packed``), and the held-out harmful loss comes from the *same*
    pass over the evaluation set:
    L = Σ_i Σ_j ℓ_ij / Σ_i n_i, the token-weighted mean cross-entropy of the supervised
    (response and EOS) tokens, the quantity ``mean_token_loss`` computes, summed in another
    order (equal to it up to float32 rounding). Other proxies (greedy decoding, a
    classifier) are called as ``proxy(model, tokenizer, examples)``. A ``max_length`` shorter
    than the model's context truncates the held-out loss's sequences, which the proxies
    never do; the loss then gets its own pass (``mean_token_loss``).

    The harmful loss is computed first; when it is not finite the model has diverged and the
    proxies are not called (a diverged model is never scored as harmless).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        evaluation: Sequence[Example],
        reference: Sequence[Example],
        *,
        harm_proxy: HarmProxy | None,
        capability_proxy: CapabilityProxy | None,
        max_length: int,
        device: torch.device,
        batch_size: int = 64,
    ) -> None:
        if not evaluation:
            raise HftaInputError("the evaluation data holds no examples")
        self.tokenizer = tokenizer
        self.evaluation = list(evaluation)
        self.reference = list(reference)
        self.harm_proxy = harm_proxy
        self.capability_proxy = capability_proxy
        self.max_length = max_length
        self.device = device
        self.batch_size = batch_size
        self._loss_batches: list[dict[str, Tensor]] | None = None
        self._evaluation_set: EncodedSet | None = None
        self._reference_set: EncodedSet | None = None
        self._packed: PackedSets | None = None
        self._prepared = False
        self._key: tuple[object, ...] | None = None
        self._first = True

    @staticmethod
    def _forced(proxy: object) -> TeacherForcedProxy | None:
        from empirical.measurement.proxies import TeacherForcedProxy

        return proxy if isinstance(proxy, TeacherForcedProxy) else None

    def _sets_key(self, limit: int) -> tuple[object, ...] | None:
        """What ``_prepare``'s tensors are a function of (``SETS``' key), or ``None`` for a
        tokenizer whose content cannot be fingerprinted."""
        from empirical.engine.evaluation_cache import tokenizer_fingerprint

        fingerprint = tokenizer_fingerprint(self.tokenizer)
        if fingerprint is None:
            return None
        harm, capability = self._forced(self.harm_proxy), self._forced(self.capability_proxy)
        return (
            fingerprint,
            tuple(self.evaluation),
            tuple(self.reference),
            self.max_length,
            limit,
            self.device,
            self.batch_size,
            None if harm is None else harm.batch_size,
            None if capability is None else capability.batch_size,
            self.harm_proxy is not None,
        )

    def _prepare(self, model: nn.Module) -> None:
        """Encode the sets once (the first call), for ``model``'s context and device, or take
        them from the process's ``SETS`` cache (another evaluator encoded the same)."""
        from empirical.engine.evaluation_cache import SETS
        from empirical.measurement.proxies import context_length

        if self._prepared:
            return
        limit = context_length(model)
        self._key = self._sets_key(limit)
        prepared = None if self._key is None else SETS.get(self._key)
        if prepared is None:
            prepared = self._encode(limit)
            if self._key is not None:
                SETS.put(self._key, prepared)
        self._loss_batches, self._evaluation_set, self._reference_set, self._packed = prepared
        self._prepared = True

    def _encode(self, limit: int) -> PreparedSets:
        """The held-out loss's own batches (only when ``max_length`` truncates), the
        teacher-forced sets and their packing."""
        from empirical.measurement.proxies import encode_for_scoring, pack_for_scoring

        harm = self._forced(self.harm_proxy)
        loss_batches = evaluation_set = reference_set = packed = None
        if self.max_length < limit:
            loss_batches = batches_of(
                encode_on(self.tokenizer, self.evaluation, self.max_length, self.device),
                self.batch_size,
            )
        if loss_batches is None or harm is not None:
            evaluation_set = encode_for_scoring(
                self.tokenizer,
                self.evaluation,
                limit=limit,
                device=self.device,
                batch_size=harm.batch_size if harm is not None else self.batch_size,
                whole_responses=self.harm_proxy is not None,
            )
        capability = self._forced(self.capability_proxy)
        if capability is not None and self.reference:
            reference_set = encode_for_scoring(
                self.tokenizer,
                self.reference,
                limit=limit,
                device=self.device,
                batch_size=capability.batch_size,
            )
        sets = [e for e in (evaluation_set, reference_set) if e is not None]
        if sets:
            packed = pack_for_scoring(sets)
        return PreparedSets(loss_batches, evaluation_set, reference_set, packed)

    def _score(self, model: nn.Module) -> tuple[TeacherForced | None, TeacherForced | None]:
        """The teacher-forced scores of the evaluation and the reference set (``None`` for a
        set not scored that way), both sets from the same few packed forward passes. The
        first call looks them up in ``FIRST_SCORES`` (another evaluator scored the same model
        bytes on the same sets: θ₀ of an earlier attack) and stores them there."""
        from empirical.engine.evaluation_cache import FIRST_SCORES, model_fingerprint, read_only
        from empirical.measurement.proxies import score_packed

        if self._packed is None:
            return None, None
        key = None
        if self._first and self._key is not None:
            self._first = False
            fingerprint = model_fingerprint(model)
            key = None if fingerprint is None else (self._key, fingerprint)
            cached = None if key is None else FIRST_SCORES.get(key)
            if cached is not None:
                return cached
        scores = list(score_packed(model, self._packed))
        evaluation = scores.pop(0) if self._evaluation_set is not None else None
        reference = scores.pop(0) if self._reference_set is not None else None
        if key is not None:
            FIRST_SCORES.put(key, (read_only(evaluation), read_only(reference)))
        return evaluation, reference

    def __call__(self, model: nn.Module) -> tuple[float | None, float | None, float | None]:
        """``(harmful_loss, harm, capability)``; ``harmful_loss`` is NaN-free or ``None``.
        The one function that evaluates an iterate (a progress hook wraps this call)."""
        self._prepare(model)
        scored, reference = self._score(model)
        if self._loss_batches is not None:
            harmful_loss = mean_token_loss(model, self._loss_batches)
        else:
            assert scored is not None
            harmful_loss = float(scored.loss_sum.sum() / scored.tokens.sum())
        if not math.isfinite(harmful_loss):
            return None, None, None
        harm = capability = None
        if self.harm_proxy is not None:
            forced = self._forced(self.harm_proxy)
            if forced is not None and scored is not None:
                harm = float(forced.score(scored, self.evaluation))
            else:
                harm = float(self.harm_proxy(model, self.tokenizer, self.evaluation))
        if self.capability_proxy is not None:
            forced = self._forced(self.capability_proxy)
            if forced is not None and reference is not None:
                if not np.isfinite(reference.loss_sum).all():
                    raise HftaInputError("the model's cross-entropy on the examples is not finite")
                capability = float(forced.score(reference, self.reference))
            else:
                capability = float(self.capability_proxy(model, self.tokenizer, self.reference))
        return harmful_loss, harm, capability


def default_proxies(
    harm: HarmProxyName = "exact_harm",
) -> tuple[HarmProxy, CapabilityProxy]:
    """f = ``harm`` (exact harm by teacher forcing, or the sampled harm of theory's T10),
    g = task accuracy on the reference data."""
    from empirical.measurement.proxies import exact_harm, sampled_harm, task_accuracy

    proxy = exact_harm() if harm == "exact_harm" else sampled_harm()
    return cast("HarmProxy", proxy), cast("CapabilityProxy", task_accuracy())
