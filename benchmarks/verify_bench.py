"""Wall time of the embedded default, ``hfta verify --out DIR`` (what ``make demo`` runs).

* ``demo_wall_seconds``: a cold run in a fresh directory (no cache: the defence is applied,
  every attack trained, the worst one rerun for its constants), the process timed whole from
  start to exit, imports included; target ≤ 30 s on the 2-core machine with ``.venv``
  present.
* ``demo_warm_wall_seconds``: the same command again (immunized model, attacks and theory
  measurements come from ``DIR.cache``): reading, judging, drawing and writing only;
  target ≤ 8 s. ``demo_same_verdict``: "yes" when both runs exit with the same code and
  write the same ``conditions`` (each condition's verdict and evidence) to ``verdict.json``.
* ``demo_cpu_seconds``: user + system CPU seconds of the cold run (insensitive to other jobs
  waiting for the same cores), ``demo_warm_cpu_seconds`` the same of the warm run (the
  verifier runs on one thread, so on free cores its wall time is about its CPU time), and
  ``demo_exit_code`` (0: every claimed condition holds).

Where a warm run's CPU goes (measured on the 2-core machine, shared, per stage with
``time.process_time``): ≈ 2.4 s importing the verifier (scipy.stats, sympy through the
theorem catalogue), ≈ 1.1 s importing torch and ≈ 1.7 s transformers (through
``empirical.defences.base`` and ``empirical.measurement.proxies``, for types), ≈ 0.7 s the
predictions (M* loaded for its start point), ≈ 0.4 s the theory checks' power table, ≈ 0.7 s
figures and report; every cached stage ≈ 0.

Figures are printed (``python -m benchmarks verify_bench``), never asserted in tests.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = [sys.executable, "-c", "from empirical.cli import main; main()", "verify", "--quiet"]


def _timed(out: Path) -> tuple[float, int]:
    started = time.perf_counter()
    result = subprocess.run([*COMMAND, "--out", str(out)], check=False, capture_output=True)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"hfta verify failed: {result.stderr.decode(errors='replace')}")
    return time.perf_counter() - started, result.returncode


def _conditions(out: Path) -> object:
    """The ``conditions`` of ``out/verdict.json`` (None when there is no such file)."""
    path = out / "verdict.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("conditions")


def run() -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(prefix="verify-bench-") as directory:
        out = Path(directory) / "demo"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cold, code = _timed(out)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cold_conditions = _conditions(out)
        warm, warm_code = _timed(out)
        last = resource.getrusage(resource.RUSAGE_CHILDREN)
        same = warm_code == code and _conditions(out) == cold_conditions
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    warm_cpu = (last.ru_utime - after.ru_utime) + (last.ru_stime - after.ru_stime)
    return {
        "demo_wall_seconds": round(cold, 1),
        "demo_warm_wall_seconds": round(warm, 1),
        "demo_cpu_seconds": round(cpu, 1),
        "demo_warm_cpu_seconds": round(warm_cpu, 1),
        "demo_exit_code": float(code),
        "demo_same_verdict": "yes" if same else "no",
        "demo_cpus": float(os.cpu_count() or 0),
    }
