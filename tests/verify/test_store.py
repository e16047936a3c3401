"""The result store: keys, atomic writes, corrupt entries recomputed, finished attacks reused.

Trajectories here are synthetic (built directly, no training), so these tests are fast; the
real attacks, the SIGKILL resume and ray are in ``test_executors.py``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from empirical.engine.attack import AttackConfig
from empirical.measurement.trajectory import Environment, Evaluation, Timing, Trajectory
from empirical.verify.executors import run_attacks
from empirical.verify.store import (
    STALE_TEMPORARY_SECONDS,
    ResultStore,
    canonical_config,
    canonical_json,
)
from theory.errors import HftaInputError, HftaRunError


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A stand-in model file (the key fingerprints it; nothing here loads it)."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights v1")
    return path


def synthetic_trajectory(config: AttackConfig, steps: int | None = None) -> Trajectory:
    """A valid trajectory of ``config`` with ``steps`` steps (default: the whole budget);
    harm rises with the learning rate and the step, so different configs differ."""
    n = config.budget_steps if steps is None else steps
    evaluations = [
        Evaluation(step=s, harm=min(1.0, config.learning_rate * 100 * s / config.budget_steps),
                   harmful_loss=1.0 / (1 + s + config.seed))
        for s in range(n + 1)
        if s % config.eval_every == 0 or s == n
    ]
    return Trajectory(
        source="attack",
        config=canonical_config(config).model_dump(mode="json"),
        budget_steps=config.budget_steps,
        trainable_parameters=10,
        train_loss=[1.0 / (1 + s) for s in range(n)],
        learning_rate=[config.learning_rate] * n,
        grad_norm=[0.5] * n,
        update_norm=[0.01] * n,
        distance_from_start=[0.01 * s for s in range(n + 1)],
        evaluations=evaluations,
        timing=Timing(wall_seconds=0.0, train_seconds=0.0, eval_seconds=0.0),
        environment=Environment(python="3", platform="test", device="cpu", dtype="float32"),
    )


def _config(model: Path, **fields: Any) -> AttackConfig:
    return AttackConfig(model=model, budget_steps=8, eval_every=4, **fields)


# ---------------------------------------------------------------------- keys
def test_key_is_sha256_hex_and_independent_of_the_working_directory(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ResultStore(tmp_path / "store")
    absolute = _config(model_file)
    monkeypatch.chdir(tmp_path)
    relative = _config(Path("model.safetensors"))
    key = store.key(absolute)
    assert len(key) == 64 and int(key, 16) >= 0
    assert store.key(relative) == key == store.key(absolute.model_copy())


def _keys_separate(key: Callable[[AttackConfig], str], configs: list[AttackConfig]) -> bool:
    """The check: two configurations share a key exactly when they are the same attack."""
    for a in configs:
        for b in configs:
            if (key(a) == key(b)) != (canonical_config(a) == canonical_config(b)):
                return False
    return True


FIELDS = st.fixed_dictionaries({
    "learning_rate": st.sampled_from([1e-4, 3e-4, 1e-3]),
    "seed": st.integers(0, 3),
    "optimizer": st.sampled_from(["sgd", "adam", "adamw"]),
    "schedule": st.sampled_from(["constant", "linear", "cosine"]),
    "batch_size": st.integers(1, 3),
    "method": st.sampled_from(["full", "lora"]),
    "warmup_fraction": st.sampled_from([0.0, 0.1]),
})


@given(st.lists(FIELDS, min_size=2, max_size=4))
def test_key_separates_every_attack(tmp_path_factory: pytest.TempPathFactory,
                                    fields: list[dict[str, Any]]) -> None:
    directory = tmp_path_factory.mktemp("keys")
    model = directory / "m.bin"
    model.write_bytes(b"m")
    store = ResultStore(directory / "store")
    assert _keys_separate(store.key, [_config(model, **f) for f in fields])


@pytest.mark.negative_control
def test_a_key_that_ignores_the_seed_is_caught(tmp_path: Path, model_file: Path) -> None:
    """A deliberately wrong key (the config without its seed) must fail the same check."""

    def seedless(config: AttackConfig) -> str:
        record = canonical_config(config).model_dump(mode="json")
        record.pop("seed")
        return canonical_json(record)

    configs = [_config(model_file, seed=0), _config(model_file, seed=1)]
    assert _keys_separate(ResultStore(tmp_path / "s").key, configs)
    assert not _keys_separate(seedless, configs)


def test_key_follows_the_content_of_the_files_it_names(tmp_path: Path) -> None:
    """A model replaced at the same path is another attack (a defence retrained in place)."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"v1")
    store = ResultStore(tmp_path / "store")
    config = _config(model_dir)
    before = store.key(config)
    time.sleep(0.01)
    (model_dir / "model.safetensors").write_bytes(b"v2")
    assert store.key(config) != before
    with pytest.raises(HftaInputError, match="no such file"):
        store.key(_config(tmp_path / "missing"))


# ---------------------------------------------------------------------- put and get
def test_put_get_contains_and_entries(tmp_path: Path, model_file: Path) -> None:
    store = ResultStore(tmp_path / "store")
    configs = [_config(model_file, seed=s) for s in range(3)]
    assert store.get(configs[0]) is None and configs[0] not in store and len(store) == 0
    for config in configs[:2]:
        store.put(config, synthetic_trajectory(config))
    assert store.get(configs[0]) == synthetic_trajectory(configs[0])
    assert configs[1] in store and configs[2] not in store and "x" not in store
    entries = store.entries()
    assert [e.key for e in entries] == sorted(store.key(c) for c in configs[:2])
    assert {e.config for e in entries} == {canonical_config(c) for c in configs[:2]}
    reopened = ResultStore(tmp_path / "store")
    assert reopened.get(configs[1]) == synthetic_trajectory(configs[1])


def test_put_refuses_foreign_and_unfinished_trajectories(tmp_path: Path, model_file: Path) -> None:
    store = ResultStore(tmp_path / "store")
    config = _config(model_file)
    with pytest.raises(HftaRunError, match="another attack configuration"):
        store.put(config, synthetic_trajectory(_config(model_file, seed=5)))
    with pytest.raises(HftaRunError, match="stopped at step 4 of 8"):
        store.put(config, synthetic_trajectory(config, steps=4))
    assert store.entries() == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(HftaInputError, match="not a directory"):
        ResultStore(tmp_path / "file")


# ---------------------------------------------------------------------- atomicity
class _Crash(BaseException):
    """Stands for the process dying in the middle of a write."""


class _HalfWriter:
    """A file handle that writes half of what it is given, then the process 'dies'."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def __enter__(self) -> _HalfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, text: str) -> int:
        self.handle.write(text[: len(text) // 2])
        self.handle.flush()
        raise _Crash


def _visible_state(path: Path, old: Trajectory | None, new: Trajectory) -> str:
    """What a reader of ``path`` sees after an interrupted write: the check of atomicity."""
    if not path.exists():
        return "absent"
    try:
        trajectory = Trajectory.model_validate(json.loads(path.read_text())["trajectory"])
    except (ValueError, KeyError):
        return "partial"
    return "old" if trajectory == old else "new" if trajectory == new else "other"


def test_a_write_interrupted_half_way_leaves_the_old_entry(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ResultStore(tmp_path / "store")
    config = _config(model_file)
    old = synthetic_trajectory(config)
    store.put(config, old)
    path = store.path(config)
    other = _config(model_file, seed=9)
    monkeypatch.setattr(os, "fdopen",
                        lambda fd, *a, **k: _HalfWriter(open(fd, *a, **k)))  # noqa: SIM115
    with pytest.raises(_Crash):
        store.put(config, old)
    with pytest.raises(_Crash):
        store.put(other, synthetic_trajectory(other))
    monkeypatch.undo()
    assert _visible_state(path, old, old) == "old"
    assert _visible_state(store.path(other), None, synthetic_trajectory(other)) == "absent"
    assert store.get(config) == old and store.get(other) is None and not store.discarded


@pytest.mark.negative_control
def test_a_direct_write_interrupted_half_way_is_caught(tmp_path: Path, model_file: Path) -> None:
    """A deliberately non-atomic writer (straight into the entry's file) fails the check."""
    store = ResultStore(tmp_path / "store")
    config = _config(model_file)
    old = synthetic_trajectory(config)
    store.put(config, old)
    path = store.path(config)
    text = path.read_text()
    with pytest.raises(_Crash), _HalfWriter(path.open("w")) as handle:
        handle.write(text)
    assert _visible_state(path, old, old) == "partial"


def test_a_killed_writers_temporary_file_is_never_an_entry(
    tmp_path: Path, model_file: Path
) -> None:
    """SIGKILL during a write leaves the hidden temporary file; it is ignored, and removed
    once it is old enough not to belong to a live writer."""
    store = ResultStore(tmp_path / "store")
    config = _config(model_file)
    store.put(config, synthetic_trajectory(config))
    leftover = tmp_path / "store" / f".{store.key(config)}.abc.tmp"
    leftover.write_text(store.path(config).read_text()[:100])
    assert [e.key for e in store.entries()] == [store.key(config)]
    ResultStore(tmp_path / "store")
    assert leftover.exists()
    past = time.time() - STALE_TEMPORARY_SECONDS - 10
    os.utime(leftover, (past, past))
    ResultStore(tmp_path / "store")
    assert not leftover.exists()


# ---------------------------------------------------------------------- corrupt entries
class _Counting:
    """A stand-in for ``run_attack`` that counts its calls."""

    def __init__(self) -> None:
        self.calls: list[AttackConfig] = []

    def __call__(self, config: AttackConfig) -> Trajectory:
        self.calls.append(config)
        return synthetic_trajectory(config)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda t: t[: len(t) // 2], id="truncated"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: t.replace('"harm":0.0', '"harm":0.5', 1), id="edited-trajectory"),
        pytest.param(lambda t: t.replace('"seed":0', '"seed":1', 1), id="edited-config"),
        pytest.param(lambda t: "\xff\xfe", id="not-json"),
    ],
)
def test_a_corrupt_entry_is_removed_and_recomputed(
    tmp_path: Path, model_file: Path, damage: Callable[[str], str]
) -> None:
    store = ResultStore(tmp_path / "store")
    configs = [_config(model_file, seed=s) for s in range(2)]
    attack = _Counting()
    first = run_attacks(configs, store=store, attack=attack, progress=False)
    path = store.path(configs[0])
    text = path.read_text()
    damaged = damage(text)
    assert damaged != text
    path.write_text(damaged)
    fresh = ResultStore(tmp_path / "store")
    again = run_attacks(configs, store=fresh, attack=attack, progress=False)
    assert fresh.discarded == [path]
    assert [canonical_config(c) for c in attack.calls] == [
        canonical_config(c) for c in (*configs, configs[0])
    ]
    assert again == first and store.get(configs[0]) == first[0]


def test_finished_attacks_are_reused_not_rerun(tmp_path: Path, model_file: Path) -> None:
    store = ResultStore(tmp_path / "store")
    configs = [_config(model_file, seed=s) for s in (0, 1, 0, 2)]
    attack = _Counting()
    first = run_attacks(configs[:2], store=store, attack=attack, progress=False)
    assert len(attack.calls) == 2
    everything = run_attacks(configs, store=store, attack=attack, progress=False)
    assert len(attack.calls) == 3, "only the new attack (seed 2) runs; seed 0 twice runs once"
    assert everything[:2] == first and everything[2] == first[0]
    assert [t.config["seed"] for t in everything] == [0, 1, 0, 2]
