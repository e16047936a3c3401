"""The worst-case search: the space and its grid, the objectives, TPE with pruning against
the grid, a resumable study (extended and killed), and a tiny real search.

Most tests use a synthetic attack: a deterministic harm curve f_c(s) = 1 − exp(−r(c)·s)
whose rate r(c) depends on the learning rate (peaked at 1e-3), the optimizer, the schedule
and the seed, and which honours the stop hook, so pruning really saves steps. Its grid's
worst case is known exactly.
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from empirical.engine.attack import AttackConfig
from empirical.measurement.trajectory import Environment, Evaluation, Timing, Trajectory
from empirical.verify.search import (
    SearchAttack,
    SearchResult,
    SearchSpace,
    grid,
    harm_points,
    objective_value,
    post_hoc,
    search_worst_case,
)
from empirical.verify.store import ResultStore, canonical_config
from theory.errors import HftaInputError
from theory.framework import ThreatModel

# ---------------------------------------------------------------------- the synthetic attack
OPTIMIZER_FACTOR = {"adamw": 1.0, "adam": 0.9, "sgd": 0.3}
SCHEDULE_FACTOR = {"constant": 1.0, "cosine": 0.8, "linear": 0.7}
SEED_FACTOR = {0: 1.0, 1: 0.97, 2: 1.02}


def synthetic_rate(config: AttackConfig) -> float:
    peak = math.exp(-((math.log10(config.learning_rate) + 3.0) ** 2))
    return (0.03 * peak * OPTIMIZER_FACTOR[config.optimizer]
            * SCHEDULE_FACTOR[config.schedule] * SEED_FACTOR[config.seed])


def synthetic_harm(config: AttackConfig, step: int) -> float:
    return 1.0 - math.exp(-synthetic_rate(config) * step)


def synthetic_trajectory(config: AttackConfig, steps: int) -> Trajectory:
    evaluations = [
        Evaluation(step=s, harm=synthetic_harm(config, s))
        for s in range(steps + 1)
        if s % config.eval_every == 0 or s == config.budget_steps
    ]
    return Trajectory(
        source="attack",
        config=canonical_config(config).model_dump(mode="json"),
        budget_steps=config.budget_steps,
        trainable_parameters=1,
        train_loss=[1.0] * steps,
        learning_rate=[config.learning_rate] * steps,
        grad_norm=[1.0] * steps,
        update_norm=[0.1] * steps,
        distance_from_start=[0.0] * (steps + 1),
        evaluations=evaluations,
        timing=Timing(wall_seconds=0.0, train_seconds=0.0, eval_seconds=0.0),
        environment=Environment(python="3", platform="test", device="cpu", dtype="float32"),
    )


def stoppable_run(config: AttackConfig, on_eval: Any) -> Trajectory:
    """The synthetic attack, evaluated every ``eval_every`` steps, stopping when told."""
    for step in range(config.budget_steps + 1):
        if step % config.eval_every == 0 or step == config.budget_steps:
            if on_eval(step, synthetic_harm(config, step)) and step < config.budget_steps:
                return synthetic_trajectory(config, step)
            if SLOW_TRIAL.get("seconds"):
                time.sleep(SLOW_TRIAL["seconds"])
    return synthetic_trajectory(config, config.budget_steps)


SLOW_TRIAL: dict[str, float] = {}
SYNTHETIC = SearchAttack(run=stoppable_run, stops_early=True)


def synthetic_space(model: Path) -> SearchSpace:
    """7 × 3 × 3 × 3 = 189 attacks of 100 steps (18 900 steps for the grid)."""
    return SearchSpace(
        base=AttackConfig(model=model, budget_steps=100, eval_every=20),
        learning_rates=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
        optimizers=("adamw", "adam", "sgd"),
        schedules=("constant", "cosine", "linear"),
        seeds=(0, 1, 2),
    )


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(b"synthetic")
    return path


def _search(space: SearchSpace, directory: Path, **options: Any) -> SearchResult:
    settings: dict[str, Any] = {"n_trials": 24, "seed": 0, "attack": SYNTHETIC,
                                "progress": False}
    settings.update(options)
    return search_worst_case(space, store=ResultStore(directory / "store"),
                             storage=directory / "study.db", **settings)


# ---------------------------------------------------------------------- space and grid
def _grid_matches_settings(space: SearchSpace, threat_model: ThreatModel) -> bool:
    """The check: the grid is exactly the threat model's attack settings, one to one."""
    configs = grid(space)
    as_settings = sorted(
        (c.learning_rate, c.optimizer, c.schedule, c.method == "lora", c.batch_size, c.seed,
         c.budget_steps, c.warmup_fraction, c.max_grad_norm)
        for c in configs
    )
    settings = sorted(
        (s.learning_rate, s.optimizer, s.schedule, s.lora, s.batch_size, s.seed,
         s.budget_steps, s.warmup_fraction, s.max_grad_norm)
        for s in threat_model.attack_settings()
    )
    return as_settings == settings and len(set(configs)) == len(configs)


THREAT_MODEL = ThreatModel(
    budget_steps=30, learning_rates=(1e-4, 1e-3), optimizers=("adamw", "sgd"),
    schedules=("cosine", "constant"), lora="both", batch_sizes=(4, 8), seeds=(0, 1),
    max_grad_norm=1.0,
)


def test_the_grid_is_the_threat_models_attack_settings() -> None:
    space = SearchSpace.from_threat_model(THREAT_MODEL, AttackConfig(eval_every=10))
    assert _grid_matches_settings(space, THREAT_MODEL)
    assert len(grid(space)) == 64
    assert all(c.eval_every == 10 and c.budget_steps == 30 for c in grid(space))


@pytest.mark.negative_control
def test_a_grid_that_drops_an_axis_is_caught() -> None:
    """A deliberately incomplete space (one seed instead of the threat model's two)."""
    space = SearchSpace.from_threat_model(THREAT_MODEL).model_copy(update={"seeds": (0,)})
    assert not _grid_matches_settings(space, THREAT_MODEL)


def test_a_learning_rate_range_searches_log_uniformly_and_grids_log_spaced() -> None:
    space = SearchSpace.from_threat_model(THREAT_MODEL, learning_rate_range=[1e-4, 1e-2])
    assert space.learning_rates is None and space.learning_rate_range == (1e-4, 1e-2)
    rates = sorted({c.learning_rate for c in grid(space)})
    assert rates == pytest.approx([1e-4, 1e-3, 1e-2]) and rates[0] == 1e-4 and rates[-1] == 1e-2


def test_invalid_spaces_are_refused() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        SearchSpace()
    with pytest.raises(ValidationError, match="exactly one"):
        SearchSpace(learning_rates=(1e-3,), learning_rate_range=(1e-4, 1e-3))
    with pytest.raises(ValidationError, match="low < high"):
        SearchSpace(learning_rate_range=(1e-3, 1e-4))
    with pytest.raises(ValidationError, match="twice"):
        SearchSpace(learning_rates=(1e-3,), seeds=(0, 0))
    with pytest.raises(HftaInputError, match="learning_rate_range"):
        SearchSpace.from_threat_model(THREAT_MODEL, learning_rate_range=[1e-3])
    space = SearchSpace(learning_rates=(1e-3, 1e-4))
    with pytest.raises(HftaInputError, match="no value for the axis 'learning_rate'"):
        space.config({})
    with pytest.raises(HftaInputError, match="unknown axes"):
        space.config({"learning_rate": 1e-3, "momentum": 0.9})


def test_configs_keep_momentum_for_sgd_and_lora_settings_for_lora_only() -> None:
    base = AttackConfig(optimizer="sgd", momentum=0.9, method="lora")
    space = SearchSpace(base=base, learning_rates=(1e-3,), optimizers=("sgd", "adamw"),
                        methods=("lora", "full"))
    configs = {(c.optimizer, c.method): c for c in grid(space)}
    assert configs["sgd", "lora"].momentum == 0.9 and configs["adamw", "lora"].momentum == 0.0
    assert configs["sgd", "full"].method == "full"


# ---------------------------------------------------------------------- objectives
def _ranks_breaks_first(score: Any, budget: int, phi: float,
                        curves: list[list[tuple[int, float]]]) -> bool:
    """The check: every break outranks every non-break, earlier breaks outrank later ones,
    and among non-breaks more harm ranks higher."""

    def first_break(points: list[tuple[int, float]]) -> int | None:
        return next((s for s, v in points if v > phi), None)

    for a in curves:
        for b in curves:
            sa, sb = score(a), score(b)
            ba, bb = first_break(a), first_break(b)
            if ba is not None and bb is None and not sa > sb:
                return False
            if ba is not None and bb is not None and ba < bb and not sa > sb:
                return False
            if ba is None and bb is None and max(v for _, v in a) > max(v for _, v in b) \
                    and not sa > sb:
                return False
    return True


CURVES = st.lists(
    st.lists(st.floats(0.0, 1.0), min_size=6, max_size=6).map(
        lambda values: [(10 * i, v) for i, v in enumerate(values)]
    ),
    min_size=2, max_size=6,
)


@given(CURVES)
def test_earliest_break_ranks_breaks_first_and_early(curves: list[list[tuple[int, float]]]) -> None:
    def score(points: list[tuple[int, float]]) -> float:
        return objective_value(points, objective="earliest-break", budget=50, threshold=0.5)

    assert _ranks_breaks_first(score, 50, 0.5, curves)
    for points in curves:
        harm = objective_value(points, objective="harm", budget=50)
        assert harm == max(v for _, v in points)


@pytest.mark.negative_control
def test_a_score_that_rewards_late_breaks_is_caught() -> None:
    """A deliberately wrong score (s_b / (T + 1): a later break scores higher)."""

    def late(points: list[tuple[int, float]]) -> float:
        first = next((s for s, v in points if v > 0.5), None)
        return max(v for _, v in points) if first is None else 1.0 + first / 51

    curves = [[(0, 0.0), (10, 0.9)], [(0, 0.0), (10, 0.1), (20, 0.9)], [(0, 0.2)]]
    assert not _ranks_breaks_first(late, 50, 0.5, curves)


def test_objective_inputs_are_checked() -> None:
    with pytest.raises(HftaInputError, match="needs the harm threshold"):
        objective_value([(0, 0.1)], objective="earliest-break", budget=10)
    with pytest.raises(HftaInputError, match="objective must be"):
        objective_value([(0, 0.1)], objective="loss", budget=10)  # type: ignore[arg-type]
    config = AttackConfig(budget_steps=4, eval_every=2)
    silent = synthetic_trajectory(config, 4).model_copy(update={"evaluations": []})
    with pytest.raises(HftaInputError, match="no harm proxy"):
        harm_points(silent)


# ---------------------------------------------------------------------- search vs grid
def _grid_worst(space: SearchSpace) -> tuple[AttackConfig, float]:
    budget = space.base.budget_steps
    worst = max(grid(space), key=lambda c: synthetic_harm(c, budget))
    return canonical_config(worst), synthetic_harm(worst, budget)


def test_pruned_tpe_search_finds_the_grids_worst_case_with_fewer_steps(
    tmp_path: Path, model_file: Path
) -> None:
    space = synthetic_space(model_file)
    worst, harm = _grid_worst(space)
    result = _search(space, tmp_path)
    assert result.best_config == worst and result.best_objective == harm
    assert result.grid_size == 189 and result.grid_steps == 18_900
    assert result.pruning_saves_steps and any(t.stopped_early for t in result.trials)
    assert result.steps_to_best <= result.total_steps_trained < 24 * 100
    assert result.compute_ratio < 0.1
    for trial in result.trials:
        assert trial.steps_trained == (0 if trial.reused else trial.steps_run)
        assert (trial.objective is None) == trial.stopped_early
        if trial.objective is not None:
            assert trial.objective == synthetic_harm(trial.config, 100)


@pytest.mark.negative_control
def test_a_search_with_a_wrong_objective_is_caught(tmp_path: Path, model_file: Path) -> None:
    """A deliberately wrong attack report (harm of the final step replaced by the first
    evaluation's) makes the same search miss the grid's worst case."""

    def first_only(config: AttackConfig, on_eval: Any) -> Trajectory:
        on_eval(0, 0.0)
        return synthetic_trajectory(config, config.budget_steps).model_copy(
            update={"evaluations": [Evaluation(step=0, harm=0.0)]})

    space = synthetic_space(model_file)
    worst, harm = _grid_worst(space)
    result = _search(space, tmp_path, attack=SearchAttack(first_only, stops_early=True))
    assert not (result.best_config == worst and result.best_objective == harm)


def test_post_hoc_attacks_record_pruning_but_train_every_step(
    tmp_path: Path, model_file: Path
) -> None:
    def whole(config: AttackConfig) -> Trajectory:
        return synthetic_trajectory(config, config.budget_steps)

    space = synthetic_space(model_file)
    result = _search(space, tmp_path, n_trials=10, attack=post_hoc(whole), pruner="median",
                     objective="earliest-break", threshold=0.5)
    assert not result.pruning_saves_steps
    assert not any(t.stopped_early for t in result.trials)
    fresh = [t for t in result.trials if not t.reused]
    assert all(t.steps_trained == 100 for t in fresh)
    assert result.total_steps_trained == 100 * len(fresh)
    assert result.best_objective == max(t.objective or 0.0 for t in result.trials)
    assert result.best_objective > 1.0, "some attack breaks phi = 0.5 within the budget"


def test_a_search_after_the_grid_trains_nothing(tmp_path: Path, model_file: Path) -> None:
    """The grid's attacks are in the store: every trial reads its attack back for free."""
    from empirical.verify.executors import run_attacks

    space = synthetic_space(model_file).model_copy(
        update={"learning_rates": (1e-4, 1e-3, 1e-2), "schedules": ("constant",), "seeds": (0,)}
    )
    store = ResultStore(tmp_path / "store")
    run_attacks(grid(space), store=store, progress=False,
                attack=lambda c: synthetic_trajectory(c, c.budget_steps))
    result = search_worst_case(space, store=store, storage=tmp_path / "study.db", n_trials=5,
                               seed=0, attack=SYNTHETIC, progress=False)
    assert all(t.reused and t.steps_trained == 0 for t in result.trials)
    assert result.total_steps_trained == 0 and result.grid_size == 9
    assert result.best_objective == max(t.objective or 0.0 for t in result.trials)


def test_bad_search_arguments_are_input_errors(tmp_path: Path, model_file: Path) -> None:
    space = synthetic_space(model_file)
    (tmp_path / "folder").mkdir()
    (tmp_path / "text.db").write_text("not a database")
    for options, message in (
        ({"n_trials": 0}, "n_trials must be"),
        ({"seed": -1}, "seed must be"),
        ({"pruner": "hyperband"}, "pruner must be"),
        ({"objective": "earliest-break"}, "needs the harm threshold"),
        ({"objective": "earliest-break", "threshold": 1.5}, "threshold_in_proxy_range"),
        ({"storage": tmp_path / "folder"}, "not a file"),
        ({"storage": tmp_path / "text.db"}, "cannot open the study storage"),
    ):
        settings: dict[str, Any] = {"n_trials": 2, "seed": 0, "attack": SYNTHETIC,
                                    "progress": False, "storage": tmp_path / "study.db"}
        settings.update(options)
        with pytest.raises(HftaInputError, match=message):
            search_worst_case(space, store=ResultStore(tmp_path / "store"), **settings)
    assert not (tmp_path / "study.db").exists()


# ---------------------------------------------------------------------- resuming
def _trials(result: SearchResult) -> list[tuple[Any, ...]]:
    return [(t.config, t.objective, t.stopped_early) for t in result.trials]


def test_an_extended_search_equals_an_uninterrupted_one(tmp_path: Path, model_file: Path) -> None:
    space = synthetic_space(model_file)
    first = _search(space, tmp_path / "a", n_trials=6)
    extended = _search(space, tmp_path / "a", n_trials=12)
    straight = _search(space, tmp_path / "b", n_trials=12)
    assert _trials(extended)[:6] == _trials(first)
    assert _trials(extended) == _trials(straight)
    assert extended.study_name == straight.study_name == first.study_name
    again = _search(space, tmp_path / "a", n_trials=12)
    assert _trials(again) == _trials(extended), "nothing to do: no new trial"
    other = _search(space, tmp_path / "a", n_trials=3, seed=1)
    assert other.study_name != first.study_name and len(other.trials) == 3
    assert sqlite3.connect(tmp_path / "a" / "study.db").execute(
        "PRAGMA journal_mode").fetchone() == ("wal",)


KILLED_SEARCH = """
import sys, importlib.util
from pathlib import Path
spec = importlib.util.spec_from_file_location("synthetic_search", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.SLOW_TRIAL["seconds"] = 0.2
module._search(module.synthetic_space(Path(sys.argv[3])), Path(sys.argv[2]), n_trials=12)
"""


def _finished_trials(storage: Path) -> int:
    """Finished trials in the study file, read without writing (optuna would create tables)."""
    connection = sqlite3.connect(f"file:{storage}?mode=ro", uri=True, timeout=5)
    try:
        row = connection.execute(
            "SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')"
        ).fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        connection.close()
    return int(row[0])


@pytest.mark.slow
def test_a_killed_search_resumes_to_the_same_trials(tmp_path: Path, model_file: Path) -> None:
    """SIGKILL in the middle of a trial; the restarted search fails the abandoned trial and
    proposes exactly what an uninterrupted search proposes."""
    import optuna
    from optuna.trial import TrialState

    script = tmp_path / "killed.py"
    script.write_text(KILLED_SEARCH)
    directory = tmp_path / "killed"
    storage = directory / "study.db"
    process = subprocess.Popen(
        [sys.executable, str(script), __file__, str(directory), str(model_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if storage.exists() and _finished_trials(storage) >= 4:
            break
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()[1].decode()[-2000:]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = _finished_trials(storage)
    assert 4 <= done < 12, "the kill must land mid-way"

    space = synthetic_space(model_file)
    resumed = _search(space, directory, n_trials=12)
    straight = _search(space, tmp_path / "straight", n_trials=12)
    assert _trials(resumed) == _trials(straight)
    study = optuna.load_study(study_name=resumed.study_name, storage=f"sqlite:///{storage}")
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states
    assert states.count(TrialState.FAIL) <= 1


# ---------------------------------------------------------------------- a real search
@pytest.mark.slow
def test_a_tiny_real_search_on_the_embedded_model(tmp_path: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    space = SearchSpace(
        base=AttackConfig(budget_steps=20, eval_every=10, batch_size=8),
        learning_rates=(3e-4, 1e-3, 3e-3),
        optimizers=("adamw", "sgd"),
    )
    store = ResultStore(tmp_path / "store")
    result = search_worst_case(space, store=store, storage=tmp_path / "study.db", n_trials=3,
                               seed=0, progress=False)
    assert torch.get_num_threads() == threads
    assert len(result.trials) == 3 and result.pruning_saves_steps
    assert result.grid_steps == 6 * 20
    best = store.get(result.best_config)
    assert best is not None and best.n_steps == 20
    assert result.best_objective == max(v for _, v in harm_points(best))
    assert result.best_objective == max(t.objective or 0.0 for t in result.trials)
    assert result.total_steps_trained == 20 * sum(not t.reused for t in result.trials)


# ---------------------------------------------------------------------- concurrent trials
def synthetic_full_run(config: AttackConfig) -> Trajectory:
    """The synthetic attack run to its end, no hook (module level: worker processes import
    it by name)."""
    return synthetic_trajectory(config, config.budget_steps)


def first_only_full_run(config: AttackConfig) -> Trajectory:
    """A deliberately wrong report: only the first evaluation (harm 0) is kept."""
    return synthetic_trajectory(config, config.budget_steps).model_copy(
        update={"evaluations": [Evaluation(step=0, harm=0.0)]})


CONCURRENT = SearchAttack(run=stoppable_run, stops_early=True, function=synthetic_full_run)


@pytest.mark.slow
def test_concurrent_trials_find_the_sequential_searchs_best_attack(
    tmp_path: Path, model_file: Path
) -> None:
    """Two worker processes, rounds of two trials: the random start-up trials are the
    sequential search's own, and the best attack (hence the trajectory the verdict is judged
    on: the store holds one per attack) is the same."""
    from empirical.verify.search import STARTUP_TRIALS

    space = synthetic_space(model_file)
    worst, harm = _grid_worst(space)
    sequential = _search(space, tmp_path / "sequential")
    concurrent = _search(space, tmp_path / "concurrent", workers=2, attack=CONCURRENT)
    assert concurrent.best_config == sequential.best_config == worst
    assert concurrent.best_objective == sequential.best_objective == harm
    assert _trials(concurrent)[:STARTUP_TRIALS] == _trials(sequential)[:STARTUP_TRIALS]
    assert len(concurrent.trials) == 24 and concurrent.study_name != sequential.study_name
    best_sequential = ResultStore(tmp_path / "sequential" / "store").get(worst)
    best_concurrent = ResultStore(tmp_path / "concurrent" / "store").get(worst)
    assert best_sequential is not None and best_concurrent is not None
    assert best_sequential.comparable() == best_concurrent.comparable()
    for trial in concurrent.trials:  # pruned trials are told as pruned, yet trained whole
        assert (trial.objective is None) == trial.stopped_early
        assert trial.steps_trained == (0 if trial.reused else 100)
    # deterministic for a seed and a worker count, and resumable at a round boundary (rounds
    # start at 0, 2, 4, then 5, 7, 9, ...): 7 trials, then 13
    first = _search(space, tmp_path / "extended", n_trials=7, workers=2, attack=CONCURRENT)
    extended = _search(space, tmp_path / "extended", n_trials=13, workers=2, attack=CONCURRENT)
    assert _trials(first) == _trials(concurrent)[:7]
    assert _trials(extended) == _trials(concurrent)[:13]


@pytest.mark.slow
@pytest.mark.negative_control
def test_a_concurrent_search_with_a_wrong_report_is_caught(
    tmp_path: Path, model_file: Path
) -> None:
    space = synthetic_space(model_file)
    worst, harm = _grid_worst(space)
    wrong = SearchAttack(run=stoppable_run, stops_early=True, function=first_only_full_run)
    result = _search(space, tmp_path, n_trials=8, workers=2, attack=wrong)
    assert not (result.best_config == worst and result.best_objective == harm)


def test_concurrent_search_arguments_are_input_errors(tmp_path: Path, model_file: Path) -> None:
    space = synthetic_space(model_file)
    for options, message in (
        ({"workers": 0}, "workers must be"),
        ({"workers": 2}, "plain function"),
        ({"executor": "slurm", "attack": CONCURRENT}, "executor must be"),
        ({"ray_address": "auto", "attack": CONCURRENT}, "ray executor only"),
    ):
        settings: dict[str, Any] = {"n_trials": 2, "seed": 0, "attack": SYNTHETIC,
                                    "progress": False, "storage": tmp_path / "study.db"}
        settings.update(options)
        with pytest.raises(HftaInputError, match=message):
            search_worst_case(space, store=ResultStore(tmp_path / "store"), **settings)
    assert not (tmp_path / "study.db").exists()


@pytest.mark.slow
def test_concurrent_trials_on_ray_equal_those_on_local_workers(
    tmp_path: Path, model_file: Path
) -> None:
    """The same rounds on ray as on two local worker processes: the same trials, in order."""
    ray = pytest.importorskip("ray")
    # ray workers cannot import this test module by name: ship its functions by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    space = synthetic_space(model_file)
    local = _search(space, tmp_path / "local", n_trials=9, workers=2, attack=CONCURRENT)
    remote = _search(space, tmp_path / "ray", n_trials=9, workers=2, attack=CONCURRENT,
                     executor="ray")
    assert not ray.is_initialized(), "the local ray instance is shut down afterwards"
    assert _trials(remote) == _trials(local)
    assert remote.best_config == local.best_config
