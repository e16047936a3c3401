"""Test problems with known constants, and real gradient descent on them, recorded as trajectories.

``empirical.testing`` is what the property tests (``tests/properties``) generate and run, kept
in the package so that users can write the same properties for their own models and
defences. Two halves:

* this module (torch and numpy only, no hypothesis): differentiable losses on ℝᵈ whose
  constants are known exactly or from the literature, and ``descend``, a real
  ``torch.optim.SGD`` loop in float64 that records a
  ``empirical.measurement.trajectory.Trajectory`` with
  the probe fields filled (the "probe batch" is the whole problem, so the probe loss is the
  loss being minimised), ready for ``empirical.certify``;
* ``empirical.testing.strategies`` (imports hypothesis, a dev dependency): hypothesis
  strategies generating these problems, tiny transformer configurations and attack
  configurations (``from empirical.testing import strategies as hst``).

Problems (each a ``GradientProblem``: ``loss(θ)``, start θ_0, step η, smoothness β, PL constant
μ, minimum L*):

* ``QuadraticProblem``: L(θ) = L* + ½ (θ − θ*)ᵀ H (θ − θ*) (T5); β = λ_max(H), μ = the
  smallest positive eigenvalue (μ-PL with the minimum L*: ½‖H e‖² ≥ λ⁺_min · ½ eᵀHe).
* ``LeastSquaresProblem``: (1/2n)‖Xw − y‖², the quadratic with H = XᵀX/n
  (``theory.quadratic.least_squares_quadratic``).
* ``FeatureProbingProblem``: least squares on the features Xθ of a fixed linear feature
  extractor θ (Zheng et al., ICML 2025): H = θᵀ(XᵀX/n)θ (``theory.quadratic.feature_hessian``).
* ``SinusoidalPLProblem``: L(x) = Σ_i x_i² + 3 sin²(x_i), non-convex (L'' = 2 + 6 cos 2x ∈
  [−4, 8], so β = 8) yet μ-PL with μ = 1/32 and L* = 0 (Karimi, Nutini, Schmidt,
  ECML-PKDD 2016, §2: their example of a PL function that is not convex; the sum over
  coordinates keeps both constants).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from empirical.measurement.trajectory import Environment, Timing, Trajectory, TrajectoryRecorder
from theory import quadratic
from theory.errors import HftaInputError

FloatArray = npt.NDArray[np.float64]
ProblemKind = Literal["quadratic", "least_squares", "feature_probing", "sinusoidal_pl"]

__all__ = [
    "Descent",
    "FeatureProbingProblem",
    "FeatureTaskPair",
    "GradientProblem",
    "LeastSquaresProblem",
    "QuadraticProblem",
    "SinusoidalPLProblem",
    "TransformerSpec",
    "descend",
]

#: PL constant of x² + 3 sin²(x) published by Karimi, Nutini & Schmidt (2016), §2.
SINUSOIDAL_PL_CONSTANT = 1.0 / 32.0
#: max |d²/dx² (x² + 3 sin² x)| = max |2 + 6 cos 2x| = 8.
SINUSOIDAL_SMOOTHNESS = 8.0


def _array(name: str, value: npt.ArrayLike, ndim: int) -> FloatArray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim:
        raise HftaInputError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise HftaInputError(f"{name} has a NaN or infinite entry")
    return array


@dataclass(frozen=True)
class GradientProblem:
    """A differentiable loss on ℝᵈ with known constants, minimised by gradient descent.

    Attributes:
        theta_0: the start point (shape ``(d,)``).
        learning_rate: the constant step η of gradient descent.
        kind: which family the problem belongs to.
    Subclasses define ``loss`` (a float64 torch function of θ, shape ``(d,)`` → scalar) and
    the constants ``smoothness`` (β), ``pl_constant`` (μ; ``None`` when the loss is not μ-PL
    for any μ > 0) and ``loss_star`` (L* = inf L).
    """

    theta_0: FloatArray
    learning_rate: float
    kind: ProblemKind = field(init=False, repr=False, default="quadratic")

    def __post_init__(self) -> None:
        object.__setattr__(self, "theta_0", _array("theta_0", self.theta_0, 1))
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise HftaInputError(f"learning_rate must be finite and > 0, got {self.learning_rate}")

    @property
    def dimension(self) -> int:
        return int(self.theta_0.shape[0])

    def loss(self, theta: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def smoothness(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def pl_constant(self) -> float | None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def loss_star(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss_at(self, theta: npt.ArrayLike) -> float:
        """L(θ) as a float (float64)."""
        with torch.no_grad():
            return float(self.loss(torch.as_tensor(np.asarray(theta), dtype=torch.float64)))


@dataclass(frozen=True)
class QuadraticProblem(GradientProblem):
    """L(θ) = L* + ½ (θ − θ*)ᵀ H (θ − θ*) with H symmetric positive semi-definite (T5)."""

    hessian: FloatArray = field(default_factory=lambda: np.eye(1))
    theta_star: FloatArray = field(default_factory=lambda: np.zeros(1))
    minimum: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "kind", "quadratic")
        object.__setattr__(self, "hessian", _array("hessian", self.hessian, 2))
        object.__setattr__(self, "theta_star", _array("theta_star", self.theta_star, 1))
        d = self.dimension
        if self.hessian.shape != (d, d) or self.theta_star.shape != (d,):
            raise HftaInputError(
                f"hessian {self.hessian.shape} and theta_star {self.theta_star.shape} "
                f"do not match theta_0 of dimension {d}"
            )
        quadratic.spectral_decomposition(self.hessian)  # symmetric PSD, or AssumptionError

    def loss(self, theta: Tensor) -> Tensor:
        offset = theta - torch.as_tensor(self.theta_star, dtype=theta.dtype)
        matrix = torch.as_tensor(self.hessian, dtype=theta.dtype)
        return self.minimum + 0.5 * offset @ (matrix @ offset)

    @property
    def spectrum(self) -> quadratic.Spectrum:
        return quadratic.spectral_decomposition(self.hessian)

    @property
    def smoothness(self) -> float:
        return self.spectrum.largest

    @property
    def pl_constant(self) -> float | None:
        eigenvalues = self.spectrum.eigenvalues
        tolerance = 10.0 * self.dimension * np.finfo(np.float64).eps * float(eigenvalues[-1])
        positive = eigenvalues[eigenvalues > tolerance]
        return float(positive[0]) if positive.size else None

    @property
    def loss_star(self) -> float:
        return float(self.minimum)

    def modal(self) -> quadratic.ModalQuadratic:
        """The problem in eigen-coordinates (T5's inputs λ_i, c_i, L*)."""
        return quadratic.ModalQuadratic.from_hessian(
            self.hessian, self.theta_0, self.theta_star, self.minimum
        )


@dataclass(frozen=True)
class LeastSquaresProblem(GradientProblem):
    """(1/2n)‖Xw − y‖² over w ∈ ℝᵈ (X shape ``(n, d)``, y shape ``(n,)``)."""

    features: FloatArray = field(default_factory=lambda: np.ones((1, 1)))
    targets: FloatArray = field(default_factory=lambda: np.zeros(1))

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "kind", "least_squares")
        object.__setattr__(self, "features", _array("features", self.features, 2))
        object.__setattr__(self, "targets", _array("targets", self.targets, 1))
        if self.features.shape != (self.targets.shape[0], self.dimension):
            raise HftaInputError(
                f"features {self.features.shape}, targets {self.targets.shape} and theta_0 "
                f"({self.dimension},) do not fit together"
            )

    def loss(self, theta: Tensor) -> Tensor:
        design = torch.as_tensor(self.features, dtype=theta.dtype)
        residual = design @ theta - torch.as_tensor(self.targets, dtype=theta.dtype)
        return residual @ residual / (2.0 * design.shape[0])

    def as_quadratic(self) -> QuadraticProblem:
        """The same loss as ``QuadraticProblem`` (H = XᵀX/n, θ* least-squares, L* residual)."""
        form = quadratic.least_squares_quadratic(self.features, self.targets)
        return QuadraticProblem(
            theta_0=self.theta_0,
            learning_rate=self.learning_rate,
            hessian=form.hessian,
            theta_star=form.theta_star,
            minimum=form.loss_star,
        )

    @property
    def smoothness(self) -> float:
        return self.as_quadratic().smoothness

    @property
    def pl_constant(self) -> float | None:
        return self.as_quadratic().pl_constant

    @property
    def loss_star(self) -> float:
        return self.as_quadratic().loss_star


@dataclass(frozen=True)
class FeatureProbingProblem(LeastSquaresProblem):
    """Linear probing on the features of a fixed linear feature extractor.

    Data ``inputs`` X (shape ``(n, D)``), extractor θ (shape ``(D, p)``): the probe w ∈ ℝᵖ
    minimises (1/2n)‖Xθw − y‖², whose Hessian is θᵀ(XᵀX/n)θ (Zheng, Bai, Bullins, Yeh,
    ICML 2025). ``features`` is Xθ (computed).
    """

    inputs: FloatArray = field(default_factory=lambda: np.ones((1, 1)))
    extractor: FloatArray = field(default_factory=lambda: np.ones((1, 1)))

    def __post_init__(self) -> None:
        inputs = _array("inputs", self.inputs, 2)
        extractor = _array("extractor", self.extractor, 2)
        if inputs.shape[1] != extractor.shape[0]:
            raise HftaInputError(f"inputs {inputs.shape} and extractor {extractor.shape} differ")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "extractor", extractor)
        object.__setattr__(self, "features", inputs @ extractor)
        super().__post_init__()
        object.__setattr__(self, "kind", "feature_probing")

    @property
    def covariance(self) -> FloatArray:
        """K = XᵀX/n, the data covariance (uncentred second moment) of the inputs."""
        return np.asarray(self.inputs.T @ self.inputs / self.inputs.shape[0])


@dataclass(frozen=True)
class SinusoidalPLProblem(GradientProblem):
    """L(x) = Σ_i x_i² + 3 sin²(x_i): non-convex, β = 8, μ = 1/32, L* = 0 (module docstring)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "kind", "sinusoidal_pl")

    def loss(self, theta: Tensor) -> Tensor:
        return torch.sum(theta**2 + 3.0 * torch.sin(theta) ** 2)

    @property
    def smoothness(self) -> float:
        return SINUSOIDAL_SMOOTHNESS

    @property
    def pl_constant(self) -> float | None:
        return SINUSOIDAL_PL_CONSTANT

    @property
    def loss_star(self) -> float:
        return 0.0


@dataclass(frozen=True)
class FeatureTaskPair:
    """A harmful and a pre-training probing task seen through the same linear feature
    extractor θ (Zheng et al., ICML 2025): the harmful task's Hessian is θᵀK_Hθ, the
    pre-training task's θᵀK_Pθ."""

    harmful: FeatureProbingProblem
    pretraining: FeatureProbingProblem

    def __post_init__(self) -> None:
        if not np.array_equal(self.harmful.extractor, self.pretraining.extractor):
            raise HftaInputError("the two tasks of a pair must share the feature extractor")


@dataclass(frozen=True)
class TransformerSpec:
    """A tiny randomly initialised GPT-2 (``empirical.models.model.tiny_gpt2``), or the embedded
    model when ``embedded`` is true (then the sizes are ignored)."""

    n_layer: int = 1
    n_embd: int = 8
    n_head: int = 2
    seed: int = 0
    n_positions: int = 32
    embedded: bool = False

    def build(self) -> tuple[torch.nn.Module, Any]:
        """(model, tokenizer): the embedded model and its tokenizer, or a fresh tiny GPT-2 with
        the embedded benchmark's character tokenizer."""
        from empirical.datasets.benchmark import TOKENIZER_ALPHABET
        from empirical.models.model import build_char_tokenizer, load_model, tiny_gpt2

        if self.embedded:
            return load_model(None)
        tokenizer = build_char_tokenizer(TOKENIZER_ALPHABET)
        model = tiny_gpt2(
            len(tokenizer),
            n_layer=self.n_layer,
            n_embd=self.n_embd,
            n_head=self.n_head,
            n_positions=self.n_positions,
            seed=self.seed,
        )
        return model, tokenizer


@dataclass(frozen=True)
class Descent:
    """A gradient-descent run: its trajectory and every iterate θ_0 … θ_T (float64 arrays)."""

    trajectory: Trajectory
    iterates: list[FloatArray]

    def iterate_tensors(self) -> list[Tensor]:
        return [torch.as_tensor(theta, dtype=torch.float64) for theta in self.iterates]


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _measure(problem: GradientProblem, theta: Tensor) -> tuple[float, Tensor]:
    point = theta.detach().clone().requires_grad_(True)
    loss = problem.loss(point)
    (gradient,) = torch.autograd.grad(loss, point)
    return float(loss.detach()), gradient.detach()


def descend(
    problem: GradientProblem,
    steps: int,
    *,
    momentum: float = 0.0,
    max_grad_norm: float | None = None,
    learning_rates: Sequence[float] | None = None,
) -> Descent:
    """Run ``torch.optim.SGD`` on ``problem.loss`` in float64 for ``steps`` steps and record it.

    Full-batch: the gradient of every step is the exact ∇L(θ_s) (clipped to ``max_grad_norm``
    when given, with ``torch.nn.utils.clip_grad_norm_``), so without momentum and clipping this
    is gradient descent θ_{s+1} = θ_s − η_s ∇L(θ_s). ``learning_rates`` (length ``steps``)
    overrides the constant ``problem.learning_rate``. The trajectory's probe fields hold
    L(θ_s), ‖∇L(θ_s)‖ and ⟨∇L(θ_s), Δ_s⟩ of the loss itself; its config says
    ``full_batch: True`` so that ``empirical.certify`` knows the probe loss is the loss the
    optimizer descends. A non-finite loss stops the run (``diverged_at``).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise HftaInputError(f"steps must be a positive integer, got {steps!r}")
    rates = [problem.learning_rate] * steps if learning_rates is None else list(learning_rates)
    if len(rates) != steps:
        raise HftaInputError(f"{len(rates)} learning rates for {steps} steps")
    started = time.perf_counter()
    theta = torch.nn.Parameter(torch.as_tensor(problem.theta_0, dtype=torch.float64).clone())
    optimizer = torch.optim.SGD([theta], lr=rates[0], momentum=momentum)
    config: dict[str, Any] = {
        "optimizer": "sgd",
        "momentum": momentum,
        "weight_decay": 0.0,
        "max_grad_norm": max_grad_norm,
        "learning_rate": max(rates),
        "schedule": "constant" if len(set(rates)) == 1 else "given",
        "full_batch": True,
        "problem": problem.kind,
        "dimension": problem.dimension,
    }
    recorder = TrajectoryRecorder(
        source="trainer",
        config=config,
        budget_steps=steps,
        trainable_parameters=problem.dimension,
        probe=True,
        # No curvature column: near convergence a float64 step can be ~1e-163, whose square
        # underflows, and theory's segment_curvature then divides by zero. The bound checks
        # use the losses and slopes, not this column.
        curvature=False,
    )
    start = theta.detach().clone()
    previous = start
    loss, gradient = _measure(problem, theta)
    recorder.iterate(0.0, probe_loss=loss, probe_grad_norm=float(gradient.norm()))
    iterates = [start.numpy().copy()]
    for step, rate in enumerate(rates):
        if not math.isfinite(loss):
            recorder.diverge(step, f"loss is not finite at step {step}")
            break
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.zero_grad(set_to_none=True)
        current_loss = problem.loss(theta)
        torch.autograd.backward(current_loss)
        if max_grad_norm is not None:
            norm = float(torch.nn.utils.clip_grad_norm_([theta], max_grad_norm))
        else:
            norm = float(theta.grad.norm()) if theta.grad is not None else 0.0
        optimizer.step()
        current = theta.detach().clone()
        delta = current - previous
        recorder.step(
            train_loss=_finite_or_none(float(current_loss.detach())),
            learning_rate=rate,
            grad_norm=_finite_or_none(norm),
            update_norm=_finite_or_none(float(delta.norm())),
            probe_directional_derivative=_finite_or_none(float(gradient @ delta)),
        )
        loss, gradient = _measure(problem, current)
        finite = math.isfinite(loss) and bool(torch.isfinite(gradient).all())
        recorder.iterate(
            _finite_or_none(float((current - start).norm())),
            probe_loss=loss if finite else None,
            probe_grad_norm=float(gradient.norm()) if finite else None,
        )
        iterates.append(current.numpy().copy())
        previous = current
        if not finite:
            recorder.diverge(step + 1, f"loss is not finite at step {step + 1}")
            break
    seconds = time.perf_counter() - started
    trajectory = recorder.finish(
        timing=Timing(wall_seconds=seconds, train_seconds=seconds, eval_seconds=0.0),
        environment=Environment.current("cpu", "float64"),
        capability_higher_is_better=None,
    )
    return Descent(trajectory=trajectory, iterates=iterates)
