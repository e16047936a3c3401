"""Figures for the attack engine (``empirical.engine.attack``) on the embedded model, one CPU
thread.

* ``attack_steps_per_second``: training steps per second of the default attack (AdamW,
  lr 3e-4, batch 16, cosine with 10% warmup, 200 steps; evaluations excluded), and
  ``attack_wall_seconds`` for the whole run, evaluations and set-up included, with
  ``attack_eval_seconds`` and ``attack_eval_fraction`` = eval / wall (target ≤ 0.2).
* ``instrumentation_overhead_ratio``: CPU time of ``run_attack``'s steps (recording loss,
  rate, gradient norm, update norm, distance; no probe, no curvature, no evaluation) over a
  bare torch loop doing the same forward passes, optimizer, schedule, clipping and batches
  with nothing recorded; target ≤ 1.02. ``PAIRS`` paired runs (ours and bare back to back,
  the order alternating), the median of the per-pair ratios, with ``..._min`` and ``..._max``
  as the spread.
* ``vs_hf_trainer_speed_ratio``: our steps per second over ``transformers.Trainer``'s on the
  same model, data, batch size, optimizer, schedule, clipping and number of steps (the
  Trainer keeps its defaults otherwise: fused AdamW on the CPU, its data loader and
  collation, the model's key/value cache on). Steady-state steps: CPU seconds from the end
  of the first step to the end of the last (a ``TrainerCallback``), against our loop's
  training CPU seconds per step; ``TRAINER_PAIRS`` paired runs, median with min and max;
  aim ≥ 1.5.

The ratios compare process CPU seconds (one torch thread), not wall-clock seconds: on a
machine shared with other jobs the wall clock mostly measures waiting for a core, and pairing
cancels most of the slow drift of a shared machine's speed (it cannot cancel a burst that hits
one member of a pair: that shows as spread).

Where a step's time goes (``python -m benchmarks.profile_step``: cProfile over 150 steps of
the default attack on the embedded model, then torch.profiler; measured on the shared 2-core
machine under load, so the shares, not the milliseconds, are the finding): the forward pass
44%, the backward pass 36%, the fused AdamW step 5.5%, clipping 4.4%, zero_grad 1%, the next
minibatch 0.8%, flattening θ 0.4%, the rest (two norms, the host reads, the recorder, the
loop's Python) 7.5%, which cProfile inflates. Forward and backward are dominated by the
model's own operators: matrix products (``addmm``, ``mm``, ``bmm``) and the tanh-GELU's
element-wise chain (``mul``, ``tanh``, ``pow``, ``add``), each microseconds of work on 16×17
tokens, so per-operator dispatch matters as much as arithmetic. Removed from the loop after
the profile: ``model.train()`` at every step (it walks every module; now only after an
evaluation or the probe), ``flat_parameters``'s per-tensor Python work (65 → 15 µs:
``attack.ParameterFlattener``), the allocation of Δ_s and θ − θ_0 at every step (buffers
made once). ``transformers.Trainer`` also turns the model's key/value cache off in training
(``TrainingArguments.use_cache = False``), as the loop does (``attack.without_kv_cache``,
≈ 7% of a step, the same numbers bit for bit); after that the Trainer's own per-step work
(data loader, collation, callbacks) is small next to forward and backward, which bounds how
much faster than the Trainer any loop running the same model code can be.

Figures are printed (``python -m benchmarks engine_bench``), never asserted in tests.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from typing import Any

import torch

from empirical.engine.attack import (
    AttackConfig,
    BatchStream,
    deterministic,
    encode_on,
    make_optimizer,
    resolve_data,
    run_attack,
    without_kv_cache,
)
from empirical.engine.schedules import make_scheduler
from empirical.measurement.hvp import causal_lm_loss
from empirical.measurement.proxies import context_length
from empirical.models.model import load_model

STEPS = 100
PAIRS = 7
TRAINER_PAIRS = 5


def bare_loop_seconds(config: AttackConfig, model: torch.nn.Module, tokenizer: Any) -> float:
    """The attack of ``run_attack`` with nothing recorded: CPU seconds of its steps.

    Same data order, forward pass (key/value cache off), loss, optimizer, schedule and
    clipping as ``empirical.engine.attack``'s loop; no loss read back, no norms, no parameter copy.
    """
    device = torch.device(config.device)
    splits = resolve_data(config)
    with deterministic(config.seed, device):
        model = copy.deepcopy(model)
        parameters = [p for p in model.parameters() if p.requires_grad]
        stream = BatchStream(
            encode_on(tokenizer, splits.attack, context_length(model), device),
            config.batch_size,
            torch.Generator().manual_seed(config.seed),
        )
        optimizer = make_optimizer(config, parameters)
        scheduler = make_scheduler(
            optimizer, config.schedule, warmup_fraction=config.warmup_fraction,
            total_steps=config.budget_steps,
        )
        model.train()
        with without_kv_cache(model):
            started = time.process_time()
            for _ in range(config.budget_steps):
                loss = causal_lm_loss(model, next(stream))
                torch.autograd.backward(loss)
                torch.nn.utils.clip_grad_norm_(
                    parameters, config.max_grad_norm or 1.0, foreach=True
                )
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            return time.process_time() - started


def ours_seconds(config: AttackConfig, model: torch.nn.Module, tokenizer: Any) -> float:
    """CPU seconds of ``run_attack``'s training steps (evaluations excluded)."""
    trajectory = run_attack(config, model=model, tokenizer=tokenizer)
    assert trajectory.timing.train_cpu_seconds is not None
    return trajectory.timing.train_cpu_seconds


def trainer_seconds_per_step(
    config: AttackConfig, model: torch.nn.Module, tokenizer: Any
) -> float:
    """``transformers.Trainer`` on the same model, data and settings: CPU seconds per
    steady-state step (end of step 1 to end of the last step)."""
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    splits = resolve_data(config)
    encoded = encode_on(tokenizer, splits.attack, context_length(model), torch.device("cpu"))
    dataset = [{k: v[i] for k, v in encoded.items()} for i in range(len(splits.attack))]
    marks: list[float] = []

    class StepClock(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            marks.append(time.process_time())

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
        trainer = Trainer(
            model=copy.deepcopy(model), args=arguments, train_dataset=dataset,
            callbacks=[StepClock()],
        )
        trainer.train()
    if len(marks) != config.budget_steps:
        raise RuntimeError(f"Trainer ran {len(marks)} steps, not {config.budget_steps}")
    return (marks[-1] - marks[0]) / (len(marks) - 1)


def paired_ratios(
    first: Any, second: Any, pairs: int
) -> tuple[list[float], list[float], list[float]]:
    """``pairs`` runs of ``first()`` and ``second()`` back to back, the order alternating;
    returns (first's values, second's values, first/second per pair)."""
    a: list[float] = []
    b: list[float] = []
    for index in range(pairs):
        if index % 2 == 0:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
    return a, b, [x / y for x, y in zip(a, b, strict=True)]


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
    ours, bare, overhead = paired_ratios(
        lambda: ours_seconds(timed, model, tokenizer),
        lambda: bare_loop_seconds(timed, model, tokenizer),
        PAIRS,
    )
    trainer_step, _, speed = paired_ratios(
        lambda: trainer_seconds_per_step(timed, model, tokenizer),
        lambda: ours_seconds(timed, model, tokenizer) / STEPS,
        TRAINER_PAIRS,
    )
    timing = default.timing
    return {
        "attack_steps_per_second": round(default.steps_per_second, 1),
        "attack_cpu_steps_per_second": round(
            default.n_steps / (timing.train_cpu_seconds or float("nan")), 1
        ),
        "attack_wall_seconds": round(timing.wall_seconds, 2),
        "attack_eval_seconds": round(timing.eval_seconds, 2),
        "attack_eval_fraction": round(timing.eval_seconds / timing.wall_seconds, 3),
        "bare_loop_cpu_steps_per_second": round(STEPS / statistics.median(bare), 1),
        "ours_cpu_steps_per_second": round(STEPS / statistics.median(ours), 1),
        "instrumentation_overhead_ratio": round(statistics.median(overhead), 4),
        "instrumentation_overhead_ratio_min": round(min(overhead), 4),
        "instrumentation_overhead_ratio_max": round(max(overhead), 4),
        "instrumentation_pairs": float(PAIRS),
        "hf_trainer_cpu_steps_per_second": round(1.0 / statistics.median(trainer_step), 1),
        "vs_hf_trainer_speed_ratio": round(statistics.median(speed), 3),
        "vs_hf_trainer_speed_ratio_min": round(min(speed), 3),
        "vs_hf_trainer_speed_ratio_max": round(max(speed), 3),
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:40s} {value}")
