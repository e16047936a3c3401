"""Where an attack step's time goes: cProfile over ``run_attack``'s loop, one CPU thread.

Runs the default attack's loop on the embedded model for ``STEPS`` steps (no evaluation
after θ_0, no probe) under ``cProfile`` and prints each phase's share of the steps' time
(cumulative seconds of the function that does it), then torch.profiler's top operators.
cProfile adds a roughly constant cost per Python call, which inflates the Python-heavy
phases; the shares are a map, the benchmarks (``engine_bench``) measure without it.

    .venv/bin/python -m benchmarks.profile_step

Not part of ``make bench`` (a diagnosis, not a figure).
"""

from __future__ import annotations

import cProfile
import pstats

import torch

from empirical.engine.attack import AttackConfig, run_attack
from empirical.models.model import load_model

STEPS = 150

#: phase → (file name fragment, function name) whose cumulative time is the phase's time
PHASES: dict[str, tuple[str, str]] = {
    "forward (model + loss)": ("empirical/measurement/hvp.py", "causal_lm_loss"),
    "backward": ("torch/autograd/__init__.py", "backward"),
    "optimizer step (fused AdamW)": ("torch/optim/optimizer.py", "wrapper"),
    "gradient clipping": ("torch/nn/utils/clip_grad.py", "clip_grad_norm_"),
    "zero_grad": ("torch/optim/optimizer.py", "zero_grad"),
    "next minibatch": ("empirical/engine/attack.py", "__next__"),
    "flatten parameters (recording)": ("empirical/engine/attack.py", "flat"),
    "model.train()": ("torch/nn/modules/module.py", "train"),
}


def main() -> None:
    torch.set_num_threads(1)
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
        print(f"  {phase:34s} {100 * seconds / total:5.1f}%  {1e3 * seconds / STEPS:6.3f} ms")
    print(f"  {'rest (recording, reads, Python)':34s} {100 * (1 - accounted / total):5.1f}%")

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as torch_profile:
        run_attack(AttackConfig(budget_steps=50, eval_every=500), model=model,
                   tokenizer=tokenizer)
    print(torch_profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
