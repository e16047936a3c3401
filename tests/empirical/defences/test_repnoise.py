"""``repnoise`` moves the harmful answers' representations toward Gaussian noise.

The check: the summed MMD² between the hidden states of the held-out harmful answers
(evaluation split) and Gaussian noise (fixed draws) falls to at most ``SHRINK`` of its value
before the defence, and the reference loss moves by at most ``EPSILON``. It runs with β = 1:
at the paper's β = 0.001 the −α log CE ascent dominates on the embedded model and the MMD
*grows* (measured 1.58 → 2.37 over 300 steps; see RepNoiseConfig.beta). The no-op defence and
the sign-flipped MMD term (pushing the representations away from noise) must fail the check.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from empirical.defences import DefenceData, Term, get
from empirical.defences.base import DefenceBatch, DefenceConfig, TrainingState
from empirical.defences.evaluation import score_on_benchmark
from empirical.defences.repnoise import RepNoise, RepNoiseConfig, representation_mmd

pytestmark = pytest.mark.slow

STEPS = 60
BETA = 1.0
SHRINK = 0.8
EPSILON = 0.05

Embedded = tuple[PreTrainedModel, PreTrainedTokenizerFast]


class _SignFlipped(RepNoise):
    """Negative control: −β · MMD², the representations are pushed away from noise."""

    name: ClassVar[str] = "repnoise sign-flipped (test)"
    Config: ClassVar[type[DefenceConfig]] = RepNoiseConfig

    def terms(self, state: TrainingState, batch: DefenceBatch) -> list[Term]:
        return [
            Term(t.name, t.value, -t.weight if t.name == "representation_mmd" else t.weight)
            for t in super().terms(state, batch)
        ]


def _mmd(model: nn.Module, batch: dict[str, Tensor]) -> float:
    config = RepNoiseConfig()
    with torch.no_grad():
        return float(
            representation_mmd(
                model,
                batch,
                layers=config.layers,
                noise_std=config.noise_std,
                bandwidth_scales=config.bandwidth_scales,
                generator=torch.Generator().manual_seed(1234),
            )
        )


def _check_noised(
    model: nn.Module,
    original: nn.Module,
    batch: dict[str, Tensor],
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    before, after = _mmd(original, batch), _mmd(model, batch)
    assert after <= SHRINK * before, (before, after)
    reference_before = score_on_benchmark(original, tokenizer).reference_loss
    reference_after = score_on_benchmark(model, tokenizer).reference_loss
    assert abs(reference_after - reference_before) <= EPSILON


@pytest.fixture(scope="module")
def harmful_sample(held_out_harmful: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v[::3] for k, v in held_out_harmful.items()}


def test_repnoise_moves_harmful_representations_toward_noise(
    embedded: Embedded, defence_data: DefenceData, harmful_sample: dict[str, Tensor]
) -> None:
    model, tokenizer = embedded
    defence = get("repnoise")
    result = defence.apply(
        model, tokenizer, defence_data, defence.configure(steps=STEPS, beta=BETA)
    )
    _check_noised(result.model, model, harmful_sample, tokenizer)
    assert result.record.hyperparameters["beta"] == BETA


@pytest.mark.negative_control
def test_check_fails_on_the_no_op_defence(
    embedded: Embedded, no_op_model: PreTrainedModel, harmful_sample: dict[str, Tensor]
) -> None:
    with pytest.raises(AssertionError):
        _check_noised(no_op_model, embedded[0], harmful_sample, embedded[1])


@pytest.mark.negative_control
def test_check_fails_on_the_sign_flipped_mmd(
    embedded: Embedded, defence_data: DefenceData, harmful_sample: dict[str, Tensor]
) -> None:
    model, tokenizer = embedded
    flipped = _SignFlipped()
    result = flipped.apply(
        model, tokenizer, defence_data, flipped.configure(steps=STEPS, beta=BETA)
    )
    with pytest.raises(AssertionError):
        _check_noised(result.model, model, harmful_sample, tokenizer)
