"""``condition-number``: immunization by conditioning (Zheng, Bai, Bullins, Yeh, ICML 2025).

Zheng, Bai, Bullins, Yeh, "Model Immunization from a Condition Number Perspective" (ICML 2025;
theory's T5 and ``theory.quadratic``). An attacker who fine-tunes a linear probe w on features
θᵀx by gradient descent on least squares faces the Hessian θᵀK θ, K = XᵀX/n the data
covariance; its condition number κ sets the speed (T5: with η = 1/λ_max the slowest mode
contracts by 1 − 1/κ per step). Immunizing the feature extractor θ means making the harmful
task's Hessian ill-conditioned while the pre-training task's stays well conditioned:

    min_{θ, w_P}  L_P(θ, w_P) + λ_P R_well(θᵀK_Pθ) + λ_H R_ill(θᵀK_Hθ),
    R_well(S) = ½‖S‖₂² − (1/2p)‖S‖_F²,   R_ill(S) = 1 / ((1/2k)‖S‖_F² − ½σ_min(S)²)

(the paper's Eqs. (3) and (12): p = min dimension, k = rank S, σ_min the smallest *nonzero*
singular value), with the regularisers' gradients preconditioned by the inverse covariances
(the paper's algorithm; its code solves (XᵀX + λI) G = ∇ for the regulariser gradients):

    θ ← θ − η [∇_θ L_P + λ_P (K_P + ρI)⁻¹ ∇_θ R_well + λ_H (K_H + ρI)⁻¹ ∇_θ R_ill],
    w_P ← w_P − η ∇_w L_P.

Since ∇_θ R(θᵀKθ) = 2Kθ ∇_S R, the preconditioned step is ≈ 2θ ∇_S R: it no longer depends on
how K itself is conditioned. Success is measured by the relative immunization ratio
RIR = [κ(θᵀK_Hθ)/κ(K_H)] / [κ(θᵀK_Pθ)/κ(K_P)] (``theory.quadratic``; 1 at θ = I).

Two parts:

1. The paper's linear setting lives in ``empirical.linear`` (task pairs from real data, the
   paper's training loop and this project's variant, a report judged by the slowdown the
   attacker sees; docs/condition_number.md). Its names are re-exported here for old callers;
   ``empirical.linear`` imports neither transformers nor peft, this module does.
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
   fine-tuning is not covered by the paper's theory, and RIR is not evidence of a slowdown
   (docs/condition_number.md).

The torch regularisers (``empirical.linear.regularisers``) restate ``theory.quadratic``'s
(which are numpy, not differentiable); tests tie the two together on random matrices.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field
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
from empirical.defences.registry import register
from empirical.defences.representations import hidden_states
from empirical.linear import (
    LinearImmunization,
    LinearImmunizationConfig,
    LinearTaskPair,
    immunize_linear,
    synthetic_task_pair,
)
from empirical.linear.regularisers import ill_conditioning, normalized_gram, well_conditioning
from theory.errors import HftaInputError
from theory.quadratic import FloatArray, condition_number

__all__ = [
    "SOURCE",
    "ConditionNumber",
    "ConditionNumberConfig",
    "LinearImmunization",
    "LinearImmunizationConfig",
    "LinearTaskPair",
    "gram_condition_numbers",
    "ill_conditioning",
    "immunize_linear",
    "normalized_gram",
    "synthetic_task_pair",
    "well_conditioning",
]

SOURCE = (
    "Zheng, Bai, Bullins, Yeh, 'Model Immunization from a Condition Number Perspective', ICML 2025"
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
        from empirical.engine.attack import encode_on

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
