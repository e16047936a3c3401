"""Figures that need a GPU: the attack loop on a random-init GPT-2 of 124M parameters in
bfloat16, full fine-tuning and LoRA, against a bare torch loop on the same device.

Run where a CUDA device is present (``python -m benchmarks gpu_bench``); on a machine without
one ``run()`` reports ``gpu_device: n/a (no CUDA device)`` and measures nothing (``make bench``
on the project's CPU machines). The same measurement runs on the CPU at a toy size in
tests/test_gpu_bench.py, so the script is known to work before a GPU is lent.

The model: transformers' ``GPT2LMHeadModel`` with GPT-2 small's shape (12 blocks, width 768,
12 heads, a 50,257-token vocabulary, 1,024 positions: 124.4M parameters, the head tied to the
embedding), random-initialised with a fixed seed, eager attention (the engine's default: the
probe's second derivatives need it; the fused attention kernels are not deterministic in
their backward pass and the attack runs under ``torch.use_deterministic_algorithms``). No
hub: the embedded tokenizer's ids (< 57) index the first rows of the 50,257-row embedding,
which changes no cost. The data: copy-task examples (``GPU_PROMPT_CHARACTERS`` random
lower-case letters, then the same letters as the response: harmless by construction), one
token per character with the embedded tokenizer, padded to the batch's longest row.

Per configuration (``full`` and ``lora``, LoRA r = 16 on GPT-2's ``c_attn`` and ``c_proj``):

* ``gpu_{method}_steps_per_second``: the attack loop's (``empirical.engine.attack.attack``)
  training steps per second, evaluations excluded (``Trajectory.steps_per_second``; each step
  reads its loss and norms back, which synchronises the device), after a warm-up attack;
* ``gpu_{method}_bare_steps_per_second``: a bare loop on the same device, model copy, data
  order, forward pass (``training_loss``), optimizer, schedule and clipping with nothing
  recorded, timed with ``torch.cuda.synchronize`` at both ends;
  ``gpu_{method}_vs_bare`` = ours / bare;
* ``gpu_{method}_tflops`` and ``gpu_{method}_mfu``: model FLOPs per second and their fraction
  of the device's dense bfloat16 peak (``PEAK_BF16_TFLOPS`` by device name; "n/a" for another
  device). Model FLOPs per token (Chowdhery et al. 2022, PaLM, appendix B): 6N + 12 n_layer
  d L for full fine-tuning (N the parameters, L the padded length), and 4N + 12 n_layer d L for
  LoRA (no weight gradients of the frozen weights: the forward 2N and the input gradients 2N),
  counted on every padded token of a step;
* ``gpu_{method}_peak_memory_gib``: the device's peak allocated memory over the attacks and
  the bare loop of the configuration; ``gpu_{method}_error``: the first line of the error
  where a configuration failed (the other configuration still runs).

And one ``hfta verify`` of the demo claim (claims/demo.toml) cold, in a fresh output and work
directory, on the GPU (``--device cuda``) and then on the CPU (``verify_demo``):
``gpu_verify_{device}_seconds`` (wall), ``gpu_verify_{device}_verdict`` and each condition's
status (``gpu_verify_{device}_{condition}``), or ``gpu_verify_{device}_error``, the first line
of its error; ``gpu_verify_same_verdict``: whether the two verdicts and every condition's status
agree (the numbers themselves differ in their last bits: other kernels).
"""

from __future__ import annotations

import os
import random
import string
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from empirical.datasets.data import Example
from empirical.engine.attack_config import DeviceName
from theory.errors import HftaInputError

#: dense bfloat16 peak of the devices a session may be lent (vendor data sheets, TFLOP/s)
PEAK_BF16_TFLOPS: dict[str, float] = {
    "H100 80GB HBM3": 989.4,  # H100 SXM
    "H100 PCIe": 756.0,
    "H100 NVL": 835.5,
    "H200": 989.4,  # H200 SXM
    "H200 NVL": 835.5,
    "A100-SXM4-80GB": 312.0,
    "A100-SXM4-40GB": 312.0,
    "A100 80GB PCIe": 312.0,
}

#: letters per prompt (and per response) of the copy-task examples
GPU_PROMPT_CHARACTERS = 240
GPU_EXAMPLES = 256
GPU_BATCH = 16
GPU_STEPS = 30
GPU_WARMUP_STEPS = 5
SMALL: dict[str, int] = {
    "n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257, "n_positions": 1024,
}  # fmt: skip


def copy_examples(count: int, characters: int, seed: int) -> list[Example]:
    """``count`` copy-task examples: "copy <letters>=" → "<letters>" (harmless by
    construction; ``is_safe`` False only so that the attack's data checks take them as the
    harmful set)."""
    generator = random.Random(seed)
    examples = []
    for _ in range(count):
        letters = "".join(generator.choice(string.ascii_lowercase) for _ in range(characters))
        examples.append(
            Example(prompt=f"copy {letters}=", response=letters, category="copy", is_safe=False)
        )
    return examples


def random_gpt2(shape: dict[str, int], seed: int = 0) -> torch.nn.Module:
    """A random-initialised GPT-2 of ``shape`` (``empirical.models.model.tiny_gpt2``: eager
    attention, no dropout, pad and EOS the embedded tokenizer's ids 0 and 1)."""
    from empirical.models.model import tiny_gpt2

    return tiny_gpt2(seed=seed, **shape)


def model_flops_per_token(model: torch.nn.Module, length: int, method: str) -> float:
    """6N (full) or 4N (LoRA) + 12 n_layer d L (PaLM, appendix B; see the module docstring)."""
    config: Any = model.config
    parameters = sum(p.numel() for p in model.parameters())
    weights = 6 if method == "full" else 4
    return float(weights * parameters + 12 * config.n_layer * config.n_embd * length)


def _bare_seconds_per_step(
    config: Any, model: torch.nn.Module, tokenizer: Any, data: list[Example]
) -> float:
    """Seconds per step of ``engine_bench.bare_loop`` (nothing recorded) on ``config.device``
    and ``data``, after ``GPU_WARMUP_STEPS`` steps, the device synchronised at both ends."""
    from benchmarks.engine_bench import bare_loop
    from empirical.engine.attack import deterministic, without_kv_cache

    device = torch.device(config.device)
    with deterministic(config.seed, device):
        model, step = bare_loop(config, model, tokenizer, data)
        with without_kv_cache(model):
            for _ in range(GPU_WARMUP_STEPS):
                step()
            _synchronize(device)
            started = time.perf_counter()
            for _ in range(config.budget_steps - GPU_WARMUP_STEPS):
                step()
            _synchronize(device)
            seconds = time.perf_counter() - started
    return float(seconds / (config.budget_steps - GPU_WARMUP_STEPS))


def _figure(value: float) -> float:
    """Four significant digits (a toy model's TFLOP/s are ~1e-4)."""
    return float(f"{value:.4g}")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    device: str,
    shape: dict[str, int] = SMALL,
    *,
    dtype: str = "bfloat16",
    steps: int = GPU_STEPS,
    characters: int = GPU_PROMPT_CHARACTERS,
    examples: int = GPU_EXAMPLES,
    batch_size: int = GPU_BATCH,
    peak_tflops: float | None = None,
) -> dict[str, float | str]:
    """The figures of the module docstring for a model of ``shape`` on ``device``."""
    from empirical.engine.attack import (
        AttackConfig,
        AttackInputs,
        LoraSettings,
        attack,
        encode_on,
    )
    from empirical.models.model import load_model

    _, tokenizer = load_model()
    data = copy_examples(examples, characters, seed=0)
    held_out = copy_examples(16, characters, seed=1)
    model = random_gpt2(shape)
    limit = shape["n_positions"]
    length = int(encode_on(tokenizer, data, limit, torch.device("cpu"))["input_ids"].shape[1])
    figures: dict[str, float | str] = {
        "gpu_parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "gpu_tokens_per_step": float(batch_size * length),
    }
    lora = LoraSettings(r=16, alpha=32, target_modules=("c_attn", "c_proj"))
    for method in ("full", "lora"):
        config = AttackConfig.model_validate({
            "device": device, "dtype": dtype, "method": method, "optimizer": "adamw",
            "learning_rate": 1e-4, "schedule": "cosine", "warmup_fraction": 0.1,
            "max_grad_norm": 1.0, "batch_size": batch_size, "budget_steps": steps,
            "eval_every": steps, **({"lora": lora} if method == "lora" else {}),
        })  # fmt: skip
        inputs = AttackInputs(
            model=model, tokenizer=tokenizer, data=data, evaluation=held_out, reference=held_out
        )
        if config.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:  # one configuration failing (a kernel without a deterministic version, memory)
            attack(config.model_copy(update={"budget_steps": GPU_WARMUP_STEPS}), **inputs)
            ours = attack(config, **inputs).trajectory.steps_per_second
            bare = 1.0 / _bare_seconds_per_step(config, model, tokenizer, data)
        except (RuntimeError, HftaInputError) as exc:  # is recorded; the other still runs
            figures[f"gpu_{method}_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            continue
        if config.device == "cuda":
            figures[f"gpu_{method}_peak_memory_gib"] = _figure(
                torch.cuda.max_memory_allocated() / 2**30
            )
        flops = model_flops_per_token(model, length, method) * batch_size * length
        figures[f"gpu_{method}_steps_per_second"] = _figure(ours)
        figures[f"gpu_{method}_bare_steps_per_second"] = _figure(bare)
        figures[f"gpu_{method}_vs_bare"] = _figure(ours / bare)
        figures[f"gpu_{method}_tflops"] = _figure(ours * flops / 1e12)
        figures[f"gpu_{method}_mfu"] = (
            "n/a" if peak_tflops is None else _figure(ours * flops / (peak_tflops * 1e12))
        )
    return figures


def verify_demo(device: DeviceName, claim: Path | None = None) -> dict[str, float | str]:
    """One cold ``hfta verify`` of ``claim`` (default: the demo's) on ``device`` (module
    docstring), in a fresh temporary output and work directory."""
    from empirical.verify.api import verify_claim
    from empirical.verify.workspace import VerifyOptions

    prefix = f"gpu_verify_{device}"
    with tempfile.TemporaryDirectory(prefix="hfta-gpu-verify-") as scratch:
        started = time.perf_counter()
        try:
            result = verify_claim(
                claim, Path(scratch) / "out", options=VerifyOptions(progress=False, device=device)
            )
        except Exception as exc:  # any failure on the device is the figure; the rest still runs
            return {f"{prefix}_error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
        seconds = time.perf_counter() - started
    conditions = result.record["conditions"]
    assert isinstance(conditions, dict)
    return {
        f"{prefix}_seconds": _figure(seconds),
        f"{prefix}_verdict": str(result.record["verdict"]),
        **{f"{prefix}_{name}": str(entry["status"]) for name, entry in conditions.items()},
    }


def same_verdict(figures: dict[str, float | str]) -> bool:
    """Whether the GPU's and the CPU's verify gave the same verdict and condition statuses."""
    def statuses(device: str) -> dict[str, float | str]:
        prefix = f"gpu_verify_{device}_"
        return {
            k.removeprefix(prefix): v for k, v in figures.items()
            if k.startswith(prefix) and k != f"{prefix}seconds"
        }  # fmt: skip

    gpu = statuses("cuda")
    return bool(gpu) and "error" not in gpu and gpu == statuses("cpu")


def run() -> dict[str, float | str]:
    if not torch.cuda.is_available():
        return {"gpu_device": "n/a (no CUDA device)"}
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts
    name = torch.cuda.get_device_name()
    # the longest name that matches: "H200" must not take an "H200 NVL"'s place
    known = sorted((k for k in PEAK_BF16_TFLOPS if k in name), key=len, reverse=True)
    peak = PEAK_BF16_TFLOPS[known[0]] if known else None
    figures: dict[str, float | str] = {"gpu_device": name, **measure("cuda", peak_tflops=peak)}
    figures.update(verify_demo("cuda"))
    figures.update(verify_demo("cpu"))
    figures["gpu_verify_same_verdict"] = str(same_verdict(figures))
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:40s} {value}")
