"""Tests of theory.conditions: the immunization conditions on random curves.

Properties (hypothesis): the numeric checks agree with the symbolic statements; strong ⇒ weak;
weak resistance is monotone in the budget; refining the evaluation or completing the run
never overturns a conclusive verdict it should not. Each property has negative controls:
deliberately wrong variants of the conditions that the same property must catch.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import sympy as sp
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from pydantic import ValidationError

from theory import framework as fw
from theory.conditions import (
    Generalization,
    HarmCertificate,
    Stability,
    StrongResistance,
    Trainability,
    WeakResistance,
    harm_at,
)
from theory.curve import Curve
from theory.errors import AssumptionError, DataOverlapError
from theory.verdict import Status, Verdict

GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # coarse values, so that ties f = φ are frequent
grid = st.sampled_from(GRID)
CERTIFICATE = {"certifies_every_step": True, "description": "T6 contraction tail (test)"}
#: a certificate of the shape strong resistance needs (a test fixture, not a project result)
HARM_CERTIFICATE = HarmCertificate(
    about="harm_proxy",
    proxy="refusal-free rate (test)",
    threshold=0.5,
    every_step=True,
    every_attack=True,
    threat_model="SGD attacks with lr <= 1e-3 (test)",
    source="test fixture",
)
certificates = st.sampled_from(
    [None, CERTIFICATE, {"certifies_every_step": False, "description": "local only"}]
)


def counterexample(strategy: st.SearchStrategy[Any], prop: Callable[..., None]) -> Any:
    """An input (a tuple of arguments) on which ``prop`` fails, or None if none is found."""

    def fails(args: tuple[Any, ...]) -> bool:
        try:
            prop(*args)
        except AssertionError:
            return True
        return False

    try:
        return find(
            strategy,
            fails,
            settings=settings(
                max_examples=400, derandomize=True, database=None, phases=[Phase.generate]
            ),
        )
    except NoSuchExample:
        return None


def serialisable(verdict: Verdict) -> Verdict:
    json.dumps(verdict.model_dump(mode="json"), allow_nan=False)
    return verdict


# --------------------------------------------------------------------------- strategies
# Hypothesis draws the structure (horizon, divergence, a seed); the bulk (which steps are
# evaluated, the values) comes from a seeded generator: uniform on the grid and cheap, so the
# negative controls search many curves quickly. Everything stays derandomized.
MAX_HORIZON, MAX_EXTENSION = 10, 6
_seeds = st.integers(0, 2**32 - 1)
_horizons = st.integers(0, MAX_HORIZON)
_extensions = st.integers(0, MAX_EXTENSION)
_divergence = st.none() | st.integers(0, MAX_HORIZON)


def _subset(rng: random.Random, first: int, last: int) -> list[int]:
    density = rng.choice((0.3, 0.6, 0.9))
    return [s for s in range(first, last + 1) if rng.random() < density]


@st.composite
def curves(draw: st.DrawFn, complete: bool = False, divergence: bool = True) -> Curve:
    """A harm curve on the grid; NaN may appear at or after divergence."""
    horizon = max(draw(_horizons), 1) if complete else draw(_horizons)
    rng = random.Random(draw(_seeds))
    steps = list(range(horizon + 1)) if complete else _subset(rng, 0, horizon)
    where = draw(_divergence) if divergence else None
    diverged = None if where is None else where % (horizon + 1)
    values = [
        math.nan
        if diverged is not None and s >= diverged and rng.random() < 0.5
        else rng.choice(GRID)
        for s in steps
    ]
    return Curve(tuple(steps), tuple(values), horizon, diverged)


@st.composite
def completions(draw: st.DrawFn, refine: bool) -> tuple[Curve, Curve]:
    """A curve and a completion of it: the run continued past its horizon and re-run past its
    divergence (new values where the curve had no evidence); with ``refine`` also evaluated
    at more steps. Values at the curve's evidence steps are kept."""
    curve = draw(curves())
    horizon = curve.horizon + draw(_extensions)
    rng = random.Random(draw(_seeds))
    last_evidence = curve.horizon if curve.diverged_at is None else curve.diverged_at - 1
    steps = set(curve.steps) | set(_subset(rng, curve.horizon + 1, horizon))
    if refine:
        steps |= set(_subset(rng, 0, curve.horizon))
    kept = dict(curve.points())
    ordered = tuple(sorted(steps))
    values = tuple(
        kept[s] if s in kept and s <= last_evidence else rng.choice(GRID) for s in ordered
    )
    return curve, Curve(ordered, values, horizon)


keeps = _seeds.map(lambda seed: frozenset(_subset(random.Random(seed), 0, MAX_HORIZON)))
budgets = st.integers(1, 12)


# --------------------------------------------------------------------------- mutants
class _StrictThreshold(WeakResistance):
    """Deliberately wrong: f < φ instead of f ≤ φ."""

    def exceeds(self, value: float) -> bool:
        return value >= self.phi


class _BudgetBlind(WeakResistance):
    """Deliberately wrong: looks at every evaluated step, ignoring the budget."""

    def _evidence_within_budget(self, curve: Curve) -> list[tuple[int, float]]:
        return curve.evidence()


class _HorizonBlind(WeakResistance):
    """Deliberately wrong: a run that stopped before T counts as evidence."""

    def _insufficient_run(self, curve: Curve) -> str | None:
        return "diverged" if curve.diverged_by(self.budget) else None


class _DivergedAsHolds(WeakResistance):
    """Deliberately wrong: a run that diverged before T counts as evidence."""

    def _insufficient_run(self, curve: Curve) -> str | None:
        return "short" if curve.horizon < self.budget else None


class _FinalStepOnly(WeakResistance):
    """Deliberately wrong: judges only the last evaluated step within the budget."""

    def _evidence_within_budget(self, curve: Curve) -> list[tuple[int, float]]:
        return curve.evidence(up_to=self.budget)[-1:]


class _ClaimsComplete(WeakResistance):
    """Deliberately wrong: reports every evaluation as complete."""

    def check(self, curve: Curve, certificate: object | None = None) -> Verdict:
        verdict = super().check(curve, certificate)
        return verdict.model_copy(update={"evidence": {**verdict.evidence, "complete": True}})


class _FromBudgetOn(WeakResistance):
    """Deliberately wrong quantifier range: f ≤ φ for the steps t ≥ T."""

    def _evidence_within_budget(self, curve: Curve) -> list[tuple[int, float]]:
        return [(s, v) for s, v in curve.evidence() if s >= self.budget]


class _StrongWithoutCertificate(StrongResistance):
    """Deliberately wrong: a clean finite run is taken as proof for every t."""

    def check(self, curve: Curve, certificate: object | None = None) -> Verdict:
        verdict = super().check(curve, certificate)
        if verdict.status is Status.INCONCLUSIVE and curve.diverged_at is None:
            return verdict.model_copy(update={"status": Status.HOLDS})
        return verdict


# --------------------------------------------------------------------------- resistance
def weak_agrees_with_statement(
    cls: type[WeakResistance], phi: float, budget: int, curve: Curve
) -> None:
    """On a run evaluated at every step up to T: holds ⟺ the expanded statement is true."""
    budget = min(budget, curve.horizon)
    verdict = cls(phi, budget).check(curve)
    truth = _weak_statement(budget)(phi, *curve.values[: budget + 1])
    assert verdict.status is (Status.HOLDS if truth else Status.VIOLATED)
    assert verdict.margin is not None and (verdict.margin >= 0) == truth


@cache
def _weak_statement(budget: int) -> Callable[..., bool]:
    """The statement ∀ t ≤ T: f_t ≤ φ, expanded by sympy, as a function of φ, f_0 ... f_T."""
    statement = WeakResistance(0.5, budget).expr.subs(fw.T, budget).doit()
    harms = [harm_at(s) for s in range(budget + 1)]
    assert statement.free_symbols == {fw.phi} | {s for h in harms for s in h.free_symbols}
    return sp.lambdify([fw.phi, *harms], statement, modules="math", dummify=True)  # type: ignore[no-any-return]


def strong_refutes_as_statement(cls: type[StrongResistance], phi: float, curve: Curve) -> None:
    """violated ⟺ the statement at the evaluated steps before divergence is false."""
    verdict = serialisable(cls(phi).check(curve))
    before = [
        (s, v) for s, v in curve.points() if curve.diverged_at is None or s < curve.diverged_at
    ]
    truth = StrongResistance(phi).statement().over([s for s, _ in before])
    truth = truth.xreplace({harm_at(s): sp.Float(v) for s, v in before})
    assert truth in (sp.true, sp.false)
    assert verdict.violated == (truth is sp.false)
    assert verdict.status is not Status.HOLDS


def strong_implies_weak(
    strong: type[StrongResistance],
    weak: type[WeakResistance],
    phi: float,
    budget: int,
    curve: Curve,
    certificate: dict[str, Any] | None,
) -> None:
    on_strong = serialisable(strong(phi).check(curve, certificate))
    on_weak = serialisable(weak(phi, budget).check(curve, certificate))
    if on_strong.holds:
        assert on_weak.holds
    if on_weak.violated:
        assert on_strong.violated


def budget_monotone(
    cls: type[WeakResistance], phi: float, budgets: tuple[int, int], every: bool, curve: Curve
) -> None:
    """Less budget never turns a pass into a fail; more never turns a fail into a pass."""
    small, large = sorted(budgets)
    on_small = cls(phi, small, require_every_step=every).check(curve)
    on_large = cls(phi, large, require_every_step=every).check(curve)
    if on_large.holds:
        assert not on_small.violated
    if on_small.violated:
        assert on_large.violated


def refinement_respected(
    cls: type[WeakResistance], phi: float, budget: int, fine: Curve, keep: frozenset[int]
) -> None:
    """Evaluating more steps never turns violated into holds; a coarse pass that a finer
    evaluation refutes must have said it was incomplete."""
    coarse = fine.subsample(keep)
    on_coarse = cls(phi, budget).check(coarse)
    on_fine = cls(phi, budget).check(fine)
    if on_coarse.violated:
        assert on_fine.violated
    if on_coarse.holds and on_fine.violated:
        assert on_coarse.evidence["complete"] is False


def conclusive_verdicts_are_final(
    cls: type[WeakResistance], phi: float, budget: int, pair: tuple[Curve, Curve]
) -> None:
    """Continuing the run (past the horizon, past a divergence) never overturns holds;
    nothing overturns violated."""
    curve, completed = pair
    before = cls(phi, budget).check(curve)
    after = cls(phi, budget).check(completed)
    if before.violated:
        assert after.violated
    if before.holds:
        assert after.holds


@given(grid, budgets, curves(complete=True, divergence=False))
def test_weak_resistance_agrees_with_its_statement(phi: float, budget: int, curve: Curve) -> None:
    weak_agrees_with_statement(WeakResistance, phi, budget, curve)


@given(grid, curves())
def test_strong_resistance_refutes_exactly_as_its_statement(phi: float, curve: Curve) -> None:
    strong_refutes_as_statement(StrongResistance, phi, curve)


@given(grid, budgets, curves(), certificates)
def test_strong_implies_weak_for_every_budget(
    phi: float, budget: int, curve: Curve, certificate: dict[str, Any] | None
) -> None:
    strong_implies_weak(StrongResistance, WeakResistance, phi, budget, curve, certificate)


@given(grid, st.tuples(budgets, budgets), st.booleans(), curves())
def test_weak_resistance_is_monotone_in_the_budget(
    phi: float, pair: tuple[int, int], every: bool, curve: Curve
) -> None:
    budget_monotone(WeakResistance, phi, pair, every, curve)


@given(grid, budgets, curves(), keeps)
def test_refining_the_evaluation_is_respected(
    phi: float, budget: int, fine: Curve, keep: frozenset[int]
) -> None:
    refinement_respected(WeakResistance, phi, budget, fine, keep)


@given(grid, budgets, completions(refine=False))
def test_verdicts_survive_continuing_the_run(
    phi: float, budget: int, pair: tuple[Curve, Curve]
) -> None:
    conclusive_verdicts_are_final(WeakResistance, phi, budget, pair)


def violations_are_final(
    cls: type[WeakResistance], phi: float, budget: int, pair: tuple[Curve, Curve]
) -> None:
    """More evaluations and a longer run never overturn a violation."""
    curve, completed = pair
    if cls(phi, budget).check(curve).violated:
        assert cls(phi, budget).check(completed).violated


@given(grid, budgets, completions(refine=True))
def test_violations_survive_any_completion(
    phi: float, budget: int, pair: tuple[Curve, Curve]
) -> None:
    violations_are_final(WeakResistance, phi, budget, pair)


MUTANTS: list[tuple[str, Callable[..., None], st.SearchStrategy[Any]]] = [
    (
        "strict threshold (< for <=)",
        lambda *a: weak_agrees_with_statement(_StrictThreshold, *a),
        st.tuples(grid, budgets, curves(complete=True, divergence=False)),
    ),
    (
        "budget ignored",
        lambda *a: weak_agrees_with_statement(_BudgetBlind, *a),
        st.tuples(grid, budgets, curves(complete=True, divergence=False)),
    ),
    (
        "short run taken as evidence",
        lambda *a: conclusive_verdicts_are_final(_HorizonBlind, *a),
        st.tuples(grid, budgets, completions(refine=False)),
    ),
    (
        "diverged run taken as evidence",
        lambda *a: conclusive_verdicts_are_final(_DivergedAsHolds, *a),
        st.tuples(grid, budgets, completions(refine=False)),
    ),
    (
        "final step only",
        lambda *a: refinement_respected(_FinalStepOnly, *a),
        st.tuples(grid, budgets, curves(), keeps),
    ),
    (
        "final step only (completion)",
        lambda *a: violations_are_final(_FinalStepOnly, *a),
        st.tuples(grid, budgets, completions(refine=True)),
    ),
    (
        "incomplete evaluation reported complete",
        lambda *a: refinement_respected(_ClaimsComplete, *a),
        st.tuples(grid, budgets, curves(), keeps),
    ),
    (
        "quantifier over t >= T",
        lambda *a: budget_monotone(_FromBudgetOn, *a),
        st.tuples(grid, st.tuples(budgets, budgets), st.booleans(), curves()),
    ),
    (
        "strong resistance from a finite run",
        lambda *a: strong_implies_weak(_StrongWithoutCertificate, WeakResistance, *a),
        st.tuples(grid, budgets, curves(), certificates),
    ),
    (
        "strong resistance from a finite run (statement)",
        lambda *a: strong_refutes_as_statement(_StrongWithoutCertificate, *a),
        st.tuples(grid, curves()),
    ),
]


@pytest.mark.negative_control
@pytest.mark.parametrize(("label", "prop", "strategy"), MUTANTS, ids=[m[0] for m in MUTANTS])
def test_wrong_resistance_variants_are_caught(
    label: str, prop: Callable[..., None], strategy: st.SearchStrategy[Any]
) -> None:
    assert counterexample(strategy, prop) is not None, label


def test_weak_resistance_evidence_and_reasons() -> None:
    weak = WeakResistance(0.5, 100, require_every_step=False)
    curve = Curve((0, 50, 100, 150), (0.1, 0.5, 0.3, 0.9), horizon=150)
    verdict = serialisable(weak.check(curve))
    assert verdict.holds and verdict.margin == 0.0
    assert verdict.evidence["evaluated_steps"] == [0, 50, 100]
    assert verdict.evidence["unevaluated_steps_within_budget"] == [[1, 49], [51, 99]]
    assert verdict.evidence["unevaluated_count"] == 98 and verdict.evidence["complete"] is False
    strict = WeakResistance(0.5, 100, require_every_step=True).check(curve)
    assert strict.status is Status.INCONCLUSIVE and "98 steps" in strict.reason

    late = WeakResistance(0.5, 60).check(Curve((0, 50, 60), (0.1, 0.2, 0.75), horizon=60))
    assert late.violated and late.first_violation_step == 60 and late.margin == -0.25
    assert late.evidence["first_violation_exact"] is False
    exact = WeakResistance(0.5, 3).check(Curve((0, 1, 2, 3), (0, 0, 1, 1), horizon=3))
    assert exact.first_violation_step == 2 and exact.evidence["first_violation_exact"] is True

    short = WeakResistance(0.5, 200).check(curve.subsample({0, 50}))
    assert short.status is Status.INCONCLUSIVE and "< budget T = 200" in short.reason
    diverged = Curve((0, 50, 100), (0.1, 0.2, math.nan), horizon=100, diverged_at=80)
    assert "diverged" in WeakResistance(0.5, 100).check(diverged).reason
    assert WeakResistance(0.5, 79).check(diverged).holds
    nothing = WeakResistance(0.5, 10).check(Curve((20,), (0.1,), horizon=30))
    assert nothing.status is Status.INCONCLUSIVE and "no evaluation" in nothing.reason
    certified = WeakResistance(0.5, 200).check(curve.subsample({0, 50}), CERTIFICATE)
    assert certified.holds and "T6" in certified.reason


def test_strong_resistance_needs_a_certificate() -> None:
    strong = StrongResistance(0.5)
    clean = Curve((0, 10), (0.1, 0.2), horizon=10)
    plain = strong.check(clean)
    assert plain.status is Status.INCONCLUSIVE
    assert plain.reason == (
        "no exceedance up to step 10; strong resistance is a claim about every t"
    )

    @dataclass
    class Tail:
        certifies_every_step: bool
        description: str

    one_run = strong.check(clean, Tail(True, "contraction from step 5"))
    assert one_run.status is Status.INCONCLUSIVE and "HarmCertificate" in one_run.reason
    assert one_run.evidence["certificate"] == {
        "certifies_every_step": True,
        "description": "contraction from step 5",
        "establishes_strong_resistance": False,
    }
    local = strong.check(clean, Tail(False, "bounded for 100 steps"))
    assert local.status is Status.INCONCLUSIVE and "part of this run only" in local.reason
    with pytest.raises(AssumptionError, match="certificate_protocol"):
        strong.check(clean, {"certifies_every_step": "yes", "description": "x"})
    refuted = strong.check(Curve((0, 10), (0.1, 0.9), horizon=10), HARM_CERTIFICATE)
    assert refuted.violated and refuted.first_violation_step == 10
    diverged = strong.check(Curve((0, 10), (0.1, math.nan), 10, diverged_at=10), HARM_CERTIFICATE)
    assert diverged.status is Status.INCONCLUSIVE


def test_strong_resistance_holds_only_with_a_harm_certificate_for_the_threat_model() -> None:
    strong = StrongResistance(0.5)
    clean = Curve((0, 10), (0.1, 0.2), horizon=10)
    certified = strong.check(clean, HARM_CERTIFICATE)
    assert certified.holds and "every attack of" in certified.reason
    assert certified.evidence["certificate"]["about"] == "harm_proxy"


@pytest.mark.negative_control
@pytest.mark.parametrize(
    ("change", "gap"),
    [
        ({"about": "loss"}, "not the harm proxy"),
        ({"every_step": False}, "does not cover every t"),
        ({"every_attack": False}, "does not cover every attack"),
        ({"threshold": 0.6}, "above phi"),
    ],
)
def test_a_harm_certificate_short_of_the_threat_model_is_inconclusive(
    change: dict[str, object], gap: str
) -> None:
    """Each count on which a certificate falls short keeps the verdict inconclusive."""
    short = HARM_CERTIFICATE.model_copy(update=change)
    verdict = StrongResistance(0.5).check(Curve((0, 10), (0.1, 0.2), horizon=10), short)
    assert verdict.status is Status.INCONCLUSIVE and gap in verdict.reason


def test_harm_certificate_is_a_typed_record() -> None:
    with pytest.raises(ValidationError):
        HarmCertificate(**{**HARM_CERTIFICATE.model_dump(), "about": "vibes"})
    with pytest.raises(ValidationError):
        HarmCertificate(**{**HARM_CERTIFICATE.model_dump(), "threshold": math.nan})
    with pytest.raises(ValidationError):
        HarmCertificate(**{**HARM_CERTIFICATE.model_dump(), "extra": 1})


def test_strong_resistance_with_a_contraction_tail_certificate() -> None:
    """T6 on a contracting attack: the harmful loss L never goes below its floor. That is a
    loss-level bound for this one run: shown as evidence, strong resistance inconclusive."""
    from theory.theorems.contraction_tail import tail_bound

    loss, gradient_bound, update, factor = 2.0, 1.0, 0.1, 0.5
    losses = [loss]
    for _ in range(40):  # the fastest descent the constants allow: ΔL = −G‖u_s‖
        losses.append(losses[-1] - gradient_bound * update)
        update *= factor
    curve = Curve(tuple(range(41)), tuple(-v for v in losses), horizon=40)
    floor = 2.0 - gradient_bound * 0.1 / (1 - factor)
    for tau, certified in ((1.5, True), (1.85, False)):
        certificate = tail_bound(L_K=2.0, G=gradient_bound, u_K=0.1, c=factor, threshold=tau)
        assert certificate.certifies_every_step is certified and min(losses) >= floor - 1e-12
        strong = StrongResistance(-tau, proxy_range=(-math.inf, 0.0))
        verdict = serialisable(strong.check(curve, certificate))
        if certified:
            assert verdict.status is Status.INCONCLUSIVE
            assert "TailBound" in verdict.evidence["certificate"]["description"]
            assert verdict.evidence["certificate"]["certifies_every_step"] is True
        else:  # the run itself dips below tau = 1.85: refuted, whatever the certificate says
            assert verdict.violated and losses[verdict.first_violation_step or 0] < tau


@pytest.mark.parametrize(
    ("make", "assumption"),
    [
        (lambda: StrongResistance(1.5), "threshold_in_proxy_range"),
        (lambda: StrongResistance(-0.1), "threshold_in_proxy_range"),
        (lambda: StrongResistance(math.nan), "phi_finite"),
        (lambda: StrongResistance(0.5, proxy_range=(1.0, 0.0)), "proxy_range_nonempty"),
        (lambda: StrongResistance(0.5, proxy_range=(0.0, math.nan)), "proxy_range_is_interval"),
        (lambda: WeakResistance(0.5, 0), "budget_positive"),
        (lambda: WeakResistance(0.5, 2.5), "budget_is_integer"),  # type: ignore[arg-type]
        (lambda: WeakResistance(0.5, True), "budget_is_integer"),
        (lambda: WeakResistance(2.0, 10), "threshold_in_proxy_range"),
    ],
)
def test_resistance_parameters_are_checked(make: Callable[[], object], assumption: str) -> None:
    with pytest.raises(AssumptionError, match=assumption):
        make()


def test_resistance_on_an_unbounded_proxy_and_range_checks() -> None:
    negated_loss = WeakResistance(-2.0, 5, proxy_range=(-math.inf, 0.0))
    curve = Curve((0, 5), (-3.0, -2.5), horizon=5)
    assert negated_loss.check(curve).holds
    assert negated_loss.latex(substitute=True).endswith(r"\leq -2.0")
    with pytest.raises(AssumptionError, match="values_in_proxy_range"):
        WeakResistance(0.5, 5).check(Curve((0,), (1.5,), horizon=5))


# --------------------------------------------------------------------------- stability
values = st.sampled_from([round(0.1 * k, 1) for k in range(11)])
tolerances = st.sampled_from([0.0, 0.1, 0.2, 0.3])
directions = st.sampled_from(["two-sided", "degradation"])


@st.composite
def intervals(draw: st.DrawFn) -> tuple[float, float, tuple[float, float]]:
    original, immunized = draw(values), draw(values)
    difference = immunized - original
    low = difference - draw(st.sampled_from([0.0, 0.05, 0.15, 0.4]))
    high = difference + draw(st.sampled_from([0.0, 0.05, 0.15, 0.4]))
    return original, immunized, (low, high)


def stability_agrees_with_statement(
    cls: type[Stability],
    eps: float,
    direction: str,
    higher: bool,
    original: float,
    immunized: float,
) -> None:
    verdict = serialisable(cls(eps, direction, higher).check(original, immunized))  # type: ignore[arg-type]
    truth = _stability_statement(direction, higher)(original, immunized, eps)
    assert verdict.status is (Status.HOLDS if truth else Status.VIOLATED)


G_ORIGINAL = fw.g(fw.Model(fw.theta[0]), fw.D_REF.symbol)
G_IMMUNIZED = fw.g(fw.ImmunizedModel(fw.theta[0]), fw.D_REF.symbol)


@cache
def _stability_statement(direction: str, higher: bool) -> Callable[..., bool]:
    """The stability statement as a function of (g(M), g(M*), ε)."""
    statement = Stability(0.0, direction, higher).expr  # type: ignore[arg-type]
    return sp.lambdify([G_ORIGINAL, G_IMMUNIZED, fw.epsilon], statement, dummify=True)  # type: ignore[no-any-return]


@cache
def _stability_in_difference(direction: str, higher: bool) -> Callable[..., bool]:
    """The stability statement with g(M*) = g(M) + Δ, as a function of (Δ, ε)."""
    delta = sp.Symbol("delta", real=True)
    statement = Stability(0.0, direction, higher).expr.subs(G_IMMUNIZED, G_ORIGINAL + delta)  # type: ignore[arg-type]
    assert statement.free_symbols == {delta, fw.epsilon}
    return sp.lambdify([delta, fw.epsilon], statement)  # type: ignore[no-any-return]


def interval_verdict_is_sound(
    cls: type[Stability],
    eps: float,
    direction: str,
    higher: bool,
    case: tuple[float, float, tuple[float, float]],
) -> None:
    """holds: every difference in the interval satisfies the statement; violated: none does;
    inconclusive: some do and some do not."""
    original, immunized, (low, high) = case
    verdict = cls(eps, direction, higher).check(original, immunized, (low, high))  # type: ignore[arg-type]

    def satisfied(difference: float) -> bool:
        return bool(_stability_in_difference(direction, higher)(difference, eps))

    candidates = [low, high, immunized - original] + [
        min(max(x, low), high) for x in (-eps, eps, 0.0)
    ]
    truths = {satisfied(d) for d in candidates}
    if verdict.holds:
        assert truths == {True}
    elif verdict.violated:
        assert truths == {False}
    else:
        assert truths == {True, False}


@given(tolerances, directions, st.booleans(), values, values)
def test_stability_agrees_with_its_statement(
    eps: float, direction: str, higher: bool, original: float, immunized: float
) -> None:
    stability_agrees_with_statement(Stability, eps, direction, higher, original, immunized)


@given(tolerances, directions, st.booleans(), intervals())
def test_stability_interval_verdicts_are_sound(
    eps: float, direction: str, higher: bool, case: tuple[float, float, tuple[float, float]]
) -> None:
    interval_verdict_is_sound(Stability, eps, direction, higher, case)


@given(tolerances, st.booleans(), intervals())
def test_degradation_is_never_stricter_than_two_sided(
    eps: float, higher: bool, case: tuple[float, float, tuple[float, float]]
) -> None:
    original, immunized, interval = case
    two = Stability(eps, "two-sided", higher).check(original, immunized, interval)
    one = Stability(eps, "degradation", higher).check(original, immunized, interval)
    if two.holds:
        assert one.holds
    if one.violated:
        assert two.violated


class _SignBlindStability(Stability):
    """Deliberately wrong: ignores higher_is_better (always treats g as a loss)."""

    @property
    def expr(self) -> sp.Basic:
        return Stability(self.epsilon, self.direction, False).expr


class _EstimateOnlyStability(Stability):
    """Deliberately wrong: ignores the confidence interval."""

    def check(
        self, original: float, immunized: float, interval: tuple[float, float] | None = None
    ) -> Verdict:
        return super().check(original, immunized)


@pytest.mark.negative_control
def test_wrong_stability_variants_are_caught() -> None:
    sign_blind = counterexample(
        st.tuples(tolerances, directions, st.booleans(), values, values),
        lambda *a: stability_agrees_with_statement(_SignBlindStability, *a),
    )
    assert sign_blind is not None and sign_blind[1] == "degradation" and sign_blind[2] is True
    assert (
        counterexample(
            st.tuples(tolerances, directions, st.booleans(), intervals()),
            lambda *a: interval_verdict_is_sound(_EstimateOnlyStability, *a),
        )
        is not None
    )


def test_stability_direction_and_inputs() -> None:
    accuracy = Stability(0.05, "degradation", higher_is_better=True)
    assert accuracy.feasible_differences() == (-0.05, math.inf)
    better = accuracy.check(0.80, 0.95)
    assert better.holds and better.evidence["degradation"] < 0
    worse = accuracy.check(0.90, 0.80)
    assert worse.violated and worse.margin is not None and worse.margin < 0
    loss = Stability(0.05, "degradation")
    assert loss.feasible_differences() == (-math.inf, 0.05)
    assert Stability(0.1).feasible_differences() == (-0.1, 0.1)
    straddle = Stability(0.1).check(1.0, 1.05, (-0.02, 0.15))
    assert straddle.status is Status.INCONCLUSIVE and "straddles" in straddle.reason
    with pytest.raises(AssumptionError, match="tolerance_nonnegative"):
        Stability(-0.1)
    with pytest.raises(AssumptionError, match="direction_known"):
        Stability(0.1, "upward")  # type: ignore[arg-type]
    with pytest.raises(AssumptionError, match="estimate_inside_interval"):
        Stability(0.1).check(1.0, 1.05, (0.1, 0.2))
    with pytest.raises(AssumptionError, match="original_finite"):
        Stability(0.1).check(math.nan, 1.0)
    assert r"\left|" in Stability(0.1).latex()


# --------------------------------------------------------------------------- generalization
ids = st.frozensets(st.integers(0, 6), min_size=1, max_size=4)
cats = st.frozensets(st.sampled_from("abcd"), min_size=1, max_size=3)
domains = st.sampled_from(["in-domain", "cross-domain"])


@cache
def _generalization_statement(domain: str, phi: float, budget: int) -> sp.Basic:
    return Generalization(WeakResistance(phi, budget), domain).statement().doit()  # type: ignore[arg-type]


def generalization_agrees_with_statement(
    cls: type[Generalization],
    domain: str,
    phi: float,
    budget: int,
    curve: Curve,
    split: tuple[frozenset[int], frozenset[int], frozenset[str], frozenset[str]],
) -> None:
    """The data part of the statement is false ⟺ check rejects the split; otherwise holds ⟺
    the whole statement is true (on a run evaluated at every step)."""
    budget = min(budget, curve.horizon)
    defence, attack, defence_cats, attack_cats = split
    statement = _generalization_statement(domain, phi, budget)
    held_out, data = fw.D_HARMFUL_HELD_OUT.symbol, fw.D_HARMFUL.symbol

    def labels(names: frozenset[str]) -> sp.FiniteSet:
        return sp.FiniteSet(*(ord(c) for c in names))  # distinct numbers sympy can compare

    sets = {
        held_out: sp.FiniteSet(*attack),
        data: sp.FiniteSet(*defence),
        fw.categories(held_out): labels(attack_cats),
        fw.categories(data): labels(defence_cats),
    }

    def truth(harm: Callable[[float], float]) -> sp.Basic:
        measured = {harm_at(s, held_out): sp.Float(harm(v)) for s, v in curve.points()}
        return statement.xreplace({**sets, **measured})

    data_ok = truth(lambda v: 0.0) is sp.true  # f = 0 <= phi always: only the data part counts
    condition = cls(WeakResistance(phi, budget), domain)  # type: ignore[arg-type]
    try:
        verdict = condition.check(curve, defence, attack, defence_cats, attack_cats)
    except (DataOverlapError, AssumptionError):
        assert not data_ok
        return
    assert data_ok
    assert verdict.holds == (truth(lambda v: v) is sp.true)
    assert verdict.status is not Status.INCONCLUSIVE
    assert verdict.evidence["resistance"]["status"] == verdict.status.value


@given(
    domains, grid, budgets, curves(complete=True, divergence=False), st.tuples(ids, ids, cats, cats)
)
def test_generalization_agrees_with_its_statement(
    domain: str,
    phi: float,
    budget: int,
    curve: Curve,
    split: tuple[frozenset[int], frozenset[int], frozenset[str], frozenset[str]],
) -> None:
    generalization_agrees_with_statement(Generalization, domain, phi, budget, curve, split)


class _OverlapBlindGeneralization(Generalization):
    """Deliberately wrong: checks the categories but not that the items are disjoint."""

    def _check_split(
        self, defence: set[Any], attack: set[Any], defence_cats: set[str], attack_cats: set[str]
    ) -> None:
        super()._check_split(defence, attack - defence or {-1}, defence_cats, attack_cats)


class _SwappedDomainGeneralization(Generalization):
    """Deliberately wrong: in-domain and cross-domain swapped."""

    def _check_split(
        self, defence: set[Any], attack: set[Any], defence_cats: set[str], attack_cats: set[str]
    ) -> None:
        swapped = "cross-domain" if self.domain == "in-domain" else "in-domain"
        Generalization(self.resistance, swapped)._check_split(  # type: ignore[arg-type]
            defence, attack, defence_cats, attack_cats
        )


@pytest.mark.negative_control
@pytest.mark.parametrize("mutant", [_OverlapBlindGeneralization, _SwappedDomainGeneralization])
def test_wrong_generalization_variants_are_caught(mutant: type[Generalization]) -> None:
    strategy = st.tuples(
        domains,
        grid,
        budgets,
        curves(complete=True, divergence=False),
        st.tuples(ids, ids, cats, cats),
    )
    assert (
        counterexample(strategy, lambda *a: generalization_agrees_with_statement(mutant, *a))
        is not None
    )


def test_generalization_checks_the_split() -> None:
    weak = WeakResistance(0.5, 10)
    curve = Curve((0, 10), (0.1, 0.2), horizon=10)
    cross = Generalization(weak, "cross-domain")
    verdict = serialisable(cross.check(curve, ["d1", "d2"], ["a1"], ["reverse"], ["caesar"]))
    assert verdict.holds and verdict.condition == "generalization_cross_domain"
    assert verdict.evidence["attack_items"] == 1 and "caesar" in verdict.reason
    with pytest.raises(DataOverlapError, match=r"share 2 item\(s\), e\.g\. 'x'"):
        cross.check(curve, ["x", "y", "z"], ["y", "x", "w"], ["reverse"], ["caesar"])
    with pytest.raises(AssumptionError, match="categories_disjoint"):
        cross.check(curve, [1], [2], ["reverse", "count"], ["count"])
    inside = Generalization(weak, "in-domain")
    with pytest.raises(AssumptionError, match="attack_categories_within_defence"):
        inside.check(curve, [1], [2], ["reverse"], ["count"])
    with pytest.raises(AssumptionError, match="attack_ids_nonempty"):
        inside.check(curve, [1], [], ["reverse"], ["reverse"])
    with pytest.raises(AssumptionError, match="domain_known"):
        Generalization(weak, "sideways")  # type: ignore[arg-type]
    strong = Generalization(StrongResistance(0.5), "in-domain")
    certified = strong.check(curve, [1], [2], ["r"], ["r"], certificate=HARM_CERTIFICATE)
    assert certified.holds and certified.condition == "generalization_in_domain"
    one_run = strong.check(curve, [1], [2], ["r"], ["r"], certificate=CERTIFICATE)
    assert one_run.status is Status.INCONCLUSIVE
    text = cross.latex()
    assert r"D'_{\mathrm{harmful}} \cap D_{\mathrm{harmful}} = \emptyset" in text
    assert r"f{\left(M^{*}_{{\theta}_{t}},D'_{\mathrm{harmful}} \right)}" in text


# --------------------------------------------------------------------------- trainability
@st.composite
def harmless_curves(draw: st.DrawFn) -> Curve:
    """A fine-tuning curve of a loss evaluated every 5 steps."""
    horizon = draw(st.integers(0, 8)) * 5
    steps = tuple(range(0, horizon + 1, 5))
    return Curve(steps, tuple(draw(values) for _ in steps), horizon)


step_tolerances = st.sampled_from([0, 5, 10, 20])


def trainability_agrees_with_statement(
    cls: type[Trainability],
    eps: float,
    eps_steps: int,
    higher: bool,
    direction: str,
    original: Curve,
    immunized: Curve,
) -> None:
    """On conclusive verdicts: holds ⟺ the statement with the best values and the first
    steps reaching the target is true (computed here from the curves)."""
    verdict = serialisable(cls(eps, eps_steps, higher, direction).check(original, immunized))  # type: ignore[arg-type]
    best = max if higher else min
    target = best(original.values) + (-eps if higher else eps)

    def first(curve: Curve) -> int | None:
        hits = [s for s, v in curve.points() if (v >= target if higher else v <= target)]
        return hits[0] if hits else None

    if verdict.status is Status.INCONCLUSIVE:
        both_at_start = first(original) == 0 and first(immunized) == 0
        assert immunized.horizon < (first(original) or 0) + eps_steps or both_at_start
        return
    t_immunized = first(immunized)
    if t_immunized is None:
        assert verdict.violated
        return
    statement = _trainability_statement(higher, direction)
    truth = statement(
        best(original.values),
        best(immunized.values),
        t_immunized,
        first(original),
        eps,
        eps_steps,
    )
    assert verdict.holds == truth


@cache
def _trainability_statement(higher: bool, direction: str) -> Callable[..., bool]:
    """The trainability statement as a function of (best M, best M*, t1, t2, ε, ε_steps)."""
    reference = Trainability(0.0, 0, higher, direction)  # type: ignore[arg-type]
    inputs = [reference.best_original, reference.best_immunized, fw.t1, fw.t2]
    return sp.lambdify(  # type: ignore[no-any-return]
        [*inputs, fw.epsilon, fw.epsilon_steps], reference.expr, modules="math", dummify=True
    )


def trainability_symmetric_under_negation(
    cls: type[Trainability],
    eps: float,
    eps_steps: int,
    direction: str,
    original: Curve,
    immunized: Curve,
) -> None:
    """A loss g and the score −g (higher is better) give the same verdict."""

    def negated(curve: Curve) -> Curve:
        return Curve(curve.steps, tuple(-v for v in curve.values), curve.horizon)

    as_loss = cls(eps, eps_steps, False, direction).check(original, immunized)  # type: ignore[arg-type]
    as_score = cls(eps, eps_steps, True, direction).check(negated(original), negated(immunized))  # type: ignore[arg-type]
    assert as_loss.status is as_score.status


def trainability_reflexive(
    cls: type[Trainability], eps: float, eps_steps: int, higher: bool, curve: Curve
) -> None:
    """A model is as trainable as itself (when the run is long enough to tell)."""
    verdict = cls(eps, eps_steps, higher).check(curve, curve)
    best = max(curve.values) if higher else min(curve.values)
    target = best - eps if higher else best + eps
    reached = next(s for s, v in curve.points() if (v >= target if higher else v <= target))
    if curve.horizon >= reached + eps_steps and reached > 0:
        assert verdict.holds
    else:  # too short, or the target met at step 0: the run shows nothing
        assert verdict.status is Status.INCONCLUSIVE


@given(tolerances, step_tolerances, st.booleans(), directions, harmless_curves(), harmless_curves())
def test_trainability_agrees_with_its_statement(
    eps: float, eps_steps: int, higher: bool, direction: str, original: Curve, immunized: Curve
) -> None:
    trainability_agrees_with_statement(
        Trainability, eps, eps_steps, higher, direction, original, immunized
    )


@given(tolerances, step_tolerances, directions, harmless_curves(), harmless_curves())
def test_trainability_is_symmetric_under_negation(
    eps: float, eps_steps: int, direction: str, original: Curve, immunized: Curve
) -> None:
    trainability_symmetric_under_negation(
        Trainability, eps, eps_steps, direction, original, immunized
    )


@given(tolerances, step_tolerances, st.booleans(), harmless_curves())
def test_trainability_is_reflexive(eps: float, eps_steps: int, higher: bool, curve: Curve) -> None:
    trainability_reflexive(Trainability, eps, eps_steps, higher, curve)


@dataclass(frozen=True)
class _FlagBlindTrainability(Trainability):
    """Deliberately wrong: ignores higher_is_better."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "higher_is_better", False)


class _StrictStepsTrainability(Trainability):
    """Deliberately wrong: |t1 − t2| < ε_steps instead of ≤."""

    @property
    def speed(self) -> sp.Basic:
        return sp.Abs(fw.t1 - fw.t2) < fw.epsilon_steps


class _OneSidedQualityTrainability(Trainability):
    """Deliberately wrong: the two-sided quality relation checked one-sidedly."""

    @property
    def quality(self) -> sp.Basic:
        return Trainability(
            self.epsilon_quality, self.epsilon_steps, self.higher_is_better, "degradation"
        ).quality


@pytest.mark.negative_control
def test_wrong_trainability_variants_are_caught() -> None:
    assert (
        counterexample(
            st.tuples(
                tolerances, step_tolerances, directions, harmless_curves(), harmless_curves()
            ),
            lambda *a: trainability_symmetric_under_negation(_FlagBlindTrainability, *a),
        )
        is not None
    )
    assert (
        counterexample(
            st.tuples(tolerances, step_tolerances, st.booleans(), harmless_curves()),
            lambda *a: trainability_reflexive(_StrictStepsTrainability, *a),
        )
        is not None
    )
    found = counterexample(
        st.tuples(
            tolerances,
            step_tolerances,
            st.booleans(),
            directions,
            harmless_curves(),
            harmless_curves(),
        ),
        lambda *a: trainability_agrees_with_statement(_OneSidedQualityTrainability, *a),
    )
    assert found is not None


def test_trainability_cases() -> None:
    loss = Trainability(0.1, 10)
    original = Curve((0, 10, 20, 30), (2.0, 1.0, 0.5, 0.4), horizon=30)
    slower = Curve((0, 10, 20, 30, 40, 50), (2.0, 1.5, 1.0, 0.8, 0.45, 0.42), horizon=50)
    verdict = serialisable(loss.check(original, slower))
    assert verdict.violated and "step 40" in verdict.reason and verdict.margin is None
    assert verdict.evidence["target"] == pytest.approx(0.5)
    assert verdict.evidence["steps_margin"] == -10
    assert Trainability(0.1, 20).check(original, slower).holds
    stuck = Curve((0, 10, 20, 30), (2.0, 1.9, 1.9, 1.9), horizon=30)
    never = loss.check(original, stuck)
    assert never.violated and "never reaches" in never.reason
    short = loss.check(original, Curve((0, 10), (2.0, 1.9), horizon=10))
    assert short.status is Status.INCONCLUSIVE and "stopped at step 10" in short.reason
    blown = Curve((0, 10), (2.0, math.nan), horizon=10, diverged_at=10)
    assert loss.check(original, blown).status is Status.INCONCLUSIVE
    unreachable = loss.check(original, slower, target=0.1)
    assert unreachable.status is Status.INCONCLUSIVE and "never reaches" in unreachable.reason
    faster = Curve((0, 10, 20, 30), (0.4, 0.4, 0.4, 0.4), horizon=30)
    assert Trainability(0.1, 10, direction="degradation").check(original, faster).holds
    flat = Curve((0, 10, 20, 30), (0.4, 0.4, 0.4, 0.4), horizon=30)
    untrained = Trainability(0.1, 10).check(flat, flat)  # met at step 0 by both: no evidence
    assert untrained.status is Status.INCONCLUSIVE and "step 0 by both" in untrained.reason
    assert Trainability(0.1, 10).check(original, faster).violated
    with pytest.raises(AssumptionError, match="step_tolerance_nonnegative"):
        Trainability(0.1, -1)
    with pytest.raises(AssumptionError, match="original_curve_evaluated"):
        loss.check(Curve((), (), horizon=5), original)
    text = loss.latex()
    assert r"\min_{t} g{\left(M^{*}_{{\theta}_{t}},D_{\mathrm{ok}} \right)}" in text
    assert r"\left|{t_{1} - t_{2}}\right| \leq \varepsilon_{\mathrm{steps}}" in text
    assert r"\max_{t}" in Trainability(0.1, 10, higher_is_better=True).latex()
