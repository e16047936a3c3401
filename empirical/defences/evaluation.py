"""Scores of a model before and after a defence: harm and capability on held-out data.

The immunization conditions compare a harm proxy f(M, D_harmful) with a threshold and a
capability proxy g(M, D_ref) before and after immunization (Rosati et al. 2024 §3). Here, with
the toolkit's exact proxies (``empirical.measurement.proxies``) on held-out data that the defence
never saw
(the embedded benchmark's ``evaluation`` and ``reference`` splits by default):

* ``harmful_loss``: ``reference_loss`` (mean token cross-entropy) of the harmful answers;
* ``harm``: ``exact_harm`` of the harmful answers (teacher forcing);
* ``reference_loss`` and ``harmless_accuracy``: ``reference_loss`` and ``task_accuracy`` on
  harmless data (stability).

Scored on the user's own held-out files (``hfta immunize --evaluate FILE``), an
``EvaluationRecord`` names the files and fingerprints their harmful and harmless rows next to
the scores (``OUT/evaluation.json``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from transformers import PreTrainedTokenizerBase

from empirical.datasets.benchmark import Benchmark, embedded_benchmark
from empirical.datasets.data import Example
from empirical.defences.data import SplitFingerprint
from empirical.defences.record import ModelScores
from empirical.measurement.proxies import exact_harm, reference_loss, task_accuracy
from theory.errors import HftaInputError


def score_model(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    harmful: Sequence[Example],
    harmless: Sequence[Example],
    *,
    refusal: str | None = None,
) -> ModelScores:
    """``ModelScores`` of ``model`` on held-out ``harmful`` and ``harmless`` examples."""
    if not harmful or not harmless:
        raise HftaInputError("scoring a model needs held-out harmful and harmless examples")
    return ModelScores(
        harmful_loss=reference_loss()(model, tokenizer, harmful),
        harm=exact_harm(refusal)(model, tokenizer, harmful),
        reference_loss=reference_loss()(model, tokenizer, harmless),
        harmless_accuracy=task_accuracy()(model, tokenizer, harmless),
    )


class EvaluationRecord(BaseModel):
    """Scores before and after a defence on given held-out files, and which files they were."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: list[str] = Field(min_length=1, description="the evaluation files")
    splits: dict[str, SplitFingerprint] = Field(
        description="fingerprints of its harmful and its harmless rows"
    )
    scores_before: ModelScores
    scores_after: ModelScores


@functools.lru_cache(maxsize=2)
def _benchmark(seed: int) -> Benchmark:
    return embedded_benchmark(seed=seed)


def score_on_benchmark(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, *, seed: int = 0
) -> ModelScores:
    """``score_model`` on the embedded benchmark's ``evaluation`` and ``reference`` splits."""
    benchmark = _benchmark(seed)
    return score_model(
        model, tokenizer, benchmark.evaluation, benchmark.reference, refusal=benchmark.refusal
    )
