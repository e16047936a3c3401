"""Tests of theory.framework (problem (1), symbols, threat model) and theory.curve."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pydantic
import pytest
import sympy as sp
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from theory import framework as fw
from theory.curve import Curve
from theory.errors import AssumptionError, HftaInputError


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


# --------------------------------------------------------------------------- symbols
def test_symbols_carry_only_structural_assumptions() -> None:
    # phi >= 0 and T > 0 must stay checks on numbers, never be assumed away by sympy
    assert fw.phi.is_real and fw.phi.is_nonnegative is None
    assert fw.epsilon.is_real and fw.epsilon.is_nonnegative is None
    assert fw.T.is_integer and fw.T.is_positive is None
    assert isinstance(fw.phi >= 0, sp.GreaterThan)
    assert isinstance(fw.T > 0, sp.StrictGreaterThan)
    assert isinstance(fw.theta[fw.t], sp.Indexed) and isinstance(fw.eta[fw.t], sp.Indexed)


def test_data_sets_are_named_with_distinct_roles() -> None:
    names = [d.name for d in fw.DATA_SETS]
    assert names == ["D_harmful", "D'_harmful", "D_ref", "D_ok"]
    assert len({d.role for d in fw.DATA_SETS}) == 4
    assert len({d.symbol for d in fw.DATA_SETS}) == 4
    assert all(d.description for d in fw.DATA_SETS)
    assert fw.latex(fw.D_HARMFUL_HELD_OUT.symbol) == r"D'_{\mathrm{harmful}}"


# --------------------------------------------------------------------------- problem (1)
def test_problem_renders_argmin_expectation_and_update_rule() -> None:
    text = fw.HarmfulTrainingProblem().latex()
    assert r"\operatorname*{arg\,min}_{{\theta}_{t}}" in text
    assert r"\mathbb{E}_{(X, Y) \sim D_{\mathrm{harmful}}}" in text
    assert r"{\theta}_{t + 1} = {\theta}_{t} - {\eta}_{t}" in text
    assert r"\nabla_{{\theta}_{t}}" in text
    on_ref = fw.HarmfulTrainingProblem(fw.D_REF)
    assert fw.D_REF.symbol in on_ref.objective.free_symbols


def _quadratic_descent_matches_closed_form(
    problem: fw.HarmfulTrainingProblem, curvature: float, start: float, rate: float, steps: int
) -> None:
    """GD on L(θ) = a/2 (θ − c)²: θ_t − c = (1 − η a)^t (θ_0 − c) (docs/science.md §2)."""
    center = 0.5
    theta = start
    for _ in range(steps):
        theta = float(problem.step(theta, rate, curvature * (theta - center)))
    expected = center + (1 - rate * curvature) ** steps * (start - center)
    assert math.isclose(theta, expected, rel_tol=1e-9, abs_tol=1e-9)


quadratics = st.tuples(
    st.floats(0.1, 4.0), st.floats(-3.0, 3.0), st.floats(0.01, 0.4), st.integers(1, 12)
)


DESCENT = fw.HarmfulTrainingProblem()


@given(quadratics)
def test_update_rule_is_gradient_descent(args: tuple[float, float, float, int]) -> None:
    _quadratic_descent_matches_closed_form(DESCENT, *args)


@dataclass(frozen=True)
class _AscentProblem(fw.HarmfulTrainingProblem):
    """Deliberately wrong: θ[t+1] = θ[t] + η_t ∇L (gradient ascent)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        lhs, rhs = self.update_rule.args
        object.__setattr__(self, "update_rule", sp.Eq(lhs, 2 * fw.theta[fw.t] - rhs))


@pytest.mark.negative_control
def test_ascent_update_rule_is_caught() -> None:
    ascent = _AscentProblem()

    def prop(curvature: float, start: float, rate: float, steps: int) -> None:
        _quadratic_descent_matches_closed_form(ascent, curvature, start, rate, steps)

    assert counterexample(quadratics, prop) is not None


def test_update_rule_on_vectors_and_bad_rate() -> None:
    problem = fw.HarmfulTrainingProblem()
    out = problem.step(np.array([1.0, 2.0]), 0.5, np.array([2.0, -2.0]))
    assert np.allclose(out, [0.0, 3.0])
    for rate in (0.0, -1e-3, math.nan, math.inf):
        with pytest.raises(AssumptionError, match="learning_rate_positive"):
            problem.step(1.0, rate, 1.0)


# --------------------------------------------------------------------------- quantifiers
def test_forall_expands_over_a_concrete_budget() -> None:
    body = fw.f(fw.theta[fw.t]) <= fw.phi
    statement = fw.ForAll(fw.t, 0, fw.T, body)
    assert fw.t not in statement.free_symbols
    assert {fw.T, fw.phi} <= statement.free_symbols
    assert statement.doit() == statement  # symbolic budget: stays quantified
    expanded = statement.subs({fw.T: 2, fw.phi: 0.5}).doit()
    assert expanded == sp.And(*[fw.f(fw.theta[k]) <= 0.5 for k in range(3)])
    assert expanded.subs({fw.f(fw.theta[k]): 0.5 for k in range(3)}) is sp.true
    assert expanded.subs({fw.f(fw.theta[k]): 0.3 * k for k in range(3)}) is sp.false
    everywhere = fw.ForAll(fw.t, 0, sp.oo, body)
    assert everywhere.doit() == everywhere
    assert everywhere.over([3, 1]) == sp.And(
        fw.f(fw.theta[3]) <= fw.phi, fw.f(fw.theta[1]) <= fw.phi
    )
    assert r"\forall t \in \{0, 1, \dots\}" in fw.latex(everywhere)


def test_set_relations_evaluate_on_concrete_sets() -> None:
    a, b = sp.FiniteSet(1, 2), sp.FiniteSet(3)
    assert fw.Disjoint(a, b) is sp.true and fw.Disjoint(a, a) is sp.false
    assert fw.SubsetOf(b, sp.FiniteSet(3, 4)) is sp.true and fw.SubsetOf(a, b) is sp.false
    x, y = sp.symbols("x y")  # x may equal y: undecided, so left unevaluated
    assert isinstance(fw.Disjoint(sp.FiniteSet(x), sp.FiniteSet(y)), fw.Disjoint)
    assert isinstance(fw.SubsetOf(sp.FiniteSet(x), sp.FiniteSet(y)), fw.SubsetOf)
    symbolic = fw.Disjoint(fw.D_HARMFUL_HELD_OUT.symbol, fw.D_HARMFUL.symbol)
    assert symbolic.xreplace({fw.D_HARMFUL_HELD_OUT.symbol: a, fw.D_HARMFUL.symbol: b}) is sp.true
    assert fw.latex(symbolic) == r"D'_{\mathrm{harmful}} \cap D_{\mathrm{harmful}} = \emptyset"


# --------------------------------------------------------------------------- threat model
TOML = """
budget_steps = 200
learning_rates = [1e-4, 3e-4, 1e-3]
optimizers = ["adamw", "sgd"]
schedules = ["constant", "cosine"]
warmup_fraction = 0.0
max_grad_norm = 1.0
lora = "both"
batch_sizes = [16]
seeds = [0, 1]
"""


def test_threat_model_from_toml_and_its_attacks() -> None:
    model = fw.ThreatModel.model_validate(tomllib.loads(TOML))
    assert model.learning_rates == (1e-4, 3e-4, 1e-3) and model.lora_modes == (False, True)
    settings_ = model.attack_settings()
    assert len(settings_) == 3 * 2 * 2 * 2 * 1 * 2
    assert len(set(settings_)) == len(settings_)
    assert {s.lora for s in settings_} == {False, True}
    assert all(s.budget_steps == 200 and s.max_grad_norm == 1.0 for s in settings_)
    assert model.substitutions() == {fw.T: 200}
    defaults = fw.ThreatModel(budget_steps=10, learning_rates=(3e-5,))
    assert defaults.optimizers == ("adamw",) and defaults.schedules == ("cosine",)
    assert defaults.warmup_fraction == 0.1 and defaults.seeds == (0, 1, 2, 3, 4)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        defaults.budget_steps = 5


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"budget_steps": 0}, "budget_steps"),
    ({"budget_steps": 2.5}, "budget_steps"),
    ({"budget_steps": True}, "budget_steps"),
    ({"learning_rates": []}, "learning_rates must list at least one value"),
    ({"learning_rates": [1e-4, -1e-4]}, "learning_rates.1"),
    ({"learning_rates": [math.inf]}, "learning_rates.0"),
    ({"learning_rates": ["1e-4"]}, "learning_rates.0"),
    ({"optimizers": ["rmsprop"]}, "optimizers.0"),
    ({"optimizers": ["sgd", "sgd"]}, "optimizers lists 'sgd' twice"),
    ({"schedules": ["step"]}, "schedules.0"),
    ({"warmup_fraction": 1.0}, "warmup_fraction"),
    ({"warmup_fraction": -0.1}, "warmup_fraction"),
    ({"max_grad_norm": 0.0}, "max_grad_norm"),
    ({"lora": "yes"}, 'lora must be true, false or "both"'),
    ({"lora": 1}, 'lora must be true, false or "both"'),
    ({"batch_sizes": [0]}, "batch_sizes.0"),
    ({"seeds": [-1]}, "seeds.0"),
    ({"seeds": []}, "seeds must list at least one value"),
    ({"epochs": 1}, "epochs"),
]


@pytest.mark.parametrize(("change", "message"), BAD_FIELDS)
def test_threat_model_rejects_bad_fields_clearly(change: dict[str, Any], message: str) -> None:
    data: dict[str, Any] = {"budget_steps": 10, "learning_rates": [1e-4], **change}
    with pytest.raises(pydantic.ValidationError) as info:
        fw.ThreatModel.model_validate(data)
    assert info.value.error_count() == 1
    assert message in str(info.value)


# A field value drawn from a mix of valid and invalid ones; the oracle restates the spec.
field_values = st.fixed_dictionaries(
    {
        "budget_steps": st.sampled_from([1, 50, 0, -3]),
        "learning_rates": st.lists(st.sampled_from([1e-4, 3e-4, 0.0, -1e-3]), max_size=3),
        "optimizers": st.lists(st.sampled_from(["sgd", "adam", "adamw", "lion"]), max_size=3),
        "warmup_fraction": st.sampled_from([0.0, 0.1, 0.99, 1.0]),
        "max_grad_norm": st.sampled_from([None, 1.0, 0.0]),
        "seeds": st.lists(st.sampled_from([0, 1, 7, -1]), max_size=3),
    }
)


def _valid_by_spec(data: dict[str, Any]) -> bool:
    def listed(values: list[Any], ok: Callable[[Any], bool]) -> bool:
        return bool(values) and len(set(values)) == len(values) and all(map(ok, values))

    return (
        data["budget_steps"] > 0
        and listed(data["learning_rates"], lambda r: r > 0)
        and listed(data["optimizers"], lambda o: o in ("sgd", "adam", "adamw"))
        and 0 <= data["warmup_fraction"] < 1
        and (data["max_grad_norm"] is None or data["max_grad_norm"] > 0)
        and listed(data["seeds"], lambda s: s >= 0)
    )


def _accepts_exactly_the_valid(model: type[pydantic.BaseModel], data: dict[str, Any]) -> None:
    try:
        parsed = model.model_validate(data)
    except pydantic.ValidationError:
        assert not _valid_by_spec(data), data
        return
    assert _valid_by_spec(data), data
    assert model.model_validate(parsed.model_dump()) == parsed


@given(field_values)
def test_threat_model_accepts_exactly_the_valid_ones(data: dict[str, Any]) -> None:
    _accepts_exactly_the_valid(fw.ThreatModel, data)


class _LenientThreatModel(fw.ThreatModel):
    """Deliberately wrong: learning rates and seeds without constraints or uniqueness."""

    learning_rates: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)

    @pydantic.field_validator("optimizers", "schedules", "batch_sizes")
    @classmethod
    def _non_empty_and_unique(cls, values: tuple[Any, ...], info: Any) -> tuple[Any, ...]:
        return values


@pytest.mark.negative_control
def test_lenient_threat_model_is_caught() -> None:
    found = counterexample(
        field_values.map(lambda d: (d,)),
        lambda d: _accepts_exactly_the_valid(_LenientThreatModel, d),
    )
    assert found is not None


# --------------------------------------------------------------------------- curve
BAD_CURVES: list[tuple[dict[str, Any], str]] = [
    ({"steps": (0, 1), "values": (0.1,), "horizon": 3}, "steps_and_values_same_length"),
    ({"steps": (0, 0), "values": (0.1, 0.2), "horizon": 3}, "steps_strictly_increasing"),
    ({"steps": (2, 1), "values": (0.1, 0.2), "horizon": 3}, "steps_strictly_increasing"),
    ({"steps": (-1,), "values": (0.1,), "horizon": 3}, "steps_nonnegative"),
    ({"steps": (4,), "values": (0.1,), "horizon": 3}, "steps_within_horizon"),
    ({"steps": (1.0,), "values": (0.1,), "horizon": 3}, "steps_are_integers"),
    ({"steps": (True,), "values": (0.1,), "horizon": 3}, "steps_are_integers"),
    ({"steps": (0,), "values": ("x",), "horizon": 3}, "values_are_numbers"),
    ({"steps": (0,), "values": (math.nan,), "horizon": 3}, "non_finite_only_after_divergence"),
    (
        {"steps": (0, 2), "values": (0.1, math.inf), "horizon": 3, "diverged_at": 3},
        "non_finite_only_after_divergence",
    ),
    ({"steps": (0,), "values": (0.1,), "horizon": 3, "diverged_at": 4}, "divergence_within"),
    ({"steps": (), "values": (), "horizon": -1}, "horizon_nonnegative"),
]


@pytest.mark.parametrize(("kwargs", "assumption"), BAD_CURVES)
def test_curve_rejects_bad_input(kwargs: dict[str, Any], assumption: str) -> None:
    with pytest.raises(AssumptionError, match=assumption) as info:
        Curve(**kwargs)
    assert isinstance(info.value, HftaInputError)


def test_curve_accepts_numpy_and_divergence() -> None:
    curve = Curve(np.array([0, 5]), np.array([0.1, np.nan]), np.int64(9), diverged_at=5)  # type: ignore[arg-type]
    assert curve.steps == (0, 5) and isinstance(curve.steps[0], int)
    assert curve.evidence() == [(0, 0.1)]
    assert curve.diverged_by(5) and not curve.diverged_by(4)
    assert curve.to_dict()["values"] == [0.1, None]


@st.composite
def curves_with_bound(draw: st.DrawFn) -> tuple[Curve, int]:
    horizon = draw(st.integers(0, 15))
    steps = sorted(draw(st.sets(st.integers(0, horizon))))
    diverged = draw(st.none() | st.integers(0, horizon))
    values = [math.nan if diverged is not None and s >= diverged else 0.5 for s in steps]
    return Curve(tuple(steps), tuple(values), horizon, diverged), draw(st.integers(0, 20))


def _gaps_are_the_steps_without_evidence(
    gaps_of: Callable[[Curve, int], list[tuple[int, int]]], curve: Curve, up_to: int
) -> None:
    gaps = gaps_of(curve, up_to)
    covered = [s for a, b in gaps for s in range(a, b + 1)]
    ran = curve.horizon if curve.diverged_at is None else curve.diverged_at - 1
    expected = [s for s in range(up_to + 1) if not (s in curve.steps and s <= ran)]
    assert covered == expected
    assert all(b + 1 < a2 for (_, b), (a2, _) in pairwise(gaps))


@given(curves_with_bound())
def test_unevaluated_ranges_are_the_steps_without_evidence(case: tuple[Curve, int]) -> None:
    _gaps_are_the_steps_without_evidence(Curve.unevaluated, *case)


@pytest.mark.negative_control
def test_gaps_ignoring_divergence_are_caught() -> None:
    def ignoring_divergence(curve: Curve, up_to: int) -> list[tuple[int, int]]:
        return Curve(curve.steps, (0.0,) * len(curve), curve.horizon).unevaluated(up_to)

    found = counterexample(
        curves_with_bound(),
        lambda curve, up_to: _gaps_are_the_steps_without_evidence(
            ignoring_divergence, curve, up_to
        ),
    )
    assert found is not None
