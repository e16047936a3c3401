"""Figures for the adaptive attacker (``empirical.verify.search``) on the embedded model.

The space: learning rate ∈ {1e-4, 3e-4, 1e-3, 3e-3} × optimizer ∈ {adamw, sgd} × schedule ∈
{cosine, constant}, 16 attacks of ``BUDGET`` steps (batch 16, evaluated every ``EVAL_EVERY``
steps), objective = max harm within the budget (the exact harm proxy). The whole grid runs
once (``run_attacks``, local, one thread), then a seeded TPE search of ``TRIALS`` trials with
successive-halving pruning runs against an empty store of its own, so none of its attacks
is free.

* ``search_found_grid_worst``: "yes" when the search's best attack reaches the grid's worst
  harm (the grid's maximum over all 16 attacks);
* ``search_vs_grid_compute_ratio``: steps the search trained until its best trial / the
  grid's steps (the grid must run everything to know its maximum);
* ``search_total_vs_grid_compute_ratio``: all the search's steps / the grid's steps;
* ``search_trials_to_best``, ``search_grid_worst_harm``, ``search_best_harm``;
* ``search_pruning_saves_steps``: "yes" when pruned trials stopped at the pruning step
  (``run_attack``'s ``on_evaluation`` hook), "no" when decisions were replayed post hoc.

Figures are printed (``python -m benchmarks search_bench``), never asserted in tests.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from empirical.engine.attack import AttackConfig
from empirical.verify.executors import run_attacks
from empirical.verify.search import SearchSpace, grid, harm_points, objective_value
from empirical.verify.search import search_worst_case as search
from empirical.verify.store import ResultStore

BUDGET = 40
EVAL_EVERY = 10
TRIALS = 8
SEED = 0


def space() -> SearchSpace:
    """The benchmark's 16-attack space on the embedded model and data."""
    return SearchSpace(
        base=AttackConfig(budget_steps=BUDGET, eval_every=EVAL_EVERY, batch_size=16),
        learning_rates=(1e-4, 3e-4, 1e-3, 3e-3),
        optimizers=("adamw", "sgd"),
        schedules=("cosine", "constant"),
    )


def run() -> dict[str, float | str]:
    torch.set_num_threads(1)
    attacks = space()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        configs = grid(attacks)
        trajectories = run_attacks(configs, store=ResultStore(directory / "grid"),
                                   progress=False)
        harms = [
            objective_value(harm_points(t), objective="harm", budget=BUDGET)
            for t in trajectories
        ]
        worst = max(harms)
        result = search(attacks, store=ResultStore(directory / "search"),
                        storage=directory / "study.db", n_trials=TRIALS, seed=SEED,
                        pruner="successive-halving", progress=False)
    grid_steps = len(configs) * BUDGET
    return {
        "search_grid_attacks": float(len(configs)),
        "search_trials": float(TRIALS),
        "search_grid_worst_harm": round(worst, 4),
        "search_best_harm": round(result.best_objective, 4),
        "search_found_grid_worst": "yes" if result.best_objective >= worst else "no",
        "search_trials_to_best": float(
            1 + next(i for i, t in enumerate(result.trials) if t.number == result.best_trial)
        ),
        "search_vs_grid_compute_ratio": round(result.steps_to_best / grid_steps, 3),
        "search_total_vs_grid_compute_ratio": round(result.total_steps_trained / grid_steps, 3),
        "search_pruning_saves_steps": "yes" if result.pruning_saves_steps else "no",
    }


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:40s} {value}")
