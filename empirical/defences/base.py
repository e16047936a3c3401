"""The defence interface: a configuration, a training step, and the loop that runs it.

A defence (an *immunization* method, Rosati et al. 2024 §2: the defender acts before release,
producing M* from M) is a class with

* ``name`` (the registry key, e.g. ``"repnoise"``) and ``source`` (the paper);
* ``Config``: a frozen pydantic ``DefenceConfig`` subclass holding the paper's hyperparameters,
  each with its default and provenance in ``Field(description=...)``; shared fields: ``steps``,
  ``learning_rate``, ``batch_size``, ``seed``, ``max_length``, ``max_grad_norm``;
* ``gradient_step(state, batch)``: leave ∇(objective) in the parameters' ``.grad`` and return
  the objective's value and its named components (``StepOutcome``); defences whose objective
  is a weighted sum of losses subclass ``LossDefence`` and only list their ``Term``s;
* optional ``prepare(state)`` (before the first step) and ``measure(state)`` (after the last:
  defence-specific numbers for the record).

``Defence.apply(model, tokenizer, data, config)`` deep-copies the model and runs ``config.steps``
steps of AdamW (constant rate ``learning_rate``, β = (0.9, 0.999), no weight decay, gradients
clipped to ``max_grad_norm``) on batches of ``batch_size`` harmful examples with their paired
refusals and ``batch_size`` retain examples, under ``empirical.engine.attack.deterministic``
(seeded,
deterministic torch; the caller's random state is restored). A step whose objective, components
or gradient norm is not finite stops the run before it is applied (``diverged_at``), so the
returned model is the last finite iterate.
"""

from __future__ import annotations

import copy
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor, nn

from empirical.datasets.text import IGNORE_INDEX
from empirical.defences.data import DefenceData
from empirical.defences.record import DefenceRecord, DefenceResult, StepRecord
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class DefenceConfig(BaseModel):
    """Hyperparameters every defence shares; subclasses add the paper's own (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(default=200, ge=1, description="optimizer steps of the defence")
    learning_rate: PositiveFloat = Field(default=1e-4, description="AdamW rate (constant)")
    batch_size: int = Field(
        default=16,
        ge=1,
        description="harmful examples per step (with their refusals, and as many retain examples)",
    )
    seed: int = Field(default=0, ge=0, description="data order and the defence's own sampling")
    max_length: int | None = Field(
        default=None, ge=2, description="token limit per example (None: the model's context)"
    )
    max_grad_norm: PositiveFloat | None = Field(
        default=1.0, description="clip the gradient norm to this (None: no clipping)"
    )


def _with_pad(tensors: Mapping[str, Tensor], width: int, pad: int) -> dict[str, Tensor]:
    missing = width - int(tensors["input_ids"].shape[1])
    if missing == 0:
        return dict(tensors)
    fills = {"input_ids": pad, "attention_mask": 0, "labels": IGNORE_INDEX}
    return {
        name: nn.functional.pad(tensor, (0, missing), value=fills[name])
        for name, tensor in tensors.items()
    }


def join_batches(batches: Sequence[Mapping[str, Tensor]], pad: int) -> dict[str, Tensor]:
    """Stack encoded batches of different widths into one (right-padded) batch."""
    width = max(int(b["input_ids"].shape[1]) for b in batches)
    padded = [_with_pad(b, width, pad) for b in batches]
    return {name: torch.cat([b[name] for b in padded]) for name in padded[0]}


@dataclass
class DefenceBatch:
    """One step's data: harmful examples, their paired refusals (same rows), retain examples."""

    harmful: dict[str, Tensor]
    refusal: dict[str, Tensor]
    retain: dict[str, Tensor]
    pad: int

    @property
    def alignment(self) -> dict[str, Tensor]:
        """Refusals and retain examples as one batch: the alignment (safe) data."""
        return join_batches([self.refusal, self.retain], self.pad)


class DefenceBatches:
    """Endless seeded minibatches of ``DefenceData`` (``empirical.engine.attack.BatchStream``)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        data: DefenceData,
        max_length: int,
        batch_size: int,
        seed: int,
        device: torch.device,
    ) -> None:
        from empirical.engine.attack import BatchStream, encode_on

        harmful = encode_on(tokenizer, data.harmful, max_length, device)
        refusal = encode_on(tokenizer, data.refusals, max_length, device)
        paired = {f"harmful.{k}": v for k, v in harmful.items()}
        paired.update({f"refusal.{k}": v for k, v in refusal.items()})
        self.paired = BatchStream(paired, batch_size, torch.Generator().manual_seed(seed))
        self.retain = BatchStream(
            encode_on(tokenizer, data.retain, max_length, device),
            batch_size,
            torch.Generator().manual_seed(seed + 1),
        )
        pad = tokenizer.pad_token_id
        if pad is None:
            raise HftaInputError("tokenizer has no pad token (set tokenizer.pad_token)")
        self.pad = int(pad)

    def __iter__(self) -> Iterator[DefenceBatch]:
        return self

    def __next__(self) -> DefenceBatch:
        paired = next(self.paired)
        return DefenceBatch(
            harmful={k.split(".", 1)[1]: v for k, v in paired.items() if k.startswith("harmful.")},
            refusal={k.split(".", 1)[1]: v for k, v in paired.items() if k.startswith("refusal.")},
            retain=next(self.retain),
            pad=self.pad,
        )


@dataclass
class TrainingState:
    """What a defence's step can use: the working model and everything around it.

    ``generator`` is a private seeded ``torch.Generator`` for the defence's own sampling (noise,
    simulated attack settings), so that it never disturbs the data order. ``extras`` holds
    state a defence sets up in ``prepare``.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    parameters: list[nn.Parameter]
    data: DefenceData
    config: DefenceConfig
    device: torch.device
    max_length: int
    batches: DefenceBatches
    generator: torch.Generator
    step: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepOutcome:
    """The objective's value at the current iterate and its named components."""

    total: float
    components: dict[str, float]


@dataclass(frozen=True)
class Term:
    """One weighted term of a ``LossDefence`` objective: total = Σ weight · value."""

    name: str
    value: Tensor
    weight: float


def clear_gradients(parameters: Sequence[nn.Parameter]) -> None:
    for parameter in parameters:
        parameter.grad = None


def add_gradients(parameters: Sequence[nn.Parameter], gradients: Sequence[Tensor | None]) -> None:
    """``p.grad += g`` for each parameter (``None`` gradients are skipped)."""
    for parameter, gradient in zip(parameters, gradients, strict=True):
        if gradient is None:
            continue
        if parameter.grad is None:
            parameter.grad = gradient.detach().clone()
        else:
            parameter.grad.add_(gradient.detach())


class Defence(ABC):
    """An immunization method (module docstring)."""

    name: ClassVar[str]
    source: ClassVar[str]
    Config: ClassVar[type[DefenceConfig]]
    immunized: ClassVar[str] = "every trainable parameter (full fine-tuning with AdamW)"

    @classmethod
    def configure(cls, **values: Any) -> DefenceConfig:
        """``Config(**values)``, with bad values reported as one ``HftaInputError`` line."""
        known = set(cls.Config.model_fields)
        unknown = sorted(set(values) - known)
        if unknown:
            raise HftaInputError(
                f"{cls.name}: unknown hyperparameter '{unknown[0]}' (known: "
                f"{', '.join(sorted(known))})"
            )
        try:
            return cls.Config(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "config"
            given = first.get("input")
            raise HftaInputError(
                f"{cls.name}: {where} = {given!r}: {first.get('msg', 'invalid value')}"
            ) from None

    # ----------------------------------------------------------------- hooks
    def prepare(self, state: TrainingState) -> None:  # noqa: B027 (an optional hook)
        """Set up before the first step (default: nothing)."""

    @abstractmethod
    def gradient_step(self, state: TrainingState, batch: DefenceBatch) -> StepOutcome:
        """Accumulate ∇(objective) into the parameters' ``.grad`` (they start cleared)."""

    def measure(self, state: TrainingState) -> dict[str, float]:
        """Defence-specific numbers after the last step, for the record (default: none)."""
        return {}

    # ----------------------------------------------------------------- the loop
    def apply(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        data: DefenceData,
        config: DefenceConfig | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> DefenceResult:
        """Immunize a copy of ``model`` (module docstring); the caller's model is untouched.

        ``on_step(done, total)`` is called after every step (progress reporting).

        Raises:
            HftaInputError: a config of another defence, a model without trainable parameters,
                a tokenizer without pad token, or ``max_length`` beyond the model's context.
        """
        from empirical.engine.attack import deterministic
        from empirical.measurement.proxies import context_length, model_device
        from empirical.measurement.trajectory import Environment

        config = self.Config() if config is None else config
        if not isinstance(config, self.Config):
            raise HftaInputError(
                f"{self.name}: expected a {self.Config.__name__}, got {type(config).__name__}"
            )
        started = time.perf_counter()
        device = model_device(model)
        limit = context_length(model)
        if config.max_length is not None and config.max_length > limit:
            raise HftaInputError(
                f"{self.name}: max_length {config.max_length} exceeds the model's context "
                f"of {limit} tokens"
            )
        max_length = config.max_length or limit
        with deterministic(config.seed, device):
            working = copy.deepcopy(model)
            parameters = [p for p in working.parameters() if p.requires_grad]
            if not parameters:
                raise HftaInputError(f"{self.name}: the model has no trainable parameters")
            state = TrainingState(
                model=working,
                tokenizer=tokenizer,
                parameters=parameters,
                data=data,
                config=config,
                device=device,
                max_length=max_length,
                batches=DefenceBatches(
                    tokenizer, data, max_length, config.batch_size, config.seed, device
                ),
                generator=torch.Generator().manual_seed(config.seed + 2),
            )
            curve, diverged = self._run(state, on_step)
            nn.Module.eval(working)
            metrics = self.measure(state)
        wall = time.perf_counter() - started
        dtype = str(next(working.parameters()).dtype).removeprefix("torch.")
        record = DefenceRecord(
            defence=self.name,
            source=self.source,
            immunized=self.immunized,
            hyperparameters=config.model_dump(mode="json"),
            data_source=data.source,
            data=data.fingerprints(),
            trainable_parameters=sum(p.numel() for p in parameters),
            curve=curve,
            diverged_at=diverged[0] if diverged else None,
            divergence_reason=diverged[1] if diverged else None,
            metrics=metrics,
            wall_seconds=wall,
            environment=Environment.current(str(device), dtype),
        )
        return DefenceResult(model=working, record=record)

    def _run(
        self, state: TrainingState, on_step: Callable[[int, int], None] | None = None
    ) -> tuple[list[StepRecord], tuple[int, str] | None]:
        config = state.config
        optimizer = torch.optim.AdamW(
            state.parameters, lr=config.learning_rate, weight_decay=0.0, foreach=True
        )
        self.prepare(state)
        curve: list[StepRecord] = []
        for step in range(config.steps):
            state.step = step
            state.model.train()
            clear_gradients(state.parameters)
            outcome = self.gradient_step(state, next(state.batches))
            gradients = [p.grad for p in state.parameters if p.grad is not None]
            if not gradients:
                raise HftaInputError(f"{self.name}: the step produced no gradient")
            if config.max_grad_norm is not None:
                norm = torch.nn.utils.clip_grad_norm_(
                    state.parameters, config.max_grad_norm, foreach=True
                )
            else:
                norm = torch.nn.utils.get_total_norm(gradients, foreach=True)
            values = [outcome.total, float(norm), *outcome.components.values()]
            if not all(math.isfinite(v) for v in values):
                clear_gradients(state.parameters)
                bad = [k for k, v in outcome.components.items() if not math.isfinite(v)]
                what = f"components {bad}" if bad else "objective or gradient norm"
                return curve, (step, f"{what} not finite at step {step}")
            optimizer.step()
            clear_gradients(state.parameters)
            curve.append(
                StepRecord(
                    step=step,
                    learning_rate=config.learning_rate,
                    total=outcome.total,
                    components=outcome.components,
                    grad_norm=float(norm),
                )
            )
            if on_step is not None:
                on_step(step + 1, config.steps)
        return curve, None


class LossDefence(Defence):
    """A defence whose objective is a weighted sum of differentiable terms."""

    @abstractmethod
    def terms(self, state: TrainingState, batch: DefenceBatch) -> list[Term]:
        """The objective's terms at the current parameters (graphs kept for backward)."""

    def gradient_step(self, state: TrainingState, batch: DefenceBatch) -> StepOutcome:
        terms = self.terms(state, batch)
        total = torch.stack([t.weight * t.value for t in terms]).sum()
        torch.autograd.backward(total)
        return StepOutcome(
            total=float(total.detach()),
            components={t.name: float(t.value.detach()) for t in terms},
        )
