"""The adaptive attacker's optuna study: storage, names, seeds, pruners and trial state.

The worst-case search (``empirical.verify.search``) keeps its study in SQLite at ``storage``
under a name derived from the space, its input files, the objective, the pruner and the seed
(``study_name``), opened with ``load_if_exists``. The sampler of the k-th finished trial is
seeded from (seed, k) (``trial_seed``) and ignores running trials, so a search killed after k
trials and started again proposes exactly the trials an uninterrupted search would have
proposed. Trials left running by a killed process of this machine are marked failed and
ignored (``fail_abandoned_trials``); their compute is not counted. (SQLite runs in
write-ahead-log mode: a killed process loses no committed trial.)

Pruning: at each evaluation step s a trial reports the objective of the points seen so far
(a running value: max harm so far, or the break score once broken; ``RunningTrial``); the
pruner (``median`` or ``successive-halving``) may stop a trial whose intermediate values
trail the others'.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from empirical.verify.search_objective import ObjectiveName, objective_value
from empirical.verify.search_space import AXES, SearchSpace
from empirical.verify.store import ResultStore, canonical_config, canonical_json
from theory.errors import HftaInputError

if TYPE_CHECKING:
    import optuna

__all__ = [
    "SEARCH_FORMAT",
    "STARTUP_TRIALS",
    "PrunerName",
    "RunningTrial",
    "fail_abandoned_trials",
    "finished_trials",
    "make_pruner",
    "open_storage",
    "owner",
    "quiet_optuna",
    "study_name",
    "suggest",
    "trial_seed",
]

PrunerName = Literal["median", "successive-halving", "none"]

STARTUP_TRIALS = 5
"""Random trials before TPE models the results (fixed, so that extending a search from n to
2n trials proposes what a 2n-trial search would have)."""

SEARCH_FORMAT = 1
"""The version of the study name's record (a change starts new studies)."""


def make_pruner(
    name: PrunerName, space: SearchSpace, startup_trials: int
) -> optuna.pruners.BasePruner:
    """The pruner called ``name`` (successive halving's least resource: one evaluation period).

    Raises:
        HftaInputError: an unknown pruner name.
    """
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=startup_trials, n_warmup_steps=1, interval_steps=1
        )
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=space.base.eval_every, reduction_factor=3
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise HftaInputError(
        f"pruner must be 'median', 'successive-halving' or 'none', not {name!r}"
    )


def study_name(
    space: SearchSpace,
    store: ResultStore,
    *,
    objective: str,
    threshold: float | None,
    pruner: str,
    seed: int,
    startup_trials: int,
    workers: int = 1,
) -> str:
    """A name that changes whenever anything that decides the trials changes."""
    base = canonical_config(space.base)
    record = {
        "format": SEARCH_FORMAT,
        "space": space.model_copy(update={"base": base}).model_dump(mode="json"),
        "inputs": store.key(base),
        "objective": objective,
        "threshold": threshold,
        "pruner": pruner,
        "seed": seed,
        "startup_trials": startup_trials,
    }
    if workers > 1:  # rounds of w trials propose differently after the start-up phase
        record["workers"] = workers
    return "worst-case-" + hashlib.sha256(canonical_json(record).encode()).hexdigest()[:20]


def open_storage(path: Path) -> optuna.storages.RDBStorage:
    """The SQLite study storage at ``path`` (created if missing).

    Two processes creating the same new file race on its tables ("already exists"); the
    loser retries and finds them made. Anything else that is not a study database is bad
    input.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    url = f"sqlite:///{path.resolve()}"
    problem = ""
    for attempt in range(4):
        try:
            database = optuna.storages.RDBStorage(url)
        except SQLAlchemyError as exc:
            problem = str(exc).splitlines()[0]
            if "already exists" not in problem:
                break
            time.sleep(0.05 * (attempt + 1))
            continue
        _write_ahead_log(database)
        return database
    raise HftaInputError(f"{path}: cannot open the study storage ({problem})")


def _write_ahead_log(database: optuna.storages.RDBStorage) -> None:
    """SQLite in write-ahead-log mode with ``synchronous = NORMAL``: a commit no longer waits
    for the disk, yet a killed process loses no committed trial (a power cut may lose the
    last ones, never the file's consistency)."""
    from sqlalchemy import event

    def configure(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(database.engine, "connect", configure)
    database.engine.dispose()


def trial_seed(seed: int, finished: int) -> int:
    """The sampler seed of the trial proposed after ``finished`` finished trials."""
    return int(np.random.SeedSequence([seed, finished]).generate_state(1)[0])


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's log at WARNING inside (no line per trial), its level restored after."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's finished trials: completed or pruned (not running, not failed)."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def owner() -> dict[str, Any]:
    """This process, as a trial records it (``fail_abandoned_trials`` reads it)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: seconds a running trial without an owner is given to record one before it counts as
#: abandoned: its process records the owner right after ``study.ask()`` (microseconds), so a
#: trial still without one after this long was created by a process killed in between.
OWNERLESS_GRACE_SECONDS = 1.0


def fail_abandoned_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Mark failed the running trials whose process (on this machine) no longer exists, and
    those that still record no owner ``OWNERLESS_GRACE_SECONDS`` after they were seen (a
    process killed between ``study.ask()`` and recording its owner)."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    study_id = storage.get_study_id_from_name(study.study_name)

    def fail(number: int) -> None:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)

    ownerless: set[int] = set()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("owner")
        if owner is None:
            ownerless.add(trial.number)
        elif isinstance(owner, dict) and owner.get("host") == host and not _alive(owner["pid"]):
            fail(trial.number)
    if not ownerless:
        return
    time.sleep(OWNERLESS_GRACE_SECONDS)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in ownerless and trial.user_attrs.get("owner") is None:
            fail(trial.number)


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """The trial's values on the axes that have a choice (the others are fixed)."""
    values: dict[str, Any] = {}
    if space.learning_rate_range is not None:
        low, high = space.learning_rate_range
        values["learning_rate"] = trial.suggest_float("learning_rate", low, high, log=True)
    axes = space.grid_values()
    for axis in AXES:
        if axis == "learning_rate" and space.learning_rate_range is not None:
            continue
        if len(axes[axis]) > 1:
            values[axis] = trial.suggest_categorical(axis, list(axes[axis]))
    return values


@dataclass
class RunningTrial:
    """The running state of one trial's attack (what the hook saw)."""

    trial: optuna.Trial
    objective: ObjectiveName
    threshold: float | None
    budget: int
    points: list[tuple[int, float]]
    pruned: bool = False

    def on_eval(self, step: int, harm: float) -> bool:
        """Report the running objective at ``step``; True when the pruner stops the trial."""
        self.points.append((step, harm))
        value = objective_value(
            self.points, objective=self.objective, budget=self.budget, threshold=self.threshold
        )
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.pruned = True
        return self.pruned

