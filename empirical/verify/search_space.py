"""The search space of the adaptive attacker: the axes of a threat model and their grid.

A verifier must look for the worst case over the whole threat model, not one setting
(docs/science.md §3; ``empirical.verify.search``). ``SearchSpace`` is that threat model's set
of attacks: a base ``AttackConfig`` fixing everything not searched, and the values of each
searched axis (``AXES``: learning rate, optimizer, schedule, warmup fraction, method, batch
size, seed). ``grid(space)`` lists every combination of the axes (the exhaustive answer, at
full cost); ``SearchSpace.from_threat_model`` builds the space of theory's ``ThreatModel``,
whose grid is exactly ``threat_model.attack_settings()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from empirical.engine.attack_config import (
    AttackConfig,
    LoraSettings,
    MethodName,
    OptimizerName,
    PositiveFloat,
    ScheduleName,
    UnitFraction,
)
from theory.errors import HftaInputError
from theory.framework import ThreatModel

__all__ = ["AXES", "SearchSpace", "grid"]


AXES: tuple[str, ...] = (
    "learning_rate",
    "optimizer",
    "schedule",
    "warmup_fraction",
    "method",
    "batch_size",
    "seed",
)
"""The searched ``AttackConfig`` fields, in grid order (the threat model's order)."""


def _distinct(values: tuple[Any, ...], name: str) -> None:
    if not values:
        raise ValueError(f"{name} must list at least one value")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a value twice: {list(values)}")


class SearchSpace(BaseModel):
    """The attacks of a threat model: a base configuration and the values of each axis.

    ``base`` fixes everything not searched (model and data paths, budget T, evaluation
    period, clipping, LoRA settings ...). The learning rate is either a set
    (``learning_rates``, categorical) or a range (``learning_rate_range = (low, high)``,
    log-uniform for the search; ``grid_learning_rates`` log-spaced points, ends included,
    for the grid). The other axes are sets: optimizers, schedules, warmup fractions, methods
    (full fine-tuning or LoRA), batch sizes and seeds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base: AttackConfig = Field(default_factory=AttackConfig)
    learning_rates: tuple[PositiveFloat, ...] | None = None
    learning_rate_range: tuple[PositiveFloat, PositiveFloat] | None = None
    grid_learning_rates: int = Field(default=3, ge=2)
    optimizers: tuple[OptimizerName, ...] = ("adamw",)
    schedules: tuple[ScheduleName, ...] = ("cosine",)
    warmup_fractions: tuple[UnitFraction, ...] = (0.1,)
    methods: tuple[MethodName, ...] = ("full",)
    batch_sizes: tuple[Annotated[int, Field(ge=1)], ...] = (16,)
    seeds: tuple[Annotated[int, Field(ge=0)], ...] = (0,)

    @model_validator(mode="after")
    def _axes(self) -> SearchSpace:
        if (self.learning_rates is None) == (self.learning_rate_range is None):
            raise ValueError("give exactly one of learning_rates and learning_rate_range")
        if self.learning_rates is not None:
            _distinct(self.learning_rates, "learning_rates")
        if self.learning_rate_range is not None:
            low, high = self.learning_rate_range
            if not low < high:
                raise ValueError(f"learning_rate_range needs low < high, got ({low}, {high})")
        for name in ("optimizers", "schedules", "warmup_fractions", "methods", "batch_sizes",
                     "seeds"):
            _distinct(getattr(self, name), name)
        return self

    @classmethod
    def from_threat_model(
        cls,
        threat_model: ThreatModel,
        base: AttackConfig | None = None,
        *,
        learning_rate_range: Sequence[float] | None = None,
    ) -> SearchSpace:
        """The space of ``threat_model`` (theory's ``ThreatModel``) around ``base``.

        Budget, clipping and warmup come from the threat model; its learning-rate set is the
        categorical axis unless ``learning_rate_range`` asks for a log-uniform range.
        ``grid`` of the result lists exactly ``threat_model.attack_settings()``.
        """
        base = base or AttackConfig()
        fixed = {"budget_steps": threat_model.budget_steps,
                 "max_grad_norm": threat_model.max_grad_norm}
        try:
            return cls.model_validate({
                "base": AttackConfig.model_validate({**base.model_dump(), **fixed}),
                "learning_rates": None if learning_rate_range else threat_model.learning_rates,
                "learning_rate_range": (
                    None if learning_rate_range is None else tuple(learning_rate_range)
                ),
                "optimizers": threat_model.optimizers,
                "schedules": threat_model.schedules,
                "warmup_fractions": (threat_model.warmup_fraction,),
                "methods": tuple("lora" if lora else "full" for lora in threat_model.lora_modes),
                "batch_sizes": threat_model.batch_sizes,
                "seeds": threat_model.seeds,
            })
        except ValidationError as exc:
            raise HftaInputError(f"search space: {_first_error(exc)}") from None

    # -- axes
    def grid_values(self) -> dict[str, tuple[Any, ...]]:
        """The values of every axis on the grid (a range becomes log-spaced points)."""
        if self.learning_rates is not None:
            rates: tuple[float, ...] = self.learning_rates
        else:
            assert self.learning_rate_range is not None
            low, high = self.learning_rate_range
            points = np.geomspace(low, high, self.grid_learning_rates)
            rates = (low, *(float(p) for p in points[1:-1]), high)
        return {
            "learning_rate": rates,
            "optimizer": self.optimizers,
            "schedule": self.schedules,
            "warmup_fraction": self.warmup_fractions,
            "method": self.methods,
            "batch_size": self.batch_sizes,
            "seed": self.seeds,
        }

    def config(self, values: Mapping[str, Any]) -> AttackConfig:
        """The attack with ``values`` on the axes (a missing axis takes its only value).

        Full fine-tuning resets the LoRA settings to their defaults, and momentum is kept for
        SGD only (the other optimizers take none).
        """
        axes = self.grid_values()
        chosen: dict[str, Any] = {}
        for axis in AXES:
            if axis in values:
                chosen[axis] = values[axis]
            elif len(axes[axis]) == 1:
                chosen[axis] = axes[axis][0]
            else:
                raise HftaInputError(f"search space: no value for the axis '{axis}'")
        unknown = set(values) - set(AXES)
        if unknown:
            raise HftaInputError(f"search space: unknown axes {sorted(unknown)}")
        record = self.base.model_dump()
        record.update(chosen)
        if chosen["method"] != "lora":
            record["lora"] = LoraSettings().model_dump()
        if chosen["optimizer"] != "sgd":
            record["momentum"] = 0.0
        try:
            return AttackConfig.model_validate(record)
        except ValidationError as exc:
            raise HftaInputError(f"search space: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "value"
    return f"{where}: {first['msg']}"


def grid(space: SearchSpace) -> list[AttackConfig]:
    """Every attack of the space: the product of the axes in ``AXES`` order."""
    values = space.grid_values()
    return [
        space.config(dict(zip(AXES, combination, strict=True)))
        for combination in product(*(values[axis] for axis in AXES))
    ]
