"""``vaccine``: perturbation-aware alignment (Huang, Hu, Liu, NeurIPS 2024).

Huang, Hu, Liu, "Vaccine: Perturbation-aware Alignment for Large Language Models against
Harmful Fine-tuning Attack", NeurIPS 2024. A fine-tuning attack moves the hidden embeddings of
the alignment data ("harmful embedding drift"); Vaccine aligns the model so that its alignment
loss stays low even when every layer's hidden output is perturbed by the worst drift of norm ρ.
A min–max problem, solved like sharpness-aware minimisation but in embedding space:

    min_θ max_{‖ε‖ ≤ ρ} L_align(θ; h_l + ε_l for every decoder layer l),

each step (1) computes L_align and g_l = ∂L_align/∂h_l for the output h_l of every decoder
layer (``representations.LayerOutputs``), (2) sets ε_l = ρ g_l / ‖g‖ with ‖g‖² = Σ_l ‖g_l‖²
(the first-order maximiser over the joint ball), (3) descends on L_align with those fixed
perturbations added in the forward pass. L_align is the response cross-entropy of the safe data
(refusals and harmless retain examples). The authors' code perturbs the attention modules'
outputs; this implementation perturbs each decoder layer's output, as the paper's text states.

``perturbation_sensitivity`` measures what Vaccine claims to reduce: the increase of L_align
under the perturbation of radius ρ built the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from empirical.defences.base import (
    Defence,
    DefenceBatch,
    DefenceConfig,
    PositiveFloat,
    StepOutcome,
    TrainingState,
)
from empirical.defences.losses import response_loss
from empirical.defences.registry import register
from empirical.defences.representations import LayerOutputs
from empirical.measurement.hvp import evaluation_mode

SOURCE = (
    "Huang, Hu, Liu, 'Vaccine: Perturbation-aware Alignment for Large Language Models "
    "against Harmful Fine-tuning Attack', NeurIPS 2024"
)


class VaccineConfig(DefenceConfig):
    """Vaccine's hyperparameters (defaults and provenance next to each)."""

    rho: PositiveFloat = Field(
        default=2.0,
        description="ρ, radius of the joint embedding perturbation; 2 in the authors' "
        "experiments (README of git-disl/Vaccine: 'perturbation intensity = 2')",
    )
    steps: int = Field(
        default=400,
        ge=1,
        description="optimizer steps, scaled to the embedded model (the authors: 50 epochs of "
        "LoRA alignment, batch 5, lr 1e-3, cosine, weight decay 0.1)",
    )
    learning_rate: PositiveFloat = Field(
        default=1e-4, description="AdamW rate (constant), scaled to the embedded model"
    )


def worst_perturbation(
    model: nn.Module, batch: Mapping[str, Tensor], rho: float
) -> tuple[Tensor, list[Tensor]]:
    """(L_align at the clean embeddings, the perturbations ε_l = ρ g_l/‖g‖ of every layer)."""
    outputs = LayerOutputs(model)
    with outputs.recording() as recorded:
        loss = response_loss(model, batch)
    gradients = torch.autograd.grad(loss, recorded)
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in gradients))  # type: ignore[arg-type]
    scale = rho / (float(norm) + 1e-12)
    return loss, [(scale * g).detach() for g in gradients]


def perturbation_sensitivity(model: nn.Module, batch: Mapping[str, Tensor], rho: float) -> float:
    """L_align(h + ε) − L_align(h) for the first-order worst ε of radius ρ (dropout off)."""
    with evaluation_mode(model):
        clean, perturbations = worst_perturbation(model, batch, rho)
        with torch.no_grad(), LayerOutputs(model).perturbed(perturbations):
            perturbed = response_loss(model, batch)
    return float(perturbed) - float(clean.detach())


@register
class Vaccine(Defence):
    """Perturbation-aware alignment (module docstring)."""

    name: ClassVar[str] = "vaccine"
    source: ClassVar[str] = SOURCE
    Config: ClassVar[type[DefenceConfig]] = VaccineConfig

    def gradient_step(self, state: TrainingState, batch: DefenceBatch) -> StepOutcome:
        config = state.config
        assert isinstance(config, VaccineConfig)
        alignment = batch.alignment
        clean, perturbations = worst_perturbation(state.model, alignment, config.rho)
        with LayerOutputs(state.model).perturbed(perturbations):
            perturbed = response_loss(state.model, alignment)
        torch.autograd.backward(perturbed)
        return StepOutcome(
            total=float(perturbed.detach()),
            components={
                "alignment_ce": float(clean.detach()),
                "perturbed_alignment_ce": float(perturbed.detach()),
            },
        )
