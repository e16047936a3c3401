r"""The declared classes of head-only attackers T11's certificates speak about, and their
reachable radii (``empirical.certify.harm_radius`` certifies them).

A class is every head-only attack (``AttackConfig(method="head")``) with the class's optimizer,
no momentum, clipping and weight decay no larger, no more steps than the budget, and a rate at
most the class's schedule at ``max_learning_rate`` at every step. Every step bound of
theory.optimizers is η_s × (a non-negative factor that does not depend on η) for SGD and Adam,
so the reachable radius R_t = Σ_{s<t} (bound on ‖Δ_s‖) of every attack of the class is at most
the class's (``step_radii``; clipped SGD: Σ_{s<t} η_s C; Adam/AdamW: T3's step bounds through
``empirical.certify.independent.reachable_radius``); for AdamW with λ > 0 this holds while
λ‖θ_s‖ ≤ a_k √d, checked as λ(‖W_0‖ + R_T) ≤ √d (a_k ≥ a_1 = 1).

Unbounded classes (strong resistance): clipped SGD at rates η_s ≤ η_max (s < K),
η_max γ^{s−K} (s ≥ K; the ``exponential`` schedule) and no budget. Their step bounds
b_s = η_s C satisfy b_{s+1} = γ b_s for s ≥ K: T6's contraction hypothesis with c = γ exactly,
a property of the declared class (checked on the scheduler's rates). T6's path conclusion
(``contraction_tail.TAIL_PATH``) gives ‖W_t − W_0‖ ≤ Σ_{s<K} b_s + b_K/(1 − γ) = R_∞ for
every t (``limit_radius``). The strongest attack runs for the ``horizon``: until the
remaining reach b_T/(1 − γ) is below 1% of R_∞.

Source: docs/certified.md; theory.optimizers (step bounds), T3 (``path_length_adam``), T6
(``contraction_tail``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from empirical.engine.attack_config import PositiveFloat, ScheduleName, UnitFraction
from theory.errors import HftaInputError
from theory.framework import Optimizer
from theory.theorems import contraction_tail

if TYPE_CHECKING:
    from empirical.engine.attack import AttackConfig

__all__ = [
    "STRONG_ASSUMPTIONS",
    "AttackerClass",
    "limit_radius",
    "step_radii",
]

#: an unbounded class's strongest attack runs until its remaining reach is below this × R_∞
REMAINING_REACH_FRACTION = 0.01
#: relative allowance on b_{s+1} ≤ γ b_s for the scheduler's float rates
CONTRACTION_RELATIVE_TOLERANCE = 1e-12


#: what a strong (unbounded) certificate assumes beyond the first five lines of ASSUMPTIONS
STRONG_ASSUMPTIONS: tuple[str, ...] = (
    "the class's rates are at most eta_max for s < K and eta_max gamma^(s-K) after (the "
    "exponential schedule), for every step t, with no step budget",
    "the class's step bounds b_s = eta_s C (clipped SGD, no momentum, no weight decay) contract "
    "with c = gamma exactly: b_(s+1) <= gamma b_s for s >= K, a hypothesis of the declared class "
    "(checked on the scheduler's rates), not estimated from any run",
    "T6's path conclusion then keeps every head in B(W_0, R_inf), R_inf = sum_(s<K) b_s + "
    "b_K/(1 - gamma), so T11's ceiling at R_inf caps f at every t (strong resistance)",
)


# ---------------------------------------------------------------------- the attacker class
class AttackerClass(BaseModel):
    """A declared class of head-only attackers: every attack with rates at most the schedule's
    rates at ``max_learning_rate``, the same optimizer, schedule and warm-up, at most
    ``budget_steps`` steps and (SGD) gradients clipped to at most ``clip``.

    ``schedule = "exponential"`` with ``decay`` γ: rates at most ``max_learning_rate`` for the
    first ``constant_steps`` K steps and η_max γ^{s−K} after; it contains every exponential
    attack with rate ≤ η_max and decay ≤ γ (any warm-up: it only lowers the rates). Without
    ``budget_steps`` (clipped SGD and the exponential schedule only) the class is *unbounded*:
    its attacks may run for any number of steps, and its certificate is for every t.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["head"] = "head"
    optimizer: Optimizer = "sgd"
    max_learning_rate: PositiveFloat
    schedule: ScheduleName = "constant"
    decay: float | None = Field(default=None, gt=0.0, lt=1.0, allow_inf_nan=False)
    constant_steps: int = Field(default=0, ge=0)
    warmup_fraction: UnitFraction = 0.0
    budget_steps: int | None = Field(default=None, ge=1)
    clip: PositiveFloat | None = 1.0
    betas: tuple[UnitFraction, UnitFraction] = (0.9, 0.999)
    weight_decay: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounded_steps(self) -> AttackerClass:
        if self.optimizer == "sgd" and self.clip is None:
            raise ValueError("an SGD class needs a clipping norm: unclipped steps are unbounded")
        if self.optimizer != "adamw" and self.weight_decay:
            raise ValueError(f"weight decay is allowed for adamw only, not {self.optimizer}")
        exponential = self.schedule == "exponential"
        if exponential != (self.decay is not None):
            raise ValueError("decay is given with, and only with, schedule 'exponential'")
        if exponential and self.warmup_fraction:
            raise ValueError("an exponential class has no warm-up (its attacks may have one)")
        if self.constant_steps and not exponential:
            raise ValueError("constant_steps is the exponential schedule's constant phase K")
        if self.budget_steps is None and not (exponential and self.optimizer == "sgd"):
            raise ValueError(
                "budget_steps is required unless the class is clipped sgd with the exponential "
                "schedule (an unbounded class: its step bounds contract)"
            )
        return self

    @property
    def unbounded(self) -> bool:
        """No step budget: the certificate is for every t (strong resistance)."""
        return self.budget_steps is None

    def learning_rates(self, steps: int | None = None) -> list[float]:
        """η_0 … η_{T−1} of the schedule at ``max_learning_rate`` (``empirical.engine.schedules``;
        T = ``steps``, default the budget, or for an unbounded class its ``horizon``)."""
        from empirical.engine.schedules import learning_rates

        total = steps or self.budget_steps or self.horizon()
        constant = min(self.constant_steps, total)  # K (0 unless exponential)
        rates = learning_rates(
            self.schedule,
            self.max_learning_rate,
            warmup_fraction=self.warmup_fraction,
            total_steps=max(total - constant, 1),
            decay=self.decay,
        )
        return ([self.max_learning_rate] * constant + rates)[:total]

    def step_bounds(self, steps: int) -> list[float]:
        """b_0 … b_{T−1}: theory's bounds on the clipped-SGD steps ‖Δ_s‖ ≤ η_s C."""
        from theory.optimizers import sgd_step_bounds

        if self.clip is None or self.optimizer != "sgd":
            raise HftaInputError("step bounds b_s = eta_s C need clipped sgd")
        return [float(b) for b in sgd_step_bounds(self.learning_rates(steps), C=self.clip)]

    def horizon(self) -> int:
        """The steps the strongest attack of an unbounded class runs: the first T ≥ K with
        remaining reach b_T/(1 − γ) (T6's ``TAIL_PATH`` from T) < ``REMAINING_REACH_FRACTION``
        × R_∞ (the budget for a bounded class). The step bounds are checked to contract
        (b_{s+1} ≤ γ b_s, so the remaining reach decreases in T) and T is found by bisection:
        ≈ log₂ T evaluations of the tail, not T (46,050 steps at γ = 0.9999)."""
        if self.budget_steps is not None:
            return self.budget_steps
        assert self.decay is not None and self.clip is not None  # the validator's
        decay, start = self.decay, self.constant_steps
        target = REMAINING_REACH_FRACTION * limit_radius(self)
        # the list's length from log_γ of the fraction (a size only: the search decides)
        length = (
            start
            + 2
            + math.ceil(math.log(REMAINING_REACH_FRACTION * (1.0 - decay)) / math.log(decay))
        )
        while True:
            bounds = self.step_bounds(length + 1)
            _check_contraction(bounds, start, decay)
            if _tail(bounds[length], decay) < target:
                break
            length *= 2
        low, high = start, length  # the first T in [low, high] with a tail below target
        while low < high:
            middle = (low + high) // 2
            if _tail(bounds[middle], decay) < target:
                high = middle
            else:
                low = middle + 1
        return low

    def label(self) -> str:
        clip = "" if self.clip is None else f" clip {self.clip:g}"
        decay = f" wd {self.weight_decay:g}" if self.weight_decay else ""
        schedule: str = self.schedule
        if self.decay is not None:
            phase = f" after K = {self.constant_steps} constant" if self.constant_steps else ""
            schedule = f"exponential gamma {self.decay:g}{phase}"
        budget = "every t" if self.budget_steps is None else f"T = {self.budget_steps}"
        return (
            f"head-only {self.optimizer} lr <= {self.max_learning_rate:g} {schedule} "
            f"(warm-up {self.warmup_fraction:g}) {budget}{clip}{decay}"
        )

    def strongest(self, seed: int = 0, **overrides: object) -> AttackConfig:
        """The class's strongest attack as an ``AttackConfig``: the largest rates, the full
        budget (an unbounded class: its ``horizon``), clipping at ``clip`` (``overrides``: other
        fields, e.g. batch size). An exponential class with K > 0 has no single attack
        configuration (the engine's exponential schedule decays from step 0): refused."""
        from empirical.engine.attack import AttackConfig

        if self.constant_steps:
            raise HftaInputError(
                "an exponential class with constant_steps > 0 has no strongest AttackConfig "
                "(the engine's exponential schedule decays from step 0)"
            )
        settings: dict[str, object] = {
            "method": "head",
            "optimizer": self.optimizer,
            "learning_rate": self.max_learning_rate,
            "schedule": self.schedule,
            "warmup_fraction": self.warmup_fraction,
            "budget_steps": self.horizon(),
            "max_grad_norm": self.clip,
            "betas": self.betas,
            "weight_decay": self.weight_decay,
            "decay": self.decay,
            "seed": seed,
        }
        settings.update(overrides)
        return AttackConfig.model_validate(settings)

    def contains(self, config: AttackConfig) -> bool:
        """Whether the attack ``config`` is one of the class's attacks: head-only in float32, the
        same optimizer (and betas), no momentum, clipping and weight decay no larger, no more steps,
        and a rate at most the class's at every step s < T' (every step bound is η_s times a
        factor that does not depend on η, so its R_t are at most the class's). The rates are
        compared step by step: the same schedule with a shorter budget has a shorter warm-up,
        hence higher early rates, and is not contained."""
        from empirical.engine.schedules import attack_rates

        clip_ok = self.clip is None or (
            config.max_grad_norm is not None and config.max_grad_norm <= self.clip
        )
        steps = config.budget_steps
        if not (
            config.method == "head"
            and config.dtype == "float32"  # the distance check allows float32 rounding only
            and config.optimizer == self.optimizer
            and (self.budget_steps is None or steps <= self.budget_steps)
            and clip_ok
            and config.momentum == 0.0
            and (config.optimizer == "sgd" or config.betas == self.betas)
            and config.weight_decay <= self.weight_decay
            and (config.optimizer != "sgd" or config.weight_decay == 0.0)
        ):
            return False
        rates = attack_rates(config)
        bounds = self.learning_rates(None if self.budget_steps else steps)[:steps]
        return len(bounds) == steps and all(r <= b for r, b in zip(rates, bounds, strict=True))


def _tail(bound: float, decay: float) -> float:
    """b/(1 − γ): T6's ``TAIL_PATH`` with u_K = b and c = γ (the rest of a contracting path)."""
    return contraction_tail.THEOREM.evaluate_expression(
        contraction_tail.TAIL_PATH, u_K=bound, c=decay
    )


def limit_radius(cls: AttackerClass) -> float:
    """R_∞ of an unbounded class: every head of every attack, at every step, lies in
    B(W_0, R_∞) with R_∞ = Σ_{s<K} b_s + b_K/(1 − γ) (T6's path conclusion, ``TAIL_PATH``,
    applied to the step bounds b_s = η_s C, which contract with c = γ by the class's
    schedule). The hypothesis is checked on the scheduler's rates (64 steps after K here, the
    whole horizon in ``step_radii``): ``HftaInputError`` if they do not contract."""
    if cls.budget_steps is not None or cls.decay is None:
        raise HftaInputError(f"R_inf is for unbounded classes only, not {cls.label()}")
    decay = cls.decay
    contraction_tail.THEOREM.check_assumptions(c=decay)
    bounds = cls.step_bounds(cls.constant_steps + 64)
    _check_contraction(bounds, cls.constant_steps, decay)
    head = math.fsum(bounds[: cls.constant_steps])
    return head + _tail(bounds[cls.constant_steps], decay)


def _check_contraction(bounds: Sequence[float], start: int, decay: float) -> None:
    """T6's hypothesis on step bounds: b_{s+1} ≤ γ b_s for every listed s ≥ K."""
    for s in range(start, len(bounds) - 1):
        if bounds[s + 1] > decay * bounds[s] * (1.0 + CONTRACTION_RELATIVE_TOLERANCE):
            raise HftaInputError(
                f"T6 contraction: b_{s + 1} = {bounds[s + 1]:.6g} > gamma b_{s} = "
                f"{decay * bounds[s]:.6g}: the schedule does not contract with c = {decay:g}"
            )


def step_radii(
    cls: AttackerClass, d: int, theta0_norm: float | None = None, steps: int | None = None
) -> list[float]:
    """R_1 … R_T: every head of the class's attacks after t steps lies in B(W_0, R_t)
    (``reachable_radius`` of the first t rates at ``max_learning_rate``; ``d`` = the head's
    size; ``theta0_norm`` = ‖W_0‖_F, needed by AdamW with weight decay; T = ``steps``, default
    the budget, or an unbounded class's ``horizon``, over which T6's contraction hypothesis is
    checked too)."""
    from empirical.certify.independent import reachable_radius

    rates = cls.learning_rates(steps)
    if cls.unbounded and cls.decay is not None:
        # R_t = Σ_{s<t} b_s (theory.optimizers' step bounds, as ``reachable_radius`` sums them),
        # accumulated once: a horizon can be thousands of steps
        bounds = cls.step_bounds(len(rates))
        _check_contraction(bounds, cls.constant_steps, cls.decay)
        return [float(r) for r in itertools.accumulate(bounds)]
    radii = [
        reachable_radius(
            optimizer=cls.optimizer,
            learning_rates=rates[:t],
            d=d,
            C=cls.clip,
            beta1=cls.betas[0],
            beta2=cls.betas[1],
            lam=cls.weight_decay,
            theta0_norm=theta0_norm,
        )
        for t in range(1, len(rates) + 1)
    ]
    monotone = theta0_norm is None or cls.weight_decay * (theta0_norm + radii[-1]) <= math.sqrt(d)
    if cls.weight_decay and not monotone:
        raise HftaInputError(
            "AdamW class: lambda (||W_0|| + R_T) > sqrt(d), the radius at the largest rate "
            "need not bound smaller rates"
        )
    return radii
