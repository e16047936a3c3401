"""Learning-rate schedules of a fine-tuning attack: constant, linear or cosine, with warmup.

The attacks of the durability literature use transformers' schedules (Qi et al., ICLR 2025:
AdamW, cosine with 10% warmup; Rosati et al. 2024: the same), so this module builds them with
``transformers.get_scheduler`` instead of re-implementing them. With ``w`` warmup steps out
of ``T`` and peak rate ``η``, the rate used by step ``s`` (0-based) is

* constant:  η · min(1, s / w)
* linear:    η · s / w during warmup, then η · (T − s) / (T − w)
* cosine:    η · s / w during warmup, then η · ½ (1 + cos(π (s − w) / (T − w)))
* exponential (``decay`` γ, 0 < γ < 1): η · min(1, s / w) · γˢ, a decay that does not
  depend on T (torch's ``LambdaLR``: transformers has no such schedule); its step bounds
  contract with factor γ (docs/certified.md, "Strong resistance")

(with ``w = 0`` the warmup factor is 1). The number of warmup steps is
``w = ⌈warmup_fraction · T⌉``, the rounding ``transformers.TrainingArguments`` uses for
``warmup_ratio``, so an attack here and the same attack through ``transformers.Trainer`` see
the same rates step for step.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler

from empirical.engine.attack_config import AttackConfig
from empirical.engine.attack_config import ScheduleName as ScheduleName
from theory.errors import HftaInputError

SCHEDULES: tuple[ScheduleName, ...] = ("constant", "linear", "cosine", "exponential")

# transformers' names: "constant" has no warmup, so a warmed-up constant is its own schedule.
_TRANSFORMERS_NAME: dict[ScheduleName, str] = {
    "constant": "constant_with_warmup",
    "linear": "linear",
    "cosine": "cosine",
}


def warmup_steps(warmup_fraction: float, total_steps: int) -> int:
    """``⌈warmup_fraction · total_steps⌉``, the warmup length for a budget of ``total_steps``.

    Raises:
        HftaInputError: ``total_steps < 1`` or ``warmup_fraction`` outside ``[0, 1)``.
    """
    if total_steps < 1:
        raise HftaInputError(f"schedule: total_steps must be at least 1, got {total_steps}")
    if not (0.0 <= warmup_fraction < 1.0) or not math.isfinite(warmup_fraction):
        raise HftaInputError(
            f"schedule: warmup_fraction must lie in [0, 1), got {warmup_fraction}"
        )
    return math.ceil(warmup_fraction * total_steps)


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: ScheduleName,
    *,
    warmup_fraction: float,
    total_steps: int,
    decay: float | None = None,
) -> LRScheduler:
    """The transformers scheduler for ``schedule`` on ``optimizer`` (see the module docstring;
    ``decay``: γ of the exponential schedule, required by it and refused by the others).

    Call ``scheduler.step()`` once after every optimizer step; the rate of the next step is
    then ``optimizer.param_groups[0]["lr"]``.
    """
    if schedule == "exponential" or decay is not None:
        return _exponential(optimizer, schedule, warmup_fraction, total_steps, decay)
    if schedule not in _TRANSFORMERS_NAME:
        raise HftaInputError(
            f"schedule: unknown schedule {schedule!r} (expected one of {', '.join(SCHEDULES)})"
        )
    from transformers import get_scheduler

    scheduler = get_scheduler(
        _TRANSFORMERS_NAME[schedule],
        optimizer,
        num_warmup_steps=warmup_steps(warmup_fraction, total_steps),
        num_training_steps=total_steps,
    )
    if not isinstance(scheduler, LRScheduler):  # pragma: no cover - transformers contract
        raise HftaInputError(f"schedule: transformers returned {type(scheduler).__name__}")
    return scheduler


def _exponential(
    optimizer: torch.optim.Optimizer,
    schedule: ScheduleName,
    warmup_fraction: float,
    total_steps: int,
    decay: float | None,
) -> LRScheduler:
    """η · min(1, s / w) · γˢ (the warmup factor of transformers' constant_with_warmup)."""
    if decay is None:
        raise HftaInputError("schedule: the exponential schedule needs a decay in (0, 1)")
    if schedule != "exponential":
        raise HftaInputError(
            f"schedule: decay applies to the exponential schedule only, not {schedule!r}"
        )
    if not 0.0 < decay < 1.0:
        raise HftaInputError(f"schedule: exponential decay must lie in (0, 1), got {decay}")
    warmup = warmup_steps(warmup_fraction, total_steps)

    def factor(step: int) -> float:
        return min(1.0, step / warmup if warmup else 1.0) * decay**step

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def learning_rates(
    schedule: ScheduleName,
    learning_rate: float,
    *,
    warmup_fraction: float,
    total_steps: int,
    decay: float | None = None,
) -> list[float]:
    """The rates ``η_0, …, η_{T−1}`` the schedule gives to the ``T = total_steps`` steps.

    Computed by the real scheduler on a one-parameter optimizer, so the sequence is exactly
    what an attack uses; theory's bounds that sum over ``η_s`` (T2, T3) take it as input
    before any attack is run. Every schedule here is a ``LambdaLR`` (transformers' and the
    exponential one), whose rate at step s is ``base_lr * lr_lambda(s)`` (its ``get_lr``):
    that expression is evaluated directly, without stepping an optimizer and the scheduler
    T times: for the 46,050-step horizon of an unbounded class at γ = 0.9999, 0.01 s
    (exponential; cosine 0.03 s) against 0.67-0.71 s stepping (15 µs a step; process CPU,
    two runs each); the same floats as stepping (tests/empirical/test_schedules.py).
    """
    if not (learning_rate > 0.0) or not math.isfinite(learning_rate):
        raise HftaInputError(f"schedule: learning_rate must be > 0, got {learning_rate}")
    dummy = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([dummy], lr=learning_rate)
    scheduler = make_scheduler(
        optimizer, schedule, warmup_fraction=warmup_fraction, total_steps=total_steps, decay=decay
    )
    if type(scheduler) is torch.optim.lr_scheduler.LambdaLR:
        (factor,), (base,) = scheduler.lr_lambdas, scheduler.base_lrs
        return [float(base * factor(step)) for step in range(total_steps)]
    return stepped_rates(optimizer, scheduler, total_steps)


def stepped_rates(
    optimizer: torch.optim.Optimizer, scheduler: LRScheduler, total_steps: int
) -> list[float]:
    """The rates of ``total_steps`` steps read off ``optimizer`` while stepping it and
    ``scheduler`` (any scheduler: what ``learning_rates`` did for every schedule before)."""
    rates: list[float] = []
    for _ in range(total_steps):
        rates.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        scheduler.step()
    return rates


def attack_rates(config: AttackConfig) -> list[float]:
    """``learning_rates`` of an attack configuration: its schedule, peak rate, warm-up,
    budget and (exponential) decay, the rates its ``budget_steps`` steps will use."""
    return learning_rates(
        config.schedule,
        config.learning_rate,
        warmup_fraction=config.warmup_fraction,
        total_steps=config.budget_steps,
        decay=config.decay,
    )
