"""``contraction``: make a simulated attacker's steps contract (CLAMP-like), so T6 can apply.

Theory's T6 (``theory.theorems.contraction_tail``; CLAMP, CVPR 2026, as summarised in
docs/science.md §2, not checked against the paper) turns contracting attacker updates,
‖u_{s+1}‖ ≤ c‖u_s‖ with c < 1, into an every-step floor on the harmful loss. This defence
trains for that hypothesis on a simulated gradient-descent attacker with step η on harmful
data h:

    u_0 = −η ∇h(θ),   u_1 = −η ∇h(θ + u_0),   r(θ) = ‖u_1‖ / ‖u_0‖ = ‖∇h(θ + u_0)‖ / ‖∇h(θ)‖,

(r is the tightest c of T6's hypothesis for that pair of steps: ``empirical.measurement.estimators.
contraction_ratio``) and minimises

    L(θ) = CE(safe answers) + λ · max(0, r(θ) − c)

by differentiating through both gradients (second order: ∇h(θ + u_0) depends on θ through
u_0; Hessian-vector products by double backward, which needs the eager attention the toolkit
loads models with). The certificate needs contraction along the *whole* remaining attack,
which a penalty on one simulated pair of steps does not guarantee: the verifier measures c
on real attacks (``empirical.measurement.estimators.contraction``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.func import functional_call

from empirical.defences.base import (
    Defence,
    DefenceBatch,
    DefenceConfig,
    NonNegativeFloat,
    PositiveFloat,
    StepOutcome,
    TrainingState,
)
from empirical.defences.losses import masked_mean, response_loss, token_cross_entropy
from empirical.defences.registry import register

SOURCE = (
    "CLAMP (CVPR 2026) as summarised in docs/science.md §2 (contraction of the attacker's steps); "
    "this toolkit's penalty form"
)


class ContractionConfig(DefenceConfig):
    """Hyperparameters of the contraction penalty (all ours; the paper could not be checked)."""

    contraction_target: float = Field(
        default=0.5,
        gt=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="c: the ratio ‖u_1‖/‖u_0‖ above which the penalty acts (T6 needs c < 1)",
    )
    penalty_weight: NonNegativeFloat = Field(
        default=1.0, description="λ, weight of max(0, r − c) against the safe-answer loss"
    )
    attack_learning_rate: PositiveFloat = Field(
        default=1e-2, description="η, step of the simulated gradient-descent attacker"
    )
    steps: int = Field(default=200, ge=1, description="optimizer steps (embedded model scale)")
    learning_rate: PositiveFloat = Field(default=1e-4, description="AdamW rate (constant)")


def _loss_at(model: nn.Module, point: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
    output = functional_call(
        model,
        dict(point),
        args=(),
        kwargs={"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
    )
    losses, mask = token_cross_entropy(output.logits, batch["labels"])
    return masked_mean(losses, mask)


def _norm(tensors: tuple[Tensor, ...]) -> Tensor:
    return torch.sqrt(torch.stack([(t.float() ** 2).sum() for t in tensors]).sum())


def simulated_contraction(
    model: nn.Module, batch: Mapping[str, Tensor], learning_rate: float, *, create_graph: bool
) -> Tensor:
    """r(θ) = ‖∇h(θ − η∇h(θ))‖ / ‖∇h(θ)‖ on ``batch`` (differentiable with ``create_graph``)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    parameters = [p for _, p in named]
    first = response_loss(model, batch)
    gradients = torch.autograd.grad(first, parameters, create_graph=create_graph)
    moved = {n: p - learning_rate * g for (n, p), g in zip(named, gradients, strict=True)}
    second = _loss_at(model, moved, batch)
    if create_graph:
        after = torch.autograd.grad(second, list(moved.values()), create_graph=True)
    else:
        after = torch.autograd.grad(second, list(moved.values()))
    return _norm(after) / _norm(gradients)


@register
class Contraction(Defence):
    """Safe CE + λ · max(0, r(θ) − c) (module docstring)."""

    name: ClassVar[str] = "contraction"
    source: ClassVar[str] = SOURCE
    Config: ClassVar[type[DefenceConfig]] = ContractionConfig

    def gradient_step(self, state: TrainingState, batch: DefenceBatch) -> StepOutcome:
        config = state.config
        assert isinstance(config, ContractionConfig)
        ratio = simulated_contraction(
            state.model, batch.harmful, config.attack_learning_rate, create_graph=True
        )
        penalty = torch.relu(ratio - config.contraction_target)
        safe = response_loss(state.model, batch.alignment)
        total = safe + config.penalty_weight * penalty
        torch.autograd.backward(total)
        return StepOutcome(
            total=float(total.detach()),
            components={
                "safe_ce": float(safe.detach()),
                "contraction_ratio": float(ratio.detach()),
            },
        )
