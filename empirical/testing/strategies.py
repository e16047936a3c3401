"""Hypothesis strategies for property tests of the immunization bounds.

Import as ``from empirical.testing import strategies as hst``. This module imports hypothesis
(a dev dependency); nothing else in ``empirical`` does.

Every strategy draws *real* problems whose constants are known, so a property can compare a
measured run with the theory exactly:

* ``quadratic_problems``: dimension, spectrum (log-uniform eigenvalues), a random rotation,
  start point and step size η as a fraction of 2/λ_max (``step="monotone"``, T5) or of
  1/λ_max (``step="pl"``, T4's η ≤ 1/β);
* ``least_squares_problems``: a design matrix X and targets y;
* ``feature_task_pairs``: harmful and pre-training data seen through one linear feature
  extractor (Zheng et al., ICML 2025);
* ``sinusoidal_pl_problems``: the non-convex PL function Σ x_i² + 3 sin²(x_i);
* ``pl_problems``: any of the above with μ > 0 and η ≤ 1/β;
* ``transformer_specs``: tiny GPT-2 sizes (layers, width, heads, seed), or the embedded model;
* ``attack_configs``: ``empirical.engine.attack.AttackConfig`` (optimizer, learning rate, clipping,
  momentum, weight decay, schedule and warmup, LoRA or full, batch, budget, seed) with the
  probe and the segment curvature recorded, for ``empirical.certify``; on the user's model
  and data files when given, LoRA targets inferred from the model's architecture.

Floats are drawn on bounded, finite ranges; the rotation of a quadratic is drawn as a seed for
numpy's generator (QR of a Gaussian matrix), so a falsifying example prints everything needed
to rebuild it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from empirical.engine.attack import AttackConfig, LoraSettings
from empirical.testing import (
    FeatureProbingProblem,
    FeatureTaskPair,
    LeastSquaresProblem,
    QuadraticProblem,
    SinusoidalPLProblem,
    TransformerSpec,
)

__all__ = [
    "attack_configs",
    "eigenvalues",
    "feature_task_pairs",
    "least_squares_problems",
    "pl_problems",
    "quadratic_problems",
    "rotations",
    "sinusoidal_pl_problems",
    "transformer_specs",
]

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def _log_uniform(low: float, high: float) -> st.SearchStrategy[float]:
    """Floats in [low, high] uniform in log scale (both > 0)."""
    return st.floats(math.log10(low), math.log10(high)).map(lambda e: float(10.0**e))


def eigenvalues(
    dimension: int, *, smallest: float = 1e-2, largest: float = 1e2, allow_zero: bool = False
) -> st.SearchStrategy[list[float]]:
    """``dimension`` eigenvalues, log-uniform in [smallest, largest] (some 0 if ``allow_zero``)."""
    value = _log_uniform(smallest, largest)
    if allow_zero:
        value = st.one_of(st.just(0.0), value)
    return st.lists(value, min_size=dimension, max_size=dimension)


def rotations(dimension: int) -> st.SearchStrategy[np.ndarray]:
    """A random orthogonal matrix (QR of a Gaussian matrix drawn from a seed)."""

    def orthogonal(seed: int) -> np.ndarray:
        gaussian = np.random.default_rng(seed).standard_normal((dimension, dimension))
        q, r = np.linalg.qr(gaussian)
        return np.asarray(q * np.sign(np.diag(r)))

    return SEEDS.map(orthogonal)


def _coordinates(bound: float) -> st.SearchStrategy[float]:
    """Floats in [−bound, bound], with magnitudes below 1e-6 flushed to 0: a step of norm
    1e-298 squares to 0 in float64 and only tests the arithmetic, not the theory."""
    return st.floats(-bound, bound, allow_nan=False, allow_infinity=False).map(
        lambda v: 0.0 if abs(v) < 1e-6 else v
    )


def _vectors(dimension: int, bound: float) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, (dimension,), elements=_coordinates(bound))


def _step(fraction: float, step: str, largest: float) -> float:
    """η = fraction · (2/λ_max for ``monotone``, 1/λ_max for ``pl``), rounded down until
    η·λ_max ≤ 2 (resp. 1) holds in floating point, with λ_max as the problem computes it."""
    scale = 2.0 if step == "monotone" else 1.0
    if step not in ("monotone", "pl"):
        raise ValueError(f"step must be 'monotone' or 'pl', got {step!r}")
    if not largest > 0.0:  # H = 0 (e.g. features that cancel): every step size is stable
        return fraction * scale
    rate = fraction * scale / largest
    while rate * largest > scale:
        rate = math.nextafter(rate, 0.0)
    return rate


@st.composite
def quadratic_problems(
    draw: st.DrawFn,
    *,
    min_dimension: int = 1,
    max_dimension: int = 5,
    smallest: float = 1e-2,
    largest: float = 1e2,
    allow_singular: bool = False,
    step: str = "monotone",
) -> QuadraticProblem:
    """L(θ) = L* + ½(θ − θ*)ᵀ V diag(λ) Vᵀ (θ − θ*) with η = f·2/λ_max (``step="monotone"``,
    f ∈ [0.05, 1]) or η = f/λ_max (``step="pl"``, f ∈ [0.05, 1]); θ_0 ≠ θ*."""
    dimension = draw(st.integers(min_dimension, max_dimension))
    spectrum = draw(
        eigenvalues(dimension, smallest=smallest, largest=largest, allow_zero=allow_singular)
    )
    if max(spectrum) == 0.0:
        spectrum[0] = largest
    rotation = draw(rotations(dimension))
    hessian = rotation @ np.diag(spectrum) @ rotation.T
    hessian = (hessian + hessian.T) / 2.0
    theta_star = draw(_vectors(dimension, 3.0))
    offset = draw(_vectors(dimension, 3.0).filter(lambda v: float(np.max(np.abs(v))) > 1e-3))
    fraction = draw(st.floats(0.05, 1.0))
    minimum = draw(st.floats(-2.0, 2.0))
    problem = QuadraticProblem(
        theta_0=theta_star + offset,
        learning_rate=1.0,
        hessian=hessian,
        theta_star=theta_star,
        minimum=minimum,
    )
    return replace(problem, learning_rate=_step(fraction, step, problem.smoothness))


_ENTRIES = st.floats(-2.0, 2.0, allow_nan=False, allow_infinity=False).filter(
    lambda v: abs(v) > 1e-2
)


@st.composite
def least_squares_problems(
    draw: st.DrawFn,
    *,
    max_samples: int = 12,
    max_dimension: int = 4,
    step: str = "monotone",
) -> LeastSquaresProblem:
    """(1/2n)‖Xw − y‖² with X of shape (n, d), entries in [−2, 2] (|x| > 0.01), y in [−3, 3],
    w_0 in [−3, 3]; η = f·2/λ_max (``monotone``) or f/λ_max (``pl``)."""
    samples = draw(st.integers(1, max_samples))
    dimension = draw(st.integers(1, max_dimension))
    features = draw(hnp.arrays(np.float64, (samples, dimension), elements=_ENTRIES))
    targets = draw(_vectors(samples, 3.0))
    start = draw(_vectors(dimension, 3.0))
    fraction = draw(st.floats(0.05, 1.0))
    problem = LeastSquaresProblem(
        theta_0=start, learning_rate=1.0, features=features, targets=targets
    )
    return replace(problem, learning_rate=_step(fraction, step, problem.smoothness))


@st.composite
def feature_task_pairs(
    draw: st.DrawFn, *, max_samples: int = 10, max_inputs: int = 4, max_features: int = 3
) -> FeatureTaskPair:
    """Harmful and pre-training data (each n × D) and one extractor θ (D × p), p ≤ D; each
    task's probe starts at 0 with η = 1/λ_max of its own Hessian θᵀKθ."""
    inputs = draw(st.integers(1, max_inputs))
    features = draw(st.integers(1, min(inputs, max_features)))
    extractor = draw(hnp.arrays(np.float64, (inputs, features), elements=_ENTRIES))

    def task() -> FeatureProbingProblem:
        samples = draw(st.integers(1, max_samples))
        data = draw(hnp.arrays(np.float64, (samples, inputs), elements=_ENTRIES))
        targets = draw(_vectors(samples, 3.0))
        problem = FeatureProbingProblem(
            theta_0=np.zeros(features),
            learning_rate=1.0,
            targets=targets,
            inputs=data,
            extractor=extractor,
        )
        return replace(problem, learning_rate=_step(1.0, "pl", problem.smoothness))

    return FeatureTaskPair(harmful=task(), pretraining=task())


@st.composite
def sinusoidal_pl_problems(draw: st.DrawFn, *, max_dimension: int = 3) -> SinusoidalPLProblem:
    """Σ x_i² + 3 sin²(x_i) from x_0 ∈ [−6, 6]^d (not all 0), η = f/8, f ∈ [0.05, 1]."""
    dimension = draw(st.integers(1, max_dimension))
    start = draw(_vectors(dimension, 6.0).filter(lambda v: float(np.max(np.abs(v))) > 1e-2))
    fraction = draw(st.floats(0.05, 1.0))
    return SinusoidalPLProblem(theta_0=start, learning_rate=fraction / 8.0)


PLProblem = QuadraticProblem | LeastSquaresProblem | SinusoidalPLProblem


def pl_problems() -> st.SearchStrategy[PLProblem]:
    """Problems with a PL constant μ > 0 and gradient descent's step η ≤ 1/β (T4's setting):
    strongly convex quadratics, least squares (μ = the smallest positive eigenvalue of
    XᵀX/n), and the non-convex sinusoidal example."""
    return st.one_of(
        quadratic_problems(step="pl"),
        least_squares_problems(step="pl"),
        sinusoidal_pl_problems(),
    )


def transformer_specs(
    *,
    layers: Sequence[int] = (1, 2),
    widths: Sequence[int] = (8, 16),
    heads: Sequence[int] = (1, 2),
    embedded: bool = False,
) -> st.SearchStrategy[TransformerSpec]:
    """Tiny random-init GPT-2 configurations (layers, width, heads, init seed); with
    ``embedded=True``, the embedded model only."""
    if embedded:
        return st.just(TransformerSpec(embedded=True))
    return st.builds(
        TransformerSpec,
        n_layer=st.sampled_from(list(layers)),
        n_embd=st.sampled_from(list(widths)),
        n_head=st.sampled_from([h for h in heads if all(w % h == 0 for w in widths)] or [1]),
        seed=st.integers(0, 2**16),
    )


#: Learning-rate ranges (log-uniform) per optimizer that keep tiny-model attacks finite.
DEFAULT_LEARNING_RATES: dict[str, tuple[float, float]] = {
    "sgd": (1e-3, 0.5),
    "adam": (1e-4, 3e-2),
    "adamw": (1e-4, 3e-2),
}


def _lora_targets(model: Path | str | None, given: Sequence[str] | None) -> tuple[str, ...]:
    """LoRA targets for the drawn attacks: ``given``; else, for a model folder, peft's default
    for its ``model_type`` (``empirical.engine.lora``), or ``AUTO`` (resolved on the loaded model);
    for the embedded model (``model=None``), ``LoraSettings``' own default."""
    from empirical.engine.lora import AUTO, model_type_of, target_modules_for_type

    if given is not None:
        return tuple(given)
    if model is None:
        return LoraSettings().target_modules
    model_type = model_type_of(model)
    inferred = None if model_type is None else target_modules_for_type(model_type)
    return inferred or AUTO


@st.composite
def attack_configs(
    draw: st.DrawFn,
    *,
    model: Path | str | None = None,
    data: Path | str | None = None,
    evaluation_data: Path | str | None = None,
    reference_data: Path | str | None = None,
    lora_targets: Sequence[str] | None = None,
    optimizers: Sequence[str] = ("sgd", "adam", "adamw"),
    methods: Sequence[str] = ("full", "lora"),
    schedules: Sequence[str] = ("constant", "linear", "cosine"),
    warmup_fractions: Sequence[float] = (0.0, 0.1, 0.25),
    clipping: Sequence[float | None] = (None, 0.5, 1.0),
    learning_rates: dict[str, tuple[float, float]] | None = None,
    budget: tuple[int, int] = (8, 20),
    batch_sizes: Sequence[int] = (4, 8),
    probe_size: int = 8,
    eval_every: int | None = None,
    max_length: int | None = None,
) -> AttackConfig:
    """An ``AttackConfig`` with the probe and segment curvature recorded.

    ``model`` is written into the config (``None``: the embedded model, or the model object
    the caller passes to the attack). ``data``, ``evaluation_data``, ``reference_data``: the
    user's JSONL / Parquet files in BeaverTails form (docs/data.md) for the attack, the
    harm evaluation and the capability reference (``None``: the embedded benchmark's split).
    A LoRA draw adapts ``lora_targets`` (``None``: inferred from the model's architecture,
    peft's per-model defaults, see ``empirical.engine.lora``; ``("auto",)`` infers on the loaded
    model, for a model object passed to the attack).

    SGD draws a momentum in {0, 0.5, 0.9}; weight decay is drawn for Adam/AdamW only (SGD's
    L2 decay is added after clipping, outside T2's assumptions). ``eval_every`` defaults to
    the budget (evaluate at the start and the end).
    """
    optimizer = draw(st.sampled_from(list(optimizers)))
    low, high = (learning_rates or DEFAULT_LEARNING_RATES)[optimizer]
    steps = draw(st.integers(*budget))
    method = draw(st.sampled_from(list(methods)))
    lora = LoraSettings()
    if method == "lora":
        lora = LoraSettings(
            r=draw(st.sampled_from([1, 2, 4])),
            alpha=draw(st.sampled_from([2, 8])),
            target_modules=_lora_targets(model, lora_targets),
        )
    return AttackConfig(
        model=None if model is None else Path(model),
        data=None if data is None else Path(data),
        evaluation_data=None if evaluation_data is None else Path(evaluation_data),
        reference_data=None if reference_data is None else Path(reference_data),
        optimizer=optimizer,  # type: ignore[arg-type]
        learning_rate=draw(_log_uniform(low, high)),
        momentum=draw(st.sampled_from([0.0, 0.5, 0.9])) if optimizer == "sgd" else 0.0,
        weight_decay=draw(st.sampled_from([0.0, 0.01, 0.1])) if optimizer != "sgd" else 0.0,
        schedule=draw(st.sampled_from(list(schedules))),  # type: ignore[arg-type]
        warmup_fraction=draw(st.sampled_from(list(warmup_fractions))),
        max_grad_norm=draw(st.sampled_from(list(clipping))),
        method=method,  # type: ignore[arg-type]
        lora=lora,
        batch_size=draw(st.sampled_from(list(batch_sizes))),
        budget_steps=steps,
        eval_every=steps if eval_every is None else eval_every,
        seed=draw(st.integers(0, 1000)),
        probe=True,
        probe_size=probe_size,
        record_curvature=True,
        max_length=max_length,
    )
