"""Where an attack step's time goes: cProfile over ``run_attack``'s loop, one CPU thread.

Runs the default attack's loop on the embedded model for ``STEPS`` steps (no evaluation
after θ_0, no probe) under ``cProfile`` and prints each phase's share of the steps' time
(cumulative seconds of the function that does it), then torch.profiler's top operators.
cProfile adds a roughly constant cost per Python call, which inflates the Python-heavy
phases; the shares are a map, the benchmarks (``engine_bench``) measure without it.

    .venv/bin/python -m benchmarks.profile_step            # the attack's steps
    .venv/bin/python -m benchmarks.profile_step evaluation # one evaluation, by operator kind
    .venv/bin/python -m benchmarks.profile_step trainer    # transformers.Trainer's steps
    .venv/bin/python -m benchmarks.profile_step compile    # torch.compile: cost and speed

Not part of ``make bench`` (a diagnosis, not a figure). What they found is written in
``benchmarks/engine_bench.py``'s docstring.
"""

from __future__ import annotations

import cProfile
import pstats
from typing import Any

import torch

from empirical.engine.attack import AttackConfig, run_attack
from empirical.models.model import load_model

STEPS = 150

#: phase → (file name fragment, function name) whose cumulative time is the phase's time
PHASES: dict[str, tuple[str, str]] = {
    "forward (model + loss)": ("empirical/measurement/hvp.py", "causal_lm_loss"),
    "backward": ("torch/autograd/__init__.py", "backward"),
    "optimizer step (fused AdamW)": ("torch/optim/optimizer.py", "wrapper"),
    "gradient norm": ("torch/nn/utils/clip_grad.py", "_get_total_norm"),
    "gradient clipping (norm above the limit)": (
        "torch/nn/utils/clip_grad.py", "_clip_grads_with_norm_",
    ),
    "zero_grad": ("torch/optim/optimizer.py", "zero_grad"),
    "next minibatch": ("empirical/engine/attack.py", "__next__"),
    "flatten parameters (recording)": ("empirical/engine/attack.py", "flat"),
    "model.train()": ("torch/nn/modules/module.py", "train"),
}


def profile_steps() -> None:
    """cProfile phases of ``run_attack``'s steps, then torch.profiler's top operators."""
    model, tokenizer = load_model()
    config = AttackConfig(budget_steps=STEPS, eval_every=10 * STEPS)
    run_attack(config, model=model, tokenizer=tokenizer)  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    run_attack(config, model=model, tokenizer=tokenizer)
    profiler.disable()
    stats = pstats.Stats(profiler)
    table = stats.stats  # type: ignore[attr-defined]
    total = next(
        cumulative
        for (path, _, name), (_, _, _, cumulative, _) in table.items()
        if path.endswith("empirical/engine/attack.py") and name == "_step"
    )
    print(f"steps: {STEPS}, profiled time in _step: {total:.3f} s "
          f"({1e3 * total / STEPS:.2f} ms per step under cProfile)")
    accounted = 0.0
    for phase, (fragment, function) in PHASES.items():
        seconds = sum(
            cumulative
            for (path, _, name), (_, _, _, cumulative, _) in table.items()
            if fragment in path and name == function
        )
        accounted += seconds
        print(f"  {phase:42s} {100 * seconds / total:5.1f}%  {1e3 * seconds / STEPS:6.3f} ms")
    print(f"  {'rest (recording, reads, Python)':42s} {100 * (1 - accounted / total):5.1f}%")

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as torch_profile:
        run_attack(AttackConfig(budget_steps=50, eval_every=500), model=model,
                   tokenizer=tokenizer)
    print(torch_profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


#: operator kind → the aten operators counted in it (self CPU time, torch.profiler)
OPERATOR_KINDS: dict[str, tuple[str, ...]] = {
    "matrix products": ("aten::addmm", "aten::mm", "aten::bmm"),
    "tanh (GELU)": ("aten::tanh",),
    "element-wise mul/add/pow (GELU, residuals, attention)": (
        "aten::mul", "aten::add", "aten::pow", "aten::div", "aten::sub",
    ),
    "softmax (attention)": ("aten::_softmax",),
    "layer norm": ("aten::native_layer_norm",),
    "copies (contiguous, mask, dtype)": ("aten::copy_", "aten::_to_copy"),
    "cross-entropy (log-softmax, nll)": ("aten::_log_softmax", "aten::nll_loss2d_forward",
                                         "aten::nll_loss_forward"),
    "argmax and compare": ("aten::argmax", "aten::eq", "aten::ne", "aten::all",
                           "aten::bitwise_or", "aten::bitwise_not", "aten::logical_not"),
}


def profile_evaluation(repeats: int = 5) -> None:
    """One evaluation of the default attack (evaluation and reference sets, exact harm and
    task accuracy): the first call's extra cost (tokenizing and caching the sets), then
    torch.profiler's self CPU time of ``repeats`` later calls by operator kind."""
    import time

    from torch.profiler import ProfilerActivity, profile

    from empirical.engine.attack import Evaluator, default_proxies, resolve_data, without_kv_cache
    from empirical.measurement.proxies import context_length

    model, tokenizer = load_model()
    splits = resolve_data(AttackConfig())
    harm, capability = default_proxies()
    evaluator = Evaluator(
        tokenizer, splits.evaluation, splits.reference, harm_proxy=harm,
        capability_proxy=capability, max_length=context_length(model),
        device=torch.device("cpu"),
    )
    with without_kv_cache(model):
        started = time.process_time()
        evaluator(model)
        first = time.process_time() - started
        started = time.process_time()
        for _ in range(repeats):
            evaluator(model)
        later = (time.process_time() - started) / repeats
        with profile(activities=[ProfilerActivity.CPU]) as torch_profile:
            for _ in range(repeats):
                evaluator(model)
    print(f"first evaluation {1e3 * first:.1f} ms CPU (tokenizing and caching included), "
          f"later ones {1e3 * later:.1f} ms")
    averages = torch_profile.key_averages()
    total = sum(event.self_cpu_time_total for event in averages)
    counted = 0.0
    for kind, names in OPERATOR_KINDS.items():
        seconds = sum(e.self_cpu_time_total for e in averages if e.key in names)
        counted += seconds
        print(f"  {kind:56s} {100 * seconds / total:5.1f}%")
    print(f"  {'other operators':56s} {100 * (1 - counted / total):5.1f}%")


def profile_trainer(steps: int = 150) -> None:
    """cProfile of ``transformers.Trainer`` on the engine benchmark's setting: the functions
    with the most cumulative time per step, the model's forward and backward included."""
    import cProfile

    from benchmarks.engine_bench import trainer_seconds_per_step

    model, tokenizer = load_model()
    config = AttackConfig(budget_steps=steps, eval_every=10 * steps)
    trainer_seconds_per_step(config, model, tokenizer)  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    trainer_seconds_per_step(config, model, tokenizer)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(45)


def measure_compile(steps: int = 100) -> None:
    """The bare loop of ``engine_bench`` with the model under ``torch.compile`` (inductor):
    compile time (the first step; process CPU seconds and wall seconds: the C++ compiler
    runs in child processes, which the process CPU time does not count), steady-state CPU
    milliseconds per step against the eager loop's, and how far the losses drift."""
    from empirical.engine.attack import deterministic

    model, tokenizer = load_model()
    config = AttackConfig(budget_steps=steps, eval_every=10 * steps)
    losses: dict[str, list[float]] = {}
    for name in ("eager", "compiled", "eager again", "compiled again"):
        with deterministic(config.seed, torch.device("cpu")):
            copy = copy_model(model)
        forward = torch.compile(copy) if name.startswith("compiled") else copy
        losses[name], (first_cpu, first_wall, steady) = _compiled_steps(
            config, copy, forward, tokenizer
        )
        print(f"{name:15s} first step {first_cpu:6.2f} s CPU {first_wall:6.1f} s wall, "
              f"then {1e3 * steady:.2f} ms CPU per step")
    drift = max(
        abs(a - b) for a, b in zip(losses["eager"], losses["compiled"], strict=True)
    )
    print(f"largest |loss eager − loss compiled| over {steps} steps: {drift:.2e}")


def copy_model(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model)


def _compiled_steps(
    config: AttackConfig, model: torch.nn.Module, forward: Any, tokenizer: object
) -> tuple[list[float], tuple[float, float, float]]:
    import time

    from empirical.engine.attack import (
        BatchStream,
        deterministic,
        encode_on,
        make_optimizer,
        resolve_data,
        without_kv_cache,
    )
    from empirical.engine.schedules import make_scheduler
    from empirical.measurement.hvp import causal_lm_loss

    splits = resolve_data(config)
    parameters = [p for p in model.parameters() if p.requires_grad]
    stream = BatchStream(
        encode_on(tokenizer, splits.attack, 32, torch.device("cpu")),  # type: ignore[arg-type]
        config.batch_size, torch.Generator().manual_seed(config.seed),
    )
    optimizer = make_optimizer(config, parameters)
    scheduler = make_scheduler(optimizer, config.schedule, warmup_fraction=config.warmup_fraction,
                               total_steps=config.budget_steps)
    losses: list[float] = []
    marks: list[tuple[float, float]] = []
    with deterministic(config.seed, torch.device("cpu")), without_kv_cache(model):
        model.train()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(config.budget_steps):
            loss = causal_lm_loss(forward, next(stream))
            torch.autograd.backward(loss)
            torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm or 1.0, foreach=True)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            marks.append((time.process_time(), time.perf_counter()))
    steady = (marks[-1][0] - marks[0][0]) / (len(marks) - 1)
    return losses, (marks[0][0] - cpu, marks[0][1] - wall, steady)


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    what = argv[0] if argv else "steps"
    actions = {
        "steps": profile_steps,
        "evaluation": profile_evaluation,
        "trainer": profile_trainer,
        "compile": measure_compile,
    }
    if what not in actions:
        raise SystemExit(f"usage: python -m benchmarks.profile_step [{'|'.join(actions)}]")
    actions[what]()


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
