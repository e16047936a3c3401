"""``vaccine`` makes the alignment loss less sensitive to hidden-embedding perturbations.

The check: the increase of the alignment loss under the first-order worst perturbation of
radius ρ of every decoder layer's output (``perturbation_sensitivity``, averaged over held-out
batches of 32 safe examples: refusals of evaluation prompts and the reference split) is at
most ``RATIO`` times that of plain alignment trained with the same data, steps, rate and seed.
ρ = 8 here: at the paper's ρ = 2 the difference is within the run-to-run noise after 60 steps
on the embedded model. Negative controls: plain alignment and the no-op defence, measured the
same way, must fail the check.
"""

from __future__ import annotations

import random

import pytest
import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from empirical.datasets.benchmark import Benchmark
from empirical.defences import DefenceData, get
from empirical.defences.vaccine import perturbation_sensitivity
from empirical.engine.attack import batches_of, encode_on

pytestmark = pytest.mark.slow

STEPS = 60
RHO = 8.0
RATIO = 0.8

Embedded = tuple[PreTrainedModel, PreTrainedTokenizerFast]


@pytest.fixture(scope="module")
def safe_batches(benchmark: Benchmark, embedded: Embedded) -> list[dict[str, Tensor]]:
    examples = benchmark.refusals_for(benchmark.evaluation[::2]) + benchmark.reference[::2]
    random.Random(0).shuffle(examples)
    return batches_of(encode_on(embedded[1], examples, 32, torch.device("cpu")), 32)


def _sensitivity(model: nn.Module, batches: list[dict[str, Tensor]]) -> float:
    return sum(perturbation_sensitivity(model, b, RHO) for b in batches) / len(batches)


@pytest.fixture(scope="module")
def aligned(embedded: Embedded, defence_data: DefenceData) -> PreTrainedModel:
    defence = get("alignment")
    return defence.apply(*embedded, defence_data, defence.configure(steps=STEPS)).model


def _check_less_sensitive(
    model: nn.Module, baseline: nn.Module, batches: list[dict[str, Tensor]]
) -> None:
    candidate, reference = _sensitivity(model, batches), _sensitivity(baseline, batches)
    assert candidate <= RATIO * reference, (candidate, reference)


def test_vaccine_is_less_sensitive_than_plain_alignment(
    embedded: Embedded,
    defence_data: DefenceData,
    aligned: PreTrainedModel,
    safe_batches: list[dict[str, Tensor]],
) -> None:
    defence = get("vaccine")
    result = defence.apply(*embedded, defence_data, defence.configure(steps=STEPS, rho=RHO))
    _check_less_sensitive(result.model, aligned, safe_batches)
    curve = result.record.curve
    assert all(
        s.components["perturbed_alignment_ce"] >= s.components["alignment_ce"] for s in curve
    )


@pytest.mark.negative_control
def test_check_fails_on_plain_alignment(
    aligned: PreTrainedModel, safe_batches: list[dict[str, Tensor]]
) -> None:
    with pytest.raises(AssertionError):
        _check_less_sensitive(aligned, aligned, safe_batches)


@pytest.mark.negative_control
def test_check_fails_on_the_no_op_defence(
    no_op_model: PreTrainedModel,
    aligned: PreTrainedModel,
    safe_batches: list[dict[str, Tensor]],
) -> None:
    with pytest.raises(AssertionError):
        _check_less_sensitive(no_op_model, aligned, safe_batches)
