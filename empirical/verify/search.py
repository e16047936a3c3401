"""The adaptive attacker: search the threat model for the attack that does the most harm.

Published defences broke under attacks their evaluations never tried: another seed, another
schedule, LoRA instead of full fine-tuning (Qi, Wei, Carlini et al., ICLR 2025; docs/science.md
§3). A verifier must therefore look for the worst case over the whole threat model, not one
setting. Two ways are offered over the same ``SearchSpace``:

* ``grid(space)``: every combination of the axes (the exhaustive answer, at full cost);
* ``search_worst_case(space, ...)``: an optuna study (TPE sampler, seeded) that proposes
  attacks, runs them (through the ``ResultStore``: an attack already run is free), and
  maximises an objective computed from the attack's harm curve f(M*_θ[t]) at its evaluation
  steps, with pruning on the intermediate values (TamperBench's approach, in our terms).

This module is the public surface; each idea lives in its own module, re-exported here:

* ``empirical.verify.search_space``: ``SearchSpace``, its ``AXES`` and ``grid``;
* ``empirical.verify.search_objective``: the objectives (``"harm"``, ``"earliest-break"``),
  ``harm_points`` and ``objective_value``;
* ``empirical.verify.search_attack``: ``SearchAttack``, ``early_stopping()`` (a pruned attack
  stops at that evaluation) and ``post_hoc(attack)`` (every attack runs to its end);
* ``empirical.verify.search_study``: the optuna study (SQLite storage, study name, seeds,
  pruners, the running trial's reports);
* ``empirical.verify.search_rounds``: concurrent trials in rounds;
* ``empirical.verify.search_records``: ``TrialRecord`` and ``SearchResult``.

Resumability: the study lives in SQLite at ``storage`` under a name derived from the space,
its input files, the objective, the pruner and the seed, opened with ``load_if_exists``. The
sampler of the k-th finished trial is seeded from (seed, k) and ignores running trials, so a
search killed after k trials and started again proposes exactly the trials an uninterrupted
search would have proposed; ``n_trials`` is the total number of finished trials wanted, so
a search can be extended (n, then 2n). With ``workers=1`` (the default) trials run one after
another in this process, with torch's threads set to ``threads``.

Concurrent trials (``workers=w > 1``, or ``executor="ray"``; ``search_rounds``): later
proposals may differ from the sequential search's while both search the same space for its
worst case. Measured on the synthetic 189-attack space of the tests, 32 trials: the
sequential search found the grid's worst for seeds 0, 1 and 2; rounds of 2 and of 3 found it
for 5 of the 6 (seed, w) pairs (not rounds of 2 with seed 2), and for 4 of 6 without the
liar. The same best attack as the sequential search is thus the usual outcome, not a
guarantee. Rounds start at trial 0, then every w trials up to S = ``startup_trials``, then at
S + j·w; a search extended (n, then more) or killed and restarted proposes what an
uninterrupted one would when it stopped at a round boundary: a round killed before its
trials were told is redone from its first trial (its finished attacks come from the store),
but a round cut by ``n_trials`` (or killed while its results were being told) lets the later
trials see results the uninterrupted search's round-mates did not. The study name includes
w when w > 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from empirical.verify.executors import ExecutorName, check_executor, torch_threads
from empirical.verify.search_attack import EvalHook, SearchAttack, early_stopping, post_hoc, replay
from empirical.verify.search_objective import (
    ObjectiveName,
    check_objective,
    harm_points,
    objective_value,
)
from empirical.verify.search_records import SearchResult, TrialRecord, search_result
from empirical.verify.search_rounds import Rounds
from empirical.verify.search_space import AXES, SearchSpace, grid
from empirical.verify.search_study import (
    STARTUP_TRIALS,
    PrunerName,
    RunningTrial,
    fail_abandoned_trials,
    finished_trials,
    make_pruner,
    open_storage,
    owner,
    quiet_optuna,
    study_name,
    suggest,
    trial_seed,
)
from empirical.verify.store import ResultStore, canonical_config
from theory.conditions import WeakResistance
from theory.errors import HftaInputError

__all__ = [
    "AXES",
    "STARTUP_TRIALS",
    "EvalHook",
    "ObjectiveName",
    "PrunerName",
    "SearchAttack",
    "SearchResult",
    "SearchSpace",
    "TrialRecord",
    "early_stopping",
    "grid",
    "harm_points",
    "objective_value",
    "post_hoc",
    "search_worst_case",
]


def _check_search(n_trials: int, seed: int, startup_trials: int, threads: int) -> None:
    for name, value, least in (("n_trials", n_trials, 1), ("seed", seed, 0),
                               ("startup_trials", startup_trials, 1), ("threads", threads, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise HftaInputError(f"{name} must be an integer >= {least}, got {value!r}")


def search_worst_case(
    space: SearchSpace,
    *,
    store: ResultStore,
    storage: Path,
    n_trials: int,
    seed: int,
    pruner: PrunerName = "successive-halving",
    objective: ObjectiveName = "harm",
    threshold: float | None = None,
    attack: SearchAttack | None = None,
    threads: int = 1,
    startup_trials: int = STARTUP_TRIALS,
    progress: bool = True,
    workers: int = 1,
    executor: ExecutorName = "local",
    ray_address: str | None = None,
) -> SearchResult:
    """Search ``space`` for the attack that maximises ``objective`` (module docstring).

    Runs trials until the study at ``storage`` (SQLite) holds ``n_trials`` finished ones
    (resuming a killed or shorter search). ``threshold`` is φ (needed by
    ``"earliest-break"``). ``attack`` defaults to ``early_stopping()``; every attack
    that runs its budget goes to ``store`` and every attack already there is reused.
    ``workers`` > 1 or ``executor="ray"`` runs trials concurrently in rounds (module
    docstring); ``attack.function`` is what the workers run.

    Raises:
        HftaInputError: bad arguments, or bad input in an attack.
    """
    import optuna
    from optuna.trial import TrialState

    _check_search(n_trials, seed, startup_trials, threads)
    check_executor(executor, ray_address, threads, workers)
    check_objective(objective, threshold)
    if threshold is not None:
        WeakResistance(threshold, budget=space.base.budget_steps)  # φ inside the proxy's range
    pruner_object = make_pruner(pruner, space, startup_trials)
    attack = attack or early_stopping()
    rounds = workers > 1 or executor == "ray"
    if rounds and attack.function is None:
        raise HftaInputError("concurrent trials need an attack with a plain function "
                             "(SearchAttack.function) that worker processes can run")
    storage = Path(storage)
    if storage.exists() and not storage.is_file():
        raise HftaInputError(f"{storage}: study storage path is not a file")
    storage.parent.mkdir(parents=True, exist_ok=True)
    name = study_name(space, store, objective=objective, threshold=threshold, pruner=pruner,
                       seed=seed, startup_trials=startup_trials, workers=workers)
    budget = space.base.budget_steps
    with quiet_optuna():
        database = open_storage(storage)
        study = optuna.create_study(storage=database, study_name=name, direction="maximize",
                                    pruner=pruner_object, load_if_exists=True)
        fail_abandoned_trials(study, database)
        with torch_threads(threads), _search_progress(progress, n_trials) as advance:
            advance(len(finished_trials(study)))
            if rounds:
                assert attack.function is not None
                settings = Rounds(
                    space=space, store=store, objective=objective, threshold=threshold,
                    seed=seed, startup_trials=startup_trials, n_trials=n_trials,
                    workers=workers, executor=executor, ray_address=ray_address,
                    threads=threads, function=attack.function,
                )
                settings.run(study, advance)
            while (done := len(finished_trials(study))) < n_trials:
                study.sampler = optuna.samplers.TPESampler(
                    seed=trial_seed(seed, done), n_startup_trials=startup_trials,
                    constant_liar=False,
                )
                trial = study.ask()
                trial.set_user_attr("owner", owner())
                config = canonical_config(space.config(suggest(trial, space)))
                state = RunningTrial(trial, objective, threshold, budget, points=[])
                stored = store.get(config)
                try:
                    if stored is not None:
                        trajectory = stored
                        replay(trajectory, state.on_eval)
                    else:
                        trajectory = attack.run(config, state.on_eval)
                    finished = trajectory.n_steps == budget or trajectory.diverged
                    final = objective_value(harm_points(trajectory), objective=objective,
                                            budget=budget, threshold=threshold)
                except BaseException:
                    study.tell(trial, state=TrialState.FAIL)
                    raise
                if stored is None and finished:
                    store.put(config, trajectory)
                trial.set_user_attr("record", {
                    "key": store.key(config),
                    "steps_trained": 0 if stored is not None else trajectory.n_steps,
                    "steps_run": trajectory.n_steps,
                    "reused": stored is not None,
                    "pruned": state.pruned,
                    "objective": final if finished else None,
                })
                if finished:
                    study.tell(trial, final)
                else:
                    study.tell(trial, state=TrialState.PRUNED)
                advance(1)
    return search_result(study, space, storage=storage, objective=objective, threshold=threshold,
                   pruner=pruner, seed=seed, stops_early=attack.stops_early)



@contextlib.contextmanager
def _search_progress(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A rich bar of finished trials on stderr (none when ``enabled`` is False)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True),
                   disable=not enabled)
    with bar:
        task = bar.add_task("search trials", total=total)
        yield lambda n: bar.advance(task, n)
