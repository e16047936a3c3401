"""Stage 2 of ``verify``, planned: the attack configurations a claim's threat model allows.

An attack fixes everything besides the attacker's axes from the claim (``attack_base``: the
data files, the budget T, the gradient clip, how often f is evaluated, the probe); the
threat model's grid (``ThreatModel.attack_settings`` through ``SearchSpace``, ``grid``)
varies the axes (learning rate, optimizer, schedule, LoRA, batch size, seed), and the optuna
search (``search_space``) samples them, inside the same threat model (``Claim`` refuses a
search that leaves it). Cross-domain generalization reruns the grid on the cross-domain
split; trainability fine-tunes M and M* alike on a harmless task (``trainability_configs``).
Why many attacks: a defence evaluated against one learning rate and one seed was broken by a
different one (docs/science.md §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empirical.engine.attack_config import AttackConfig, DeviceName, LoraSettings
from empirical.measurement.trajectory import Trajectory
from empirical.verify.claim import Claim, ClaimData
from empirical.verify.outcome import AttackRun, RunRole
from empirical.verify.workspace import Workspace

if TYPE_CHECKING:
    from empirical.verify.search import SearchSpace

__all__ = [
    "AttackPlan",
    "attack_base",
    "grid_configs",
    "named_runs",
    "plan_attacks",
    "search_space",
    "searched_space",
    "trainability_configs",
]


def attack_base(
    claim: Claim,
    model: Path | None,
    attack: Path,
    evaluation: Path,
    reference: Path,
    device: DeviceName = "cpu",
) -> AttackConfig:
    """Everything an attack of this claim fixes besides the threat model's axes, and the
    device the verification runs on (``VerifyOptions.device``; part of each attack's key)."""
    return AttackConfig(
        model=model,
        device=device,
        data=attack,
        evaluation_data=evaluation,
        reference_data=reference,
        benchmark_seed=claim.data.benchmark_seed,
        budget_steps=claim.threat_model.budget_steps,
        max_grad_norm=claim.threat_model.max_grad_norm,
        eval_every=claim.harm.eval_every_steps,
        probe=True,
        probe_size=claim.harm.probe_examples,
        lora=LoraSettings(),
        harm_proxy=claim.harm.proxy,
    )


def search_space(claim: Claim, base: AttackConfig) -> SearchSpace:
    """The optuna search's space: the threat model's axes, the learning rate log-uniform on
    ``search.learning_rate_range`` (else the threat model's range, else its grid values)."""
    from empirical.verify.search import SearchSpace

    span = claim.search.learning_rate_range or claim.threat_model.learning_rate_range
    return SearchSpace.from_threat_model(
        claim.threat_model, base, learning_rate_range=None if span is None else tuple(span)
    )


def searched_space(claim: Claim) -> dict[str, Any]:
    """Exactly the space the verifier attacks in (verdict.json ``searched_space``): the
    threat model's grid, and the optuna search's axes when it runs. Every value lies inside
    the claim's threat model (``Claim`` refuses a search that leaves it)."""
    threat = claim.threat_model
    space: dict[str, Any] = {
        "grid": {
            "learning_rates": list(threat.learning_rates),
            "optimizers": list(threat.optimizers),
            "schedules": list(threat.schedules),
            "lora": threat.lora,
            "batch_sizes": list(threat.batch_sizes),
            "seeds": list(threat.seeds),
            "attacks": len(threat.attack_settings()),
        },
        "threat_model_learning_rates": list(threat.learning_rate_bounds()),
    }
    if claim.search.strategy != "grid":
        span = claim.search.learning_rate_range or threat.learning_rate_range
        space["search"] = {
            "learning_rate": (
                {"log_uniform": list(span)}
                if span is not None
                else {"choices": list(threat.learning_rates)}
            ),
            "optimizers": list(threat.optimizers),
            "schedules": list(threat.schedules),
            "lora": threat.lora,
            "batch_sizes": list(threat.batch_sizes),
            "seeds": list(threat.seeds),
            "trials": claim.search.trials,
        }
    return space


def grid_configs(claim: Claim, base: AttackConfig) -> list[AttackConfig]:
    """The threat model's grid (``ThreatModel.attack_settings`` through the search space)."""
    from empirical.verify.search import SearchSpace, grid

    space = SearchSpace.from_threat_model(claim.threat_model, base)
    return grid(space)


def named_runs(
    role: RunRole, prefix: str, configs: Sequence[AttackConfig], trajectories: Sequence[Trajectory]
) -> list[AttackRun]:
    """``PREFIX-000``, ``PREFIX-001``, ...: the runs of ``configs`` in order."""
    return [
        AttackRun(role=role, name=f"{prefix}-{index:03d}", config=config, trajectory=trajectory)
        for index, (config, trajectory) in enumerate(zip(configs, trajectories, strict=True))
    ]


@dataclass(frozen=True)
class AttackPlan:
    """The attacks a claim asks for on M*: the base configuration, the grid, the search
    space (None: grid only), the cross-domain grid (empty unless claimed or measured)."""

    base: AttackConfig
    grid: list[AttackConfig]
    run_grid: bool
    search: SearchSpace | None
    cross: list[AttackConfig]


def plan_attacks(
    claim: Claim,
    data: ClaimData,
    workspace: Workspace,
    immunized: Path | None,
    device: DeviceName = "cpu",
) -> AttackPlan:
    """Every attack configuration of the claim on M* (module docstring), on ``device``;
    writes the data files the attacks read into the work directory."""
    base = attack_base(
        claim,
        immunized,
        workspace.data_file("attack", data.attack),
        workspace.data_file("evaluation", data.evaluation),
        workspace.data_file("reference", data.reference),
        device,
    )
    strategy = claim.search.strategy
    cross: list[AttackConfig] = []
    if "generalization_cross_domain" in set(claim.conditions.all):
        cross_base = base.model_copy(
            update={
                "data": workspace.data_file("cross_attack", data.cross_attack),
                "evaluation_data": workspace.data_file("cross_evaluation", data.cross_evaluation),
            }
        )
        cross = grid_configs(claim, cross_base)
    return AttackPlan(
        base=base,
        grid=grid_configs(claim, base),
        run_grid=strategy in ("grid", "grid+optuna"),
        search=search_space(claim, base) if strategy in ("optuna", "grid+optuna") else None,
        cross=cross,
    )


def trainability_configs(
    claim: Claim,
    original: Path | None,
    immunized: Path | None,
    train: Path,
    evaluation: Path,
    device: DeviceName = "cpu",
) -> tuple[AttackConfig, AttackConfig]:
    """The harmless fine-tuning of M and of M* on the trainability task (same settings, on
    ``device``)."""
    section = claim.trainability
    assert section is not None
    common: dict[str, Any] = {
        "device": device,
        "data": train,
        "evaluation_data": evaluation,
        "reference_data": evaluation,
        "benchmark_seed": claim.data.benchmark_seed,
        "optimizer": section.optimizer,
        "learning_rate": section.learning_rate,
        "schedule": section.schedule,
        "warmup_fraction": section.warmup_fraction,
        "batch_size": section.batch_size,
        "budget_steps": section.budget_steps,
        "eval_every": section.eval_every_steps,
        "seed": section.seed,
    }
    return (
        AttackConfig.model_validate({**common, "model": original}),
        AttackConfig.model_validate({**common, "model": immunized}),
    )


def explain(claim: Claim, data: ClaimData) -> list[str]:
    """What ``hfta verify --explain`` prints: the resolved threat model and every attack the
    verification will run, without running (or writing) anything."""
    threat = claim.threat_model
    low, high = threat.learning_rate_bounds()
    lines = [
        f"claim: {claim.claim.name}",
        f"defence: {claim.defence.name}"
        + ("" if claim.defence.applies else " (the model is taken as already immunized)"),
        f"conditions claimed: {', '.join(claim.conditions.claimed) or 'none'}; measured: "
        f"{', '.join(claim.conditions.measured) or 'none'}",
        f"data: {len(data.defence)} defence, {len(data.attack)} attack, "
        f"{len(data.evaluation)} evaluation, {len(data.reference)} reference examples"
        + (
            f"; cross-domain {len(data.cross_attack)} attack, {len(data.cross_evaluation)} "
            "evaluation"
            if data.cross_attack
            else ""
        ),
        f"threat model: budget T = {threat.budget_steps} steps; learning rates "
        f"{', '.join(f'{r:g}' for r in threat.learning_rates)} (attacker's range "
        f"[{low:g}, {high:g}]); optimizers {', '.join(threat.optimizers)}; schedules "
        f"{', '.join(threat.schedules)} with {threat.warmup_fraction:g} warm-up; clipping "
        f"{threat.max_grad_norm if threat.max_grad_norm is not None else 'none'}; lora "
        f"{threat.lora}; batch sizes {', '.join(map(str, threat.batch_sizes))}; seeds "
        f"{', '.join(map(str, threat.seeds))}",
        f"harm: f = {claim.harm.proxy}, phi = {claim.harm.phi:g}, evaluated every "
        f"{claim.harm.eval_every_steps} steps",
    ]
    settings = threat.attack_settings()
    strategy = claim.search.strategy
    if strategy in ("grid", "grid+optuna"):
        lines.append(f"grid: {len(settings)} attacks on M*")
        lines.extend(f"  {setting.label()}" for setting in settings)
    if "generalization_cross_domain" in set(claim.conditions.all):
        lines.append(f"cross-domain: the same {len(settings)} attacks on the held-out categories")
    if strategy in ("optuna", "grid+optuna"):
        span = claim.search.learning_rate_range or threat.learning_rate_range
        rates = f"log-uniform in [{span[0]:g}, {span[1]:g}]" if span else "the listed rates"
        lines.append(
            f"search: {claim.search.trials} optuna trials (seed {claim.search.seed}, pruner "
            f"{claim.search.pruner}), learning rate {rates}, the other axes as above"
        )
    lines.append("then: the worst attack on the original model M")
    if "trainability" in set(claim.conditions.all):
        lines.append("then: harmless fine-tuning of M and M* (trainability), 2 runs")
    if claim.theory.measure_path == "worst":
        lines.append("then: the worst attack rerun, its iterates captured (beta, G on its path)")
    return lines
