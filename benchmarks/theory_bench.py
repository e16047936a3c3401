"""Figures for theory/: how fast it imports (no torch) and evaluates certificates.

* ``theory_import_and_catalogue_seconds``: a fresh interpreter imports theory and builds the
  catalogue.
* ``certificate_first_pass_seconds``: the *first* evaluation of every example certificate
  of ``hfta bounds`` (its bound, and its steps solver where it has one) in a process that has
  evaluated none: this pays the one-off symbolic work, ``sympy.solve`` of each steps solver
  (``steps_solution``, cached per theorem) and ``sympy.lambdify`` of each expression and
  assumption (cached in ``theory.theorem``). It is measured in a fresh interpreter, so
  benchmarks that ran before cannot have warmed the caches.
* ``certificate_evaluations_per_second``: steady-state certificates per second once those
  caches are warm: the median of ``WINDOWS`` windows of ``WINDOW_SECONDS`` each, with
  ``..._min`` and ``..._max`` as the spread (one "certificate" = one theorem's bound, plus its
  steps solver where it has one).

Why a rerun once read 5.8/s against 875.8/s: the old figure counted certificates over the
first second of the process, one-off symbolic work included. On a quiet machine that work
(≈ 0.4 s) left most of the second for cached evaluations; on a loaded one it took the whole
second, and the six certificates of one cold pass over ≈ 1.03 s read as 5.8/s (a cold pass
measured 1.036 s on this machine under load: 6 / 1.036 = 5.8). Nothing was recompiled per
call (``tests/theory/test_evaluation_caches.py`` counts ``lambdify`` and ``solve`` calls:
none once warm); the benchmark measured start-up, not evaluation. Now
the cold pass is its own figure and the rate is measured warm, windows apart, so load shows
as spread between windows instead of a 150x change of the median.

Figures are printed (``python -m benchmarks theory_bench``), never asserted in tests.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

WINDOWS = 7
WINDOW_SECONDS = 0.25

_FIRST_PASS = """
import json, time
import theory
from empirical.commands.bounds import EXAMPLE_THRESHOLD, EXAMPLES
theorems = [t for t in theory.catalogue() if t.label in EXAMPLES]
started = time.perf_counter()
for t in theorems:
    t.evaluate(**EXAMPLES[t.label])
    if t.steps_kind is not None:
        t.steps_to_threshold(EXAMPLE_THRESHOLD, **EXAMPLES[t.label])
print(json.dumps(time.perf_counter() - started))
"""


def _one_pass(theorems: list[object], examples: dict[str, dict[str, float]],
              threshold: float) -> int:
    from theory.theorem import Theorem

    count = 0
    for t in theorems:
        assert isinstance(t, Theorem)
        t.evaluate(**examples[t.label])
        if t.steps_kind is not None:
            t.steps_to_threshold(threshold, **examples[t.label])
        count += 1
    return count


def run() -> dict[str, float]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import theory; theory.catalogue()"], check=True)
    import_seconds = time.perf_counter() - started
    first = subprocess.run(
        [sys.executable, "-c", _FIRST_PASS], check=True, capture_output=True, text=True
    )
    first_pass = float(json.loads(first.stdout.strip().splitlines()[-1]))

    import theory
    from empirical.commands.bounds import EXAMPLE_THRESHOLD, EXAMPLES

    theorems: list[object] = [t for t in theory.catalogue() if t.label in EXAMPLES]
    _one_pass(theorems, EXAMPLES, EXAMPLE_THRESHOLD)  # warm the caches
    rates: list[float] = []
    for _ in range(WINDOWS):
        count = 0
        window = time.perf_counter()
        while time.perf_counter() - window < WINDOW_SECONDS:
            count += _one_pass(theorems, EXAMPLES, EXAMPLE_THRESHOLD)
        rates.append(count / (time.perf_counter() - window))
    return {
        "theory_import_and_catalogue_seconds": round(import_seconds, 3),
        "certificate_first_pass_seconds": round(first_pass, 3),
        "certificate_evaluations_per_second": round(statistics.median(rates), 1),
        "certificate_evaluations_per_second_min": round(min(rates), 1),
        "certificate_evaluations_per_second_max": round(max(rates), 1),
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:40s} {value}")
