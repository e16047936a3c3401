"""Trials a killed search left running are failed when the search resumes
(``search_study.fail_abandoned_trials``): those whose recorded owner process is gone, and
those killed between ``study.ask()`` and recording their owner; a live process's trial, and
one whose owner is recorded within the grace period, stay running."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import optuna
from optuna.trial import TrialState

from empirical.verify.search_study import (
    OWNERLESS_GRACE_SECONDS,
    fail_abandoned_trials,
    open_storage,
    owner,
    quiet_optuna,
)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_dead_and_ownerless_trials_fail_live_ones_keep_running(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "study.db")
    with quiet_optuna():
        study = optuna.create_study(study_name="s", storage=storage)
    live = study.ask()
    live.set_user_attr("owner", owner())
    dead = study.ask()
    dead.set_user_attr("owner", {**owner(), "pid": _dead_pid()})
    study.ask()  # killed before recording its owner
    late = study.ask()  # its process records the owner during the grace period (control)
    timer = threading.Timer(OWNERLESS_GRACE_SECONDS / 4, late.set_user_attr, ("owner", owner()))
    timer.start()
    fail_abandoned_trials(study, storage)
    timer.join()
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.RUNNING, TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING]
