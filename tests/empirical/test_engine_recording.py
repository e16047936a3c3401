"""The recorded update norms and distances against a straightforward recomputation.

The attack loop (``empirical.engine.attack._AttackLoop._measure_update``) and the Trainer
monitor (``empirical.engine.monitor.ImmunizationMonitor._measure``) record ‖θ_{s+1} − θ_s‖ and
‖θ_{s+1} − θ_0‖ without allocating per step: θ flattened into buffers taken in turn, the
differences written into one buffer, the norms written in place. These tests recompute both
from every iterate, captured as fresh tensors, with the plainest code (``flat_parameters``,
a subtraction, ``torch.linalg.vector_norm``) and demand the *same* float32 numbers, and within
float32 rounding of a float64 recomputation; each check has a negative control (iterates
out of order, one recorded value one unit in the last place off) that it must reject.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerFast, Trainer, TrainerCallback, TrainingArguments

from empirical.datasets.benchmark import TOKENIZER_ALPHABET, BenchmarkSizes, embedded_benchmark
from empirical.datasets.data import Example
from empirical.datasets.text import encode
from empirical.engine.attack import AttackConfig, attack, flat_parameters
from empirical.engine.monitor import ImmunizationMonitor
from empirical.measurement.trajectory import Trajectory
from empirical.models.model import build_char_tokenizer, tiny_gpt2

pytestmark = pytest.mark.slow

SIZES = BenchmarkSizes(
    pretrain=1, align=1, defence=1, attack=16, evaluation=6, reference=4,
    trainability_train=1, trainability_eval=1,
)
STEPS = 8


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_char_tokenizer(TOKENIZER_ALPHABET)


@pytest.fixture(scope="module")
def splits() -> tuple[list[Example], list[Example], list[Example]]:
    b = embedded_benchmark(seed=0, sizes=SIZES)
    return b.attack, b.evaluation, b.reference


def _model(tokenizer: PreTrainedTokenizerFast) -> torch.nn.Module:
    return tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, n_positions=32, seed=0)


def _recomputed(iterates: Sequence[torch.Tensor]) -> tuple[list[float], list[float]]:
    """(‖θ_{s+1} − θ_s‖ for every step, ‖θ_s − θ_0‖ for every iterate), float32, fresh tensors."""
    update = [
        float(torch.linalg.vector_norm(later - earlier))
        for earlier, later in itertools.pairwise(iterates)
    ]
    distance = [float(torch.linalg.vector_norm(theta - iterates[0])) for theta in iterates]
    return update, distance


def _mismatches(
    update: Sequence[float | None],
    distance: Sequence[float | None],
    iterates: Sequence[torch.Tensor],
) -> int:
    """How many recorded values differ from the float32 recomputation (exact comparison), or
    from the float64 recomputation by more than float32 rounding (relative 1e-5)."""
    exact_update, exact_distance = _recomputed(iterates)
    wide = [it.double().numpy() for it in iterates]
    wide_update = [float(np.linalg.norm(b - a)) for a, b in itertools.pairwise(wide)]
    wide_distance = [float(np.linalg.norm(theta - wide[0])) for theta in wide]
    recorded = [*update, *distance]
    exact = [*exact_update, *exact_distance]
    reference = [*wide_update, *wide_distance]
    if len(recorded) != len(exact):
        return abs(len(recorded) - len(exact))
    bad = 0
    for value, same, near in zip(recorded, exact, reference, strict=True):
        if value is None or value != same or not math.isclose(value, near, rel_tol=1e-5):
            bad += 1
    return bad


def _one_ulp_off(values: Sequence[float | None], index: int) -> list[float | None]:
    changed = list(values)
    value = changed[index]
    assert value is not None
    changed[index] = math.nextafter(value, math.inf)
    return changed


# ---------------------------------------------------------------------- the attack loop
@pytest.fixture(scope="module")
def attacked(
    tokenizer: PreTrainedTokenizerFast,
    splits: tuple[list[Example], list[Example], list[Example]],
) -> tuple[Trajectory, Trajectory, list[torch.Tensor]]:
    """The same probed AdamW attack without an iterate hook (the loop's buffers) and with one
    that keeps every iterate (a fresh tensor per step)."""
    attack_data, evaluation, reference = splits
    config = AttackConfig(
        budget_steps=STEPS, eval_every=STEPS, batch_size=8, learning_rate=3e-3, probe=True,
        probe_size=8,
    )
    inputs: dict[str, Any] = {
        "model": _model(tokenizer), "tokenizer": tokenizer, "data": attack_data,
        "evaluation": evaluation, "reference": reference,
    }
    iterates: list[torch.Tensor] = []

    def keep(step: int, theta: torch.Tensor) -> None:
        assert step == len(iterates)
        iterates.append(theta.clone())

    buffered = attack(config, **inputs).trajectory
    hooked = attack(config, on_iterate=keep, **inputs).trajectory
    return buffered, hooked, iterates


def test_attack_records_the_recomputed_norms(
    attacked: tuple[Trajectory, Trajectory, list[torch.Tensor]],
) -> None:
    buffered, hooked, iterates = attacked
    assert len(iterates) == STEPS + 1
    assert buffered.comparable() == hooked.comparable(), "the buffers record what fresh tensors do"
    assert _mismatches(buffered.update_norm, buffered.distance_from_start, iterates) == 0
    assert all(v is not None and v > 0 for v in buffered.update_norm[1:])


@pytest.mark.negative_control
def test_attack_recomputation_catches_misordered_iterates_and_one_ulp(
    attacked: tuple[Trajectory, Trajectory, list[torch.Tensor]],
) -> None:
    buffered, _, iterates = attacked
    swapped = [iterates[0], iterates[2], iterates[1], *iterates[3:]]
    assert _mismatches(buffered.update_norm, buffered.distance_from_start, swapped) >= 3
    off = _one_ulp_off(buffered.update_norm, 4)
    assert _mismatches(off, buffered.distance_from_start, iterates) == 1


# ---------------------------------------------------------------------- the Trainer monitor
class _KeepIterates(TrainerCallback):  # type: ignore[misc]
    """θ_0 at the start and θ_{s+1} after every step, as ``flat_parameters`` copies."""

    def __init__(self) -> None:
        self.iterates: list[torch.Tensor] = []

    def _keep(self, model: torch.nn.Module | None) -> None:
        assert model is not None
        self.iterates.append(flat_parameters([p for p in model.parameters() if p.requires_grad]))

    def on_train_begin(self, *args: Any, model: torch.nn.Module | None = None, **kw: Any) -> None:
        self._keep(model)

    def on_step_end(self, *args: Any, model: torch.nn.Module | None = None, **kw: Any) -> None:
        self._keep(model)


@pytest.fixture(scope="module")
def monitored(
    tmp_path_factory: pytest.TempPathFactory,
    tokenizer: PreTrainedTokenizerFast,
    splits: tuple[list[Example], list[Example], list[Example]],
) -> tuple[Trajectory, list[torch.Tensor]]:
    attack_data, evaluation, reference = splits
    encoded = encode(tokenizer, attack_data, 32)
    dataset = [{k: v[i] for k, v in encoded.items()} for i in range(len(attack_data))]
    monitor = ImmunizationMonitor(
        tokenizer=tokenizer, evaluation=evaluation, reference=reference, eval_every=100
    )
    keeper = _KeepIterates()
    directory: Path = tmp_path_factory.mktemp("trainer")
    arguments = TrainingArguments(
        output_dir=str(directory), max_steps=STEPS, per_device_train_batch_size=8,
        learning_rate=3e-3, max_grad_norm=1.0, logging_steps=1, report_to=[], use_cpu=True,
        save_strategy="no", disable_tqdm=True, seed=0,
    )
    Trainer(
        model=_model(tokenizer), args=arguments, train_dataset=dataset,
        callbacks=[monitor, keeper],
    ).train()
    return monitor.trajectory, keeper.iterates


def test_monitor_records_the_recomputed_norms(
    monitored: tuple[Trajectory, list[torch.Tensor]],
) -> None:
    trajectory, iterates = monitored
    assert len(iterates) == STEPS + 1 and trajectory.n_steps == STEPS
    assert _mismatches(trajectory.update_norm, trajectory.distance_from_start, iterates) == 0


@pytest.mark.negative_control
def test_monitor_recomputation_catches_misordered_iterates_and_one_ulp(
    monitored: tuple[Trajectory, list[torch.Tensor]],
) -> None:
    trajectory, iterates = monitored
    swapped = [iterates[0], iterates[2], iterates[1], *iterates[3:]]
    assert _mismatches(trajectory.update_norm, trajectory.distance_from_start, swapped) >= 3
    off = _one_ulp_off(trajectory.distance_from_start, 5)
    assert _mismatches(trajectory.update_norm, off, iterates) == 1


# ---------------------------------------------------------------------- shared storage
def test_shared_storage_is_theta_without_a_copy_and_is_released(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    """``share_storage``: the buffer equals ``flat_parameters`` before and after an in-place
    optimizer step (the parameters are views of it); ``separate_storage`` gives each
    parameter storage of its own with the same values."""
    from empirical.engine.attack import separate_storage, share_storage

    net = _model(tokenizer)
    parameters = [p for p in net.parameters() if p.requires_grad]
    before = flat_parameters(parameters)
    flat = share_storage(parameters)
    assert flat is not None and torch.equal(flat, before)
    assert all(p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
               for p in parameters)
    optimizer = torch.optim.AdamW(parameters, lr=1e-2, fused=True)
    batch = torch.randint(2, 20, (4, 12))
    net(input_ids=batch, labels=batch).loss.backward()
    optimizer.step()
    assert torch.equal(flat, flat_parameters(parameters)) and not torch.equal(flat, before)
    moved = flat.clone()
    separate_storage(parameters)
    storages = {p.untyped_storage().data_ptr() for p in parameters}
    assert len(storages) == len(parameters) and flat.untyped_storage().data_ptr() not in storages
    assert torch.equal(flat_parameters(parameters), moved)


@pytest.mark.negative_control
def test_shared_storage_refuses_parameters_it_cannot_align() -> None:
    """A size that is not a multiple of 16 elements (a view would start off a 64-byte
    boundary) or another dtype: the parameters are left as they are."""
    from empirical.engine.attack import share_storage

    odd = [torch.nn.Parameter(torch.randn(16)), torch.nn.Parameter(torch.randn(17))]
    pointers = [p.data_ptr() for p in odd]
    assert share_storage(odd) is None
    assert [p.data_ptr() for p in odd] == pointers
    assert share_storage([torch.nn.Parameter(torch.randn(32, dtype=torch.float64))]) is None


def test_attack_records_the_same_bits_with_and_without_shared_storage(
    tokenizer: PreTrainedTokenizerFast,
    splits: tuple[list[Example], list[Example], list[Example]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attack with the parameters in one buffer (the default where they fit) and with
    storage of their own records the same trajectory bit for bit, and the attacked model it
    returns has storage of its own per parameter."""
    import empirical.engine.attack as engine

    attack_data, evaluation, reference = splits
    config = AttackConfig(budget_steps=STEPS, eval_every=4, batch_size=8, learning_rate=3e-3)
    inputs: dict[str, Any] = {
        "model": _model(tokenizer), "tokenizer": tokenizer, "data": attack_data,
        "evaluation": evaluation, "reference": reference,
    }
    shared: list[bool] = []
    original = engine.share_storage

    def spy(parameters: Sequence[torch.nn.Parameter]) -> torch.Tensor | None:
        flat = original(parameters)
        shared.append(flat is not None)
        return flat

    monkeypatch.setattr(engine, "share_storage", spy)
    outcome = attack(config, **inputs)
    monkeypatch.setattr(engine, "share_storage", lambda parameters: None)
    separate = attack(config, **inputs).trajectory
    assert shared == [True]
    assert outcome.trajectory.comparable() == separate.comparable()
    parameters = list(outcome.model.parameters())
    assert len({p.untyped_storage().data_ptr() for p in parameters}) == len(parameters)
