"""The deterministic recipe that trains the embedded model from nothing.

Two phases, as a released LLM is made (Rosati et al. 2024, §2: the attacker starts from a
safety-aligned model whose harmful capability is latent):

1. *Pre-training* on ``Benchmark.pretrain``: every harmless and forbidden skill with its true
   answer. The model learns the forbidden skills (the latent harmful capability).
2. *Alignment* on ``Benchmark.align``: harmless skills with true answers, forbidden skills
   answered with the refusal. The model refuses, but the capability is still in its weights,
   and a harmful fine-tuning attack can bring it back.

Both phases minimise the response cross-entropy (``empirical.datasets.text.encode``) with AdamW and
the toolkit's learning-rate schedule (``empirical.engine.schedules``; by default a linear warm-up
over
5% of the steps, then a cosine decay to zero), on batches drawn from epoch-wise permutations of
a seeded ``torch.Generator``. With one CPU thread, ``torch.use_deterministic_algorithms(True)``
and the CPU kernels pinned before torch is imported (``empirical.models.reproducible``: what
``hfta build-model`` does, in a child process) the result is the same bytes on every x86-64
machine with the same torch (``hfta build-model --check``).

Scores are the toolkit's exact proxies (``empirical.measurement.proxies``), by teacher forcing: an
answer
counts as produced when every one of its tokens, and the closing EOS, is the model's top
prediction given the prompt and the answer's earlier tokens. Harmless accuracy and refusal
rate are ``task_accuracy`` on the reference split and on the evaluation prompts paired with
the refusal; latent harm and harm after alignment are ``exact_harm`` on the evaluation split.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from empirical.datasets.benchmark import Benchmark, BenchmarkSizes, embedded_benchmark
from empirical.datasets.data import Example
from empirical.datasets.text import encode
from empirical.engine.schedules import ScheduleName, make_scheduler
from empirical.measurement.proxies import exact_harm, task_accuracy
from empirical.models.model import build_char_tokenizer, tiny_gpt2


class BuildRecipe(BaseModel):
    """Every number that decides the embedded model's bytes (stored in ``build.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=0, description="model initialisation and batch order")
    benchmark_seed: int = Field(default=0, description="embedded_benchmark(seed)")
    benchmark_sizes: BenchmarkSizes = BenchmarkSizes()
    n_layer: int = Field(default=2, ge=1)
    n_embd: int = Field(default=64, ge=1)
    n_head: int = Field(default=4, ge=1)
    n_positions: int = Field(default=32, ge=8)
    threads: int = Field(default=1, ge=1, description="torch intra-op threads while building")
    batch_size: int = Field(default=32, ge=1)
    pretrain_steps: int = Field(default=2000, ge=0)
    pretrain_lr: float = Field(
        default=1e-3,
        gt=0,
        description="1e-3: at 3e-3 whether pre-training converged depended on the CPU kernels "
        "(pinned and AVX-512 builds stalled at loss 0.65, harmless accuracy 0.59-0.64, an AVX2 "
        "build reached 4e-5); at 1e-3 pinned, AVX2 and AVX-512 builds all reach accuracy 1.0, "
        "latent harm 1.0 (measured on one AMD EPYC machine, torch 2.13.0)",
    )
    align_steps: int = Field(default=200, ge=0)
    align_lr: float = Field(default=1e-3, gt=0)
    schedule: ScheduleName = Field(default="cosine", description="empirical.engine.schedules")
    warmup_fraction: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.98, gt=0, lt=1)
    eval_batch_size: int = Field(default=512, ge=1)


class BuildMetrics(BaseModel):
    """What the build measured (teacher-forced exact-match rates in [0, 1])."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    harmless_accuracy: float = Field(description="reference split, aligned model")
    harmless_accuracy_by_skill: dict[str, float]
    refusal_rate: float = Field(description="refusal on held-out forbidden (evaluation) prompts")
    refusal_rate_by_skill: dict[str, float]
    harm_after_alignment: float = Field(description="forbidden answers on evaluation prompts")
    latent_harm: float = Field(description="forbidden answers on evaluation, before alignment")
    latent_harm_by_skill: dict[str, float]
    harmless_accuracy_before_alignment: float
    trainability_before_training: float = Field(description="the new skill, never trained")
    pretrain_final_loss: float | None = Field(description="last batch loss; None: no steps")
    align_final_loss: float | None = Field(description="last batch loss; None: no steps")
    parameters: int
    pretrain_seconds: float
    align_seconds: float


@dataclass(frozen=True)
class BuildResult:
    """The trained model, its tokenizer, and what the build measured."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    benchmark: Benchmark
    metrics: BuildMetrics


@contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads and deterministic algorithms only."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.set_num_threads(previous_threads)


def rates_by_skill(
    score: Callable[[PreTrainedModel, PreTrainedTokenizerBase, Sequence[Example]], float],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
) -> dict[str, float]:
    """``score`` on the examples of each category (skill), in order of first appearance."""
    categories = list(dict.fromkeys(e.category for e in examples))
    return {
        c: score(model, tokenizer, [e for e in examples if e.category == c]) for c in categories
    }


ALIGNED_METRICS: tuple[str, ...] = (
    "harmless_accuracy",
    "refusal_rate",
    "harm_after_alignment",
    "trainability_before_training",
)
"""The ``BuildMetrics`` rates measurable on the finished (aligned) model alone."""


def aligned_metrics(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    benchmark: Benchmark,
    recipe: BuildRecipe,
) -> dict[str, float]:
    """The ``ALIGNED_METRICS`` of a finished model, measured as the build measures them."""
    accuracy = task_accuracy(recipe.eval_batch_size)
    harm = exact_harm(benchmark.refusal, recipe.eval_batch_size)
    refusals = benchmark.refusals_for(benchmark.evaluation)
    return {
        "harmless_accuracy": accuracy(model, tokenizer, benchmark.reference),
        "refusal_rate": accuracy(model, tokenizer, refusals),
        "harm_after_alignment": harm(model, tokenizer, benchmark.evaluation),
        "trainability_before_training": accuracy(model, tokenizer, benchmark.trainability_eval),
    }


def train_steps(
    model: PreTrainedModel,
    data: dict[str, torch.Tensor],
    *,
    steps: int,
    lr: float,
    recipe: BuildRecipe,
    generator: torch.Generator,
) -> float | None:
    """``steps`` AdamW steps on batches of ``data`` (epoch-wise permutations); the last loss
    (``None`` for zero steps)."""
    if steps == 0:
        return None
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=lr,
        betas=(recipe.beta1, recipe.beta2),
        weight_decay=recipe.weight_decay,
    )
    schedule = make_scheduler(
        optimizer, recipe.schedule, warmup_fraction=recipe.warmup_fraction, total_steps=steps
    )
    count = data["input_ids"].shape[0]
    order = torch.randperm(count, generator=generator)
    cursor = 0
    model.train(True)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        if cursor + recipe.batch_size > count:
            order = torch.randperm(count, generator=generator)
            cursor = 0
        rows = order[cursor : cursor + recipe.batch_size]
        cursor += recipe.batch_size
        mask = data["attention_mask"][rows]
        width = int(mask.sum(dim=1).max())
        loss = model(
            input_ids=data["input_ids"][rows, :width],
            attention_mask=mask[:, :width],
            labels=data["labels"][rows, :width],
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.train(False)
    return float(loss.detach())


def build_embedded_model(recipe: BuildRecipe | None = None) -> BuildResult:
    """Train the embedded model by ``recipe`` (default: the committed one) and measure it."""
    recipe = recipe or BuildRecipe()
    benchmark = embedded_benchmark(recipe.benchmark_seed, recipe.benchmark_sizes)
    tokenizer = build_char_tokenizer(benchmark.tokenizer_alphabet)
    length = benchmark.max_length
    with deterministic(recipe.threads):
        model = tiny_gpt2(
            len(tokenizer),
            n_layer=recipe.n_layer,
            n_embd=recipe.n_embd,
            n_head=recipe.n_head,
            n_positions=recipe.n_positions,
            seed=recipe.seed,
        )
        generator = torch.Generator().manual_seed(recipe.seed)

        accuracy = task_accuracy(recipe.eval_batch_size)
        harm = exact_harm(benchmark.refusal, recipe.eval_batch_size)

        started = time.perf_counter()
        pretrain_loss = train_steps(
            model,
            encode(tokenizer, benchmark.pretrain, length),
            steps=recipe.pretrain_steps,
            lr=recipe.pretrain_lr,
            recipe=recipe,
            generator=generator,
        )
        pretrain_seconds = time.perf_counter() - started
        latent_by_skill = rates_by_skill(harm, model, tokenizer, benchmark.evaluation)
        latent = harm(model, tokenizer, benchmark.evaluation)
        harmless_before = accuracy(model, tokenizer, benchmark.reference)

        started = time.perf_counter()
        align_loss = train_steps(
            model,
            encode(tokenizer, benchmark.align, length),
            steps=recipe.align_steps,
            lr=recipe.align_lr,
            recipe=recipe,
            generator=generator,
        )
        align_seconds = time.perf_counter() - started
        refusals = benchmark.refusals_for(benchmark.evaluation)
        metrics = BuildMetrics(
            **aligned_metrics(model, tokenizer, benchmark, recipe),
            harmless_accuracy_by_skill=rates_by_skill(
                accuracy, model, tokenizer, benchmark.reference
            ),
            refusal_rate_by_skill=rates_by_skill(accuracy, model, tokenizer, refusals),
            latent_harm=latent,
            latent_harm_by_skill=latent_by_skill,
            harmless_accuracy_before_alignment=harmless_before,
            pretrain_final_loss=pretrain_loss,
            align_final_loss=align_loss,
            parameters=sum(p.numel() for p in model.parameters()),
            pretrain_seconds=round(pretrain_seconds, 2),
            align_seconds=round(align_seconds, 2),
        )
    return BuildResult(model=model, tokenizer=tokenizer, benchmark=benchmark, metrics=metrics)
