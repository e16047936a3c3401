"""The same embedded-model bytes on every x86-64 CPU: pinned kernels and the platform record.

torch picks CPU kernels by what the processor can do, so the same recipe trains to different
bytes on different machines unless the choice is pinned *before torch is imported*:

* ``ATEN_CPU_CAPABILITY=default``: ATen's element-wise ops and reductions use their portable
  kernels instead of the AVX2/AVX-512 ones (vector width sets the order of a sum, fused
  multiply-add the rounding of a product);
* ``MKL_CBWR=COMPATIBLE``: oneMKL's conditional numerical reproducibility, one code path for
  matrix products whatever the processor (Intel's oneMKL guide, "Obtaining Numerically
  Reproducible Results");
* ``ONEDNN_MAX_CPU_ISA=SSE41``: caps oneDNN's just-in-time kernels at an ISA every x86-64
  machine of the last fifteen years has;
* one thread for OpenMP and MKL (the build also sets ``torch.set_num_threads(1)``).

Measured on one AVX-512 machine (AMD EPYC, torch 2.13.0+cpu) with a 60-step recipe: unpinned
builds under ATen capability ``avx512``, ``avx2`` and ``default`` gave three different files,
and ``MKL_CBWR`` changed the bytes again; with the pinned set, builds with oneMKL restricted
to AVX-512, AVX2 or SSE4.2 (``MKL_ENABLE_INSTRUCTIONS``) and oneDNN capped at ``ALL``,
``AVX2`` or ``SSE41`` gave one and the same file (9 combinations). The pinned full build took
53 s (about the same as unpinned).

``hfta build-model`` therefore trains in a child process started with ``PINNED_KERNELS`` in its
environment, and ``build.json`` records the ``BuildPlatform`` it ran on. Where two records
differ in a field of ``BuildPlatform.bytes_key`` (another torch, another kernel choice), bytes
are not expected to match and ``--check`` falls back to a behavioural comparison
(``empirical.models.build_check``).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from theory.errors import HftaInputError

KernelChoice = Literal["pinned", "native"]
"""``pinned``: ``PINNED_KERNELS`` (bit-reproducible across CPUs); ``native``: whatever the
caller's environment and processor select (fast, machine-specific bytes)."""

PINNED_KERNELS: Mapping[str, str] = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


class BuildPlatform(BaseModel):
    """Where a build ran: software, processor and the kernel choice torch made."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kernels: KernelChoice
    cpu_capability: str = Field(description="torch.backends.cpu.get_cpu_capability()")
    mkl_cbwr: str | None = Field(description="MKL_CBWR in the build's environment")
    onednn_max_cpu_isa: str | None = Field(description="ONEDNN_MAX_CPU_ISA in the environment")
    machine: str
    cpu: str = Field(description="processor model name (informational)")
    python: str
    torch: str
    transformers: str
    tokenizers: str

    def bytes_key(self) -> dict[str, str | None]:
        """The fields that decide the bytes of a build (the processor model does not, once the
        kernels are pinned; the Python version does not touch float arithmetic)."""
        return self.model_dump(exclude={"cpu", "python"})


def cpu_model_name() -> str:
    """The processor's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def current_platform(kernels: KernelChoice) -> BuildPlatform:
    """The platform of this process (imports torch: call it where torch is in use anyway)."""
    import tokenizers
    import torch
    import transformers

    return BuildPlatform(
        kernels=kernels,
        cpu_capability=str(torch.backends.cpu.get_cpu_capability()),
        mkl_cbwr=os.environ.get("MKL_CBWR"),
        onednn_max_cpu_isa=os.environ.get("ONEDNN_MAX_CPU_ISA"),
        machine=platform.machine(),
        cpu=cpu_model_name(),
        python=platform.python_version(),
        torch=torch.__version__,
        transformers=transformers.__version__,
        tokenizers=tokenizers.__version__,
    )


def pinned_here() -> bool:
    """Whether this process runs with ``PINNED_KERNELS`` in effect."""
    return all(os.environ.get(name) == value for name, value in PINNED_KERNELS.items())


def platform_differences(recorded: BuildPlatform | None, current: BuildPlatform) -> list[str]:
    """Why two builds may differ in bytes: the ``bytes_key`` fields that differ, as text."""
    if recorded is None:
        return ["the committed build.json records no platform"]
    before, now = recorded.bytes_key(), current.bytes_key()
    return [f"{name} {before[name]} -> {now[name]}" for name in before if before[name] != now[name]]


def child_environment(kernels: KernelChoice) -> dict[str, str]:
    """The environment of a build child process for ``kernels``."""
    environment = dict(os.environ)
    if kernels == "pinned":
        environment.update(PINNED_KERNELS)
    return environment


def run_build_child(recipe_json: str, out: Path, kernels: KernelChoice) -> None:
    """Train by ``recipe_json`` into ``out`` in a child process (``python -m
    empirical.models.build_worker``) whose kernels are chosen before torch is imported.

    Raises:
        HftaInputError: the child rejected its input (its one-line message).
        RuntimeError: the child failed otherwise (its last lines of output).
    """
    completed = subprocess.run(
        [
            sys.executable, "-m", "empirical.models.build_worker",
            "--out", str(out), "--kernels", kernels,
        ],
        input=recipe_json,
        capture_output=True,
        text=True,
        env=child_environment(kernels),
        check=False,
    )
    if completed.returncode == 2:
        raise HftaInputError(completed.stderr.strip().splitlines()[-1].removeprefix("error: "))
    if completed.returncode != 0:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-20:])
        raise RuntimeError(f"the build process failed (exit {completed.returncode}):\n{tail}")
