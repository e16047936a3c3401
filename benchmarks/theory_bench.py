"""Figures for theory/: how fast it imports (no torch) and evaluates certificates."""

from __future__ import annotations

import subprocess
import sys
import time


def run() -> dict[str, float]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import theory; theory.catalogue()"], check=True)
    import_seconds = time.perf_counter() - started

    import theory
    from empirical.commands.bounds import EXAMPLE_THRESHOLD, EXAMPLES

    theorems = [t for t in theory.catalogue() if t.label in EXAMPLES]
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < 1.0:
        for t in theorems:
            t.evaluate(**EXAMPLES[t.label])
            if t.steps_kind is not None:
                t.steps_to_threshold(EXAMPLE_THRESHOLD, **EXAMPLES[t.label])
            count += 1
    rate = count / (time.perf_counter() - started)
    return {
        "theory_import_and_catalogue_seconds": round(import_seconds, 3),
        "certificate_evaluations_per_second": round(rate, 1),
    }
