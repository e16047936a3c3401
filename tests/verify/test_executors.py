"""``run_attacks``: order, reuse, threads, a run killed with SIGKILL and resumed, and ray.

The slow tests attack a real tiny GPT-2 (1 layer, 32 dimensions) saved to disk with small
data files, since ``AttackConfig`` is self-contained (paths, not objects): the same
configuration runs in this process, in a subprocess and in ray workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from empirical.datasets.benchmark import TOKENIZER_ALPHABET, BenchmarkSizes, embedded_benchmark
from empirical.datasets.data import save_examples
from empirical.engine.attack import AttackConfig
from empirical.measurement.trajectory import Environment, Evaluation, Timing, Trajectory
from empirical.models.model import build_char_tokenizer, save_model, tiny_gpt2
from empirical.verify.executors import run_attacks, warm_up_workers
from empirical.verify.store import ResultStore, canonical_config
from theory.errors import HftaInputError

SIZES = BenchmarkSizes(
    pretrain=1, align=1, defence=1, attack=16, evaluation=6, reference=4,
    trainability_train=1, trainability_eval=1,
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random GPT-2 and small attack / evaluation / reference files, on disk."""
    directory = tmp_path_factory.mktemp("inputs")
    tokenizer = build_char_tokenizer(TOKENIZER_ALPHABET)
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, n_positions=32, seed=0)
    save_model(model, tokenizer, directory / "model")
    benchmark = embedded_benchmark(seed=0, sizes=SIZES)
    paths = {"model": directory / "model"}
    for field, split in (("data", "attack"), ("evaluation_data", "evaluation"),
                         ("reference_data", "reference")):
        paths[field] = directory / f"{split}.jsonl"
        save_examples(getattr(benchmark, split), paths[field])
    return paths


def _configs(inputs: dict[str, Path], budget: int, seeds: Sequence[int]) -> list[AttackConfig]:
    return [
        AttackConfig.model_validate({**inputs, "budget_steps": budget, "eval_every": budget // 2,
                                     "batch_size": 8, "learning_rate": rate, "seed": seed})
        for seed in seeds
        for rate in (1e-3, 3e-3)
    ]


def _same(a: Sequence[Trajectory], b: Sequence[Trajectory]) -> bool:
    """The check: the same trajectories, field for field, bit for bit (timing aside)."""
    return len(a) == len(b) and all(
        x.comparable() == y.comparable() for x, y in zip(a, b, strict=True)
    )


def _stand_in(config: AttackConfig) -> Trajectory:
    """A cheap deterministic stand-in for ``run_attack`` (module level: ray could ship it)."""
    n = config.budget_steps
    return Trajectory(
        source="attack",
        config=config.model_dump(mode="json"),
        budget_steps=n,
        trainable_parameters=1,
        train_loss=[float(config.seed)] * n,
        learning_rate=[config.learning_rate] * n,
        grad_norm=[1.0] * n,
        update_norm=[0.1] * n,
        distance_from_start=[0.0] * (n + 1),
        evaluations=[Evaluation(step=0, harm=0.0), Evaluation(step=n, harm=config.seed / 10)],
        timing=Timing(wall_seconds=0.0, train_seconds=0.0, eval_seconds=0.0),
        environment=Environment(python="3", platform="test", device="cpu", dtype="float32",
                                threads=torch.get_num_threads()),
    )


def _stand_in_configs(tmp_path: Path, seeds: Sequence[int]) -> list[AttackConfig]:
    model = tmp_path / "model.bin"
    model.write_bytes(b"stand-in")
    return [AttackConfig(model=model, budget_steps=4, eval_every=2, seed=s) for s in seeds]


# ---------------------------------------------------------------------- fast
def test_results_in_order_with_the_requested_threads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = _stand_in_configs(tmp_path, [3, 1, 2, 1])
    before = torch.get_num_threads()
    results = run_attacks(configs, store=ResultStore(tmp_path / "s"), attack=_stand_in,
                          threads=2, progress=True)
    assert torch.get_num_threads() == before
    assert [t.config["seed"] for t in results] == [3, 1, 2, 1]
    assert {t.environment.threads for t in results} == {2}
    assert results[1] == results[3]
    assert "attacks" in capsys.readouterr().err


def test_bad_arguments_are_input_errors(tmp_path: Path) -> None:
    configs = _stand_in_configs(tmp_path, [0])
    store = ResultStore(tmp_path / "s")
    for options, message in (
        ({"executor": "dask"}, "executor must be"),
        ({"ray_address": "ray://x:1"}, "ray executor only"),
        ({"threads": 0}, "threads must be"),
    ):
        with pytest.raises(HftaInputError, match=message):
            run_attacks(configs, store=store, attack=_stand_in, progress=False,
                        **options)  # type: ignore[arg-type]
    assert store.entries() == []


@pytest.mark.negative_control
def test_a_store_that_confuses_seeds_is_caught(tmp_path: Path) -> None:
    """A deliberately wrong store key (the seed left out) hands one seed's attack to
    another; the check used for resumed and ray runs must catch it."""

    class SeedlessStore(ResultStore):
        def key(self, config: AttackConfig) -> str:
            return super().key(config.model_copy(update={"seed": 0}))

    configs = _stand_in_configs(tmp_path, [0, 1])
    right = run_attacks(configs, store=ResultStore(tmp_path / "a"), attack=_stand_in,
                        progress=False)
    wrong_store = SeedlessStore(tmp_path / "b")
    wrong_store.put(configs[0], _stand_in(configs[0]))
    wrong = run_attacks(configs, store=wrong_store, attack=_stand_in, progress=False)
    assert _same(right, right)
    assert not _same(wrong, right)


# ---------------------------------------------------------------------- SIGKILL and resume
RUNNER = """
import sys
from empirical.engine.attack import AttackConfig
from empirical.verify.executors import run_attacks
from empirical.verify.store import ResultStore

lines = open(sys.argv[2], encoding="utf-8").read().splitlines()
run_attacks([AttackConfig.model_validate_json(x) for x in lines],
            store=ResultStore(sys.argv[1]), progress=False)
print("finished")
"""


def _entries(store: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in store.glob("[!.]*.json")}


@pytest.mark.slow
def test_a_run_killed_mid_way_resumes_to_the_same_trajectories(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    configs = _configs(inputs, budget=60, seeds=(0, 1, 2))
    listing = tmp_path / "configs.jsonl"
    listing.write_text("\n".join(c.model_dump_json() for c in configs) + "\n")
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    store = tmp_path / "store"
    command = [sys.executable, str(script), str(store), str(listing)]

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_entries(store)) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = _entries(store)
    assert 2 <= len(finished) < len(configs), "the kill must land mid-way"
    survivor = ResultStore(store)
    assert len(survivor.entries()) == len(finished) and not survivor.discarded

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = _entries(store)
    assert len(after) == len(configs)
    assert {name: after[name] for name in finished} == finished, "finished attacks reused"

    calls: list[AttackConfig] = []

    def no_attack(config: AttackConfig) -> Trajectory:
        calls.append(config)
        raise AssertionError("everything should come from the store")

    resumed = run_attacks(configs, store=ResultStore(store), attack=no_attack, progress=False)
    uninterrupted = run_attacks(configs, store=ResultStore(tmp_path / "fresh"), progress=False)
    assert not calls
    assert _same(resumed, uninterrupted)
    assert [t.config["seed"] for t in resumed] == [c.seed for c in configs]


# ---------------------------------------------------------------------- ray
@pytest.mark.slow
def test_ray_gives_the_local_trajectories_bit_for_bit(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    ray = pytest.importorskip("ray")
    configs = _configs(inputs, budget=6, seeds=(0,)) + _configs(inputs, budget=6, seeds=(1,))[:1]
    local = run_attacks(configs, store=ResultStore(tmp_path / "local"), progress=False)
    remote = run_attacks(configs, store=ResultStore(tmp_path / "ray"), executor="ray",
                         progress=False)
    assert not ray.is_initialized(), "the local ray instance is shut down afterwards"
    assert _same(local, remote)
    assert {t.environment.threads for t in remote} == {1}
    assert [t.config for t in remote] == [
        {**canonical_config(c).model_dump(mode="json"), "resolved": t.config["resolved"]}
        for c, t in zip(configs, remote, strict=True)
    ]
    # everything is in the store now: no ray session is needed to read it back
    again = run_attacks(configs, store=ResultStore(tmp_path / "ray"), executor="ray",
                        progress=False)
    assert _same(again, remote) and not ray.is_initialized()


# ---------------------------------------------------------------------- worker processes
@pytest.mark.slow
def test_worker_processes_give_the_local_trajectories_bit_for_bit(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    """Two spawned worker processes attack a real tiny GPT-2: every trajectory equals the
    in-process one field for field, each is stored as it finishes, and a rerun reads them
    (the workers forked from a forkserver started early, as the verifier starts it)."""
    configs = _configs(inputs, budget=6, seeds=(0, 1))
    warm_up_workers("local", 2)
    local = run_attacks(configs, store=ResultStore(tmp_path / "local"), progress=False)
    store = ResultStore(tmp_path / "workers")
    workers = run_attacks(configs, store=store, workers=2, progress=False)
    assert _same(local, workers)
    assert {t.environment.threads for t in workers} == {1}
    assert all(store.get(c) is not None for c in configs)
    assert _same(run_attacks(configs, store=store, workers=2, progress=False), local)


def test_bad_worker_counts_are_input_errors(tmp_path: Path) -> None:
    configs = _stand_in_configs(tmp_path, seeds=(0, 1))
    for workers in (0, -1, True, 1.5):
        with pytest.raises(HftaInputError, match="workers must be"):
            run_attacks(configs, store=ResultStore(tmp_path / "s"), workers=workers,  # type: ignore[arg-type]
                        attack=_stand_in, progress=False)
