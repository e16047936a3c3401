"""``repnoise``: Representation Noising (Rosati et al., NeurIPS 2024).

Rosati, Wehner, Williams, Bartoszcze, Atanasov, Gonzales, Majumdar, Maple, Sajjad, Rudzicz,
"Representation Noising: A Defence Mechanism Against Harmful Finetuning", NeurIPS 2024.
RepNoise removes the information about harmful answers from the hidden representations, so
that a later fine-tuning attack has little to recover: it pushes the distribution of the
harmful inputs' hidden states toward Gaussian noise while keeping the harmless behaviour, and
ascends (in log scale) the loss of the harmful answers. With the weights as docs/science.md states
them (β = 0.001, α = 1):

    L(θ) = CE(safe answers) + β · Σ_{l ∈ layers} MMD²(h_l(harmful), Z_l) − α · log CE(harmful),

* CE(safe answers): the refusals of the harmful prompts and the harmless retain data;
* h_l(harmful): layer l's hidden states at the positions that produce the harmful answer
  (``representations.hidden_states``), a (tokens, d) sample; Z_l: as many draws of
  N(0, σ_z² I_d), fresh every step;
* MMD²: ``losses.gaussian_mmd`` with bandwidths b·√d for each b in ``bandwidth_scales``
  (Gretton et al., JMLR 2012);
* −α log CE(harmful): gradient ascent on the harmful loss whose force α/CE fades as the loss
  grows, so it cannot run away as fast as a linear ascent.

The paper's own weights could not be checked against its PDF; the names follow docs/science.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import ClassVar

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
from empirical.defences.losses import gaussian_mmd, response_loss
from empirical.defences.registry import register
from empirical.defences.representations import hidden_states

SOURCE = (
    "Rosati et al., 'Representation Noising: A Defence Mechanism Against Harmful Finetuning', "
    "NeurIPS 2024"
)


class RepNoiseConfig(DefenceConfig):
    """RepNoise's hyperparameters (defaults and provenance next to each)."""

    alpha: NonNegativeFloat = Field(
        default=1.0, description="α, weight of −log CE(harmful); 1 (docs/science.md, RepNoise)"
    )
    beta: NonNegativeFloat = Field(
        default=0.001, description="β, weight of the representation MMD; 0.001 (docs/science.md)"
    )
    layers: tuple[int, ...] | None = Field(
        default=None,
        description="hidden layers whose representations are noised (None: every decoder "
        "layer's output; RepNoise noises every layer)",
    )
    noise_std: PositiveFloat = Field(
        default=1.0, description="σ_z of the Gaussian noise N(0, σ_z² I)"
    )
    bandwidth_scales: tuple[PositiveFloat, ...] = Field(
        default=(0.5, 1.0, 2.0),
        min_length=1,
        description="Gaussian kernel bandwidths, in units of √d (a sum of kernels; ours)",
    )
    steps: int = Field(
        default=300,
        ge=1,
        description="optimizer steps, scaled to the embedded model (RepNoise trained one epoch "
        "over its BeaverTails subset; not checked)",
    )
    learning_rate: PositiveFloat = Field(
        default=1e-4, description="AdamW rate (constant), scaled to the embedded model"
    )


def noise_like(sample: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """Draws of N(0, std² I) with the shape of ``sample`` (on the CPU generator, then moved)."""
    noise = torch.randn(sample.shape, generator=generator, dtype=torch.float32)
    return (std * noise).to(device=sample.device, dtype=sample.dtype)


def representation_mmd(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    *,
    layers: Sequence[int] | None,
    noise_std: float,
    bandwidth_scales: Sequence[float],
    generator: torch.Generator,
) -> Tensor:
    """Σ_l MMD²(h_l(batch), Z_l): how far the batch's answer representations are from noise."""
    total = torch.zeros((), device=batch["input_ids"].device)
    for states in hidden_states(model, batch, layers):
        scale = math.sqrt(states.shape[1])
        bandwidths = [b * scale for b in bandwidth_scales]
        total = total + gaussian_mmd(states, noise_like(states, noise_std, generator), bandwidths)
    return total


@register
class RepNoise(LossDefence):
    """Safe CE + β · MMD(harmful representations, noise) − α · log harmful CE."""

    name: ClassVar[str] = "repnoise"
    source: ClassVar[str] = SOURCE
    Config: ClassVar[type[DefenceConfig]] = RepNoiseConfig

    def terms(self, state: TrainingState, batch: DefenceBatch) -> list[Term]:
        config = state.config
        assert isinstance(config, RepNoiseConfig)
        mmd = representation_mmd(
            state.model,
            batch.harmful,
            layers=config.layers,
            noise_std=config.noise_std,
            bandwidth_scales=config.bandwidth_scales,
            generator=state.generator,
        )
        harmful_ce = response_loss(state.model, batch.harmful)
        return [
            Term("safe_ce", response_loss(state.model, batch.alignment), 1.0),
            Term("representation_mmd", mmd, config.beta),
            Term("log_harmful_ce", torch.log(harmful_ce), -config.alpha),
        ]
