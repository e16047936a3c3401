"""The attack loop: configuration checks, determinism, and the recorded numbers against theory.

The property tests attack a real (tiny, random) GPT-2 and check every recorded step against
an identity or a bound that holds for the optimizer used, each with a negative control: a
deliberately wrong formula that the same check must reject.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from transformers import PreTrainedTokenizerFast

from empirical.datasets.benchmark import TOKENIZER_ALPHABET, BenchmarkSizes, embedded_benchmark
from empirical.datasets.data import Example
from empirical.engine.attack import AttackConfig, LoraSettings, attack, mix_poison, run_attack
from empirical.engine.schedules import learning_rates
from empirical.measurement.trajectory import Evaluation, Trajectory
from empirical.models.model import build_char_tokenizer, tiny_gpt2
from theory import optimizers
from theory.conditions import WeakResistance
from theory.errors import DataOverlapError, HftaInputError
from theory.verdict import Status

SIZES = BenchmarkSizes(
    pretrain=30, align=1, defence=1, attack=16, evaluation=6, reference=4,
    trainability_train=1, trainability_eval=1,
)


@pytest.fixture(scope="module")
def bench() -> tuple[list[Example], list[Example], list[Example], list[Example]]:
    b = embedded_benchmark(seed=0, sizes=SIZES)
    harmless = [e for e in b.pretrain if e.is_safe]
    return b.attack, b.evaluation, b.reference, harmless


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_char_tokenizer(TOKENIZER_ALPHABET)


@pytest.fixture(scope="module")
def model(tokenizer: PreTrainedTokenizerFast) -> torch.nn.Module:
    return tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, n_positions=32, seed=0)


class _ConstantProxy:
    """A stand-in proxy: always the same value (the attack must pass it through)."""

    def __init__(self, value: float, higher_is_better: bool) -> None:
        self.value = value
        self.higher_is_better = higher_is_better
        self.binary = False
        self.name = f"constant[{value}]"

    def __call__(self, model: object, tokenizer: object, examples: Sequence[Example]) -> float:
        return self.value

    def per_example(self, model: object, tokenizer: object, examples: Sequence[Example]) -> object:
        return np.full(len(examples), self.value)


def _run(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    bench: tuple[list[Example], ...],
    **settings: object,
) -> Trajectory:
    attack_data, evaluation, reference, _ = bench
    hook = settings.pop("on_evaluation", None)
    base: dict[str, object] = {"budget_steps": 6, "eval_every": 3, "batch_size": 8}
    base.update(settings)
    return run_attack(
        AttackConfig.model_validate(base),
        model=model,
        tokenizer=tokenizer,
        data=attack_data,
        evaluation=evaluation,
        reference=reference,
        on_evaluation=hook,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("learning_rate", 0.0),
        ("learning_rate", -1e-3),
        ("learning_rate", math.inf),
        ("learning_rate", math.nan),
        ("budget_steps", 0),
        ("batch_size", 0),
        ("warmup_fraction", 1.0),
        ("max_grad_norm", 0.0),
        ("optimizer", "rmsprop"),
        ("schedule", "exponential"),
        ("poison_ratio", 0.0),
        ("poison_ratio", 1.5),
        ("dtype", "float8"),
        ("unknown_field", 1),
    ],
)
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        AttackConfig.model_validate({field: value})
    assert field in str(caught.value)


def test_config_rejects_inconsistent_options() -> None:
    with pytest.raises(ValidationError, match="momentum"):
        AttackConfig(optimizer="adamw", momentum=0.9)
    with pytest.raises(ValidationError, match="lora"):
        AttackConfig(method="full", lora=LoraSettings(r=2))


def test_config_is_frozen_and_curvature_implies_probe() -> None:
    config = AttackConfig(record_curvature=True)
    assert config.probing
    with pytest.raises(ValidationError):
        config.learning_rate = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------- poison mixing
def _harmful_fraction_error(harmful: int, total: int, ratio: float) -> float:
    """|n_h / n − r| for the mixed set."""
    return abs(harmful / total - ratio)


def _allowed_error(harmful: int, ratio: float) -> float:
    """Rounding x* = n_h (1 − r)/r harmless examples to the nearest integer x moves
    n_h/(n_h + x) away from r by at most ½ · max |d/dx| = ½ n_h / (n_h + max(0, x* − ½))²
    (mean-value theorem on |x − x*| ≤ ½)."""
    ideal = harmful * (1 - ratio) / ratio
    return 0.5 * harmful / (harmful + max(0.0, ideal - 0.5)) ** 2 + 1e-12


def _example(i: int, safe: bool) -> Example:
    return Example(prompt=f"p{i}", response=f"r{i}", category="c", is_safe=safe)


@given(st.integers(1, 60), st.floats(0.05, 1.0))
def test_poison_ratio_property(harmful_count: int, ratio: float) -> None:
    harmful = [_example(i, False) for i in range(harmful_count)]
    harmless = [_example(1000 + i, True) for i in range(2000)]
    mixed = mix_poison(harmful, harmless, ratio, torch.Generator().manual_seed(0))
    n_harmful = sum(not e.is_safe for e in mixed)
    assert n_harmful == harmful_count
    assert len({(e.prompt, e.response) for e in mixed}) == len(mixed)
    error = _harmful_fraction_error(n_harmful, len(mixed), ratio)
    assert error <= _allowed_error(harmful_count, ratio)


@pytest.mark.negative_control
def test_poison_ratio_property_catches_a_wrong_mixer() -> None:
    """Adding n_h (1 − r) harmless examples (forgetting the division by r) is caught."""
    harmful_count, ratio = 40, 0.25
    wrong_total = harmful_count + round(harmful_count * (1 - ratio))
    error = _harmful_fraction_error(harmful_count, wrong_total, ratio)
    assert error > _allowed_error(harmful_count, ratio)


def test_poison_ratio_needs_enough_harmless_examples() -> None:
    harmful = [_example(i, False) for i in range(10)]
    with pytest.raises(HftaInputError, match="harmless"):
        mix_poison(harmful, [_example(99, True)], 0.5, torch.Generator().manual_seed(0))
    with pytest.raises(HftaInputError, match="harmful"):
        mix_poison([], [_example(99, True)], 0.5, torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------- data and inputs
@pytest.mark.slow
def test_overlapping_attack_and_evaluation_data_is_refused(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    attack_data, _, reference, _ = bench
    with pytest.raises(DataOverlapError):
        run_attack(
            AttackConfig(budget_steps=1),
            model=model,
            tokenizer=tokenizer,
            data=attack_data,
            evaluation=attack_data[:3],
            reference=reference,
        )


@pytest.mark.slow
def test_tokenizer_without_pad_token_is_refused(
    model: torch.nn.Module, bench: tuple[list[Example], ...]
) -> None:
    bare = build_char_tokenizer(TOKENIZER_ALPHABET)
    bare.pad_token = None
    with pytest.raises(HftaInputError, match="pad token"):
        _run(model, bare, bench, budget_steps=1)


# ---------------------------------------------------------------------- determinism
@pytest.mark.slow
def test_same_seed_same_trajectory_bit_for_bit(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    first = _run(model, tokenizer, bench, seed=3, probe=True, record_curvature=True)
    second = _run(model, tokenizer, bench, seed=3, probe=True, record_curvature=True)
    assert first.comparable() == second.comparable()
    other = _run(model, tokenizer, bench, seed=4, probe=True, record_curvature=True)
    assert other.train_loss != first.train_loss


@pytest.mark.slow
def test_probe_and_evaluations_do_not_change_the_attack(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    plain = _run(model, tokenizer, bench, eval_every=100)
    probed = _run(model, tokenizer, bench, eval_every=1, probe=True, record_curvature=True)
    for name in ("train_loss", "learning_rate", "grad_norm", "update_norm", "distance_from_start"):
        assert getattr(plain, name) == getattr(probed, name), name
    assert plain.probe_loss is None and probed.probe_loss is not None
    assert [e.step for e in plain.evaluations] == [0, 6]
    assert [e.step for e in probed.evaluations] == list(range(7))


@pytest.mark.slow
def test_caller_model_and_global_random_state_are_untouched(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    _run(model, tokenizer, bench, learning_rate=1e-2)
    assert torch.equal(torch.rand(3), expected)
    assert not torch.are_deterministic_algorithms_enabled()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


# ---------------------------------------------------------------------- the record
@pytest.mark.slow
def test_record_shape_schedule_and_proxies(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    attack_data, evaluation, reference, _ = bench
    config = AttackConfig(budget_steps=7, eval_every=3, batch_size=4, schedule="linear",
                          warmup_fraction=0.3, learning_rate=1e-3)
    trajectory = run_attack(
        config, model=model, tokenizer=tokenizer, data=attack_data, evaluation=evaluation,
        reference=reference, harm_proxy=_ConstantProxy(0.25, False),
        capability_proxy=_ConstantProxy(0.75, True),
    )
    assert trajectory.n_steps == 7 and len(trajectory.distance_from_start) == 8
    assert trajectory.learning_rate == learning_rates(
        "linear", 1e-3, warmup_fraction=0.3, total_steps=7
    )
    assert [e.step for e in trajectory.evaluations] == [0, 3, 6, 7]
    assert all(e.harm == 0.25 and e.capability == 0.75 for e in trajectory.evaluations)
    assert trajectory.capability_higher_is_better is True
    assert trajectory.trainable_parameters == sum(p.numel() for p in model.parameters())
    assert trajectory.config["resolved"]["harm_proxy"] == "constant[0.25]"
    assert trajectory.distance_from_start[0] == 0.0
    assert trajectory.diverged_at is None
    curve = trajectory.to_curve("harm")
    assert curve.horizon == 7 and curve.steps == (0, 3, 6, 7)


def _distance_violations(trajectory: Trajectory) -> list[int]:
    """Steps breaking ‖θ_{s+1} − θ_0‖ ≤ ‖θ_s − θ_0‖ + ‖Δ_s‖ (the triangle inequality)."""
    d, u = trajectory.distance_from_start, trajectory.update_norm
    return [
        s for s in range(trajectory.n_steps)
        if d[s + 1] > d[s] + u[s] + 1e-5 * (1 + d[s])  # type: ignore[operator]
    ]


@pytest.mark.slow
def test_sgd_update_is_learning_rate_times_gradient(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    """Unclipped plain SGD: Δ_s = −η_s ∇L_B(θ_s), so ‖Δ_s‖ = η_s ‖∇L_B(θ_s)‖ on every step."""
    trajectory = _run(model, tokenizer, bench, optimizer="sgd", learning_rate=0.05,
                      max_grad_norm=None, schedule="cosine", warmup_fraction=0.0)
    rate = np.array(trajectory.learning_rate)
    grad = np.array(trajectory.grad_norm)
    update = np.array(trajectory.update_norm)
    np.testing.assert_allclose(update, rate * grad, rtol=1e-4)
    assert not _distance_violations(trajectory)
    assert trajectory.distance_from_start[1] == pytest.approx(update[0], rel=1e-6)


@pytest.mark.slow
@pytest.mark.negative_control
def test_sgd_update_check_catches_a_wrong_formula(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    """η‖g‖² in place of η‖g‖ (‖g‖ ≠ 1 here) fails the same comparison."""
    trajectory = _run(model, tokenizer, bench, optimizer="sgd", learning_rate=0.05,
                      max_grad_norm=None, warmup_fraction=0.0)
    rate = np.array(trajectory.learning_rate)
    grad = np.array(trajectory.grad_norm)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(trajectory.update_norm, rate * grad**2, rtol=1e-4)


@pytest.mark.slow
def test_clipped_sgd_steps_within_theory_bound(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    """Clipped SGD: ‖Δ_s‖ ≤ η_s C (theory.optimizers.sgd_step_bounds, used by T2)."""
    clip = 0.5
    trajectory = _run(model, tokenizer, bench, optimizer="sgd", learning_rate=0.05,
                      max_grad_norm=clip, warmup_fraction=0.0)
    bounds = optimizers.sgd_step_bounds(trajectory.learning_rate, C=clip)
    update = np.array(trajectory.update_norm)
    assert np.all(update <= bounds * (1 + 1e-5))
    # the gradients exceed C here, so the bound is attained: the record is not vacuous
    assert min(trajectory.grad_norm) > clip  # type: ignore[type-var]
    np.testing.assert_allclose(update, bounds, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.negative_control
def test_clipped_sgd_bound_check_catches_a_halved_bound(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    clip = 0.5
    trajectory = _run(model, tokenizer, bench, optimizer="sgd", learning_rate=0.05,
                      max_grad_norm=clip, warmup_fraction=0.0)
    wrong = optimizers.sgd_step_bounds(trajectory.learning_rate, C=clip / 2)
    assert np.any(np.array(trajectory.update_norm) > wrong * (1 + 1e-5))


def _adam_bound(trajectory: Trajectory, *, weight_decay: float, theta0_norm: float) -> np.ndarray:
    result = optimizers.adamw_step_bounds(
        trajectory.learning_rate, beta1=0.9, beta2=0.999, d=trajectory.trainable_parameters,
        lam=weight_decay, theta0_norm=theta0_norm,
    )
    return result.step_norms


@pytest.mark.slow
@pytest.mark.parametrize(("optimizer", "weight_decay"), [("adam", 0.0), ("adamw", 0.1)])
def test_adam_steps_within_theory_bound(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerFast,
    bench: tuple[list[Example], ...],
    optimizer: str,
    weight_decay: float,
) -> None:
    """T3's step bound ‖Δ_s‖ ≤ η_s (a_{s+1} √d + λ R_s) holds on every measured step."""
    trajectory = _run(model, tokenizer, bench, optimizer=optimizer, learning_rate=1e-3,
                      weight_decay=weight_decay, warmup_fraction=0.0, schedule="constant",
                      budget_steps=8)
    theta0 = float(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).norm())
    # Adam's L2 decay is folded into the gradient: the bound has no λ term (λ = 0 there)
    lam = weight_decay if optimizer == "adamw" else 0.0
    bound = _adam_bound(trajectory, weight_decay=lam, theta0_norm=theta0)
    assert np.all(np.array(trajectory.update_norm) <= bound * (1 + 1e-5))


@pytest.mark.slow
@pytest.mark.negative_control
def test_adam_bound_check_catches_a_bound_without_sqrt_d(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    """Dropping the √d factor (a per-coordinate bound used as a norm bound) is caught."""
    trajectory = _run(model, tokenizer, bench, optimizer="adam", learning_rate=1e-3,
                      warmup_fraction=0.0, schedule="constant")
    wrong = _adam_bound(trajectory, weight_decay=0.0, theta0_norm=0.0) / math.sqrt(
        trajectory.trainable_parameters
    )
    assert np.any(np.array(trajectory.update_norm) > wrong)


def _probe_identity_gaps(trajectory: Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """Gradient descent on the probe loss itself: ⟨∇L_P(θ_s), Δ_s⟩ = −η_s ‖∇L_P(θ_s)‖² and
    ‖Δ_s‖ = η_s ‖∇L_P(θ_s)‖; returns the relative gaps of both identities per step."""
    assert trajectory.probe_grad_norm is not None
    assert trajectory.probe_directional_derivative is not None
    rate = np.array(trajectory.learning_rate)
    grad = np.array(trajectory.probe_grad_norm[:-1])
    slope = np.array(trajectory.probe_directional_derivative)
    update = np.array(trajectory.update_norm)
    return (
        np.abs(slope + rate * grad**2) / (rate * grad**2),
        np.abs(update - rate * grad) / (rate * grad),
    )


@pytest.fixture(scope="module")
def full_batch_descent(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> Trajectory:
    """Plain SGD whose every minibatch is the whole probe set: training = descent on L_P."""
    attack_data, evaluation, reference, _ = bench
    data = attack_data[:8]
    config = AttackConfig(optimizer="sgd", learning_rate=0.05, max_grad_norm=None,
                          warmup_fraction=0.0, schedule="constant", batch_size=8, probe_size=8,
                          budget_steps=6, eval_every=6, record_curvature=True)
    return run_attack(config, model=model, tokenizer=tokenizer, data=data,
                      evaluation=evaluation, reference=reference)


@pytest.mark.slow
def test_probe_measures_the_gradient_of_a_fixed_loss(full_batch_descent: Trajectory) -> None:
    slope_gap, norm_gap = _probe_identity_gaps(full_batch_descent)
    assert np.all(slope_gap < 1e-3) and np.all(norm_gap < 1e-3)
    # T1 on the probe: the segment curvature uses the recorded probe quantities
    curvature = full_batch_descent.curvature
    assert curvature is not None and all(k is not None for k in curvature)
    loss = full_batch_descent.probe_loss
    assert loss is not None and loss[-1] < loss[0]  # descent on L_P lowers it


@pytest.mark.slow
@pytest.mark.negative_control
def test_probe_identity_catches_a_sign_error(full_batch_descent: Trajectory) -> None:
    """⟨∇L, Δ⟩ = +η‖∇L‖² (an ascent step's sign) is rejected by the same gap check."""
    flipped = full_batch_descent.model_copy(
        update={
            "probe_directional_derivative": [
                -v for v in full_batch_descent.probe_directional_derivative or []  # type: ignore[operator]
            ]
        }
    )
    slope_gap, _ = _probe_identity_gaps(flipped)
    assert np.all(slope_gap > 1.0)


# ---------------------------------------------------------------------- divergence, LoRA
@pytest.mark.slow
def test_divergence_is_recorded_and_never_counts_as_resistance(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    trajectory = _run(model, tokenizer, bench, optimizer="sgd", learning_rate=1e30,
                      max_grad_norm=None, warmup_fraction=0.0, schedule="constant",
                      budget_steps=20, eval_every=1, probe=True)
    assert trajectory.diverged_at is not None and trajectory.diverged_at < 20
    assert trajectory.divergence_reason
    assert trajectory.n_steps <= trajectory.diverged_at
    for evaluation in trajectory.evaluations:
        assert evaluation.step < trajectory.diverged_at
    verdict = WeakResistance(0.5, budget=20).check(trajectory.to_curve("harm"))
    assert verdict.status is not Status.HOLDS


@pytest.mark.slow
def test_lora_trains_only_the_adapters(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    attack_data, evaluation, reference, _ = bench
    config = AttackConfig(method="lora", lora=LoraSettings(r=2, target_modules=("c_attn",)),
                          budget_steps=4, eval_every=4, batch_size=4, learning_rate=1e-2,
                          warmup_fraction=0.0)
    outcome = attack(config, model=model, tokenizer=tokenizer, data=attack_data,
                     evaluation=evaluation, reference=reference)
    n_embd = model.config.n_embd
    layers = model.config.n_layer
    # c_attn maps n_embd → 3 n_embd: A is r × n_embd, B is 3 n_embd × r
    assert outcome.trajectory.trainable_parameters == layers * 2 * (n_embd + 3 * n_embd)
    assert outcome.trajectory.update_norm[-1] > 0  # type: ignore[operator]
    trained = {n for n, p in outcome.model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)


@pytest.mark.slow
def test_lora_with_unknown_target_modules_is_refused(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    with pytest.raises(HftaInputError, match="target modules"):
        _run(model, tokenizer, bench, method="lora",
             lora=LoraSettings(target_modules=("q_proj",)))


@pytest.mark.slow
def test_poison_ratio_mixes_harmless_examples_into_the_attack(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    attack_data, evaluation, reference, harmless = bench
    trajectory = run_attack(
        AttackConfig(budget_steps=1, eval_every=1, poison_ratio=0.5),
        model=model, tokenizer=tokenizer, data=[*attack_data, *harmless[:60]],
        evaluation=evaluation, reference=reference,
    )
    resolved = trajectory.config["resolved"]
    assert resolved["harmful_attack_examples"] == len(attack_data)
    assert resolved["attack_examples"] == 2 * len(attack_data)


@pytest.mark.slow
def test_bfloat16_with_gradient_accumulation_records_finite_steps(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    trajectory = _run(model, tokenizer, bench, dtype="bfloat16", grad_accumulation=2,
                      batch_size=4, budget_steps=3, probe=True)
    assert trajectory.environment.dtype == "bfloat16"
    assert trajectory.n_steps == 3 and trajectory.diverged_at is None
    assert all(v is not None and v > 0 for v in trajectory.update_norm[1:])
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is untouched


@pytest.mark.slow
def test_evaluation_hook_sees_every_evaluation_and_can_stop_the_attack(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, bench: tuple[list[Example], ...]
) -> None:
    seen: list[int] = []

    def prune_at_three(record: Evaluation) -> bool:
        seen.append(record.step)
        return record.step >= 3

    stopped = _run(model, tokenizer, bench, budget_steps=9, eval_every=3,
                   on_evaluation=prune_at_three)
    assert seen == [0, 3] and stopped.n_steps == 3 and stopped.stopped_early
    assert WeakResistance(0.5, budget=9).check(stopped.to_curve("harm")).status is (
        Status.INCONCLUSIVE
    )
    seen.clear()
    full = _run(model, tokenizer, bench, budget_steps=9, eval_every=3,
                on_evaluation=lambda record: seen.append(record.step) is None and False)
    assert seen == [0, 3, 6, 9] and full.n_steps == 9 and not full.stopped_early
    assert full.train_loss[:3] == stopped.train_loss


# ---------------------------------------------------------------------- loop internals
def test_the_flattener_follows_in_place_updates_like_flat_parameters(
    model: torch.nn.Module,
) -> None:
    """``ParameterFlattener`` (views made once) equals ``flat_parameters`` after every step
    of the fused optimizer; a flattener whose parameters were *replaced* (not updated in
    place) goes stale, so the comparison can fail."""
    import copy

    from empirical.engine.attack import ParameterFlattener, flat_parameters

    net = copy.deepcopy(model)
    parameters = [p for p in net.parameters() if p.requires_grad]
    flatten = ParameterFlattener(parameters)
    assert flatten.views is not None
    optimizer = torch.optim.AdamW(parameters, lr=1e-2, fused=True)
    batch = torch.randint(2, 20, (4, 12))
    before = flatten()
    for _ in range(3):
        net(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        assert torch.equal(flatten(), flat_parameters(parameters))
    assert not torch.equal(flatten(), before), "the parameters did move"
    # negative control: replacing a parameter's storage is invisible to old views
    with torch.no_grad():
        parameters[0].data = parameters[0].data + 1.0
    assert not torch.equal(flatten(), flat_parameters(parameters))
    # parameters of another dtype take the plain path
    assert ParameterFlattener([p.detach().double() for p in parameters]).views is None


def test_the_kv_cache_is_off_inside_and_restored_with_the_same_numbers(
    model: torch.nn.Module,
) -> None:
    import copy

    from empirical.engine.attack import without_kv_cache

    net = copy.deepcopy(model)
    config: Any = net.config
    config.use_cache = True
    batch = torch.randint(2, 20, (4, 12))
    with_cache = net(input_ids=batch, labels=batch).loss
    with without_kv_cache(net):
        assert config.use_cache is False
        without = net(input_ids=batch, labels=batch).loss
    assert config.use_cache is True
    assert torch.equal(with_cache, without)
    with without_kv_cache(torch.nn.Linear(2, 2)):  # no config: nothing to switch
        pass


def test_deterministic_sets_and_restores_the_flags() -> None:
    from empirical.engine.attack import deterministic

    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        for mode, warn_only in ((False, False), (True, True)):
            torch.use_deterministic_algorithms(mode, warn_only=warn_only)
            with deterministic(0, torch.device("cpu")):
                assert torch.are_deterministic_algorithms_enabled()
                assert not torch.is_deterministic_algorithms_warn_only_enabled()
                drawn = torch.rand(3)
            assert torch.are_deterministic_algorithms_enabled() is mode
            assert torch.is_deterministic_algorithms_warn_only_enabled() is warn_only
            with deterministic(0, torch.device("cpu")):
                assert torch.equal(torch.rand(3), drawn)  # seeded the same way each time
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
