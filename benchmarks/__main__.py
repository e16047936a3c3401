"""Run every benchmark module and write their named figures to ``benchmarks/latest.json``.

Each module in ``BENCHMARK_MODULES`` exposes ``run() -> dict[str, float | str]``. Figures are
ratios or rates measured in one run on this machine; tests never assert on them.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

BENCHMARK_MODULES: tuple[str, ...] = (
    "theory_bench",
    "engine_bench",
    "proofs_bench",
    "estimators_bench",
    "search_bench",
    "verify_bench",
    "scaling_bench",
    "power_bench",
    "prediction_bench",
    "certify_bench",
    "gpu_bench",
)


def main(argv: list[str]) -> int:
    only = set(argv)
    figures: dict[str, object] = {}
    for module in BENCHMARK_MODULES:
        if only and module not in only:
            continue
        started = time.perf_counter()
        results = importlib.import_module(f"benchmarks.{module}").run()
        for key, value in results.items():
            print(f"{key:40s} {value}")
        figures.update(results)
        print(f"{'(' + module + ' seconds)':40s} {time.perf_counter() - started:.1f}")
    out = Path(__file__).with_name("latest.json")
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.update(figures)
    previous["machine"] = (
        f"{platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}"
    )
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(previous, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
