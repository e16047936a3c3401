"""Figures for the attack engine (``empirical.attack``) on the embedded model, one CPU thread.

* ``attack_steps_per_second``: training steps per second of the default attack (AdamW,
  lr 3e-4, batch 16, cosine with 10% warmup, 200 steps; evaluations excluded), and
  ``attack_wall_seconds`` for the whole run, evaluations and set-up included.
* ``instrumentation_overhead_ratio``: time per step of ``run_attack`` (recording loss, rate,
  gradient norm, update norm, distance; no probe, no curvature) over a bare torch loop doing
  the same optimizer, schedule, clipping and batches with no recording; target ≤ 1.05.
* ``vs_hf_trainer_speed_ratio``: our steps per second over ``transformers.Trainer``'s on the
  same model, data, batch size, optimizer, schedule, clipping and number of steps
  (``Trainer.train()`` timed whole against our loop's training steps; the Trainer keeps its
  default optimizer implementation, fused AdamW on the CPU); aim ≥ 1.2.

The ratios compare process CPU seconds (one torch thread), not wall-clock seconds: on a
machine shared with other jobs the wall clock mostly measures waiting for a core. The three
loops run in alternation ``REPEATS`` times and the fastest run of each counts.

Figures are printed (``python -m benchmarks engine_bench``), never asserted in tests.
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

import torch

from empirical.attack import (
    AttackConfig,
    BatchStream,
    deterministic,
    encode_on,
    make_optimizer,
    resolve_data,
    run_attack,
)
from empirical.hvp import causal_lm_loss
from empirical.model import load_model
from empirical.proxies import context_length
from empirical.schedules import make_scheduler

STEPS = 100
REPEATS = 4


def _bare_loop_seconds(config: AttackConfig, model: torch.nn.Module, tokenizer: Any) -> float:
    """The same attack as ``run_attack`` with nothing recorded: CPU seconds of its steps."""
    import copy

    device = torch.device(config.device)
    splits = resolve_data(config)
    with deterministic(config.seed, device):
        model = copy.deepcopy(model)
        parameters = [p for p in model.parameters() if p.requires_grad]
        limit = context_length(model)
        stream = BatchStream(
            encode_on(tokenizer, splits.attack, limit, device),
            config.batch_size,
            torch.Generator().manual_seed(config.seed),
        )
        optimizer = make_optimizer(config, parameters)
        scheduler = make_scheduler(
            optimizer, config.schedule, warmup_fraction=config.warmup_fraction,
            total_steps=config.budget_steps,
        )
        model.train()
        started = time.process_time()
        for _ in range(config.budget_steps):
            loss = causal_lm_loss(model, next(stream))
            torch.autograd.backward(loss)
            torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm or 1.0, foreach=True)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        return time.process_time() - started


def _trainer_seconds(config: AttackConfig, model: torch.nn.Module, tokenizer: Any) -> float:
    """``transformers.Trainer`` on the same model, data and settings: CPU seconds of
    ``train()``."""
    import copy

    from transformers import Trainer, TrainingArguments
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    splits = resolve_data(config)
    encoded = encode_on(tokenizer, splits.attack, context_length(model), torch.device("cpu"))
    dataset = [{k: v[i] for k, v in encoded.items()} for i in range(len(splits.attack))]
    with tempfile.TemporaryDirectory() as directory:
        arguments = TrainingArguments(
            output_dir=directory,
            max_steps=config.budget_steps,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            lr_scheduler_type=config.schedule,
            warmup_steps=config.warmup_fraction,
            weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm or 0.0,
            logging_steps=10 * config.budget_steps,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            disable_tqdm=True,
            seed=config.seed,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=copy.deepcopy(model), args=arguments, train_dataset=dataset)
        started = time.process_time()
        trainer.train()
        return time.process_time() - started


def run() -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure()
    finally:
        torch.set_num_threads(threads)


def _measure() -> dict[str, float]:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model, tokenizer = load_model()
    default = run_attack(AttackConfig(), model=model, tokenizer=tokenizer)
    timed = AttackConfig(budget_steps=STEPS, eval_every=10 * STEPS)
    ours: list[float] = []
    bare: list[float] = []
    trainer: list[float] = []
    for _ in range(REPEATS):
        trajectory = run_attack(timed, model=model, tokenizer=tokenizer)
        assert trajectory.timing.train_cpu_seconds is not None
        ours.append(trajectory.timing.train_cpu_seconds)
        bare.append(_bare_loop_seconds(timed, model, tokenizer))
        trainer.append(_trainer_seconds(timed, model, tokenizer))
    return {
        "attack_steps_per_second": round(default.steps_per_second, 1),
        "attack_cpu_steps_per_second": round(
            default.n_steps / (default.timing.train_cpu_seconds or math.nan), 1
        ),
        "attack_wall_seconds": round(default.timing.wall_seconds, 2),
        "attack_eval_seconds": round(default.timing.eval_seconds, 2),
        "bare_loop_cpu_steps_per_second": round(STEPS / min(bare), 1),
        "instrumentation_overhead_ratio": round(min(ours) / min(bare), 3),
        "hf_trainer_cpu_steps_per_second": round(STEPS / min(trainer), 1),
        "vs_hf_trainer_speed_ratio": round(min(trainer) / min(ours), 3),
    }
