"""Concurrent trials of the worst-case search: rounds proposed together, told in order.

With ``workers=w > 1``, or ``executor="ray"`` (``empirical.verify.search``), trials are
proposed in rounds of up to w, the i-th trial of a round that starts after k finished trials
with the sampler seeded from (seed, k + i), and the round's attacks run concurrently on the
executor of ``run_attacks`` (w spawned worker processes on this machine, or ray tasks), each
written to the store as it finishes. Then the round's trials are told to optuna in trial
order, each replaying its evaluations to the pruner (pruning decisions in a fixed order, not
in the order the workers happen to finish, so the search is deterministic for a given seed
and w, on either executor; a pruned trial is told as pruned, as the sequential search would,
but its steps were trained). A round never crosses the end of the random start-up phase
(``startup_trials``, whose proposals ignore the results), so the start-up trials are exactly
the sequential search's; after it a trial's TPE model misses the results of the at most
w − 1 trials proposed before it in the same round (the usual price of batch Bayesian
optimisation), which optuna's "constant liar" mitigates: a trial still running counts as a
poor result, so one round does not propose the same region w times. The measured effect on
the best attack found is in ``empirical.verify.search``'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from empirical.engine.attack_config import AttackConfig
from empirical.measurement.trajectory import Trajectory
from empirical.verify.executors import AttackFunction, ExecutorName, Runner, attack_runner
from empirical.verify.search_attack import replay
from empirical.verify.search_objective import ObjectiveName, harm_points, objective_value
from empirical.verify.search_space import SearchSpace
from empirical.verify.search_study import (
    RunningTrial,
    finished_trials,
    owner,
    suggest,
    trial_seed,
)
from empirical.verify.store import ResultStore, canonical_config

if TYPE_CHECKING:
    import optuna

__all__ = ["Rounds"]


@dataclass(frozen=True)
class Rounds:
    """The concurrent search: rounds of trials proposed together, run on an executor, told
    in trial order (module docstring)."""

    space: SearchSpace
    store: ResultStore
    objective: ObjectiveName
    threshold: float | None
    seed: int
    startup_trials: int
    n_trials: int
    workers: int
    executor: ExecutorName
    ray_address: str | None
    threads: int
    function: AttackFunction

    def size(self, done: int) -> int:
        """Trials in the round after ``done`` finished ones: at most ``workers``, never past
        ``n_trials`` and never across the end of the start-up phase."""
        size = min(self.workers, self.n_trials - done)
        if done < self.startup_trials:
            size = min(size, self.startup_trials - done)
        return size

    def run(self, study: optuna.Study, advance: Callable[[int], None]) -> None:
        """Rounds until the study holds ``n_trials`` finished trials (one set of workers)."""
        with attack_runner(executor=self.executor, workers=self.workers, threads=self.threads,
                           attack=self.function, ray_address=self.ray_address) as runner:
            while len(finished_trials(study)) < self.n_trials:
                self._round(study, runner, advance)

    def _round(self, study: optuna.Study, runner: Runner, advance: Callable[[int], None]) -> None:
        """Propose, run and tell one round of trials."""
        import optuna
        from optuna.trial import TrialState

        done = len(finished_trials(study))
        asked: list[tuple[optuna.Trial, AttackConfig]] = []
        for offset in range(self.size(done)):
            study.sampler = optuna.samplers.TPESampler(
                seed=trial_seed(self.seed, done + offset),
                n_startup_trials=self.startup_trials, constant_liar=True,
            )
            trial = study.ask()
            trial.set_user_attr("owner", owner())
            config = canonical_config(self.space.config(suggest(trial, self.space)))
            asked.append((trial, config))
        try:
            ran = self._attacks(runner, [config for _, config in asked])
        except BaseException:
            for trial, _ in asked:
                study.tell(trial, state=TrialState.FAIL)
            raise
        for trial, config in asked:
            self._tell(study, trial, config, ran)
            advance(1)

    def _attacks(self, runner: Runner, configs: list[AttackConfig]) -> dict[str, Trajectory]:
        """Run the attacks of ``configs`` not in the store, concurrently; each finished one
        goes to the store at once. Returns key → trajectory of those that ran."""
        pending = {self.store.key(c): c for c in configs if self.store.get(c) is None}
        ran: dict[str, Trajectory] = {}

        def finished(key: str, trajectory: Trajectory) -> None:
            ran[key] = trajectory
            if trajectory.n_steps == self.space.base.budget_steps or trajectory.diverged:
                self.store.put(pending[key], trajectory)

        if pending:
            runner(pending, finished)
        return ran

    def _tell(self, study: optuna.Study, trial: optuna.Trial, config: AttackConfig,
              ran: dict[str, Trajectory]) -> None:
        """Replay the trial's evaluations to the pruner and tell optuna its outcome."""
        from optuna.trial import TrialState

        key = self.store.key(config)
        trained = key in ran
        trajectory = ran.pop(key) if trained else self.store.get(config)
        assert trajectory is not None
        budget = self.space.base.budget_steps
        state = RunningTrial(trial, self.objective, self.threshold, budget, points=[])
        replay(trajectory, state.on_eval)
        cut = state.pruned and bool(state.points) and state.points[-1][0] < budget
        finished = not cut and (trajectory.n_steps == budget or trajectory.diverged)
        final = objective_value(harm_points(trajectory), objective=self.objective,
                                budget=budget, threshold=self.threshold)
        trial.set_user_attr("record", {
            "key": key,
            "steps_trained": trajectory.n_steps if trained else 0,
            "steps_run": trajectory.n_steps,
            "reused": not trained,
            "pruned": state.pruned,
            "objective": final if finished else None,
        })
        if finished:
            study.tell(trial, final)
        else:
            study.tell(trial, state=TrialState.PRUNED)
