r"""R_1 … R_T of an attack on M*, before it runs: the balls its iterates cannot leave.

Theory's path-length bound (``empirical.certify.independent.reachable_radius``) over the first
t rates of the attack's schedule (``empirical.engine.schedules.learning_rates``): clipped SGD
Σ η_s C (``theory.optimizers``), Adam/AdamW the sum of T3's step bounds (``path_length_adam``).
A LoRA attack's R_t is its adapters' radius mapped to the merged weights by T11 (vii)
(``empirical.verify.predict_lora``). ``empirical.verify.predict`` states its predictions on
these radii; ``empirical.verify.predict_search`` the optuna search's, at the upper end of its
learning-rate range, where ``upper_end`` refuses what the monotonicity argument does not cover.

Source: docs/science.md §4 ("Reachable sets"); docs/certified.md (the class given by its
largest rate).
"""

from __future__ import annotations

from typing import Any

from empirical.engine.attack_config import AttackConfig
from empirical.verify.predict_lora import LoraStart, lora_start, merged_radii
from empirical.verify.workspace import Workspace, write_json
from theory.errors import HftaInputError

__all__ = ["attack_radii", "schedule_rates", "step_radii"]


def schedule_rates(config: AttackConfig, workspace: Workspace | None = None) -> list[float]:
    """η_1 … η_T of ``config``'s schedule (``empirical.engine.schedules.learning_rates``:
    transformers' schedulers, so torch and transformers are imported), read back from
    ``workspace.theory/rates-<key>.json`` when a previous run computed them (a cached rerun
    then imports neither); the key hashes the schedule, rate, warm-up and budget (and the
    exponential schedule's decay γ)."""
    import hashlib
    import json

    inputs: list[object] = [
        config.schedule,
        config.learning_rate,
        config.warmup_fraction,
        config.budget_steps,
    ]
    if config.decay is not None:  # appended only when given: the other keys stay as they were
        inputs.append(config.decay)
    key = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:24]
    cache = None if workspace is None else workspace.theory / f"rates-{key}.json"
    if cache is not None and cache.is_file():
        return [float(r) for r in json.loads(cache.read_text(encoding="utf-8"))]
    from empirical.engine.schedules import attack_rates

    rates = attack_rates(config)
    if cache is not None:
        write_json(cache, rates)
    return rates


def step_radii(
    config: AttackConfig, d: int, theta0_norm: float | None, workspace: Workspace | None = None
) -> list[float]:
    """R_1 … R_T of ``config``: theory's ``reachable_radius`` over the first t rates of its
    schedule (``schedule_rates``, cached in ``workspace`` when given), before the attack."""
    from empirical.certify.independent import reachable_radius

    rates = schedule_rates(config, workspace)
    options: dict[str, Any] = {
        "optimizer": config.optimizer,
        "d": d,
        "C": config.max_grad_norm,
        "momentum": config.momentum,
        "beta1": config.betas[0],
        "beta2": config.betas[1],
        "lam": config.weight_decay,
        "theta0_norm": theta0_norm,
    }
    return [reachable_radius(learning_rates=rates[:t], **options) for t in range(1, len(rates) + 1)]


def attack_radii(
    config: AttackConfig,
    d: int,
    norm: float | None,
    workspace: Workspace | None = None,
    *,
    upper_end: bool = False,
) -> tuple[list[float], LoraStart | None]:
    """R_1 … R_T of ``config`` in the full parameter space (``d`` parameters, ‖θ_0‖ =
    ``norm``): ``step_radii``; for LoRA the adapters' mapped to the merged weights by T11 (vii),
    with the adapters' start it rests on (``predict_lora``).

    ``upper_end``: the radii stand for every attack of the same kind at a rate no larger
    (``predict_search``). Every step bound is η_s × a factor that does not depend on η, except
    AdamW's with weight decay, whose factor grows with ‖θ_s‖ (docs/certified.md): refused.

    Raises:
        HftaInputError: no reachable radius before the attack (SGD without clipping, a method
            T11 does not cover, AdamW with weight decay at ``upper_end``, ...).
    """
    if upper_end and config.optimizer == "adamw" and config.weight_decay > 0.0:
        raise HftaInputError(
            f"AdamW with weight decay {config.weight_decay:g}: R_t at the largest rate need "
            "not bound R_t at smaller rates (the decay term grows with ||theta_s||)"
        )
    if config.method == "full":
        return step_radii(config, d, norm, workspace), None
    if config.method != "lora":
        raise HftaInputError(f"T11 covers full fine-tuning and LoRA, not {config.method!r}")
    start = lora_start(config, workspace)
    adapters = step_radii(config, start.parameters, start.norm, workspace)
    return merged_radii(adapters, start), start
