"""Shared fixtures of the defence tests: the embedded model, its data, and a no-op defence.

Every defence test that trains runs on one CPU thread (the tiny model is fastest there and the
machine is shared) and on the embedded model from ``empirical.models.model.load_model()``.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from empirical.datasets.benchmark import Benchmark, embedded_benchmark
from empirical.defences.base import (
    Defence,
    DefenceBatch,
    DefenceConfig,
    StepOutcome,
    TrainingState,
)
from empirical.defences.data import DefenceData
from empirical.engine.attack import encode_on
from empirical.models.model import load_model


class NoOp(Defence):
    """A defence that changes nothing: zero gradients through the real loop (AdamW with a zero
    gradient and no weight decay does not move). The negative control of every effect test."""

    name: ClassVar[str] = "no-op (test)"
    source: ClassVar[str] = "tests: negative control"
    Config: ClassVar[type[DefenceConfig]] = DefenceConfig

    def gradient_step(self, state: TrainingState, batch: DefenceBatch) -> StepOutcome:
        for parameter in state.parameters:
            parameter.grad = torch.zeros_like(parameter)
        return StepOutcome(total=0.0, components={})


@pytest.fixture(scope="session")
def benchmark() -> Benchmark:
    return embedded_benchmark(seed=0)


@pytest.fixture(scope="session")
def embedded() -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    return load_model()


@pytest.fixture(scope="session")
def defence_data(benchmark: Benchmark) -> DefenceData:
    return DefenceData.from_benchmark(benchmark)


@pytest.fixture(scope="session")
def held_out_harmful(
    benchmark: Benchmark, embedded: tuple[PreTrainedModel, PreTrainedTokenizerFast]
) -> dict[str, torch.Tensor]:
    """The evaluation split (never seen by a defence), encoded: 300 harmful examples."""
    return encode_on(embedded[1], benchmark.evaluation, 32, torch.device("cpu"))


@pytest.fixture(scope="session")
def held_out_safe(
    benchmark: Benchmark, embedded: tuple[PreTrainedModel, PreTrainedTokenizerFast]
) -> dict[str, torch.Tensor]:
    """Held-out safe data: refusals of evaluation prompts and the reference split, encoded."""
    examples = benchmark.refusals_for(benchmark.evaluation[::3]) + benchmark.reference[::4]
    return encode_on(embedded[1], examples, 32, torch.device("cpu"))


@pytest.fixture(scope="session")
def no_op_model(
    embedded: tuple[PreTrainedModel, PreTrainedTokenizerFast], defence_data: DefenceData
) -> PreTrainedModel:
    """The embedded model passed through the no-op defence (3 steps)."""
    model, tokenizer = embedded
    return NoOp().apply(model, tokenizer, defence_data, DefenceConfig(steps=3)).model


@pytest.fixture(scope="session")
def no_op() -> type[Defence]:
    """The no-op defence class (for tests that need the class itself)."""
    return NoOp
