"""The process's numeric settings: what, besides a computation's inputs, chooses the kernels
that run it and so its bits. The keys of every result this project reuses or checks once
per kind (``empirical.measurement.scoring``'s first-use check of the fast scoring path,
``empirical.engine.training_forward``'s of the lean training pass,
``empirical.engine.evaluation_cache``'s model fingerprint) include them, so a result obtained
under one setting never stands for another."""

from __future__ import annotations

import torch


def numeric_settings() -> tuple[object, ...]:
    """The process's settings that choose a forward pass's kernels or precision: intra-op
    threads, float32 matmul precision, deterministic algorithms, autocast, TF32, reduced-
    precision reductions, cuDNN's determinism and autotuning, the fused-attention backends
    (reading them starts no device)."""
    cuda = torch.backends.cuda
    return (
        torch.get_num_threads(),
        torch.get_float32_matmul_precision(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_autocast_enabled("cpu"),
        torch.is_autocast_enabled("cuda"),
        cuda.matmul.allow_tf32,
        cuda.matmul.allow_bf16_reduced_precision_reduction,
        cuda.matmul.allow_fp16_reduced_precision_reduction,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        cuda.flash_sdp_enabled(),  # type: ignore[no-untyped-call]
        cuda.mem_efficient_sdp_enabled(),  # type: ignore[no-untyped-call]
        cuda.math_sdp_enabled(),  # type: ignore[no-untyped-call]
    )
