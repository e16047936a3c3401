"""Measured against certified steps to break M*: ``hfta verify``'s predictions before its attacks.

``empirical.verify.predict`` states, before any attack runs, each planned attack's certified
minimum number of steps to push the harm above φ (theory's T11 with margin Lipschitz
constants estimated on the reachable ball, ``empirical.certify.margins``) and compares it with
the measured first break afterwards. This benchmark runs ``verify_claim`` (what ``hfta
verify`` does) cold, in temporary directories, on:

* ``demo``: the embedded default, ``claims/demo.toml`` (budget T = 75: the attacks do not
  break M*, so their ratio is censored: measured > T);
* ``demo_t100``: the same claim with a budget of 100 steps, where the lr 3e-4 attacks break
  M* (README);
* ``demo_sgd``: the same claim with clipped-SGD attackers (C = 1, lr 0.1 and 0.3, cosine, 100
  steps) and f measured every 5 steps, the attacker class of the issue's goal figure
  ("measured/certified steps <= 3, median, for clipped-SGD attackers").

Figures: ``prediction_median_measured_over_certified`` (median over the attacks that broke
M*, both claims; "none" when no attack broke it), ``prediction_<claim>_certified`` and
``prediction_<claim>_measured`` (per attack, in grid order; "-" for no break), the attacks,
breaks and violated predictions, ``prediction_<claim>_seconds`` (the ``predict`` stage's wall
time, cold: the margins measured, not cached). Printed (``python -m benchmarks
prediction_bench``); tests never assert on them.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from empirical.verify.api import verify_claim
from empirical.verify.claim import DEFAULT_CLAIM, parse_claim
from empirical.verify.predict import Predictions
from empirical.verify.workspace import VerifyOptions

#: Each claim as replacements of the demo claim's text.
VARIANTS: dict[str, dict[str, str]] = {
    "demo": {},
    "demo_t100": {"budget_steps = 75": "budget_steps = 100"},
    "demo_sgd": {
        "budget_steps = 75": "budget_steps = 100",
        'optimizers = ["adamw"]': 'optimizers = ["sgd"]',
        "learning_rates = [1e-4, 3e-4]": "learning_rates = [0.1, 0.3]",
        "eval_every_steps = 25": "eval_every_steps = 5",
    },
}


def _predictions(replacements: dict[str, str], out: Path) -> Predictions:
    text = DEFAULT_CLAIM.read_text(encoding="utf-8")
    for old, new in replacements.items():
        if old not in text:
            raise RuntimeError(f"the demo claim no longer says {old!r}")
        text = text.replace(old, new, 1)
    result = verify_claim(
        parse_claim(text), out, claim_file=DEFAULT_CLAIM, options=VerifyOptions(progress=False)
    )
    predictions = result.outcome.predictions
    if predictions is None:
        raise RuntimeError("the verifier made no predictions")
    return predictions


def _shown(values: list[int | None]) -> str:
    return ", ".join("-" if v is None else str(v) for v in values)


def run() -> dict[str, float | str]:
    figures: dict[str, float | str] = {}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="prediction-bench-") as directory:
        for name, replacements in VARIANTS.items():
            predictions = _predictions(replacements, Path(directory) / name)
            checks = {c.run: c for c in predictions.checks}
            planned = predictions.predictions
            measured = [checks[p.run].measured_break if p.run in checks else None for p in planned]
            figures[f"prediction_{name}_certified"] = _shown([p.minimum_steps for p in planned])
            figures[f"prediction_{name}_measured"] = _shown(measured)
            figures[f"prediction_{name}_attacks"] = float(len(planned))
            figures[f"prediction_{name}_broke"] = float(sum(m is not None for m in measured))
            figures[f"prediction_{name}_violated"] = float(len(predictions.violated))
            figures[f"prediction_{name}_seconds"] = round(predictions.seconds, 2)
            ratios += predictions.ratios()
            if name == "demo_sgd":
                sgd = predictions.ratios()
                figures["prediction_sgd_median_measured_over_certified"] = (
                    round(statistics.median(sgd), 3) if sgd else "none"
                )
    figures["prediction_median_measured_over_certified"] = (
        round(statistics.median(ratios), 3) if ratios else "none"
    )
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:48s} {value}")
