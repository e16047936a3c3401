"""Figures for empirical/estimators: the cost of HVPs and of one curvature estimate.

Unit: one gradient of the harmful loss on a 16-example attack batch (forward + backward), the
*fastest* of several timed calls (wall clock, torch on one thread): on a shared machine other
jobs only ever add time, so the minimum is the least disturbed measurement (CPU time is no
better: ARPACK's BLAS threads spin while waiting and count as CPU time). Every other cost
is a ratio to it ("gradient-equivalents"):

* one Hessian-vector product by each method of ``empirical.measurement.hvp`` (``reuse_graph``: a
  backward through a stored gradient graph; ``double_backward``: a fresh graph each time;
  ``forward_over_reverse``: ``torch.func.jvp`` of ``torch.func.grad``);
* one curvature estimate (``smoothness_of``: λ_max, λ_min, β by Lanczos, tolerance 1e-3),
  whole, graph building included: ``curvature_cost_gradient_equivalents``;
* the same by power iteration (+ shifted pass, at most 100 iterations each);
* one T1 segment curvature (one gradient + one loss).

Model: the embedded model when it is built, else a random-initialised GPT-2 of the same
shape (2 layers × 64 dims, character vocabulary); ``estimators_model`` says which.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from empirical.datasets.benchmark import BenchmarkSizes, embedded_benchmark
from empirical.datasets.text import encode
from empirical.measurement.estimators import curvature_along_segment, smoothness_of
from empirical.measurement.hvp import HVP_METHODS, LossLandscape, model_landscape
from empirical.models.model import EMBEDDED_MODEL_DIR, build_char_tokenizer, load_model, tiny_gpt2

REPEATS = 7


def _fastest_seconds(call: Callable[[], object], repeats: int = REPEATS) -> float:
    """The fastest of ``repeats`` timed calls after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def _landscape() -> tuple[LossLandscape, str]:
    sizes = BenchmarkSizes(
        pretrain=1,
        align=1,
        defence=1,
        attack=6,
        evaluation=1,
        reference=1,
        trainability_train=1,
        trainability_eval=1,
    )
    bench = embedded_benchmark(seed=0, sizes=sizes)
    if (EMBEDDED_MODEL_DIR / "config.json").is_file():
        model, tokenizer = load_model()
        name = "embedded"
    else:
        tokenizer = build_char_tokenizer(bench.tokenizer_alphabet)
        model = tiny_gpt2(len(tokenizer), n_layer=2, n_embd=64, n_head=4, n_positions=64)
        name = "random-init tiny_gpt2 2x64 (embedded model not built)"
    batch = encode(tokenizer, bench.attack[:16], bench.max_length)
    return model_landscape(model, batch), name


def run() -> dict[str, float | str]:
    torch.set_num_threads(1)
    landscape, name = _landscape()
    gradient = _fastest_seconds(lambda: landscape.gradient())
    direction = torch.randn(landscape.dimension, generator=torch.Generator().manual_seed(0))
    figures: dict[str, float | str] = {
        "estimators_model": name,
        "estimators_parameters": float(landscape.dimension),
        "estimators_gradient_ms": round(1e3 * gradient, 2),
    }
    for method in HVP_METHODS:
        operator = landscape.hessian_at(method=method)
        seconds = _fastest_seconds(lambda op=operator: op.matvec(direction))  # type: ignore[misc]
        figures[f"hvp_{method}_gradient_equivalents"] = round(seconds / gradient, 2)
    first = _fastest_seconds(
        lambda: landscape.hessian_at(method="reuse_graph").matvec(direction), repeats=3
    )
    figures["hvp_reuse_graph_first_product_gradient_equivalents"] = round(first / gradient, 2)

    lanczos = smoothness_of(landscape, method="lanczos", tolerance=1e-3)
    lanczos_seconds = _fastest_seconds(
        lambda: smoothness_of(landscape, method="lanczos", tolerance=1e-3), repeats=2
    )
    figures["curvature_cost_gradient_equivalents"] = round(lanczos_seconds / gradient, 1)
    figures["curvature_lanczos_hvps"] = float(lanczos.hvps)
    figures["curvature_lanczos_converged"] = str(lanczos.converged)
    figures["curvature_lambda_max"] = round(lanczos.lambda_max, 4)
    figures["curvature_lambda_min"] = round(lanczos.lambda_min, 4)

    power = smoothness_of(landscape, method="power", tolerance=1e-3, max_iterations=100)
    power_seconds = _fastest_seconds(
        lambda: smoothness_of(landscape, method="power", tolerance=1e-3, max_iterations=100),
        repeats=1,
    )
    figures["curvature_power_cost_gradient_equivalents"] = round(power_seconds / gradient, 1)
    figures["curvature_power_hvps"] = float(power.hvps)
    figures["curvature_power_converged"] = str(power.converged)
    figures["curvature_power_beta_relative_to_lanczos"] = round(power.beta / lanczos.beta, 4)

    end = landscape.origin + 1e-2 * direction / torch.linalg.vector_norm(direction)
    segment = _fastest_seconds(lambda: curvature_along_segment(landscape, landscape.origin, end))
    figures["segment_curvature_gradient_equivalents"] = round(segment / gradient, 2)
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:55s} {value}")
