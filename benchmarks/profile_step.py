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
    .venv/bin/python -m benchmarks.profile_step breakdown  # ms per phase: ours, bare, Trainer

Not part of ``make bench`` (a diagnosis, not a figure). What they found is written in
``benchmarks/engine_bench.py``'s docstring.
"""

from __future__ import annotations

import contextlib
import cProfile
import pstats
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from empirical.engine.attack import AttackConfig, run_attack
from empirical.models.model import load_model

STEPS = 150

#: phase → (file name fragment, function name) whose cumulative time is the phase's time
PHASES: dict[str, tuple[str, str]] = {
    "forward (model + loss)": ("empirical/measurement/hvp.py", "causal_lm_loss"),
    "forward (lean pass + loss)": ("empirical/engine/training_forward.py", "training_loss"),
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


class PhaseClock:
    """Process CPU seconds per phase of a training step, from wrappers around the functions
    that do each phase; each wrapper also opens a ``torch.profiler.record_function`` named
    after its phase, so a torch.profiler trace carries the same phases. A phase called inside
    another one counts in the outer one only; nothing counts while ``on`` is False. Patch
    before the optimizer and its schedule are made: the schedule wraps the optimizer's bound
    ``step`` at its construction, which a later patch of the class would not reach."""

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.seconds: dict[str, float] = {}
        self.on = False
        self._depth = 0

    def wrap(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        from torch.profiler import record_function

        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on or self._depth:
                return function(*args, **kwargs)
            self._depth += 1
            started = time.process_time()
            try:
                with record_function(self.label + phase):
                    return function(*args, **kwargs)
            finally:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.process_time() - started
                self._depth -= 1

        return timed

    @contextlib.contextmanager
    def patched(self, targets: list[tuple[Any, str, str]]) -> Iterator[None]:
        """``(owner, attribute, phase)``: ``owner.attribute`` wrapped inside, restored after."""
        saved = [(owner, name, vars(owner).get(name)) for owner, name, _ in targets]
        try:
            for owner, name, phase in targets:
                setattr(owner, name, self.wrap(phase, getattr(owner, name)))
            yield
        finally:
            for owner, name, original in reversed(saved):
                if original is None:  # inherited: the subclass had no attribute of its own
                    delattr(owner, name)
                else:
                    setattr(owner, name, original)


#: the phases of a step, in the order printed ("rest": the step's time outside all of them)
BREAKDOWN_PHASES: tuple[str, ...] = (
    "forward", "backward", "optimizer", "clipping", "batch", "recording", "rest",
)


def _loop_targets() -> list[tuple[Any, str, str]]:
    """What ``run_attack``'s loop and ``engine_bench.bare_loop`` call for each phase."""
    import benchmarks.engine_bench as bench
    import empirical.engine.attack as engine

    return [
        (engine, "causal_lm_loss", "forward"),
        (bench, "causal_lm_loss", "forward"),
        (engine, "training_loss", "forward"),
        (bench, "training_loss", "forward"),
        (torch.autograd, "backward", "backward"),
        (torch.optim.AdamW, "step", "optimizer"),
        (torch.optim.lr_scheduler.LRScheduler, "step", "optimizer"),
        (torch.optim.Optimizer, "zero_grad", "optimizer"),
        (torch.nn.utils, "get_total_norm", "clipping"),
        (torch.nn.utils, "clip_grads_with_norm_", "clipping"),
        (torch.nn.utils, "clip_grad_norm_", "clipping"),
        (engine.BatchStream, "__next__", "batch"),
        (engine._AttackLoop, "_measure_update", "recording"),
    ]


def _trainer_targets() -> list[tuple[Any, str, str]]:
    """What ``transformers.Trainer``'s step calls for each phase (accelerate's wrappers
    included in the phase they wrap)."""
    from accelerate.optimizer import AcceleratedOptimizer  # type: ignore[import-untyped]
    from accelerate.scheduler import AcceleratedScheduler  # type: ignore[import-untyped]
    from transformers import Trainer

    return [
        (Trainer, "compute_loss", "forward"),
        (torch.autograd, "backward", "backward"),
        (AcceleratedOptimizer, "step", "optimizer"),
        (AcceleratedScheduler, "step", "optimizer"),
        (torch.nn.Module, "zero_grad", "optimizer"),
        (Trainer, "_clip_grad_norm", "clipping"),
        (Trainer, "get_batch_samples", "batch"),
    ]


def _lockstep_breakdown(
    config: AttackConfig, warmup: int, profiler: Any | None
) -> dict[str, tuple[dict[str, float], float]]:
    """``transformers.Trainer``'s steps with one recorded step of ``run_attack``'s loop and
    one bare step inside each (from a ``TrainerCallback``, the three in an order that
    alternates), so that the three see the same machine: CPU seconds per phase and per
    loop over the steps after ``warmup``; the Trainer's total is the CPU time from the end
    of step ``warmup`` to the end of the last minus the two loops' steps in between."""
    from transformers import TrainerCallback

    from benchmarks.engine_bench import (
        _prepared,
        bare_loop,
        our_loop,
        trainer_seconds_per_step,
    )
    from empirical.engine.attack import deterministic

    model, tokenizer = load_model()
    clocks = {
        "ours": PhaseClock("ours: "), "bare": PhaseClock("bare: "),
        "trainer": PhaseClock("trainer: "),
    }
    totals = {"ours": 0.0, "bare": 0.0}
    ends: list[float] = []

    def ours_and_bare(built: dict[str, tuple[nn.Module, Callable[[], None]]]) -> None:
        counting = len(ends) >= warmup
        clocks["trainer"].on = False
        for name in ("ours", "bare") if len(ends) % 2 == 0 else ("bare", "ours"):
            clocks[name].on = counting
            started = time.process_time()
            built[name][1]()
            if counting:
                totals[name] += time.process_time() - started
            clocks[name].on = False
        clocks["trainer"].on = counting

    with contextlib.ExitStack() as stack:
        for name in ("ours", "bare"):
            stack.enter_context(clocks[name].patched(_loop_targets()))
        stack.enter_context(clocks["trainer"].patched(_trainer_targets()))
        with deterministic(config.seed, torch.device("cpu")):
            built = {
                "ours": our_loop(config, model, tokenizer),
                "bare": bare_loop(config, model, tokenizer),
            }
        stack.enter_context(_prepared(config, *(m for m, _ in built.values())))
        for loop_model, _ in built.values():
            loop_model.train()

        class Alternate(TrainerCallback):  # type: ignore[misc]
            def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
                if len(ends) % 2 == 0:
                    ours_and_bare(built)

            def on_step_end(self, *args: Any, **kwargs: Any) -> None:
                if len(ends) % 2 == 1:
                    ours_and_bare(built)
                ends.append(time.process_time())
                clocks["trainer"].on = len(ends) >= warmup
                if profiler is not None:
                    profiler.step()

        trainer_seconds_per_step(config, model, tokenizer, callbacks=(Alternate(),))
    clocks["trainer"].on = False
    trainer_total = ends[-1] - ends[warmup - 1] - totals["ours"] - totals["bare"]
    return {
        "ours": (clocks["ours"].seconds, totals["ours"]),
        "bare": (clocks["bare"].seconds, totals["bare"]),
        "trainer": (clocks["trainer"].seconds, trainer_total),
    }


def _print_breakdown(rows: dict[str, tuple[dict[str, float], float]], steps: int) -> None:
    print(f"  {'ms per step':12s}" + "".join(f"{name:>10s}" for name in rows))
    for phase in BREAKDOWN_PHASES:
        cells = []
        for seconds, total in rows.values():
            value = total - sum(seconds.values()) if phase == "rest" else seconds.get(phase, 0.0)
            cells.append(f"{1e3 * value / steps:10.3f}")
        print(f"  {phase:12s}" + "".join(cells))
    print(f"  {'step':12s}" + "".join(f"{1e3 * t / steps:10.3f}" for _, t in rows.values()))


def profile_breakdown(steps: int = 100, warmup: int = 20) -> None:
    """One recorded step of ``run_attack``'s loop, one bare step and one
    ``transformers.Trainer`` step on the embedded model (batch 16, the default attack's
    optimizer, schedule and clipping), in lockstep (``_lockstep_breakdown``), phase by
    phase: forward (model and loss), backward, optimizer (step, schedule, zero_grad),
    clipping (the gradient's norm and the clip), the next batch, the recording (the two
    differences and norms, read back) and the rest (the loop's own Python, the host reads,
    the Trainer's bookkeeping). First CPU milliseconds per step (``PhaseClock``), then the
    same phases under torch.profiler (wall milliseconds, the profiler's own cost and the
    machine's other jobs included) and its top operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile, schedule

    config = AttackConfig(budget_steps=warmup + steps, eval_every=10 * (warmup + steps))
    rows = _lockstep_breakdown(config, warmup, None)
    print(f"CPU ms per step, mean of {steps} steps after {warmup}, the three in lockstep, "
          "one thread:")
    _print_breakdown(rows, steps)
    active = 20
    plan = schedule(wait=warmup, warmup=2, active=active, repeat=1)
    with profile(activities=[ProfilerActivity.CPU], schedule=plan) as traced:
        _lockstep_breakdown(AttackConfig(budget_steps=warmup + 3 + active), warmup, traced)
    averages = traced.key_averages()
    print(f"torch.profiler: wall ms per step of each phase ({active} steps)")
    for event in sorted(averages, key=lambda e: e.key):
        if event.key.split(": ")[-1] in BREAKDOWN_PHASES:
            print(f"  {event.key:20s} {1e-3 * event.cpu_time_total / active:8.3f} "
                  f"({event.count} calls)")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=12))


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    what = argv[0] if argv else "steps"
    actions = {
        "steps": profile_steps,
        "evaluation": profile_evaluation,
        "trainer": profile_trainer,
        "compile": measure_compile,
        "breakdown": profile_breakdown,
    }
    if what not in actions:
        raise SystemExit(f"usage: python -m benchmarks.profile_step [{'|'.join(actions)}]")
    actions[what]()


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
