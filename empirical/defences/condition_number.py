"""``condition-number``: immunization by conditioning (Zheng, Bai, Bullins, Yeh, ICML 2025).

Zheng, Bai, Bullins, Yeh, "Model Immunization from a Condition Number Perspective" (ICML 2025;
theory's T5 and ``theory.quadratic``). An attacker who fine-tunes a linear probe w on features
θᵀx by gradient descent on least squares faces the Hessian θᵀK θ, K = XᵀX/n the data
covariance; its condition number κ sets the speed (T5: with η = 1/λ_max the slowest mode
contracts by 1 − 1/κ per step). Immunizing the feature extractor θ means making the harmful
task's Hessian ill-conditioned while the pre-training task's stays well conditioned:

    min_{θ, w_P}  L_P(θ, w_P) + λ_P R_well(θᵀK_Pθ) + λ_H R_ill(θᵀK_Hθ),
    R_well(S) = ½‖S‖₂² − (1/2p)‖S‖_F²,   R_ill(S) = 1 / ((1/2k)‖S‖_F² − ½σ_min(S)²),

with the regularisers' gradients preconditioned by the inverse covariances (the paper's
algorithm; its code solves (XᵀX + λI) G = ∇ for the regulariser gradients):

    θ ← θ − η [∇_θ L_P + λ_P (K_P + ρI)⁻¹ ∇_θ R_well + λ_H (K_H + ρI)⁻¹ ∇_θ R_ill],
    w_P ← w_P − η ∇_w L_P.

Since ∇_θ R(θᵀKθ) = 2Kθ ∇_S R, the preconditioned step is ≈ 2θ ∇_S R: it no longer depends on
how K itself is conditioned. Success is measured by the relative immunization ratio
RIR = [κ(θᵀK_Hθ)/κ(K_H)] / [κ(θᵀK_Pθ)/κ(K_P)] (``theory.quadratic``; 1 at θ = I).

Two parts:

1. The paper's linear setting, exactly: ``synthetic_task_pair`` (two least-squares tasks with
   chosen covariances), ``immunize_linear`` (the preconditioned algorithm above, float64
   torch) and ``harmful_fine_tuning`` (the attacker's gradient descent on the harmful probe,
   measured and predicted by T5's closed form).
2. The registry plug-in ``condition-number`` on a causal LM. What is immunized: the input of
   the LM head. The features are the last hidden states h(x) (after the final layer norm) at
   the answer-producing positions, and an attacker who fine-tunes the head faces, for least
   squares, the Hessian Gram(h) = E[h hᵀ] (for cross-entropy, its Gauss–Newton factor). The
   plug-in trains every parameter on the safe data (refusals, harmless retain) plus
   λ_P R_well(Ĝ_P) + λ_H R_ill(Ĝ_H), Ĝ the Gram matrices of the last hidden states on safe
   (P) and harmful (H) answers, each divided by its mean eigenvalue (tr G / d) so that the
   regularisers see conditioning, not scale. There is no linear θ and no K⁻¹ preconditioning
   here (the LM's features are not a linear map of fixed inputs); the record reports κ(G_H),
   κ(G_P) before and after and their ratio, the LM analogue of RIR with the original model in
   the role of θ = I. It is a statement about head-only (linear-probe) attacks; full
   fine-tuning is not covered by the paper's theory.

The torch regularisers restate ``theory.quadratic``'s (which are numpy, not differentiable);
tests tie the two together on random matrices.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from empirical.defences.base import (
    DefenceBatch,
    DefenceConfig,
    LossDefence,
    NonNegativeFloat,
    PositiveFloat,
    Term,
    TrainingState,
)
from empirical.defences.losses import response_loss
from empirical.defences.record import StepRecord
from empirical.defences.registry import register
from empirical.defences.representations import hidden_states
from theory.errors import HftaInputError
from theory.quadratic import (
    FloatArray,
    condition_number,
    least_squares_loss,
    least_squares_quadratic,
    relative_immunization_ratio,
)
from theory.theorems.quadratic_gd import THEOREM as QUADRATIC_GD

SOURCE = (
    "Zheng, Bai, Bullins, Yeh, 'Model Immunization from a Condition Number Perspective', ICML 2025"
)


# --------------------------------------------------------------------------- regularisers
def well_conditioning(matrix: Tensor) -> Tensor:
    """R_well(S) = ½σ_max² − (1/2p)Σσ_i², differentiable (``theory.quadratic``'s, in torch)."""
    sigma: Tensor = torch.linalg.svdvals(matrix)
    value: Tensor = 0.5 * sigma[0] ** 2 - (sigma**2).sum() / (2 * sigma.numel())
    return value


def ill_conditioning(matrix: Tensor) -> Tensor:
    """R_ill(S) = 1 / ((1/2k)Σσ_i² − ½σ_min²), differentiable (``theory.quadratic``'s)."""
    sigma: Tensor = torch.linalg.svdvals(matrix)
    value: Tensor = 1.0 / ((sigma**2).sum() / (2 * sigma.numel()) - 0.5 * sigma[-1] ** 2)
    return value


def normalized_gram(features: Tensor) -> Tensor:
    """G = FᵀF/m of features F (m, d), divided by its mean eigenvalue tr(G)/d."""
    gram = features.T @ features / features.shape[0]
    return gram * (gram.shape[0] / torch.trace(gram))


# --------------------------------------------------------------------------- linear tasks
@dataclass(frozen=True)
class LinearTaskPair:
    """A pre-training and a harmful least-squares task on inputs of the same dimension D."""

    pretraining_features: FloatArray
    pretraining_targets: FloatArray
    harmful_features: FloatArray
    harmful_targets: FloatArray

    @property
    def pretraining_covariance(self) -> FloatArray:
        """K_P = X_PᵀX_P/n, the least-squares Hessian of the pre-training task (T5)."""
        return least_squares_quadratic(self.pretraining_features, self.pretraining_targets).hessian

    @property
    def harmful_covariance(self) -> FloatArray:
        """K_H = X_HᵀX_H/n."""
        return least_squares_quadratic(self.harmful_features, self.harmful_targets).hessian


def _random_rotation(generator: np.random.Generator, dimension: int) -> FloatArray:
    q, r = np.linalg.qr(generator.standard_normal((dimension, dimension)))
    return np.asarray(q * np.sign(np.diag(r)), dtype=np.float64)


def synthetic_task_pair(
    *,
    dimension: int = 16,
    samples: int = 400,
    spread: float = 10.0,
    aligned: bool = False,
    noise: float = 0.1,
    seed: int = 0,
) -> LinearTaskPair:
    """Two linear-regression tasks x ~ N(0, K), y = xᵀβ + noise·ε.

    Each covariance K = Q diag(λ) Qᵀ has eigenvalues log-spaced in [1, spread]. The
    pre-training task's Q_P is a random rotation; the harmful task's Q_H is an independent
    one (singular vectors at a large angle: immunizable), or Q_P itself when ``aligned`` (the
    two tasks then share their covariance: the non-immunizable case, where every θ gives the
    two Hessians θᵀKθ the same condition number up to sampling).
    """
    if dimension < 2 or samples < dimension or not spread >= 1.0 or noise < 0:
        raise HftaInputError(
            "synthetic_task_pair: need dimension >= 2, samples >= dimension, spread >= 1, "
            "noise >= 0"
        )
    generator = np.random.default_rng(seed)
    spectrum = np.logspace(0.0, math.log10(spread), dimension)
    pretraining_rotation = _random_rotation(generator, dimension)
    harmful_rotation = pretraining_rotation if aligned else _random_rotation(generator, dimension)

    def task(rotation: FloatArray) -> tuple[FloatArray, FloatArray]:
        features = generator.standard_normal((samples, dimension)) * np.sqrt(spectrum) @ rotation.T
        weights = generator.standard_normal(dimension)
        targets = features @ weights + noise * generator.standard_normal(samples)
        return np.asarray(features), np.asarray(targets)

    pretraining = task(pretraining_rotation)
    harmful = task(harmful_rotation)
    return LinearTaskPair(pretraining[0], pretraining[1], harmful[0], harmful[1])


class LinearImmunizationConfig(BaseModel):
    """The preconditioned algorithm's settings (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(default=1500, ge=1, description="gradient steps on (θ, w_P)")
    learning_rate: PositiveFloat = Field(
        default=3e-3,
        description="η (the paper's code: Adam at 5e-3); plain gradient descent diverged at "
        "1e-2 on some synthetic pairs (the pre-training term's curvature ‖w_P‖²λ_max(K_P))",
    )
    well_weight: NonNegativeFloat = Field(
        default=1.0,
        description="λ_P on R_well (the paper's code: 100 on unnormalised XᵀX Gram matrices)",
    )
    ill_weight: NonNegativeFloat = Field(
        default=1.0,
        description="λ_H on R_ill (the paper's code: 1e7 on unnormalised XᵀX Gram matrices)",
    )
    ridge: PositiveFloat = Field(
        default=1e-3, description="ρ in the preconditioners (K + ρI)⁻¹ (the paper's code: 1)"
    )


@dataclass(frozen=True)
class LinearImmunization:
    """The immunized extractor θ^I (D, D), the pre-training head w_P and what they achieve."""

    extractor: FloatArray
    pretraining_head: FloatArray
    curve: list[StepRecord]
    relative_immunization_ratio: float
    harmful_condition_number: float
    pretraining_condition_number: float
    pretraining_loss: float
    optimal_pretraining_loss: float


def _least_squares_loss_torch(features: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    residual = features @ weights - targets
    return (residual @ residual) / (2 * features.shape[0])


def immunize_linear(
    pair: LinearTaskPair, config: LinearImmunizationConfig | None = None
) -> LinearImmunization:
    """Run the preconditioned algorithm from θ = I and w_P = the least-squares solution."""
    config = config or LinearImmunizationConfig()
    x_p = torch.as_tensor(pair.pretraining_features, dtype=torch.float64)
    y_p = torch.as_tensor(pair.pretraining_targets, dtype=torch.float64)
    k_p = torch.as_tensor(pair.pretraining_covariance)
    k_h = torch.as_tensor(pair.harmful_covariance)
    dimension = k_p.shape[0]
    if k_h.shape[0] != dimension:
        raise HftaInputError("the two tasks' inputs have different dimensions")
    identity = torch.eye(dimension, dtype=torch.float64)
    precondition_p = torch.linalg.inv(k_p + config.ridge * identity)
    precondition_h = torch.linalg.inv(k_h + config.ridge * identity)
    start = least_squares_quadratic(pair.pretraining_features, pair.pretraining_targets)
    theta = identity.clone().requires_grad_(True)
    head = torch.as_tensor(start.theta_star.copy()).requires_grad_(True)
    curve: list[StepRecord] = []
    for step in range(config.steps):
        pretraining = _least_squares_loss_torch(x_p @ theta, y_p, head)
        well = well_conditioning(theta.T @ k_p @ theta)
        ill = ill_conditioning(theta.T @ k_h @ theta)
        grad_theta, grad_head = torch.autograd.grad(pretraining, [theta, head])
        (grad_well,) = torch.autograd.grad(well, theta)
        (grad_ill,) = torch.autograd.grad(ill, theta)
        direction = (
            grad_theta
            + config.well_weight * precondition_p @ grad_well
            + config.ill_weight * precondition_h @ grad_ill
        )
        total = pretraining + config.well_weight * well + config.ill_weight * ill
        norm = float(torch.sqrt((direction**2).sum() + (grad_head**2).sum()))
        values = [float(v.detach()) for v in (total, pretraining, well, ill)]
        if not all(math.isfinite(v) for v in [*values, norm]):
            raise HftaInputError(
                f"immunize_linear: objective or gradient not finite at step {step} "
                f"(learning_rate {config.learning_rate} too large?)"
            )
        curve.append(
            StepRecord(
                step=step,
                learning_rate=config.learning_rate,
                total=values[0],
                components={"pretraining_loss": values[1], "R_well": values[2], "R_ill": values[3]},
                grad_norm=norm,
            )
        )
        with torch.no_grad():
            theta -= config.learning_rate * direction
            head -= config.learning_rate * grad_head
    extractor = theta.detach().numpy().copy()
    weights = head.detach().numpy().copy()
    k_p_np, k_h_np = pair.pretraining_covariance, pair.harmful_covariance
    return LinearImmunization(
        extractor=extractor,
        pretraining_head=weights,
        curve=curve,
        relative_immunization_ratio=relative_immunization_ratio(extractor, k_h_np, k_p_np),
        harmful_condition_number=condition_number(extractor.T @ k_h_np @ extractor),
        pretraining_condition_number=condition_number(extractor.T @ k_p_np @ extractor),
        pretraining_loss=least_squares_loss(
            pair.pretraining_features @ extractor, pair.pretraining_targets, weights
        ),
        optimal_pretraining_loss=start.loss_star,
    )


@dataclass(frozen=True)
class HarmfulFineTuning:
    """The attacker's gradient descent on the harmful probe over features θᵀx.

    ``predicted_steps``: T5's exact steps to reach τ (closed form); ``measured_steps``: the
    first step of an actual gradient-descent run (autograd on the least-squares loss of the
    data) whose loss is ≤ τ (``math.inf`` if not within ``max_steps``).
    """

    learning_rate: float
    threshold: float
    condition_number: float
    predicted_steps: float
    measured_steps: float


def harmful_fine_tuning(
    pair: LinearTaskPair,
    extractor: FloatArray,
    *,
    remaining_fraction: float = 0.01,
    max_steps: int = 100_000,
) -> HarmfulFineTuning:
    """Fine-tune the harmful probe w from 0 by gradient descent with η = 1/λ_max (the largest
    step T5's monotonicity allows, halved) until the excess loss is ``remaining_fraction`` of
    its start: τ = L* + f·(L_0 − L*)."""
    if not 0.0 < remaining_fraction < 1.0:
        raise HftaInputError(f"remaining_fraction must lie in (0, 1), got {remaining_fraction}")
    features = pair.harmful_features @ extractor
    quadratic = least_squares_quadratic(features, pair.harmful_targets)
    eigenvalues = np.linalg.eigvalsh(quadratic.hessian)
    rate = 1.0 / float(eigenvalues[-1])
    start = np.zeros(features.shape[1])
    initial = least_squares_loss(features, pair.harmful_targets, start)
    threshold = quadratic.loss_star + remaining_fraction * (initial - quadratic.loss_star)
    predicted = QUADRATIC_GD.steps_to_threshold(
        threshold,
        eta=rate,
        hessian=quadratic.hessian,
        theta_0=start,
        theta_star=quadratic.theta_star,
        L_star=quadratic.loss_star,
    )
    x = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(pair.harmful_targets, dtype=torch.float64)
    weights = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
    measured = math.inf
    for step in range(max_steps + 1):
        loss = _least_squares_loss_torch(x, y, weights)
        if float(loss.detach()) <= threshold:
            measured = float(step)
            break
        (gradient,) = torch.autograd.grad(loss, weights)
        with torch.no_grad():
            weights -= rate * gradient
    return HarmfulFineTuning(
        learning_rate=rate,
        threshold=threshold,
        condition_number=condition_number(quadratic.hessian),
        predicted_steps=predicted,
        measured_steps=measured,
    )


# --------------------------------------------------------------------------- the LM plug-in
class ConditionNumberConfig(DefenceConfig):
    """Hyperparameters of the LM plug-in (module docstring, part 2)."""

    well_weight: NonNegativeFloat = Field(
        default=0.001,
        description="λ_P on R_well of the safe answers' normalised Gram matrix. Ours, chosen "
        "on the embedded model: its last-layer features are far from isotropic (R_well ≈ 370 "
        "at the start) and λ_P = 1 cost 75 points of harmless accuracy. The paper's code used "
        "100 on unnormalised Gram matrices of linear models",
    )
    ill_weight: NonNegativeFloat = Field(
        default=10.0,
        description="λ_H on R_ill of the harmful answers' normalised Gram matrix (ours, chosen "
        "on the embedded model; the paper's code used 1e7 on unnormalised ones)",
    )
    layer: int = Field(
        default=-1, description="hidden layer whose features are conditioned (−1: LM-head input)"
    )
    steps: int = Field(default=300, ge=1, description="optimizer steps (embedded model scale)")
    learning_rate: PositiveFloat = Field(default=1e-4, description="AdamW rate (constant)")


def gram_condition_numbers(
    model: nn.Module,
    harmful: Mapping[str, Tensor],
    safe: Mapping[str, Tensor],
    layer: int,
    batch_size: int = 256,
) -> tuple[float, float]:
    """(κ(G_H), κ(G_P)): condition numbers (``theory.quadratic.condition_number``) of the
    Gram matrices of ``layer``'s features on the harmful and the safe answers (no gradient).

    The features are computed by a float64 copy of the model: the last hidden states of a
    trained LM are far from isotropic (κ ~ 10⁷ or more), beyond what float32 features resolve.
    """
    model = copy.deepcopy(model).to(torch.float64)

    def gram(batch: Mapping[str, Tensor]) -> FloatArray:
        size = int(batch["input_ids"].shape[0])
        total: Tensor | None = None
        count = 0
        with torch.no_grad():
            for start in range(0, size, batch_size):
                part = {k: v[start : start + batch_size] for k, v in batch.items()}
                (features,) = hidden_states(model, part, [layer])
                features = features.double()
                product = features.T @ features
                total = product if total is None else total + product
                count += int(features.shape[0])
        if total is None or count == 0:
            raise HftaInputError("no answer tokens to build a Gram matrix from")
        return np.asarray((total / count).cpu().numpy(), dtype=np.float64)

    return condition_number(gram(harmful)), condition_number(gram(safe))


@register
class ConditionNumber(LossDefence):
    """Safe CE + λ_P R_well(Ĝ_safe) + λ_H R_ill(Ĝ_harmful) on the LM head's input."""

    name: ClassVar[str] = "condition-number"
    source: ClassVar[str] = SOURCE
    Config: ClassVar[type[DefenceConfig]] = ConditionNumberConfig
    immunized: ClassVar[str] = (
        "every trainable parameter, trained so that the Gram matrix of the LM head's input "
        "features is ill-conditioned on harmful answers and well conditioned on safe ones "
        "(a head-only, linear-probe attack's Hessian; see empirical.defences.condition_number)"
    )

    def _measurement_batches(self, state: TrainingState) -> tuple[dict[str, Tensor], ...]:
        from empirical.attack import encode_on

        harmful = encode_on(state.tokenizer, state.data.harmful, state.max_length, state.device)
        safe = encode_on(state.tokenizer, state.data.alignment, state.max_length, state.device)
        return harmful, safe

    def prepare(self, state: TrainingState) -> None:
        config = state.config
        assert isinstance(config, ConditionNumberConfig)
        harmful, safe = self._measurement_batches(state)
        kappa_h, kappa_p = gram_condition_numbers(state.model, harmful, safe, config.layer)
        state.extras["before"] = (kappa_h, kappa_p)

    def terms(self, state: TrainingState, batch: DefenceBatch) -> list[Term]:
        config = state.config
        assert isinstance(config, ConditionNumberConfig)
        alignment = batch.alignment
        (safe_features,) = hidden_states(state.model, alignment, [config.layer])
        (harmful_features,) = hidden_states(state.model, batch.harmful, [config.layer])
        return [
            Term("safe_ce", response_loss(state.model, alignment), 1.0),
            Term(
                "R_well_safe", well_conditioning(normalized_gram(safe_features)), config.well_weight
            ),
            Term(
                "R_ill_harmful",
                ill_conditioning(normalized_gram(harmful_features)),
                config.ill_weight,
            ),
        ]

    def measure(self, state: TrainingState) -> dict[str, float]:
        config = state.config
        assert isinstance(config, ConditionNumberConfig)
        harmful, safe = self._measurement_batches(state)
        kappa_h, kappa_p = gram_condition_numbers(state.model, harmful, safe, config.layer)
        before_h, before_p = state.extras["before"]
        return {
            "kappa_harmful_before": before_h,
            "kappa_harmful_after": kappa_h,
            "kappa_safe_before": before_p,
            "kappa_safe_after": kappa_p,
            "relative_immunization_ratio": (kappa_h / before_h) / (kappa_p / before_p),
        }
