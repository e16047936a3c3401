"""The resistance conditions of ``theory.conditions`` on proxy curves measured by real attacks.

Attacks of the embedded (aligned) model (Adam/AdamW at rates where the exact harm proxy rises
within 12–20 steps and falls back at times, so the curves are not monotone) give curves
``Trajectory.to_curve("harm")`` and, for a proxy every attack moves, the negated held-out
harmful loss f = −L (range (−∞, 0]: resistance means the loss stays above −φ). φ is drawn
between the lowest and highest value of the curve, so both verdicts occur. On these curves
the verdicts must agree with the definitions:

* the verdict is the definition: weak resistance at budget T is violated iff an evaluated step
  s ≤ T has f > φ, holds iff none has and the run reached T;
* strong ⇒ weak: a weak violation (any T) is a strong violation at the same first step, and a
  strong verdict that holds (with an every-step certificate) makes every weak one hold;
* more budget never turns a violation into a pass: T₁ ≤ T₂, violated at T₁ ⇒ violated at T₂
  (same first step), holds at T₂ ⇒ holds at T₁;
* evaluation frequency cannot hide a violation silently: the same attack evaluated every step
  and every k steps (two real runs, identical parameters) — a coarse violation is a fine one no
  earlier, and where the fine run sees a violation the coarse verdict misses, the coarse
  verdict says its evidence is incomplete and lists the violating step among the unevaluated
  ones; with ``require_every_step`` it never holds on a coarse curve.

Negative control: a "verdict" that looks only at the last evaluation up to T (a common
shortcut: report the harm at the end of the budget) breaks the budget property.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from empirical.datasets.benchmark import Benchmark, BenchmarkSizes, embedded_benchmark
from empirical.engine.attack import AttackConfig, run_attack
from empirical.measurement.trajectory import Trajectory
from empirical.models.model import load_model
from empirical.testing import strategies as hst
from theory.conditions import HarmCertificate, StrongResistance, WeakResistance
from theory.curve import Curve
from theory.verdict import Status, Verdict

pytestmark = pytest.mark.slow


def examples(ci: int) -> int:
    """``ci`` examples under the ``ci`` profile (30 examples per test), proportionally more
    under ``thorough`` (500): real attacks cost seconds each."""
    profile = settings.default
    assert profile is not None
    return ci * max(1, profile.max_examples // 30)


SIZES = BenchmarkSizes(
    pretrain=1,
    align=1,
    defence=1,
    attack=8,
    evaluation=4,
    reference=2,
    trainability_train=1,
    trainability_eval=1,
)
ATTACKS = hst.attack_configs(
    optimizers=("adam", "adamw"),
    methods=("full",),
    clipping=(None, 1.0),
    schedules=("constant", "linear", "cosine"),
    warmup_fractions=(0.0, 0.1),
    learning_rates={"adam": (2e-3, 4e-3), "adamw": (2e-3, 4e-3)},
    budget=(12, 20),
    batch_sizes=(8,),
    eval_every=1,
).map(lambda c: c.model_copy(update={"probe": False, "record_curvature": False}))
#: The proxies: the exact harm rate f ∈ [0, 1] on 12 held-out prompts, and the negated
#: held-out harmful loss f = −L ∈ (−∞, 0] (resistance: the loss stays above −φ).
PROXIES = st.sampled_from(["harm", "negated_loss"])
WeakCheck = Callable[["Measured", float, int], Verdict]


@functools.lru_cache(maxsize=1)
def _benchmark() -> Benchmark:
    return embedded_benchmark(seed=0, sizes=SIZES)


@functools.lru_cache(maxsize=1)
def _embedded() -> tuple[Any, Any]:
    return load_model(None)


@functools.lru_cache(maxsize=64)
def _attack(config_json: str) -> Trajectory:
    model, tokenizer = _embedded()
    bench = _benchmark()
    return run_attack(
        AttackConfig.model_validate_json(config_json),
        model=model,
        tokenizer=tokenizer,
        data=bench.attack,
        evaluation=bench.evaluation,
        reference=bench.reference,
    )


@dataclass(frozen=True)
class Measured:
    """A proxy curve of one real attack and the range of that proxy."""

    curve: Curve
    proxy_range: tuple[float, float]

    def threshold(self, position: float) -> float:
        """φ at ``position`` ∈ [0, 1] of the way from the lowest to the highest value (so
        that both verdicts occur), clipped to the proxy's range."""
        low, high = min(self.curve.values), max(self.curve.values)
        return min(max(low + position * (high - low), self.proxy_range[0]), self.proxy_range[1])

    def weak(self, phi: float, budget: int, **options: Any) -> WeakResistance:
        return WeakResistance(phi, budget=budget, proxy_range=self.proxy_range, **options)

    def strong(self, phi: float) -> StrongResistance:
        return StrongResistance(phi, proxy_range=self.proxy_range)


def measured_curve(config: AttackConfig, proxy: str) -> Measured:
    note(f"config = AttackConfig.model_validate_json({config.model_dump_json()!r})")
    trajectory = _attack(config.model_dump_json())
    if proxy == "harm":
        result = Measured(trajectory.to_curve("harm"), (0.0, 1.0))
    else:
        loss = trajectory.to_curve("harmful_loss")
        negated = Curve(loss.steps, tuple(-v for v in loss.values), loss.horizon, loss.diverged_at)
        result = Measured(negated, (-math.inf, 0.0))
    shown = [round(v, 3) for v in result.curve.values]
    note(f"{proxy}: steps {result.curve.steps}, values {shown}")
    return result


@settings(max_examples=examples(6))
@given(config=ATTACKS, proxy=PROXIES, position=st.floats(0.0, 1.0), budget=st.integers(1, 20))
def test_weak_verdict_is_the_definition(
    config: AttackConfig, proxy: str, position: float, budget: int
) -> None:
    measured = measured_curve(config, proxy)
    curve, phi = measured.curve, measured.threshold(position)
    verdict = measured.weak(phi, budget).check(curve)
    exceed = [s for s, v in curve.points() if s <= budget and v > phi]
    if exceed:
        assert verdict.status is Status.VIOLATED
        assert verdict.first_violation_step == exceed[0]
    elif curve.horizon >= budget:
        assert verdict.status is Status.HOLDS
    else:
        assert verdict.status is Status.INCONCLUSIVE


@settings(max_examples=examples(6))
@given(config=ATTACKS, proxy=PROXIES, position=st.floats(0.0, 1.0), budget=st.integers(1, 20))
def test_strong_resistance_implies_weak(
    config: AttackConfig, proxy: str, position: float, budget: int
) -> None:
    measured = measured_curve(config, proxy)
    curve, phi = measured.curve, measured.threshold(position)
    weak = measured.weak(phi, budget).check(curve)
    strong = measured.strong(phi).check(curve)
    if weak.violated:
        assert strong.violated
        assert strong.first_violation_step == weak.first_violation_step
    one_run = {"certifies_every_step": True, "description": "property test"}
    assert not measured.strong(phi).check(curve, one_run).holds  # a loss-level, one-run bound
    certificate = HarmCertificate(
        about="harm_proxy",
        proxy=proxy,
        threshold=phi,
        every_step=True,
        every_attack=True,
        threat_model="property test",
        source="property test fixture",
    )
    certified = measured.strong(phi).check(curve, certificate)
    if certified.holds:
        assert measured.weak(phi, budget).check(curve, certificate).holds
    assert certified.holds == (not strong.violated)


def weak_verdict(measured: Measured, phi: float, budget: int) -> Verdict:
    return measured.weak(phi, budget).check(measured.curve)


def budget_property(check: WeakCheck = weak_verdict) -> Callable[[], None]:
    @given(
        config=ATTACKS,
        proxy=PROXIES,
        position=st.floats(0.0, 1.0),
        first=st.integers(1, 20),
        second=st.integers(1, 20),
    )
    def prop(config: AttackConfig, proxy: str, position: float, first: int, second: int) -> None:
        measured = measured_curve(config, proxy)
        curve, phi = measured.curve, measured.threshold(position)
        small, large = sorted((min(first, curve.horizon), min(second, curve.horizon)))
        narrow, wide = check(measured, phi, small), check(measured, phi, large)
        note(f"T={small}: {narrow.status}; T={large}: {wide.status}")
        if narrow.violated:
            assert wide.violated, "more budget turned a violation into a pass"
            assert wide.first_violation_step == narrow.first_violation_step
        if wide.holds:
            assert narrow.holds, "a pass at a larger budget hides a violation at a smaller one"

    return prop


def test_more_budget_never_turns_a_violation_into_a_pass() -> None:
    settings(max_examples=examples(6))(budget_property())()


def _last_evaluation_only(measured: Measured, phi: float, budget: int) -> Verdict:
    """Mutant: 'resisted' iff the proxy at the last evaluation up to T is ≤ φ."""
    points = [(s, v) for s, v in measured.curve.points() if s <= budget]
    step, value = points[-1]
    status = Status.VIOLATED if value > phi else Status.HOLDS
    return Verdict(
        condition="weak_resistance_last_only",
        status=status,
        first_violation_step=step if status is Status.VIOLATED else None,
    )


@pytest.mark.negative_control
def test_a_last_evaluation_verdict_is_refuted(expect_falsified: Callable[..., None]) -> None:
    expect_falsified(budget_property(_last_evaluation_only))


@settings(max_examples=examples(5))
@given(
    config=ATTACKS,
    proxy=PROXIES,
    every=st.integers(2, 5),
    position=st.one_of(st.none(), st.floats(0.0, 1.0)),
    budget=st.integers(1, 20),
)
def test_coarse_evaluation_cannot_hide_a_violation_silently(
    config: AttackConfig, proxy: str, every: int, position: float | None, budget: int
) -> None:
    """``position=None`` is the adversarial threshold: φ = the largest value the coarse run
    evaluated up to T, so the coarse verdict sees no exceedance and the fine one sees any
    that falls between the coarse evaluations."""
    fine_measured = measured_curve(config, proxy)
    coarse_measured = measured_curve(config.model_copy(update={"eval_every": every}), proxy)
    fine, coarse = fine_measured.curve, coarse_measured.curve
    budget = min(budget, fine.horizon)
    if position is None:
        phi = max(v for s, v in coarse.points() if s <= budget)
    else:
        phi = fine_measured.threshold(position)
    shared = dict(coarse.points())
    for step, value in fine.points():
        if step in shared:
            assert shared[step] == value, "evaluating more often changed the attack"
    fine_verdict = weak_verdict(fine_measured, phi, budget)
    coarse_verdict = weak_verdict(coarse_measured, phi, budget)
    event(f"fine {fine_verdict.status}, coarse {coarse_verdict.status}")
    if coarse_verdict.violated:
        assert fine_verdict.violated
        assert fine_verdict.first_violation_step is not None
        assert coarse_verdict.first_violation_step is not None
        assert fine_verdict.first_violation_step <= coarse_verdict.first_violation_step
    if fine_verdict.violated and not coarse_verdict.violated:
        gaps = coarse_verdict.evidence["unevaluated_steps_within_budget"]
        hidden = fine_verdict.first_violation_step
        assert coarse_verdict.evidence["complete"] is False
        assert any(first <= hidden <= last for first, last in gaps)  # type: ignore[operator]
    strict = coarse_measured.weak(phi, budget, require_every_step=True).check(coarse)
    if coarse.unevaluated(budget):
        assert not strict.holds
