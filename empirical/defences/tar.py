"""``tar``: tamper-resistant safeguards by first-order meta-learning (Tamirisa et al., 2024).

Tamirisa, Bharathi, Phan, Zhou, Gatti, Suresh, Lin, Wang, Wang, Arel, Zou, Song, Li,
Hendrycks, Mazeika, "Tamper-Resistant Safeguards for Open-Weight LLMs" (arXiv 2408.00761,
2024). TAR trains the released weights θ against *simulated* fine-tuning attacks: each outer
step samples an attack (a learning rate η' and a number of steps K from given ranges), runs it
on harmful data from θ to the attacked weights θ' = A_{η',K}(θ), and scores θ' with a
tamper-resistance objective; the meta-gradient is taken first-order (the gradient at θ' is
applied to θ, as in first-order MAML / Reptile), together with a retain loss at θ:

    g = λ_TR ∇_{θ'} T(θ') + λ_retain ∇_θ CE_safe(θ),
    T(θ') = −H(θ')   (``tamper_objective = "entropy"``: maximise the post-attack entropy of
                      the next-token distribution on harmful answers, TAR's objective for
                      weaponization knowledge)
    T(θ') = −CE_harmful(θ')   (``"harmful_loss"``: maximise the post-attack harmful loss).

The simulated attacker is AdamW on the defence's harmful examples (its own seeded data order),
the same optimizer family as ``empirical.engine.attack``; CE_safe is the response cross-entropy of
the refusals and the harmless retain examples. TAR's retain loss also includes a
representation-matching term to the original model, not included here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor
from torch.func import functional_call

from empirical.defences.base import (
    Defence,
    DefenceBatch,
    DefenceConfig,
    NonNegativeFloat,
    PositiveFloat,
    StepOutcome,
    TrainingState,
    add_gradients,
)
from empirical.defences.losses import masked_mean, response_loss, token_cross_entropy, token_entropy
from empirical.defences.registry import register

SOURCE = (
    "Tamirisa et al., 'Tamper-Resistant Safeguards for Open-Weight LLMs', arXiv 2408.00761 (2024)"
)

TamperObjective = Literal["entropy", "harmful_loss"]


class TarConfig(DefenceConfig):
    """TAR's hyperparameters (defaults and provenance next to each)."""

    tamper_objective: TamperObjective = Field(
        default="entropy",
        description="post-attack quantity to maximise: next-token entropy (TAR's choice for "
        "weaponization knowledge) or harmful loss",
    )
    tamper_weight: NonNegativeFloat = Field(
        default=4.0, description="λ_TR, weight of the tamper-resistance term (TAR: 4; not checked)"
    )
    retain_weight: NonNegativeFloat = Field(
        default=1.0, description="λ_retain, weight of the retain loss (TAR: 1; not checked)"
    )
    inner_steps_min: int = Field(
        default=4, ge=1, description="fewest simulated attack steps K (TAR: K = 64; scaled)"
    )
    inner_steps_max: int = Field(
        default=16, ge=1, description="most simulated attack steps K (sampled uniformly)"
    )
    inner_learning_rates: tuple[PositiveFloat, ...] = Field(
        default=(1e-4, 3e-4, 1e-3),
        min_length=1,
        description="simulated attacker rates η', sampled uniformly (TAR samples from a set of "
        "rates around 2e-5 to 4e-5 for 8B models; here the range the embedded model's attacks "
        "use)",
    )
    steps: int = Field(
        default=150,
        ge=1,
        description="outer steps, scaled to the embedded model (TAR: 750 outer steps)",
    )
    learning_rate: PositiveFloat = Field(
        default=1e-4, description="outer AdamW rate (constant), scaled to the embedded model"
    )

    @model_validator(mode="after")
    def _range(self) -> TarConfig:
        if self.inner_steps_min > self.inner_steps_max:
            raise ValueError(
                f"inner_steps_min {self.inner_steps_min} > inner_steps_max {self.inner_steps_max}"
            )
        return self


def _loss_at(
    state: TrainingState,
    point: Mapping[str, Tensor],
    batch: Mapping[str, Tensor],
    objective: str,
) -> Tensor:
    """``objective`` ('harmful_ce' or 'entropy') of the model with parameters ``point``."""
    output = functional_call(
        state.model,
        dict(point),
        args=(),
        kwargs={"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
    )
    if objective == "entropy":
        entropy, mask = token_entropy(output.logits, batch["labels"])
        return masked_mean(entropy, mask)
    losses, mask = token_cross_entropy(output.logits, batch["labels"])
    return masked_mean(losses, mask)


@register
class Tar(Defence):
    """First-order meta-learning against simulated attacks (module docstring)."""

    name: ClassVar[str] = "tar"
    source: ClassVar[str] = SOURCE
    Config: ClassVar[type[DefenceConfig]] = TarConfig

    def prepare(self, state: TrainingState) -> None:
        from empirical.engine.attack import BatchStream, encode_on

        harmful = encode_on(state.tokenizer, state.data.harmful, state.max_length, state.device)
        generator = torch.Generator().manual_seed(state.config.seed + 3)
        state.extras["attack_stream"] = BatchStream(harmful, state.config.batch_size, generator)
        state.extras["names"] = [n for n, p in state.model.named_parameters() if p.requires_grad]

    def simulated_attack(
        self, state: TrainingState, learning_rate: float, steps: int
    ) -> dict[str, Tensor]:
        """θ' = AdamW(rate, steps) from the current θ on harmful batches (θ is not moved)."""
        names: list[str] = state.extras["names"]
        point = {
            n: p.detach().clone().requires_grad_(True)
            for n, p in zip(names, state.parameters, strict=True)
        }
        optimizer = torch.optim.AdamW(list(point.values()), lr=learning_rate, weight_decay=0.0)
        for _ in range(steps):
            loss = _loss_at(state, point, next(state.extras["attack_stream"]), "harmful_ce")
            gradients = torch.autograd.grad(loss, list(point.values()), allow_unused=True)
            for tensor, gradient in zip(point.values(), gradients, strict=True):
                tensor.grad = None if gradient is None else gradient.detach()
            optimizer.step()
        return {n: t.detach().requires_grad_(True) for n, t in point.items()}

    def gradient_step(self, state: TrainingState, batch: DefenceBatch) -> StepOutcome:
        config = state.config
        assert isinstance(config, TarConfig)
        rates = config.inner_learning_rates
        pick = int(torch.randint(len(rates), (1,), generator=state.generator))
        steps = int(
            torch.randint(
                config.inner_steps_min, config.inner_steps_max + 1, (1,), generator=state.generator
            )
        )
        attacked = self.simulated_attack(state, rates[pick], steps)
        tensors = list(attacked.values())
        entropy = _loss_at(state, attacked, batch.harmful, "entropy")
        harmful_ce = _loss_at(state, attacked, batch.harmful, "harmful_ce")
        tamper = entropy if config.tamper_objective == "entropy" else harmful_ce
        gradients = torch.autograd.grad(tamper, tensors, allow_unused=True)
        add_gradients(
            state.parameters,
            [None if g is None else -config.tamper_weight * g for g in gradients],
        )
        retain = response_loss(state.model, batch.alignment)
        torch.autograd.backward(config.retain_weight * retain)
        return StepOutcome(
            total=config.retain_weight * float(retain.detach())
            - config.tamper_weight * float(tamper.detach()),
            components={
                "retain_ce": float(retain.detach()),
                "post_attack_entropy": float(entropy.detach()),
                "post_attack_harmful_ce": float(harmful_ce.detach()),
                "attack_learning_rate": rates[pick],
                "attack_steps": float(steps),
            },
        )
