"""ImmunizationMonitor on a real ``transformers.Trainer`` run of a tiny GPT-2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerFast, Trainer, TrainingArguments

from empirical.datasets.benchmark import TOKENIZER_ALPHABET, BenchmarkSizes, embedded_benchmark
from empirical.datasets.data import Example
from empirical.datasets.text import encode
from empirical.engine.monitor import ImmunizationMonitor
from empirical.engine.schedules import learning_rates
from empirical.measurement.trajectory import Trajectory
from empirical.models.model import build_char_tokenizer, tiny_gpt2
from theory import optimizers
from theory.errors import HftaInputError

pytestmark = pytest.mark.slow

SIZES = BenchmarkSizes(
    pretrain=1, align=1, defence=1, attack=16, evaluation=6, reference=4,
    trainability_train=1, trainability_eval=1,
)
STEPS = 12
WARMUP = 0.15  # ⌈0.15 · 12⌉ = 2 warmup steps (⌊·⌋ would give 1)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_char_tokenizer(TOKENIZER_ALPHABET)


@pytest.fixture(scope="module")
def splits() -> tuple[list[Example], list[Example], list[Example]]:
    b = embedded_benchmark(seed=0, sizes=SIZES)
    return b.attack, b.evaluation, b.reference


def _train(
    tmp_path: Path,
    tokenizer: PreTrainedTokenizerFast,
    splits: tuple[list[Example], list[Example], list[Example]],
    *,
    learning_rate: float = 3e-3,
    eval_every: int = 5,
    logging_steps: int = 1,
) -> tuple[Trajectory, torch.nn.Module]:
    attack_data, evaluation, reference = splits
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, n_positions=32, seed=0)
    encoded = encode(tokenizer, attack_data, 32)
    dataset = [{k: v[i] for k, v in encoded.items()} for i in range(len(attack_data))]
    monitor = ImmunizationMonitor(
        tokenizer=tokenizer, evaluation=evaluation, reference=reference, eval_every=eval_every,
        config={"experiment": "monitor-test"},
    )
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        max_steps=STEPS,
        per_device_train_batch_size=8,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=WARMUP,
        max_grad_norm=1.0,
        logging_steps=logging_steps,
        logging_nan_inf_filter=False,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    Trainer(model=model, args=arguments, train_dataset=dataset, callbacks=[monitor]).train()
    return monitor.trajectory, model


def test_monitor_records_a_trainer_run(
    tmp_path: Path,
    tokenizer: PreTrainedTokenizerFast,
    splits: tuple[list[Example], list[Example], list[Example]],
) -> None:
    trajectory, model = _train(tmp_path, tokenizer, splits)
    assert trajectory.source == "trainer" and trajectory.n_steps == STEPS
    assert trajectory.budget_steps == STEPS
    assert trajectory.trainable_parameters == sum(p.numel() for p in model.parameters())
    assert all(v is not None for v in trajectory.train_loss + trajectory.grad_norm)
    assert [e.step for e in trajectory.evaluations] == [0, 5, 10, 12]
    assert all(e.harm is not None and e.capability is not None for e in trajectory.evaluations)
    assert trajectory.config["experiment"] == "monitor-test"
    assert trajectory.config["trainer"]["lr_scheduler_type"] == "cosine"
    # the Trainer's schedule is the one empirical.engine.schedules builds (same warmup rounding)
    assert trajectory.learning_rate == pytest.approx(
        learning_rates("cosine", 3e-3, warmup_fraction=WARMUP, total_steps=STEPS), rel=1e-12
    )
    # the distance recorded at the end is the real displacement of the trained model
    start = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, n_positions=32, seed=0)
    moved = torch.cat(
        [(p.detach() - q.detach()).reshape(-1) for p, q in
         zip(model.parameters(), start.parameters(), strict=True)]
    )
    assert trajectory.distance_from_start[-1] == pytest.approx(float(moved.norm()), rel=1e-5)
    # T3: every AdamW step of the Trainer lies within theory's step bound
    rates = np.array(trajectory.learning_rate)
    positive = rates > 0
    theta0 = float(torch.cat([p.detach().reshape(-1) for p in start.parameters()]).norm())
    bounds = optimizers.adamw_step_bounds(
        rates[positive], beta1=0.9, beta2=0.999, d=trajectory.trainable_parameters,
        lam=0.0, theta0_norm=theta0,
    ).step_norms
    assert np.all(np.array(trajectory.update_norm)[positive] <= bounds * (1 + 1e-5))
    assert trajectory.update_norm[0] == 0.0  # the first warmup step has rate 0


@pytest.mark.negative_control
def test_schedule_check_catches_floor_rounded_warmup(
    tmp_path: Path,
    tokenizer: PreTrainedTokenizerFast,
    splits: tuple[list[Example], list[Example], list[Example]],
) -> None:
    """A schedule with ⌊0.15 · 12⌋ = 1 warmup step differs from what the Trainer used."""
    trajectory, _ = _train(tmp_path, tokenizer, splits, eval_every=100)
    wrong = learning_rates("cosine", 3e-3, warmup_fraction=1 / STEPS, total_steps=STEPS)
    assert trajectory.learning_rate != pytest.approx(wrong, rel=1e-12)


def test_longer_logging_window_leaves_the_loss_unrecorded(
    tmp_path: Path,
    tokenizer: PreTrainedTokenizerFast,
    splits: tuple[list[Example], list[Example], list[Example]],
) -> None:
    trajectory, _ = _train(tmp_path, tokenizer, splits, logging_steps=4, eval_every=100)
    assert all(v is None for v in trajectory.train_loss)
    assert all(v is not None for v in trajectory.update_norm)
    assert [e.step for e in trajectory.evaluations] == [0, STEPS]


def test_monitor_stops_a_diverging_trainer(
    tmp_path: Path,
    tokenizer: PreTrainedTokenizerFast,
    splits: tuple[list[Example], list[Example], list[Example]],
) -> None:
    trajectory, _ = _train(tmp_path, tokenizer, splits, learning_rate=1e30, eval_every=1)
    assert trajectory.diverged_at is not None
    assert trajectory.n_steps < STEPS
    assert all(e.step < trajectory.diverged_at for e in trajectory.evaluations)
    trajectory.save(tmp_path / "diverged.json")
    assert Trajectory.load(tmp_path / "diverged.json") == trajectory


def test_monitor_inputs_are_checked(tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(HftaInputError, match="eval_every"):
        ImmunizationMonitor(tokenizer=tokenizer, evaluation=[], reference=[], eval_every=0)
    with pytest.raises(HftaInputError, match="evaluation and reference"):
        ImmunizationMonitor(tokenizer=tokenizer, evaluation=[], reference=[])
    monitor = ImmunizationMonitor(
        tokenizer=tokenizer,
        evaluation=[Example(prompt="a", response="b", category="c", is_safe=False)],
        reference=[Example(prompt="a", response="b", category="c", is_safe=True)],
    )
    with pytest.raises(HftaInputError, match="train first"):
        _ = monitor.trajectory


# ---------------------------------------------------------------------- TRL
def _sft(
    tmp_path: Path,
    tokenizer: PreTrainedTokenizerFast,
    splits: tuple[list[Example], list[Example], list[Example]],
    learning_rate: float,
) -> tuple[Trajectory, list[dict[str, float]]]:
    """A TRL SFTTrainer run (prompt-completion data) with the monitor among its callbacks."""
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    attack_data, evaluation, reference = splits
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, n_positions=32, seed=0)
    dataset = datasets.Dataset.from_list(
        [{"prompt": e.prompt, "completion": e.response} for e in attack_data]
    )
    monitor = ImmunizationMonitor(
        tokenizer=tokenizer, evaluation=evaluation, reference=reference, eval_every=5
    )
    arguments = trl.SFTConfig(
        output_dir=str(tmp_path / "sft"), max_steps=STEPS, per_device_train_batch_size=8,
        learning_rate=learning_rate, lr_scheduler_type="cosine", warmup_steps=WARMUP,
        max_grad_norm=1.0, logging_steps=1, logging_nan_inf_filter=False, report_to=[],
        use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0, max_length=32,
    )
    trainer = trl.SFTTrainer(
        model=model, args=arguments, train_dataset=dataset, processing_class=tokenizer,
        callbacks=[monitor],
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    return monitor.trajectory, logged


def test_monitor_records_a_trl_sft_trainer_run(
    tmp_path: Path,
    tokenizer: PreTrainedTokenizerFast,
    splits: tuple[list[Example], list[Example], list[Example]],
) -> None:
    import pandas as pd

    trajectory, logged = _sft(tmp_path, tokenizer, splits, 3e-3)
    assert trajectory.source == "trainer" and trajectory.n_steps == STEPS
    # step s's loss and gradient norm are what the SFTTrainer logged for step s
    assert trajectory.train_loss == pytest.approx([e["loss"] for e in logged], rel=1e-12)
    assert trajectory.grad_norm == pytest.approx([e["grad_norm"] for e in logged], rel=1e-12)
    assert trajectory.learning_rate == pytest.approx(
        learning_rates("cosine", 3e-3, warmup_fraction=WARMUP, total_steps=STEPS), rel=1e-12
    )
    assert [e.step for e in trajectory.evaluations] == [0, 5, 10, 12]
    rates = np.array(trajectory.learning_rate)
    positive = rates > 0
    start = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, n_positions=32, seed=0)
    theta0 = float(torch.cat([p.detach().reshape(-1) for p in start.parameters()]).norm())
    bounds = optimizers.adamw_step_bounds(
        rates[positive], beta1=0.9, beta2=0.999, d=trajectory.trainable_parameters, lam=0.0,
        theta0_norm=theta0,
    ).step_norms
    assert np.all(np.array(trajectory.update_norm)[positive] <= bounds * (1 + 1e-5))
    # the trajectory as Parquet, read back with pandas
    frame = pd.read_parquet(trajectory.save(tmp_path / "sft.parquet"))
    assert frame["train_loss"].iloc[:-1].tolist() == trajectory.train_loss
    assert frame.loc[frame["evaluated"], "step"].tolist() == [0, 5, 10, 12]


@pytest.mark.negative_control
def test_the_sft_loss_check_tells_runs_apart(
    tmp_path: Path,
    tokenizer: PreTrainedTokenizerFast,
    splits: tuple[list[Example], list[Example], list[Example]],
) -> None:
    """The loss comparison above can fail: another run's log does not match this record."""
    trajectory, _ = _sft(tmp_path / "a", tokenizer, splits, 3e-3)
    _, other = _sft(tmp_path / "b", tokenizer, splits, 3e-2)
    assert trajectory.train_loss != pytest.approx([e["loss"] for e in other], rel=1e-12)
