"""benchmarks/gpu_bench.py runs end to end, at a toy size on the CPU: the script a session
with a GPU runs is known to work before one is lent."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from benchmarks.gpu_bench import copy_examples, measure, model_flops_per_token, random_gpt2

TOY = {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 64, "n_positions": 64}


def test_the_gpu_figures_on_a_toy_model_on_the_cpu() -> None:
    figures = measure(
        "cpu", TOY, dtype="float32", steps=7, characters=6, examples=24, batch_size=4,
        peak_tflops=1.0,
    )  # fmt: skip
    for method in ("full", "lora"):
        for name in ("steps_per_second", "bare_steps_per_second", "vs_bare", "tflops", "mfu"):
            value = figures[f"gpu_{method}_{name}"]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, value)
    assert figures["gpu_tokens_per_step"] == 4 * (5 + 6 + 1 + 6 + 1)  # "copy ", "=", EOS


def test_model_flops_count_lora_without_weight_gradients() -> None:
    model = random_gpt2(TOY)
    parameters = sum(p.numel() for p in model.parameters())
    attention = 12 * TOY["n_layer"] * TOY["n_embd"] * 10
    assert model_flops_per_token(model, 10, "full") == 6 * parameters + attention
    assert model_flops_per_token(model, 10, "lora") == 4 * parameters + attention


def test_copy_examples_are_the_copy_task() -> None:
    (example,) = copy_examples(1, 5, seed=3)
    assert example.prompt == f"copy {example.response}=" and len(example.response) == 5


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine measures")
def test_without_cuda_nothing_is_measured() -> None:
    from benchmarks.gpu_bench import run

    assert run() == {"gpu_device": "n/a (no CUDA device)"}


def test_a_failing_configuration_is_recorded_and_the_other_still_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kernel without a deterministic version on the device (a RuntimeError) in LoRA only:
    its error is a figure, full fine-tuning's figures are still measured."""
    import empirical.engine.attack as engine

    real = engine.attack

    def lora_fails(config: Any, **inputs: Any) -> Any:
        if config.method == "lora":
            raise RuntimeError("no deterministic implementation\nsecond line")
        return real(config, **inputs)

    monkeypatch.setattr(engine, "attack", lora_fails)
    figures = measure(
        "cpu", TOY, dtype="float32", steps=7, characters=6, examples=24, batch_size=4,
    )  # fmt: skip
    assert figures["gpu_lora_error"] == "RuntimeError: no deterministic implementation"
    assert "gpu_lora_steps_per_second" not in figures
    assert isinstance(figures["gpu_full_steps_per_second"], float)


class _Verified:
    def __init__(self, verdict: str, statuses: dict[str, str]) -> None:
        self.record: dict[str, object] = {
            "verdict": verdict,
            "conditions": {name: {"status": s} for name, s in statuses.items()},
        }


def test_the_verify_figures_and_their_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    """``verify_demo`` records the verdict and every condition's status per device (the run
    itself is the API's, tested in tests/verify); ``same_verdict`` compares them, and a
    device whose verify failed records its error's first line and is never "the same"."""
    import empirical.verify.api as api
    from benchmarks.gpu_bench import same_verdict, verify_demo

    statuses = {"weak_resistance": "holds", "stability": "holds"}
    asked: list[str] = []

    def verified(claim: Any, out: Any, *, options: Any) -> _Verified:
        asked.append(options.device)
        assert not out.exists()  # a fresh output directory
        return _Verified("holds", statuses)

    monkeypatch.setattr(api, "verify_claim", verified)
    figures = {**verify_demo("cuda"), **verify_demo("cpu")}
    assert asked == ["cuda", "cpu"]
    assert figures["gpu_verify_cuda_weak_resistance"] == "holds"
    assert isinstance(figures["gpu_verify_cpu_seconds"], float)
    assert same_verdict(figures)
    assert not same_verdict({**figures, "gpu_verify_cpu_stability": "violated"})

    def fails(claim: Any, out: Any, *, options: Any) -> _Verified:
        raise RuntimeError("Expected all tensors to be on the same device\nmore")

    monkeypatch.setattr(api, "verify_claim", fails)
    broken = {**verify_demo("cuda"), **{k: v for k, v in figures.items() if "_cpu_" in k}}
    assert broken["gpu_verify_cuda_error"] == (
        "RuntimeError: Expected all tensors to be on the same device"
    )
    assert not same_verdict(broken)
