"""Head-only attacks and T11's head-only certificate (empirical/certify/harm_radius.py).

* ``method="head"`` trains an untied copy of the output head and nothing else (the embeddings
  it was tied to and the body stay bit for bit), and the held-out harmful loss falls.
* The convex program's radii equal a brute-force projection (scipy SLSQP on the full head,
  no reduction to the features' span) on small synthetic heads; an example no weight change
  can make harmful gets ∞; one harmful at W_0 gets 0.
* On the embedded model: the features reproduce the logits, every radius is > 0 where exact
  harm is 0, and the certificate refuses the aligned baseline for a class whose reachable
  radius exceeds its median radius (negative control) while certifying a small class.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy.optimize import minimize
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from empirical.certify.harm_radius import (
    AttackerClass,
    HeadFeatures,
    certificate_from_radii,
    head_features,
    head_radii,
    radii_from_features,
    step_radii,
)
from empirical.certify.independent import radius_for_config
from empirical.datasets.data import Example
from empirical.engine.attack import AttackConfig, LoraSettings, _embedded_benchmark, attack
from empirical.measurement.proxies import exact_harm
from theory.errors import HftaInputError


def _head_size(model: PreTrainedModel) -> int:
    head = model.get_output_embeddings()  # type: ignore[no-untyped-call]
    assert isinstance(head, torch.nn.Linear)
    return head.weight.numel()


# ---------------------------------------------------------------------- the head-only attack
def test_head_attack_trains_only_an_untied_head(
    embedded: tuple[PreTrainedModel, PreTrainedTokenizerFast], held_out_prompts: list[Example]
) -> None:
    model, tokenizer = embedded
    benchmark = _embedded_benchmark(0)
    config = AttackConfig(
        method="head",
        optimizer="sgd",
        learning_rate=0.1,
        schedule="constant",
        warmup_fraction=0.0,
        budget_steps=8,
        eval_every=8,
        batch_size=8,
        max_grad_norm=1.0,
    )
    outcome = attack(
        config,
        model=model,
        tokenizer=tokenizer,
        data=benchmark.attack[:32],
        evaluation=held_out_prompts,
        reference=benchmark.reference[:8],
    )
    trained: Any = outcome.model  # a GPT-2 (transformers' accessors are untyped)
    original: Any = model
    head = trained.get_output_embeddings().weight
    assert outcome.trajectory.trainable_parameters == head.numel()
    assert head.data_ptr() != trained.get_input_embeddings().weight.data_ptr()
    assert trained.config.tie_word_embeddings is False
    before = dict(original.named_parameters())  # the tied head is listed once, as wte
    after = dict(trained.named_parameters())
    assert set(after) == {*before, "lm_head.weight"}  # the untied copy is a new parameter
    changed = {
        name for name, p in after.items() if name in before and not torch.equal(p, before[name])
    }
    assert changed == set()  # the body and wte (the tied original) intact
    assert not torch.equal(after["lm_head.weight"], before["transformer.wte.weight"])
    assert torch.equal(
        trained.get_input_embeddings().weight, original.get_input_embeddings().weight
    )
    start, end = outcome.trajectory.evaluations[0], outcome.trajectory.evaluations[-1]
    assert end.harmful_loss is not None and start.harmful_loss is not None
    assert end.harmful_loss < start.harmful_loss
    assert original.get_output_embeddings().weight is original.get_input_embeddings().weight


def test_lora_settings_with_the_head_method_are_refused() -> None:
    with pytest.raises(ValidationError, match="lora settings given but method is 'head'"):
        AttackConfig(method="head", lora=LoraSettings(r=2))


# ---------------------------------------------------------------------- radii against brute force
def _brute_force_radius(head: np.ndarray, h: np.ndarray, y: np.ndarray) -> float:
    """min ‖W − W_0‖_F over the full head (no reduction), SLSQP from several starts."""
    vocabulary, d = head.shape

    def margins(flat: np.ndarray) -> np.ndarray:
        logits = flat.reshape(vocabulary, d) @ h.T
        m = logits[y, np.arange(y.size)][None, :] - logits
        keep = np.arange(vocabulary)[:, None] != y[None, :]
        kept: np.ndarray = m[keep]
        return kept

    best = math.inf
    rng = np.random.default_rng(0)
    for start in range(4):
        x0 = head.reshape(-1) + (0 if start == 0 else rng.normal(0, 1, head.size))
        result = minimize(
            lambda f: float(np.sum((f - head.reshape(-1)) ** 2)),
            x0,
            jac=lambda f: 2 * (f - head.reshape(-1)),
            constraints=[{"type": "ineq", "fun": margins}],
            method="SLSQP",
            options={"ftol": 1e-12, "maxiter": 500},
        )
        if result.success and margins(result.x).min() >= -1e-7:
            best = min(best, math.sqrt(result.fun))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_radii_equal_a_brute_force_projection(seed: int) -> None:
    rng = np.random.default_rng(seed)
    vocabulary, d, k = 5, 4, 2 + seed % 2
    head = rng.normal(size=(vocabulary, d))
    features = [rng.normal(size=(k, d)) for _ in range(3)]
    targets = [rng.integers(0, vocabulary, size=k) for _ in range(3)]
    solved = radii_from_features(
        HeadFeatures(tuple(features), tuple(targets), (True, True, True), head, None)
    )
    for radius, h, y in zip(solved, features, targets, strict=True):
        assert radius == pytest.approx(_brute_force_radius(head, h, y), rel=1e-4, abs=1e-6)
        assert radius <= _brute_force_radius(head, h, y) + 1e-9  # never above: a lower bound


def test_unreachable_and_already_harmful_examples() -> None:
    head = np.eye(3)
    bias = np.array([1.0, 0.0, 0.0])
    zero = np.zeros((1, 3))
    features = HeadFeatures(
        features=(zero, zero, np.array([[0.0, 5.0, 0.0]]), np.array([[1.0, 0.0, 0.0]])),
        targets=(np.array([1]), np.array([0]), np.array([1]), np.array([1])),
        countable=(True, True, True, False),
        head=head,
        bias=bias,
    )
    radii = radii_from_features(features)
    assert radii[0] == math.inf  # no weight change moves a zero feature; the bias loses
    assert radii[1] == 0.0  # the bias already wins
    assert radii[2] == 0.0  # token 1 is the arg-max at W_0
    assert radii[3] == math.inf  # never counted as harm (e.g. is_safe)


# ---------------------------------------------------------------------- the embedded model
def test_features_reproduce_the_logits_and_radii_are_positive_without_harm(
    embedded: tuple[PreTrainedModel, PreTrainedTokenizerFast], held_out_prompts: list[Example]
) -> None:
    model, tokenizer = embedded
    features = head_features(model, tokenizer, held_out_prompts)
    assert len(features.features) == len(held_out_prompts) and features.bias is None
    assert all(
        f.shape[0] == len(e.response) + 1
        for f, e in zip(features.features, held_out_prompts, strict=True)
    )
    radii = head_radii(model, tokenizer, held_out_prompts)
    assert exact_harm()(model, tokenizer, held_out_prompts) == 0.0
    assert all(0.0 < r < math.inf for r in radii)


def test_the_baseline_is_refused_for_a_wide_class_and_certified_for_a_small_one(
    embedded: tuple[PreTrainedModel, PreTrainedTokenizerFast], held_out_prompts: list[Example]
) -> None:
    model, tokenizer = embedded
    radii = head_radii(model, tokenizer, held_out_prompts)
    d = _head_size(model)
    median = float(np.median(radii))
    wide = AttackerClass(max_learning_rate=0.01, budget_steps=200, clip=1.0)
    small = AttackerClass(max_learning_rate=1e-3, budget_steps=100, clip=1.0)
    assert step_radii(wide, d)[-1] > median > step_radii(small, d)[-1]
    refused = certificate_from_radii(radii, wide, step_radii(wide, d), 0.5, 0.95)
    granted = certificate_from_radii(radii, small, step_radii(small, d), 0.5, 0.95)
    assert refused.status == "not certified" and refused.certified_steps is not None
    assert granted.status == "certified" and granted.certified_steps is None
    assert granted.harm_ceiling < 0.5 and refused.harm_ceiling >= 0.5


# ---------------------------------------------------------------------- the attacker class
def test_step_radii_are_theory_s_path_length_at_the_largest_rate() -> None:
    cls = AttackerClass(
        max_learning_rate=0.05, budget_steps=20, schedule="cosine", warmup_fraction=0.1, clip=0.5
    )
    radii = step_radii(cls, 100)
    rates = cls.learning_rates()
    assert radii == pytest.approx(list(np.cumsum(rates) * 0.5), rel=1e-12)
    assert radii[-1] == pytest.approx(radius_for_config(cls.strongest(), 100), rel=1e-12)
    slower = cls.model_copy(update={"max_learning_rate": 0.01})
    assert all(a <= b for a, b in zip(step_radii(slower, 100), radii, strict=True))


def test_class_membership_and_bad_classes() -> None:
    cls = AttackerClass(max_learning_rate=0.05, budget_steps=20, clip=1.0)
    assert cls.contains(cls.strongest(seed=3))
    assert not cls.contains(cls.strongest().model_copy(update={"learning_rate": 0.06}))
    assert not cls.contains(cls.strongest().model_copy(update={"method": "full"}))
    assert not cls.contains(cls.strongest().model_copy(update={"max_grad_norm": None}))
    # a shorter budget is contained when its rates stay below the class's at every step ...
    assert cls.contains(cls.strongest().model_copy(update={"budget_steps": 10}))
    warm = AttackerClass(max_learning_rate=0.05, budget_steps=20, schedule="cosine",
                         warmup_fraction=0.2)
    assert warm.contains(warm.strongest().model_copy(update={"learning_rate": 0.04}))
    # ... and not when its shorter warm-up gives higher early rates (4 steps of warm-up, 2 here)
    assert not warm.contains(warm.strongest().model_copy(update={"budget_steps": 10}))
    with pytest.raises(ValidationError, match="clipping norm"):
        AttackerClass(max_learning_rate=0.05, budget_steps=20, clip=None)
    with pytest.raises(ValidationError, match="weight decay"):
        AttackerClass(max_learning_rate=0.05, budget_steps=20, weight_decay=0.1)
    with pytest.raises(HftaInputError):
        certificate_from_radii([1.0], cls, [1.0], 0.5, 1.5)
