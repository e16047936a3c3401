"""What makes a cold ``hfta verify`` faster without changing its verdict (issue 16, item 6).

* Harm radii by Lawson & Hanson's least-distance program (``head_radii._least_distance``):
  the same radius as the interior-point QP, never above it (a dual lower bound), and a solve
  whose certificate does not close (a dropped multiplier) is refused and goes to Clarabel.
* G on the segments with the attack's recorded probe-gradient norms at the iterates
  (``constants.recorded_gradient_norms``): the same G, argmax and point count as computing
  every gradient, and a recorded column one ulp off is not used.
* Attacks ahead (``executors.AttacksAhead``): the grid started in a background worker while
  this process works gives the trajectories of one attack after another, bit for bit (a real
  tiny GPT-2), each stored; a worker's error surfaces when its attack is asked for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from empirical.certify.capture import IterateCapture, _probe_batch
from empirical.certify.constants import recorded_gradient_norms
from empirical.engine.attack import AttackConfig, attack
from empirical.measurement import head_radii
from empirical.measurement.estimators import gradient_bound, gradient_bound_along_path
from empirical.measurement.head_radii import HeadFeatures, radii_from_features
from empirical.measurement.hvp import LossLandscape, model_landscape
from empirical.measurement.trajectory import Trajectory
from empirical.models.model import load_model
from empirical.verify import executors
from empirical.verify.executors import AttacksAhead, run_attacks, spare_core
from empirical.verify.store import ResultStore
from tests.verify.test_executors import (  # noqa: F401 - ``inputs`` is a fixture
    _configs,
    _same,
    _stand_in,
    _stand_in_configs,
    inputs,
)
from theory.errors import HftaInputError


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------- harm radii
def _features(seed: int, examples: int = 6) -> HeadFeatures:
    rng = np.random.default_rng(seed)
    vocabulary, d, k = 7, 5, 3
    return HeadFeatures(
        features=tuple(rng.normal(size=(k, d)) for _ in range(examples)),
        targets=tuple(rng.integers(0, vocabulary, size=k) for _ in range(examples)),
        countable=(True,) * examples,
        head=rng.normal(size=(vocabulary, d)),
        bias=rng.normal(size=vocabulary) if seed % 2 else None,
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_least_distance_is_the_interior_point_radius_and_never_above(seed: int) -> None:
    features = _features(seed)
    for index in range(len(features.features)):
        block = head_radii._block(features, index)
        exact = head_radii._least_distance(block)
        (clarabel,) = head_radii._solve([block]) or [math.nan]
        assert exact is not None
        shrunk = head_radii._shrunk(exact)
        assert shrunk == pytest.approx(clarabel, rel=1e-6)
        assert shrunk <= exact  # the shrink only lowers a lower bound


def test_a_certificate_that_does_not_close_goes_to_the_interior_point_solver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Negative control: with one multiplier of the active set dropped, −bᵀu/‖Aᵀu‖ is still a
    lower bound but no longer the program's value: the gap check refuses it and the radius
    comes from Clarabel, equal to the exact one."""
    from scipy import optimize

    features = _features(0)
    exact = radii_from_features(features)
    real = optimize.nnls

    def dropped(*args: Any, **kwargs: Any) -> tuple[np.ndarray, float]:
        u, norm = real(*args, **kwargs)
        u = u.copy()
        u[int(np.argmax(u))] = 0.0
        return u, norm

    monkeypatch.setattr(optimize, "nnls", dropped)
    block = head_radii._block(features, 0)
    assert head_radii._least_distance(block) is None
    again = radii_from_features(features)
    assert again == pytest.approx(exact, rel=1e-6)


# ---------------------------------------------------------------------- G on the segments
CONFIG = AttackConfig(probe=True, budget_steps=8, learning_rate=1e-3, probe_size=8)


@pytest.fixture(scope="module")
def path() -> tuple[Trajectory, LossLandscape, list[torch.Tensor]]:
    model, tokenizer = load_model(None)
    capture = IterateCapture()
    outcome = attack(CONFIG, model=model, tokenizer=tokenizer, on_iterate=capture)
    batch = _probe_batch(CONFIG, tokenizer, outcome.model, None, None, None)
    landscape = model_landscape(outcome.model, batch, trainable_only=True)
    return outcome.trajectory, landscape, capture.iterates(outcome.trajectory)


def test_recorded_norms_give_the_g_of_every_gradient(
    path: tuple[Trajectory, LossLandscape, list[torch.Tensor]],
) -> None:
    trajectory, landscape, iterates = path
    known = recorded_gradient_norms(trajectory, landscape, iterates)
    assert sorted(known) == list(range(len(iterates)))
    computed = gradient_bound_along_path(landscape, iterates, 2)
    reused = gradient_bound_along_path(landscape, iterates, 2, known=known)
    assert reused.value == computed.value
    assert reused.points == computed.points == 2 * (len(iterates) - 1) + 1
    assert reused.details["argmax_point"] == computed.details["argmax_point"]
    assert reused.details["gradient_norms"] == computed.details["gradient_norms"]
    assert reused.gradients == computed.gradients - len(iterates)


def test_a_recorded_column_one_ulp_off_is_not_used(
    path: tuple[Trajectory, LossLandscape, list[torch.Tensor]],
) -> None:
    """Negative control: the bit-for-bit check at the ends refuses a column that is not the
    landscape's; and a wrong known norm would change G (the known norms are really used)."""
    trajectory, landscape, iterates = path
    norms = list(trajectory.probe_grad_norm or [])
    first = norms[0]
    assert first is not None
    norms[0] = math.nextafter(first, math.inf)
    shifted = trajectory.model_copy(update={"probe_grad_norm": norms})
    assert recorded_gradient_norms(shifted, landscape, iterates) == {}
    computed = gradient_bound(landscape, iterates)
    wrong = gradient_bound(landscape, iterates, known={0: 10 * computed.value})
    assert wrong.value == 10 * computed.value
    with pytest.raises(HftaInputError, match="known gradient norm"):
        gradient_bound(landscape, iterates, known={len(iterates): 1.0})


# ---------------------------------------------------------------------- attacks ahead
def test_attacks_ahead_refuse_another_store(tmp_path: Path) -> None:
    ahead = AttacksAhead(ResultStore(tmp_path / "a"), attack=_stand_in)
    configs = _stand_in_configs(tmp_path, [0])
    with pytest.raises(HftaInputError, match="another result store"):
        ahead.run_attacks(configs, store=ResultStore(tmp_path / "b"), progress=False)
    assert isinstance(spare_core(), bool)


def test_the_worker_is_a_fork_only_when_torch_runs_on_one_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plain fork copies no thread pool only when this process is its only thread and runs
    torch on one intra-op thread (negative controls: two intra-op threads, or another thread
    alive, as in a long pytest session, give the forkserver or spawn)."""
    import threading

    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert executors._ahead_context().get_start_method() == "fork"
    torch.set_num_threads(2)
    try:
        assert executors._ahead_context().get_start_method() in ("forkserver", "spawn")
    finally:
        torch.set_num_threads(1)
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert executors._ahead_context().get_start_method() in ("forkserver", "spawn")


@pytest.mark.slow
@pytest.mark.parametrize("start", ["fork", "forkserver"])
def test_attacks_ahead_give_the_sequential_trajectories_bit_for_bit(
    tmp_path: Path,
    inputs: dict[str, Path],  # noqa: F811 - the fixture of test_executors
    start: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four real attacks started in the background worker (a fork of this process, or the
    forkserver's) and asked for at once: the worker keeps the ones it began, this process
    runs the rest, and every trajectory equals the one of one attack after another in this
    process; all are stored, nothing is left pending."""
    if start == "forkserver":
        monkeypatch.setattr(executors, "_ahead_context", executors._worker_context)
    configs = _configs(inputs, budget=6, seeds=(0, 1))
    local = run_attacks(configs, store=ResultStore(tmp_path / "local"), progress=False)
    store = ResultStore(tmp_path / "ahead")
    ahead = AttacksAhead(store)
    assert ahead.start(configs) == len(configs)
    assert ahead.start(configs) == 0  # submitted already
    found = ahead.run_attacks(configs, store=store, progress=False)
    assert _same(local, found)
    assert ahead.pending == 0
    assert all(store.get(c) is not None for c in configs)
    assert ahead.start(configs) == 0  # stored now


def _failing(config: AttackConfig) -> Trajectory:
    """A stand-in attack that refuses its input (module level: the worker imports it)."""
    raise HftaInputError(f"bad input in the attack of seed {config.seed}")


@pytest.mark.slow
def test_a_workers_error_surfaces_when_its_attack_is_asked_for(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "s")
    ahead = AttacksAhead(store, attack=_failing)
    configs = _stand_in_configs(tmp_path, [7])
    assert ahead.start(configs) == 1
    with pytest.raises(HftaInputError, match="seed 7"):
        ahead.run_attacks(configs, store=store, progress=False, attack=_failing)
    ahead.close()
    assert store.get(configs[0]) is None


@pytest.mark.slow
def test_a_verification_with_attacks_ahead_gives_the_same_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tiny real claim verified one attack after another and with the grid ahead in the
    background worker (a spare core forced): the same conditions and the same trajectories,
    bit for bit; the background worker was used; and no attack on M* was handed to it before
    the predictions were stated (submitting the grid with the trainability runs, before the
    predictions, fails the first assertion: checked by hand on that variant of ``verify``)."""
    from empirical.verify import stages
    from empirical.verify.claim import parse_claim
    from empirical.verify.workspace import VerifyOptions, Workspace
    from tests.verify._claims import tiny_claim

    claim = parse_claim(tiny_claim("ahead", budget_steps=6, attack_examples=20,
                                   evaluation_examples=10))
    sequential = stages.verify(stages.prepare(claim), Workspace(tmp_path / "a.cache"),
                               options=VerifyOptions(progress=False, overlap=False))
    monkeypatch.setattr(executors, "spare_core", lambda: True)
    events: list[tuple[str, list[AttackConfig]]] = []
    start = AttacksAhead.start

    def counted(self: AttacksAhead, configs: Any) -> int:
        events.append(("start", list(configs)))
        return start(self, configs)

    def predict(*args: Any) -> Any:
        events.append(("predict", []))
        return stages.Services().predict(*args)

    monkeypatch.setattr(AttacksAhead, "start", counted)
    ahead = stages.verify(stages.prepare(claim), Workspace(tmp_path / "b.cache"),
                          options=VerifyOptions(progress=False),
                          services=stages.Services(predict=predict))
    stated = [kind for kind, _ in events].index("predict")
    grid = {r.config.model_dump_json() for r in ahead.runs}
    before = [c for _, configs in events[:stated] for c in configs]
    after = [c for _, configs in events[stated:] for c in configs]
    assert not grid & {c.model_dump_json() for c in before}  # no attack on M* before predicting
    assert len(grid & {c.model_dump_json() for c in after}) == 2  # the grid went to the worker
    assert {k: v.model_dump() for k, v in ahead.conditions.items()} == {
        k: v.model_dump() for k, v in sequential.conditions.items()
    }
    assert [_columns(r.trajectory) for r in ahead.runs] == [
        _columns(r.trajectory) for r in sequential.runs
    ]


def _columns(trajectory: Trajectory) -> dict[str, Any]:
    """What a run measured, bit for bit: its comparable fields without the configuration
    (whose data paths name the work directory)."""
    found = dict(trajectory.comparable())
    found.pop("config")
    return found


_POOL_SCRIPT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from empirical.verify import executors
initializer = executors._exit_with_parent if sys.argv[1] == "watch" else None
pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                           initializer=initializer)
print(pool.submit(os.getpid).result(), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")


@pytest.mark.parametrize("watch", [True, False], ids=["watched", "control"])
def test_a_forked_worker_exits_when_its_parent_is_killed(watch: bool) -> None:
    """A background worker forked by a verifier that is then killed (SIGKILL) exits within a
    few parent checks (``_exit_with_parent``); negative control: the same pool without it
    leaves its worker running (an orphan holding the verifier's memory)."""
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen(
        [sys.executable, "-c", _POOL_SCRIPT, "watch" if watch else "plain"],
        stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    worker = int(process.stdout.readline())
    assert _alive(worker)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10 * executors.PARENT_CHECK_SECONDS
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert _alive(worker) is not watch
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
