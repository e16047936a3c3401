"""``booster``: attenuating the harmful perturbation (Huang, Hu, Ilhan, Tekin, Liu, ICLR 2025).

Huang, Hu, Ilhan, Tekin, Liu, "Booster: Tackling Harmful Fine-tuning for Large Language Models
via Attenuating Harmful Perturbation", ICLR 2025. A harmful fine-tuning step lowers the harmful
loss h; Booster aligns the model so that one simulated normalised harmful step lowers h as
little as possible. Its objective, with f the alignment loss and h the harmful loss,

    min_w  f(w) + λ [ h(w) − h(w − α ∇h(w)/‖∇h(w)‖) ],

is followed with the first-order gradient that treats the simulated step's direction as fixed:

    g = ∇f(w) + λ [ ∇h(w) − ∇h(w − α ∇h(w)/‖∇h(w)‖) ]       (λ = 5, α = 0.1 in the paper).

Three gradients per step: ∇f and ∇h at w, and ∇h at the simulated point, computed with
``torch.func.functional_call`` so the model's own parameters are never moved. f is the response
cross-entropy of the safe data (refusals and harmless retain examples), h that of the harmful
answers.

``simulated_harmful_decrease`` measures the quantity Booster minimises,
h(w) − h(w − α ∇h(w)/‖∇h(w)‖), on any batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.func import functional_call

from empirical.defences.base import (
    Defence,
    DefenceBatch,
    DefenceConfig,
    PositiveFloat,
    StepOutcome,
    TrainingState,
    add_gradients,
)
from empirical.defences.losses import masked_mean, response_loss, token_cross_entropy
from empirical.defences.registry import register
from empirical.measurement.hvp import evaluation_mode

SOURCE = (
    "Huang, Hu, Ilhan, Tekin, Liu, 'Booster: Tackling Harmful Fine-tuning for Large Language "
    "Models via Attenuating Harmful Perturbation', ICLR 2025"
)


class BoosterConfig(DefenceConfig):
    """Booster's hyperparameters (defaults and provenance next to each)."""

    lambda_weight: PositiveFloat = Field(
        default=5.0,
        description="λ, weight of the harmful-perturbation attenuation; 5 (Booster, ICLR 2025)",
    )
    alpha: PositiveFloat = Field(
        default=0.1, description="α, length of the simulated normalised harmful step; 0.1 (Booster)"
    )
    steps: int = Field(
        default=300,
        ge=1,
        description="optimizer steps, scaled to the embedded model (the paper's LoRA alignment "
        "schedule could not be checked)",
    )
    learning_rate: PositiveFloat = Field(
        default=1e-4, description="AdamW rate (constant), scaled to the embedded model"
    )


class _Landscape:
    """h at the model's trainable parameters or at a displaced copy of them."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    @property
    def parameters(self) -> list[Tensor]:
        return [p for _, p in self.named]

    def loss_at(self, point: Sequence[Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        values = {n: t for (n, _), t in zip(self.named, point, strict=True)}
        output = functional_call(
            self.model,
            values,
            args=(),
            kwargs={"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
        )
        losses, mask = token_cross_entropy(output.logits, batch["labels"])
        return masked_mean(losses, mask)

    def simulated_step(
        self, batch: Mapping[str, Tensor], alpha: float
    ) -> tuple[Tensor, tuple[Tensor, ...], list[Tensor]]:
        """(h(w), ∇h(w), w − α ∇h(w)/‖∇h(w)‖ as fresh leaves requiring grad)."""
        harmful = response_loss(self.model, batch)
        gradients = torch.autograd.grad(harmful, self.parameters, allow_unused=True)
        filled = tuple(
            torch.zeros_like(p) if g is None else g
            for g, p in zip(gradients, self.parameters, strict=True)
        )
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in filled))  # type: ignore[arg-type]
        scale = alpha / (float(norm) + 1e-12)
        moved = [
            (p.detach() - scale * g).requires_grad_(True)
            for p, g in zip(self.parameters, filled, strict=True)
        ]
        return harmful, filled, moved


def simulated_harmful_decrease(
    model: nn.Module, batch: Mapping[str, Tensor], alpha: float
) -> float:
    """h(w) − h(w − α ∇h(w)/‖∇h(w)‖) on ``batch`` (dropout off): how much one normalised
    harmful step of length α lowers the harmful loss."""
    landscape = _Landscape(model)
    with evaluation_mode(model):
        harmful, _, moved = landscape.simulated_step(batch, alpha)
        with torch.no_grad():
            after = landscape.loss_at(moved, batch)
    return float(harmful.detach()) - float(after)


@register
class Booster(Defence):
    """Alignment + λ · (one-step harmful-loss decrease), first-order (module docstring)."""

    name: ClassVar[str] = "booster"
    source: ClassVar[str] = SOURCE
    Config: ClassVar[type[DefenceConfig]] = BoosterConfig

    def gradient_step(self, state: TrainingState, batch: DefenceBatch) -> StepOutcome:
        config = state.config
        assert isinstance(config, BoosterConfig)
        landscape = _Landscape(state.model)
        alignment = response_loss(state.model, batch.alignment)
        add_gradients(
            state.parameters,
            torch.autograd.grad(alignment, state.parameters, allow_unused=True),
        )
        harmful, harmful_gradient, moved = landscape.simulated_step(batch.harmful, config.alpha)
        after = landscape.loss_at(moved, batch.harmful)
        after_gradient = torch.autograd.grad(after, moved, allow_unused=True)
        weight = config.lambda_weight
        add_gradients(
            state.parameters,
            [
                weight * (g - (torch.zeros_like(g) if a is None else a))
                for g, a in zip(harmful_gradient, after_gradient, strict=True)
            ],
        )
        decrease = float(harmful.detach()) - float(after.detach())
        return StepOutcome(
            total=float(alignment.detach()) + weight * decrease,
            components={
                "alignment_ce": float(alignment.detach()),
                "harmful_ce": float(harmful.detach()),
                "harmful_ce_after_simulated_step": float(after.detach()),
                "simulated_decrease": decrease,
            },
        )
