"""How the cost grows: with the model's size, and with the number of attacks verified.

Model sizes (GPT-2 layers × width, the embedded character tokenizer and data, context 32):
``2x64`` is the embedded model; ``4x128`` and ``6x256`` are random-initialised
``tiny_gpt2`` of those shapes (a size's cost does not depend on its weights' values). For
each size, on one torch thread:

* ``scaling_<size>_parameters``;
* ``scaling_<size>_attack_cpu_steps_per_second``: steps per CPU second of ``run_attack``
  (the default attack's settings, ``STEPS[size]`` steps, no evaluation after θ_0), and
  ``scaling_<size>_overhead_ratio``: its CPU time over the bare loop's
  (``engine_bench.bare_loop_seconds``), the median of ``PAIRS`` paired runs, with
  ``..._min``/``..._max``;
* ``scaling_<size>_gradient_ms``: one gradient of the harmful loss on a 16-example attack
  batch (the fastest of 5), and ``scaling_<size>_curvature_gradient_equivalents``: one
  curvature estimate (``smoothness_of``, Lanczos, tolerance 1e-3, graph building included,
  timed once) in units of that gradient, with ``..._curvature_hvps`` Hessian-vector
  products.

Grids (the verifier's attack executor, ``run_attacks``, on the embedded model; attacks of
``GRID_BUDGET`` steps evaluated every ``GRID_EVAL_EVERY``, a fresh store, so every attack
runs), each in a fresh process timed whole, as a verifier started from the command line:
``scaling_grid_<n>_sequential_seconds`` for n = 4, 8, 16 attacks one after another (ideal:
a start-up plus n attack-times), and ``scaling_grid_<n>_workers<w>_seconds`` with
w = ``WORKERS`` worker processes (ideal: the sequential time's attack part divided by
min(w, cores), plus the workers' start-up: a forkserver imports torch, transformers and
GPT-2's code once, started first so that its imports overlap the parent's, then each worker
loads the model and generates the embedded data), with ``scaling_grid_<n>_parallel_speedup``.
The child imports only the executor (no torch: the attacks import it where they run).
Wall-clock seconds here (parallel speed-up is a wall-clock matter), so other jobs on the
machine show in them: ``scaling_grid_<n>_load`` is the 1-minute load average when the grid
ended (above the core count, other jobs took cores from the workers and the speed-up
measures the machine, not the executor; ``empirical.verify.executors`` explains).

A table is printed and a plot written to ``benchmarks/figures/scaling.png``. Figures are
printed (``python -m benchmarks scaling_bench``), never asserted in tests.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.engine_bench import bare_loop_seconds, ours_seconds, paired_ratios
from empirical.datasets.text import encode
from empirical.engine.attack import AttackConfig, resolve_data
from empirical.measurement.estimators import smoothness_of
from empirical.measurement.hvp import model_landscape
from empirical.measurement.proxies import context_length
from empirical.models.model import load_model, tiny_gpt2

SHAPES: dict[str, tuple[int, int, int] | None] = {
    "2x64": None,  # the embedded model
    "4x128": (4, 128, 4),
    "6x256": (6, 256, 8),
}
"""size → (layers, width, heads) of a random-initialised GPT-2; None: the embedded model."""

STEPS: dict[str, int] = {"2x64": 100, "4x128": 40, "6x256": 15}
PAIRS = 5
GRID_SIZES: tuple[int, ...] = (4, 8, 16)
GRID_BUDGET = 40
GRID_EVAL_EVERY = 10
WORKERS = 2
FIGURE = Path(__file__).with_name("figures") / "scaling.png"


def _model(size: str) -> tuple[torch.nn.Module, Any]:
    model, tokenizer = load_model()
    shape = SHAPES[size]
    if shape is None:
        return model, tokenizer
    layers, width, heads = shape
    context = context_length(model)
    return tiny_gpt2(len(tokenizer), n_layer=layers, n_embd=width, n_head=heads,
                     n_positions=context, seed=0), tokenizer


def _fastest(call: Any, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def _size_figures(size: str) -> dict[str, float]:
    model, tokenizer = _model(size)
    steps = STEPS[size]
    config = AttackConfig(budget_steps=steps, eval_every=10 * steps)
    ours, _, ratios = paired_ratios(
        lambda: ours_seconds(config, model, tokenizer),
        lambda: bare_loop_seconds(config, model, tokenizer),
        PAIRS,
    )
    batch = encode(tokenizer, resolve_data(config).attack[:16], context_length(model))
    landscape = model_landscape(model, batch)
    gradient = _fastest(landscape.gradient, 5)
    started = time.perf_counter()
    estimate = smoothness_of(landscape, method="lanczos", tolerance=1e-3)
    curvature = time.perf_counter() - started
    prefix = f"scaling_{size}"
    return {
        f"{prefix}_parameters": float(sum(p.numel() for p in model.parameters())),
        f"{prefix}_attack_cpu_steps_per_second": round(steps / statistics.median(ours), 2),
        f"{prefix}_overhead_ratio": round(statistics.median(ratios), 4),
        f"{prefix}_overhead_ratio_min": round(min(ratios), 4),
        f"{prefix}_overhead_ratio_max": round(max(ratios), 4),
        f"{prefix}_gradient_ms": round(1e3 * gradient, 2),
        f"{prefix}_curvature_gradient_equivalents": round(curvature / gradient, 1),
        f"{prefix}_curvature_hvps": float(estimate.hvps),
    }


def grid_configs(count: int) -> list[AttackConfig]:
    """``count`` distinct attacks on the embedded model (rates × optimizers × seeds)."""
    configs = [
        AttackConfig(budget_steps=GRID_BUDGET, eval_every=GRID_EVAL_EVERY,
                     learning_rate=rate, optimizer=optimizer, seed=seed)
        for seed in (0, 1)
        for optimizer in ("adamw", "sgd")
        for rate in (1e-4, 3e-4, 1e-3, 3e-3)
    ]
    return configs[:count]


GRID_CHILD = """
import json, sys
from pathlib import Path
from empirical.verify.executors import run_attacks, warm_up_workers
from empirical.engine.attack_config import AttackConfig
from empirical.verify.store import ResultStore

if __name__ == "__main__":
    configs, workers, directory = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    warm_up_workers("local", workers)
    grid = [AttackConfig.model_validate(c) for c in json.loads(Path(configs).read_text())]
    run_attacks(grid, store=ResultStore(directory), workers=workers, progress=False)
"""
"""One grid measurement's process: ``run_attacks`` on the configurations of a JSON file, on
one torch thread per attack (``run_attacks``' default), importing nothing heavy itself."""


def _grid_seconds(count: int, workers: int, scratch: Path) -> float:
    """Wall seconds of a fresh process running the grid (start-up and imports included, as
    for a verifier started from the command line; its workers pay theirs too)."""
    directory = scratch / f"grid-{count}-{workers}"
    configs = scratch / f"grid-{count}.json"
    configs.write_text(json.dumps([c.model_dump(mode="json") for c in grid_configs(count)]))
    child = scratch / "grid_child.py"
    child.write_text(GRID_CHILD)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(child), str(configs), str(workers), str(directory)],
                   check=True, cwd=Path(__file__).resolve().parents[1])
    return time.perf_counter() - started


def _grid_figures(scratch: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    for count in GRID_SIZES:
        sequential = _grid_seconds(count, 1, scratch)
        parallel = _grid_seconds(count, WORKERS, scratch)
        figures[f"scaling_grid_{count}_sequential_seconds"] = round(sequential, 1)
        figures[f"scaling_grid_{count}_workers{WORKERS}_seconds"] = round(parallel, 1)
        figures[f"scaling_grid_{count}_parallel_speedup"] = round(sequential / parallel, 2)
        figures[f"scaling_grid_{count}_load"] = round(os.getloadavg()[0], 1)
    return figures


def _table(figures: dict[str, float]) -> str:
    lines = [f"{'size':>6} {'params':>10} {'steps/s':>8} {'vs bare':>8} {'grad ms':>8} "
             f"{'curv (grads)':>12} {'HVPs':>5}"]
    for size in SHAPES:
        p = f"scaling_{size}"
        lines.append(
            f"{size:>6} {figures[p + '_parameters']:>10.0f} "
            f"{figures[p + '_attack_cpu_steps_per_second']:>8.2f} "
            f"{figures[p + '_overhead_ratio']:>8.3f} {figures[p + '_gradient_ms']:>8.1f} "
            f"{figures[p + '_curvature_gradient_equivalents']:>12.1f} "
            f"{figures[p + '_curvature_hvps']:>5.0f}"
        )
    lines.append(f"{'grid':>6} {'sequential s':>13} {f'{WORKERS} workers s':>12} {'speed-up':>9}")
    for count in GRID_SIZES:
        g = f"scaling_grid_{count}"
        lines.append(
            f"{count:>6} {figures[g + '_sequential_seconds']:>13.1f} "
            f"{figures[g + f'_workers{WORKERS}_seconds']:>12.1f} "
            f"{figures[g + '_parallel_speedup']:>9.2f}"
        )
    return "\n".join(lines)


def _plot(figures: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.8))
    sizes = list(SHAPES)
    params = [figures[f"scaling_{s}_parameters"] for s in sizes]
    rates = [figures[f"scaling_{s}_attack_cpu_steps_per_second"] for s in sizes]
    left.loglog(params, rates, "o-")
    for s, x, y in zip(sizes, params, rates, strict=True):
        left.annotate(s, (x, y), textcoords="offset points", xytext=(4, 4))
    left.set_xlabel("parameters")
    left.set_ylabel("attack steps per CPU second")
    left.set_title("attack speed by model size")
    curvature = [figures[f"scaling_{s}_curvature_gradient_equivalents"] for s in sizes]
    middle.semilogx(params, curvature, "s-", color="tab:orange")
    middle.set_xlabel("parameters")
    middle.set_ylabel("gradient-equivalents")
    middle.set_title("one curvature estimate (Lanczos)")
    counts = list(GRID_SIZES)
    sequential = [figures[f"scaling_grid_{n}_sequential_seconds"] for n in counts]
    parallel = [figures[f"scaling_grid_{n}_workers{WORKERS}_seconds"] for n in counts]
    right.plot(counts, sequential, "o-", label="one after another")
    right.plot(counts, parallel, "s-", label=f"{WORKERS} worker processes")
    slope, start_up = np.polyfit(counts, sequential, 1)
    if slope > 0:  # a start-up plus n attack-times, fitted to the sequential points
        right.plot(counts, [start_up + slope * n for n in counts], ":", color="grey",
                   label="fit: start-up + n·attack")
        right.plot(counts, [start_up + slope * n / WORKERS for n in counts], ":",
                   color="black", label=f"ideal: start-up + n·attack / {WORKERS}")
    right.set_xlabel("attacks in the grid")
    right.set_ylabel("wall seconds")
    right.set_title("verifying a grid of attacks")
    right.legend(fontsize=8)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=120)
    plt.close(fig)


def run() -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        figures: dict[str, float] = {}
        for size in SHAPES:
            figures.update(_size_figures(size))
        with tempfile.TemporaryDirectory(prefix="scaling-bench-") as scratch:
            figures.update(_grid_figures(Path(scratch)))
    finally:
        torch.set_num_threads(threads)
    print(_table(figures))
    _plot(figures)
    print(f"wrote {FIGURE}")
    return figures


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:45s} {value}")
