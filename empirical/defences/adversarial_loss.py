"""``adversarial-loss`` and ``adversarial-loss-bounded``: the demonstration of Rosati et al. 2024.

Rosati, Wehner, Williams, Bartoszcze, Sajjad, Rudzicz, "Immunization against harmful
fine-tuning attacks", Findings of EMNLP 2024 (docs/science.md §1), immunized Llama-2-7b-chat with
an adversarial loss: cross-entropy on the paired refusal minus α times the cross-entropy on the
harmful answer, the latter restricted to the answer tokens where the harmful answer and the
refusal differ (α = 0.1), on BeaverTails. Here, with harmless retain data added for stability:

    L(θ) = CE(refusal) − α · CE_Δ(harmful) + λ_retain · CE(retain),
    CE_Δ(harmful) = Σ_j m_j ℓ_j / Σ_j m_j,   m_j = 1[harmful token j ≠ refusal token j],

with ℓ_j the per-token cross-entropy of the harmful answer (``losses.differing_token_mask``).
The ascent term is unbounded below: gradient ascent can push CE_Δ → ∞, and the prototype of
this toolkit measured the price (20 points of harmless accuracy, no trainability; DESIGN.md).

``adversarial-loss-bounded`` caps each ascended token's loss, so the objective is bounded below
and the ascent stops once a harmful token is improbable enough:

    L(θ) = CE(refusal) − α · Σ_j m_j min(ℓ_j, c) / Σ_j m_j + λ_retain · CE(retain),

with cap c nats (a harmful token's probability pushed down to e^{−c}, no further); tokens
already past the cap contribute no gradient.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from empirical.defences.base import (
    DefenceBatch,
    DefenceConfig,
    LossDefence,
    NonNegativeFloat,
    PositiveFloat,
    Term,
    TrainingState,
)
from empirical.defences.losses import (
    differing_token_mask,
    logits_of,
    masked_mean,
    response_loss,
    token_cross_entropy,
)
from empirical.defences.registry import register

SOURCE = (
    "Rosati, Wehner, Williams, Bartoszcze, Sajjad, Rudzicz, 'Immunization against harmful "
    "fine-tuning attacks', Findings of EMNLP 2024 (the adversarial-loss demonstration)"
)


class AdversarialLossConfig(DefenceConfig):
    """Hyperparameters of the adversarial loss (defaults and provenance next to each)."""

    alpha: NonNegativeFloat = Field(
        default=0.1,
        description="α, weight of the harmful-answer ascent; 0.1 for Llama-2 (Rosati et al. 2024)",
    )
    retain_weight: NonNegativeFloat = Field(
        default=1.0,
        description="λ_retain, weight of the harmless retain loss (ours, for stability)",
    )
    steps: int = Field(
        default=300,
        ge=1,
        description="optimizer steps; scaled to the embedded model (the paper's run length on "
        "Llama-2-7b could not be checked)",
    )
    learning_rate: PositiveFloat = Field(
        default=1e-4, description="AdamW rate (constant); scaled to the embedded model"
    )


class BoundedAdversarialLossConfig(AdversarialLossConfig):
    """The bounded variant adds the per-token cap."""

    cap: PositiveFloat = Field(
        default=12.0,
        description="c, nats: each ascended token's loss counts up to c (probability e^-c); "
        "ours, chosen above the aligned embedded model's harmful loss (8.4 nats)",
    )


def _harmful_ascent(state: TrainingState, batch: DefenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token ℓ of the harmful answers, mask of tokens that differ from the refusal)."""
    losses, _ = token_cross_entropy(logits_of(state.model, batch.harmful), batch.harmful["labels"])
    mask = differing_token_mask(batch.harmful["labels"], batch.refusal["labels"])
    return losses, mask


@register
class AdversarialLoss(LossDefence):
    """Refusal CE − α · harmful CE on differing tokens + retain CE (module docstring)."""

    name: ClassVar[str] = "adversarial-loss"
    source: ClassVar[str] = SOURCE
    Config: ClassVar[type[DefenceConfig]] = AdversarialLossConfig

    def ascent(
        self, losses: torch.Tensor, mask: torch.Tensor, config: DefenceConfig
    ) -> torch.Tensor:
        """CE_Δ(harmful), the quantity the defence ascends."""
        return masked_mean(losses, mask)

    def terms(self, state: TrainingState, batch: DefenceBatch) -> list[Term]:
        config = state.config
        assert isinstance(config, AdversarialLossConfig)
        losses, mask = _harmful_ascent(state, batch)
        return [
            Term("refusal_ce", response_loss(state.model, batch.refusal), 1.0),
            Term("harmful_ce_differing", self.ascent(losses, mask, config), -config.alpha),
            Term("retain_ce", response_loss(state.model, batch.retain), config.retain_weight),
        ]


@register
class BoundedAdversarialLoss(AdversarialLoss):
    """The adversarial loss with each ascended token's loss capped at ``cap`` nats."""

    name: ClassVar[str] = "adversarial-loss-bounded"
    source: ClassVar[str] = SOURCE + "; bounded (capped) variant of this toolkit"
    Config: ClassVar[type[DefenceConfig]] = BoundedAdversarialLossConfig

    def ascent(
        self, losses: torch.Tensor, mask: torch.Tensor, config: DefenceConfig
    ) -> torch.Tensor:
        assert isinstance(config, BoundedAdversarialLossConfig)
        return masked_mean(losses.clamp(max=config.cap), mask)
