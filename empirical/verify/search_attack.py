"""The attacks the adaptive attacker runs: an attack function with a stop hook.

The search (``empirical.verify.search``) prunes: at each evaluation step s a trial reports
the objective of the points seen so far, and the pruner may stop a trial whose intermediate
values trail the others'. Pruning saves compute only when the attack can stop at an
evaluation: ``SearchAttack.stops_early``. The default, ``early_stopping()``, passes the hook
to ``run_attack(on_evaluation=...)``, so a pruned attack stops at that evaluation; it is told
to optuna as pruned and not stored. ``post_hoc(attack)`` wraps an attack function without
such a hook: it runs every attack to its end and replays its evaluations to the pruner
afterwards (the pruner's decisions are recorded, the measured final value is used, and
pruning saves nothing: ``SearchResult.pruning_saves_steps`` is False).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from empirical.engine.attack_config import AttackConfig
from empirical.measurement.trajectory import Evaluation, Trajectory
from empirical.verify.executors import AttackFunction, default_attack
from empirical.verify.search_objective import harm_points

__all__ = ["EvalHook", "SearchAttack", "early_stopping", "post_hoc", "replay"]

EvalHook = Callable[[int, float], bool]
"""Called at each evaluation step with (step, harm); returns True to stop the attack."""


@dataclass(frozen=True)
class SearchAttack:
    """An attack the search can run: ``run(config, on_eval)`` calls ``on_eval(step, harm)``
    at the evaluation steps; ``stops_early`` says whether it stops when the hook returns True
    (a stopped attack returns the trajectory so far)."""

    run: Callable[[AttackConfig, EvalHook], Trajectory]
    stops_early: bool
    #: the same attack run to its end without a hook (a module-level function that worker
    #: processes and ray can import): what concurrent trials run; None: sequential only.
    function: AttackFunction | None = None


def replay(trajectory: Trajectory, on_eval: EvalHook) -> None:
    """Feed a finished trajectory's harm evidence to ``on_eval`` until it says stop."""
    for step, harm in harm_points(trajectory):
        if on_eval(step, harm):
            return


def post_hoc(attack: AttackFunction = default_attack) -> SearchAttack:
    """``attack`` run to its end, its evaluations replayed to the hook afterwards (pruning
    then decides nothing about compute: every step is trained)."""

    def run(config: AttackConfig, on_eval: EvalHook) -> Trajectory:
        trajectory = attack(config)
        replay(trajectory, on_eval)
        return trajectory

    return SearchAttack(run=run, stops_early=False, function=attack)


def early_stopping() -> SearchAttack:
    """``run_attack`` with the search's hook as its ``on_evaluation``: a trial the pruner
    stops is stopped at that evaluation step, so pruning saves the remaining steps."""

    def run(config: AttackConfig, on_eval: EvalHook) -> Trajectory:
        from empirical.engine.attack import run_attack

        def hook(evaluation: Evaluation) -> bool:
            return evaluation.harm is not None and on_eval(evaluation.step, evaluation.harm)

        return run_attack(config, on_evaluation=hook)

    return SearchAttack(run=run, stops_early=True, function=default_attack)
