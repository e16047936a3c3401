"""What a worst-case search found and what it cost: its trials, its best attack, the grid.

``search_result(study, space, ...)`` reads the finished trials of the search's optuna study
(``empirical.verify.search``) into ``TrialRecord``s and picks the best attack (the highest
objective; the earlier trial on a tie). ``SearchResult`` sets its compute (steps trained until
the best attack was found) beside the grid's (every attack of the space for its whole budget):
``compute_ratio``, the figure that says what the search saves over the exhaustive grid.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from empirical.engine.attack_config import AttackConfig
from empirical.verify.search_objective import ObjectiveName
from empirical.verify.search_space import SearchSpace, grid
from empirical.verify.search_study import PrunerName, finished_trials
from empirical.verify.store import canonical_config
from theory.errors import HftaInputError

if TYPE_CHECKING:
    import optuna

__all__ = ["SearchResult", "TrialRecord", "search_result"]


class TrialRecord(BaseModel):
    """One finished trial: its attack, what it cost and what it found.

    ``objective`` is None when the attack was stopped early (its final value is unknown);
    ``pruned`` says that the pruner asked to stop it (``stopped_early``: and it did).
    ``steps_trained`` counts the steps this trial trained (0 when the store had the attack),
    ``steps_run`` the steps its trajectory holds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int
    config: AttackConfig
    key: str
    objective: float | None
    steps_trained: int
    steps_run: int
    reused: bool
    pruned: bool
    stopped_early: bool


class SearchResult(BaseModel):
    """What a worst-case search found and what it cost, next to the grid's cost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    objective: ObjectiveName
    threshold: float | None
    pruner: PrunerName
    seed: int
    study_name: str
    storage: str
    best_config: AttackConfig
    best_objective: float
    best_trial: int
    best_key: str
    trials: tuple[TrialRecord, ...]
    total_steps_trained: int
    steps_to_best: int
    grid_size: int
    grid_steps: int
    pruning_saves_steps: bool

    @property
    def compute_ratio(self) -> float:
        """Steps the search trained until it found its best attack / the grid's steps."""
        return self.steps_to_best / self.grid_steps



def search_result(
    study: optuna.Study,
    space: SearchSpace,
    *,
    storage: Path,
    objective: ObjectiveName,
    threshold: float | None,
    pruner: PrunerName,
    seed: int,
    stops_early: bool,
) -> SearchResult:
    """The search's record from its study (module docstring).

    Raises:
        HftaInputError: no trial finished its attack (every one was stopped early).
    """
    from optuna.trial import TrialState

    records: list[TrialRecord] = []
    for trial in sorted(finished_trials(study), key=lambda t: t.number):
        attrs = trial.user_attrs["record"]
        config = canonical_config(space.config(trial.params))
        records.append(TrialRecord(
            number=trial.number,
            config=config,
            key=str(attrs["key"]),
            objective=attrs["objective"],
            steps_trained=int(attrs["steps_trained"]),
            steps_run=int(attrs["steps_run"]),
            reused=bool(attrs["reused"]),
            pruned=bool(attrs["pruned"]),
            stopped_early=trial.state == TrialState.PRUNED,
        ))
    scored = [r for r in records if r.objective is not None]
    if not scored:
        raise HftaInputError("the search finished no attack (every trial was stopped early)")
    best = max(scored, key=lambda r: (r.objective, -r.number))
    assert best.objective is not None and math.isfinite(best.objective)
    grid_size = len(grid(space))
    return SearchResult(
        objective=objective,
        threshold=threshold,
        pruner=pruner,
        seed=seed,
        study_name=study.study_name,
        storage=str(storage),
        best_config=best.config,
        best_objective=best.objective,
        best_trial=best.number,
        best_key=best.key,
        trials=tuple(records),
        total_steps_trained=sum(r.steps_trained for r in records),
        steps_to_best=sum(r.steps_trained for r in records if r.number <= best.number),
        grid_size=grid_size,
        grid_steps=grid_size * space.base.budget_steps,
        pruning_saves_steps=stops_early,
    )
