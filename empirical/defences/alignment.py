"""``alignment``: plain safety alignment, the baseline every defence is compared with.

Supervised fine-tuning on the safe data only: minimise

    L(θ) = CE(refusal | harmful prompt) + CE(harmless answer | harmless prompt),

each a token-weighted mean cross-entropy of the responses. It is the "SFT" alignment of Huang
et al. (Vaccine, NeurIPS 2024; Booster, ICLR 2025) and the aligned starting point of Rosati et
al. 2024; a defence that claims robustness beyond alignment must beat it with the same data,
steps and rate.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from empirical.defences.base import DefenceBatch, DefenceConfig, LossDefence, Term, TrainingState
from empirical.defences.losses import response_loss
from empirical.defences.registry import register


class AlignmentConfig(DefenceConfig):
    """Plain alignment's hyperparameters: only the shared ones (scaled to the embedded model)."""

    steps: int = Field(
        default=600,
        ge=1,
        description="optimizer steps; the embedded model's own alignment took 200 at 1e-3 "
        "(empirical.models.build)",
    )
    learning_rate: float = Field(
        default=1e-4, gt=0.0, allow_inf_nan=False, description="AdamW rate (constant)"
    )


@register
class Alignment(LossDefence):
    """SFT on refusals and harmless data (module docstring)."""

    name: ClassVar[str] = "alignment"
    source: ClassVar[str] = (
        "supervised safety alignment (SFT), the baseline of Huang et al., NeurIPS 2024 "
        "(Vaccine) and ICLR 2025 (Booster)"
    )
    Config: ClassVar[type[DefenceConfig]] = AlignmentConfig

    def terms(self, state: TrainingState, batch: DefenceBatch) -> list[Term]:
        return [
            Term("refusal_ce", response_loss(state.model, batch.refusal), 1.0),
            Term("retain_ce", response_loss(state.model, batch.retain), 1.0),
        ]
