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
  ("measured/certified steps <= 3, median, for clipped-SGD attackers");
* ``demo_lora``: the same claim with LoRA attackers (rank 8, α = 16, GPT-2's default targets;
  AdamW lr 1e-3 and 3e-3, cosine, 100 steps, f every 10 steps), predicted through T11 (vii):
  the adapters' path-length radius mapped to the merged weights (``predict_lora``).

Figures: ``prediction_median_measured_over_certified`` (median over the full fine-tuning
attacks that broke M*; "none" when no attack broke it; LoRA's apart,
``prediction_lora_median_measured_over_certified``), ``prediction_<claim>_certified`` and
``prediction_<claim>_measured`` (per attack, in grid order; "-" for no break), the attacks,
breaks and violated predictions, ``prediction_<claim>_seconds`` (the ``predict`` stage's wall
time, cold: the margins measured, not cached).

The first version, in the same run (claims whose attacks broke M*): the per-token Lipschitz
constants on the largest reachable ball and the union over examples (``estimate_margins``,
theory's ``certified_steps``) on the same M*, data and step radii:
``prediction_<claim>_certified_union`` and ``prediction_sgd_median_measured_over_union``.
Cost of both estimators, paired in this process on the same M* (CPU seconds,
``time.process_time``, the first version first): ``prediction_cpu_seconds_curvature`` and
``prediction_cpu_seconds_union``. And a floor no radius-based prediction can beat with
path-length radii: ``prediction_sgd_median_oracle``, the median measured/certified if the
flip radius were exactly the smallest measured distance ‖θ − θ_0‖ at a first break
(``prediction_sgd_break_distance_min``; the estimated ``prediction_sgd_flip_radius`` must
stay below it). Printed (``python -m benchmarks prediction_bench``); tests never assert on
them.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

from empirical.verify.api import VerifyResult, verify_claim
from empirical.verify.claim import DEFAULT_CLAIM, parse_claim
from empirical.verify.predict import Prediction, Predictions
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
    "demo_lora": {
        "budget_steps = 75": "budget_steps = 100",
        "learning_rates = [1e-4, 3e-4]": "learning_rates = [1e-3, 3e-3]",
        "lora = false": "lora = true",
        "eval_every_steps = 25": "eval_every_steps = 10",
    },
}


def _verified(replacements: dict[str, str], out: Path) -> VerifyResult:
    text = DEFAULT_CLAIM.read_text(encoding="utf-8")
    for old, new in replacements.items():
        if old not in text:
            raise RuntimeError(f"the demo claim no longer says {old!r}")
        text = text.replace(old, new, 1)
    return verify_claim(
        parse_claim(text), out, claim_file=DEFAULT_CLAIM, options=VerifyOptions(progress=False)
    )


def _union(
    result: VerifyResult, predictions: Predictions
) -> tuple[list[int | None], float, float, float]:
    """The first version's certified steps per prediction (``estimate_margins`` on the same
    M* and evaluation file, the same step radii), and the CPU seconds of both estimators on
    it (the first version, then ``estimate_curvature`` as the verifier calls it), and the
    latter's flip radius."""
    from empirical.certify.margin_curvature import estimate_curvature
    from empirical.certify.margins import estimate_margins
    from empirical.datasets.data import load_examples
    from empirical.models.model import load_model
    from empirical.verify.predict import BALL_DIRECTIONS, BALL_POINTS, BALL_SEED
    from theory.theorems.harm_radius import certified_steps

    config = next(r.config for r in result.outcome.runs if r.name.startswith("grid"))
    if config.evaluation_data is None:
        raise RuntimeError("the grid's attacks have no evaluation file")
    examples = load_examples(config.evaluation_data)
    model, tokenizer = load_model(config.model)
    largest = max(p.step_radii[-1] for p in predictions.predictions if p.step_radii)
    started = time.process_time()
    old = estimate_margins(
        model, tokenizer, examples, radius=largest, points=BALL_POINTS, seed=BALL_SEED
    )
    union_seconds = time.process_time() - started
    started = time.process_time()
    curvature = estimate_curvature(
        model, tokenizer, examples, radius=largest, phi=predictions.predictions[0].phi,
        directions=BALL_DIRECTIONS, random_points=BALL_POINTS - 2 * BALL_DIRECTIONS,
        seed=BALL_SEED,
    )
    curvature_seconds = time.process_time() - started
    steps = [
        certified_steps(old.radius_values(), p.step_radii, p.phi) if p.available else None
        for p in predictions.predictions
    ]
    return steps, union_seconds, curvature_seconds, curvature.flip_radius()


def _break_distances(result: VerifyResult, predictions: Predictions) -> list[float]:
    """‖θ − θ_0‖ at each full fine-tuning attack's measured first break (where recorded; a
    LoRA run records its adapters' distance, not the merged model's)."""
    checks = {c.run: c for c in predictions.checks}
    found = []
    for run in result.outcome.runs:
        check = checks.get(run.name)
        if check is None or check.measured_break is None or run.config.method != "full":
            continue
        distances = run.trajectory.distance_from_start
        if check.measured_break < len(distances):
            value = distances[check.measured_break]
            if value is not None:
                found.append(value)
    return found


def _median(values: list[float]) -> float | str:
    return round(statistics.median(values), 3) if values else "none"


def _oracle(
    planned: list[Prediction], measured: list[int | None], distances: list[float]
) -> dict[str, float | str]:
    """The smallest measured break distance, and the median measured/certified if the flip
    radius were exactly that distance (a floor for predictions over path-length radii)."""
    from theory.theorems.harm_radius import steps_beyond

    if not distances:
        return {}
    closest = min(distances)
    oracle = []
    for p, m in zip(planned, measured, strict=True):
        if m is None or not p.step_radii:
            continue
        t = steps_beyond(math.nextafter(closest, 0.0), p.step_radii)
        if t:
            oracle.append(m / t)
    return {
        "prediction_sgd_break_distance_min": round(closest, 4),
        "prediction_sgd_median_oracle": _median(oracle),
    }


def _shown(values: list[int | None]) -> str:
    return ", ".join("-" if v is None else str(v) for v in values)


def run() -> dict[str, float | str]:
    figures: dict[str, float | str] = {}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="prediction-bench-") as directory:
        for name, replacements in VARIANTS.items():
            result = _verified(replacements, Path(directory) / name)
            predictions = result.outcome.predictions
            if predictions is None:
                raise RuntimeError("the verifier made no predictions")
            checks = {c.run: c for c in predictions.checks}
            planned = predictions.predictions
            measured = [checks[p.run].measured_break if p.run in checks else None for p in planned]
            figures[f"prediction_{name}_certified"] = _shown([p.minimum_steps for p in planned])
            figures[f"prediction_{name}_measured"] = _shown(measured)
            figures[f"prediction_{name}_attacks"] = float(len(planned))
            figures[f"prediction_{name}_broke"] = float(sum(m is not None for m in measured))
            figures[f"prediction_{name}_violated"] = float(len(predictions.violated))
            figures[f"prediction_{name}_seconds"] = round(predictions.seconds, 2)
            if name == "demo_lora":  # kept out of the full fine-tuning median and its union
                figures["prediction_lora_median_measured_over_certified"] = _median(
                    predictions.ratios()
                )
                continue
            ratios += predictions.ratios()
            if not any(m is not None for m in measured):
                continue
            union, union_cpu, curvature_cpu, flip = _union(result, predictions)
            figures[f"prediction_{name}_certified_union"] = _shown(union)
            figures[f"prediction_{name}_cpu_seconds_union"] = round(union_cpu, 2)
            figures[f"prediction_{name}_cpu_seconds_curvature"] = round(curvature_cpu, 2)
            if name == "demo_sgd":
                sgd = predictions.ratios()
                figures["prediction_sgd_median_measured_over_certified"] = _median(sgd)
                figures["prediction_sgd_median_measured_over_union"] = _median(
                    [m / u for m, u in zip(measured, union, strict=True) if m and u]
                )
                figures["prediction_sgd_flip_radius"] = round(flip, 4)
                figures.update(_oracle(planned, measured, _break_distances(result, predictions)))
    figures["prediction_median_measured_over_certified"] = (
        round(statistics.median(ratios), 3) if ratios else "none"
    )
    return figures


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:48s} {value}")
