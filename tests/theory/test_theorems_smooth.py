"""T1, T2, T3, T4, T6, T7 as objects: statements, assumptions, symbolic = numeric, solvers.

The properties on real trajectories live in ``test_t1_t2_t7_smooth_losses.py``,
``test_t3_adam.py``, ``test_t4_pl_convergence.py`` and ``test_t6_contraction_tail.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import sympy as sp
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from theory import optimizers
from theory.errors import AssumptionError
from theory.theorem import Theorem, first_step_at_or_below
from theory.theorems import (
    CATALOGUE_MODULES,
    clipped_sgd_progress,
    contraction_tail,
    path_length_adam,
    pl_convergence,
    smoothness_sandwich,
    stability_displacement,
)

MODULES: dict[str, ModuleType] = {
    "T1": smoothness_sandwich,
    "T2": clipped_sgd_progress,
    "T3": path_length_adam,
    "T4": pl_convergence,
    "T6": contraction_tail,
    "T7": stability_displacement,
}
STEPS_KIND = {
    "T1": None,
    "T2": "minimum",
    "T3": "minimum",
    "T4": "maximum",
    "T6": "minimum",
    "T7": None,
}
THEOREMS = [m.THEOREM for m in MODULES.values()]

pos = st.floats(1e-3, 1e2)
nonneg = st.one_of(st.just(0.0), pos)
unit = st.floats(0.01, 0.99)
#: settings of the counterexample searches of the negative controls
FIND = settings(max_examples=2000, database=None, phases=[Phase.generate])


def _theorem_ids(thm: Theorem) -> str:
    return thm.label


# ---------------------------------------------------------------------- the statements
@pytest.mark.parametrize("label", list(MODULES))
def test_label_name_and_catalogue_position(label: str) -> None:
    module = MODULES[label]
    thm = module.THEOREM
    assert thm.label == label
    assert module.__name__.rsplit(".", 1)[-1] == thm.name
    assert CATALOGUE_MODULES.index(thm.name) == int(label[1:]) - 1
    assert thm.title and thm.source
    assert thm.steps_kind == STEPS_KIND[label]


@pytest.mark.parametrize("thm", THEOREMS, ids=_theorem_ids)
def test_symbols_are_real_and_carry_no_sign_assumption(thm: Theorem) -> None:
    exprs = [thm.conclusion, thm.bound, *(a.statement for a in thm.assumptions)]
    symbols = set().union(*(e.free_symbols for e in exprs))
    assert symbols
    for s in symbols:
        assert s.is_real is True, s
        assert s.is_positive is None and s.is_nonnegative is None and s.is_integer is None, s


@pytest.mark.parametrize("thm", THEOREMS, ids=_theorem_ids)
def test_bound_is_a_side_of_the_conclusion(thm: Theorem) -> None:
    relations = (
        [thm.conclusion]
        if isinstance(thm.conclusion, sp.core.relational.Relational)
        else list(thm.conclusion.args)
    )
    assert any(thm.bound in (r.lhs, r.rhs) for r in relations)


@pytest.mark.parametrize("thm", THEOREMS, ids=_theorem_ids)
def test_latex_describe_and_assumption_kinds(thm: Theorem) -> None:
    assert r"\Longrightarrow" in thm.latex()
    described = json.loads(json.dumps(thm.describe()))
    assert described["label"] == thm.label
    names = [a.name for a in thm.assumptions]
    assert len(names) == len(set(names))
    assert thm.hypotheses and thm.parameter_assumptions
    assert thm.assumption(names[0]) is thm.assumptions[0]
    for a in thm.parameter_assumptions:  # a parameter assumption is a checkable relation
        assert isinstance(a.statement, sp.core.relational.Relational), a.name


def test_t2_and_t7_bounds_are_derived_from_t1() -> None:
    """T2's per-step decrease and T7's bound are T1's sides after substitution."""
    s = smoothness_sandwich
    eta, C, G, beta = sp.symbols("eta C G beta", real=True)
    delta = sp.Symbol("delta_norm", real=True)
    expected = G * eta * C + beta * eta**2 * C**2 / 2
    assert sp.simplify(clipped_sgd_progress.STEP_DECREASE - expected) == 0
    L0 = sp.Symbol("L0", real=True)
    lower_at_worst = s.LOWER_BOUND.subs(
        {sp.Symbol("gdot", real=True): -G * eta * C, delta: eta * C}
    )
    assert sp.simplify(L0 - lower_at_worst - clipped_sgd_progress.STEP_DECREASE) == 0
    G_g, beta_g = sp.symbols("G_g beta_g", real=True)
    assert sp.simplify(stability_displacement.BOUND - (G_g * delta + beta_g * delta**2 / 2)) == 0


def test_t6_geometric_sum_matches_sympy_summation() -> None:
    c, u_K, n, i = (sp.Symbol(x, real=True) for x in ("c", "u_K", "n", "i"))
    total = sp.summation(u_K * c**i, (i, 0, n - 1))
    for c_value in (sp.Rational(1, 3), sp.Rational(9, 10)):
        for n_value in (0, 1, 5):
            lhs = total.subs({c: c_value, n: n_value})
            rhs = contraction_tail.HORIZON_PATH.subs({c: c_value, n: n_value})
            assert sp.simplify(lhs - rhs) == 0


# ---------------------------------------------------------------------- invalid input
BAD_INPUTS: list[tuple[str, Callable[[], Any], str]] = [
    (
        "T1 beta<0",
        lambda: smoothness_sandwich.THEOREM.evaluate(L0=1, gdot=0, beta=-1, delta_norm=1),
        "beta_nonnegative",
    ),
    (
        "T1 nan",
        lambda: smoothness_sandwich.THEOREM.evaluate(L0=float("nan"), gdot=0, beta=1, delta_norm=1),
        "L0_finite",
    ),
    (
        "T1 np.float32 nan",
        lambda: smoothness_sandwich.THEOREM.evaluate(
            L0=np.float32("nan"), gdot=0, beta=1, delta_norm=1
        ),
        "L0_finite",
    ),
    (
        "T1 |Delta|<0",
        lambda: smoothness_sandwich.THEOREM.evaluate(L0=1, gdot=0, beta=1, delta_norm=-1),
        "delta_norm_nonnegative",
    ),
    (
        "T1 curvature |Delta|=0",
        lambda: smoothness_sandwich.segment_curvature(L0=1, L1=1, gdot=0, delta_norm=0.0),
        "delta_norm_positive",
    ),
    (
        "T1 curvature inf",
        lambda: smoothness_sandwich.segment_curvature(L0=1, L1=math.inf, gdot=0, delta_norm=1.0),
        "L1_finite",
    ),
    (
        "T1 missing",
        lambda: smoothness_sandwich.THEOREM.evaluate(L0=1, gdot=0, beta=1),
        "inputs_given",
    ),
    (
        "T1 no solver",
        lambda: smoothness_sandwich.THEOREM.steps_to_threshold(0.0, L0=1),
        "has_steps_solver",
    ),
    (
        "T2 eta=0",
        lambda: clipped_sgd_progress.THEOREM.evaluate(L0=1, G=1, eta=0, C=1, beta=1, t=1),
        "eta_positive",
    ),
    (
        "T2 C=0",
        lambda: clipped_sgd_progress.THEOREM.steps_to_threshold(
            0.5, L0=1, G=1, eta=0.1, C=0, beta=1
        ),
        "C_positive",
    ),
    (
        "T2 G<0",
        lambda: clipped_sgd_progress.THEOREM.evaluate(L0=1, G=-1, eta=0.1, C=1, beta=1, t=1),
        "G_nonnegative",
    ),
    (
        "T2 beta<0",
        lambda: clipped_sgd_progress.THEOREM.evaluate(L0=1, G=1, eta=0.1, C=1, beta=-1, t=1),
        "beta_nonnegative",
    ),
    (
        "T2 t fractional",
        lambda: clipped_sgd_progress.THEOREM.evaluate(L0=1, G=1, eta=0.1, C=1, beta=1, t=2.5),
        "t_integer",
    ),
    (
        "T2 t<0",
        lambda: clipped_sgd_progress.THEOREM.evaluate(L0=1, G=1, eta=0.1, C=1, beta=1, t=-1),
        "t_nonnegative",
    ),
    (
        "T2 tau nan",
        lambda: clipped_sgd_progress.THEOREM.steps_to_threshold(
            float("nan"), L0=1, G=1, eta=0.1, C=1, beta=1
        ),
        "tau_finite",
    ),
    (
        "T2 schedule eta<0",
        lambda: clipped_sgd_progress.envelope(L0=1, G=1, C=1, beta=1, learning_rates=[0.1, -0.1]),
        "eta_nonnegative",
    ),
    (
        "T2 schedule nan",
        lambda: clipped_sgd_progress.certified_min_steps_schedule(
            L0=1, threshold=0.5, G=1, C=1, beta=1, learning_rates=[0.1, float("nan")]
        ),
        "eta_finite",
    ),
    (
        "T2 momentum 1",
        lambda: clipped_sgd_progress.envelope(
            L0=1, G=1, C=1, beta=1, learning_rates=[0.1], momentum=1.0
        ),
        "momentum_below_one",
    ),
    (
        "T2 missing",
        lambda: clipped_sgd_progress.THEOREM.steps_to_threshold(0.5, L0=1, G=1, eta=0.1, C=1),
        "inputs_given",
    ),
    (
        "T3 beta1^2>=beta2",
        lambda: path_length_adam.THEOREM.evaluate(
            L0=1, G=1, eta=1e-3, beta1=0.9, beta2=0.8, d=10, t=1
        ),
        "beta1_squared_below_beta2",
    ),
    (
        "T3 closed form with AdamW",
        lambda: path_length_adam.THEOREM.steps_to_threshold(
            0.5, L0=1, G=1, eta=1e-3, beta1=0.9, beta2=0.999, d=3, lam=0.1
        ),
        "uniform_bound_without_weight_decay",
    ),
    (
        "T2 closed form with momentum",
        lambda: clipped_sgd_progress.THEOREM.steps_to_threshold(
            0.5, L0=1, G=1, eta=0.1, C=1, beta=1, momentum=0.9
        ),
        "closed_form_without_momentum",
    ),
    (
        "T3 beta1=1",
        lambda: optimizers.adam_coordinate_bound(1, beta1=1.0, beta2=0.999),
        "beta1_below_one",
    ),
    (
        "T3 beta2=0",
        lambda: optimizers.adam_coordinate_bound_limit(beta1=0.0, beta2=0.0),
        "beta2_positive",
    ),
    (
        "T3 beta2=1",
        lambda: optimizers.adam_coordinate_bound_limit(beta1=0.5, beta2=1.0),
        "beta2_below_one",
    ),
    (
        "T3 d=0",
        lambda: path_length_adam.THEOREM.steps_to_threshold(
            0.5, L0=1, G=1, eta=1e-3, beta1=0.9, beta2=0.999, d=0
        ),
        "d_positive",
    ),
    (
        "T3 d fractional",
        lambda: path_length_adam.envelope(
            L0=1, G=1, learning_rates=[1e-3], beta1=0.9, beta2=0.999, d=2.5
        ),
        "d_integer",
    ),
    (
        "T3 eta*lam>1",
        lambda: path_length_adam.envelope(
            L0=1,
            G=1,
            learning_rates=[0.5, 2.0],
            beta1=0.9,
            beta2=0.999,
            d=3,
            lam=0.6,
            theta0_norm=1.0,
        ),
        "eta_lam_at_most_one",
    ),
    (
        "T3 AdamW without theta0",
        lambda: path_length_adam.envelope(
            L0=1, G=1, learning_rates=[1e-3], beta1=0.9, beta2=0.999, d=3, lam=0.1
        ),
        "inputs_given",
    ),
    ("T3 eps<0", lambda: optimizers.check_adam_parameters(adam_eps=-1e-8), "adam_eps_nonnegative"),
    (
        "T3 k=0",
        lambda: optimizers.adam_coordinate_bound(0, beta1=0.9, beta2=0.999),
        "k_positive_integer",
    ),
    (
        "T3 negative step norm",
        lambda: path_length_adam.path_envelope(L0=1, G=1, step_norms=[0.1, -0.1]),
        "step_norms_nonnegative",
    ),
    (
        "T4 mu>beta",
        lambda: pl_convergence.THEOREM.steps_to_threshold(
            0.5, L0=1, L_star=0, eta=0.1, mu=2, beta=1
        ),
        "mu_at_most_beta",
    ),
    (
        "T4 eta>1/beta",
        lambda: pl_convergence.THEOREM.steps_to_threshold(
            0.5, L0=1, L_star=0, eta=0.6, mu=1, beta=2
        ),
        "eta_at_most_inverse_beta",
    ),
    (
        "T4 mu=0",
        lambda: pl_convergence.THEOREM.evaluate(L0=1, L_star=0, eta=0.1, mu=0, t=1),
        "mu_positive",
    ),
    (
        "T4 L0<L*",
        lambda: pl_convergence.THEOREM.evaluate(L0=-1, L_star=0, eta=0.1, mu=1, t=1),
        "start_above_minimum",
    ),
    (
        "T4 tau<=L*",
        lambda: pl_convergence.THEOREM.steps_to_threshold(
            0.0, L0=1, L_star=0, eta=0.1, mu=1, beta=1
        ),
        "threshold_above_minimum",
    ),
    ("T6 c=1", lambda: contraction_tail.THEOREM.evaluate(L_K=1, G=1, u_K=1, c=1), "c_below_one"),
    (
        "T6 c<0",
        lambda: contraction_tail.tail_bound(L_K=1, G=1, u_K=1, c=-0.1, threshold=0.0),
        "c_nonnegative",
    ),
    (
        "T6 u_K<0",
        lambda: contraction_tail.THEOREM.steps_to_threshold(0.5, L_K=1, G=1, u_K=-1, c=0.5),
        "u_K_nonnegative",
    ),
    (
        "T6 n fractional",
        lambda: contraction_tail.THEOREM.horizon(L_K=1, G=1, u_K=1, c=0.5, n=1.5),
        "n_integer",
    ),
    (
        "T6 tau inf",
        lambda: contraction_tail.tail_bound(L_K=1, G=1, u_K=1, c=0.5, threshold=math.inf),
        "tau_finite",
    ),
    (
        "T7 eps=0",
        lambda: stability_displacement.certified_radius(eps=0.0, G_g=1, beta_g=1),
        "eps_positive",
    ),
    (
        "T7 beta_g<0",
        lambda: stability_displacement.certified_radius(eps=1, G_g=1, beta_g=-1),
        "beta_g_nonnegative",
    ),
    (
        "T7 G_g<0",
        lambda: stability_displacement.THEOREM.evaluate(G_g=-1, beta_g=1, delta_norm=1),
        "G_g_nonnegative",
    ),
]


@pytest.mark.parametrize(("case", "call", "assumption"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_invalid_input_raises_assumption_error_naming_it(
    case: str, call: Callable[[], Any], assumption: str
) -> None:
    with pytest.raises(AssumptionError) as info:
        call()
    assert info.value.assumption == assumption, (case, str(info.value))
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------- symbolic = numeric
def _numpy_bound(thm: Theorem) -> Callable[..., Any]:
    return sp.lambdify([s.name for s in thm.parameters], thm.bound, modules="numpy")  # type: ignore[no-any-return]


T2Envelope = Callable[..., Any]
t2_cases = st.tuples(st.floats(-5, 5), nonneg, pos, nonneg, pos, st.integers(0, 40))


def _t2_envelope_agrees_with_symbolic_bound(
    envelope: T2Envelope, case: tuple[float, float, float, float, float, int]
) -> bool:
    """``envelope`` (a numpy implementation) equals T2's lambdified sympy ``bound`` at
    every step of a constant schedule."""
    L0, G, C, beta, eta, steps = case
    fn = _numpy_bound(clipped_sgd_progress.THEOREM)
    env = envelope(L0=L0, G=G, C=C, beta=beta, learning_rates=np.full(steps, eta))
    expected = fn(C=C, G=G, L0=L0, beta=beta, eta=eta, t=np.arange(steps + 1))
    scale = 1 + np.abs(expected).max()
    return env.shape == (steps + 1,) and bool(
        np.allclose(env, expected, rtol=1e-10, atol=1e-10 * scale)
    )


@given(case=t2_cases)
def test_t2_symbolic_bound_equals_numpy_envelope(
    case: tuple[float, float, float, float, float, int],
) -> None:
    assert _t2_envelope_agrees_with_symbolic_bound(clipped_sgd_progress.envelope, case)
    L0, G, C, beta, eta, steps = case
    value = clipped_sgd_progress.THEOREM.evaluate(L0=L0, G=G, C=C, beta=beta, eta=eta, t=steps)
    assert value == pytest.approx(
        L0 - steps * (G * eta * C + beta * eta**2 * C**2 / 2), rel=1e-10, abs=1e-10
    )


@pytest.mark.negative_control
def test_negative_control_t2_agreement_catches_a_wrong_envelope() -> None:
    """A numpy envelope with beta*eta^2*C^2 (no 1/2) must disagree with the sympy bound."""

    def wrong(*, L0: float, G: float, C: float, beta: float, learning_rates: Any) -> Any:
        rates = np.asarray(learning_rates)
        return L0 - np.concatenate(([0.0], np.cumsum(G * rates * C + beta * rates**2 * C**2)))

    find(
        t2_cases,
        lambda case: not _t2_envelope_agrees_with_symbolic_bound(wrong, case),
        settings=FIND,
    )


t3_cases = st.tuples(
    st.floats(-5, 5),
    nonneg,
    pos,
    st.floats(0.01, 0.9999),
    st.floats(0.0, 0.999),
    st.integers(1, 10**6),
    st.integers(0, 40),
)
UniformA = Callable[[float, float], float]


def direct_a_inf(beta1: float, beta2: float) -> float:
    return (1 - beta1) / math.sqrt((1 - beta2) * (1 - beta1**2 / beta2))


def _t3_bound_agrees(
    a_inf: UniformA, case: tuple[float, float, float, float, float, int, int]
) -> bool:
    """T3's lambdified ``bound`` equals ``path_envelope`` of steps η·a_inf(β1, β2)·√d."""
    L0, G, eta, beta2, ratio, d, steps = case
    beta1 = ratio * math.sqrt(beta2)
    fn = _numpy_bound(path_length_adam.THEOREM)
    env = path_length_adam.path_envelope(
        L0=L0, G=G, step_norms=np.full(steps, eta * a_inf(beta1, beta2) * math.sqrt(d))
    )
    expected = fn(G=G, L0=L0, beta1=beta1, beta2=beta2, d=d, eta=eta, t=np.arange(steps + 1))
    scale = 1 + np.abs(expected).max()
    return bool(np.allclose(env, expected, rtol=1e-9, atol=1e-9 * scale))


@given(case=t3_cases)
def test_t3_symbolic_bound_equals_numpy_path_envelope(
    case: tuple[float, float, float, float, float, int, int],
) -> None:
    assert _t3_bound_agrees(direct_a_inf, case)
    L0, G, eta, beta2, ratio, d, steps = case
    beta1 = ratio * math.sqrt(beta2)
    uniform = L0 - np.arange(steps + 1) * G * eta * direct_a_inf(beta1, beta2) * math.sqrt(d)
    # with the exact a_k ≤ a_∞ the schedule envelope is above the uniform bound
    sched = path_length_adam.envelope(
        L0=L0, G=G, learning_rates=np.full(steps, eta), beta1=beta1, beta2=beta2, d=d
    )
    assert np.all(sched >= uniform - 1e-9 * (1 + np.abs(uniform).max()))


t4_cases = st.tuples(st.floats(0, 10), st.floats(0, 10), unit, unit, st.integers(0, 60))
Contraction = Callable[[float, float], float]  # (eta, mu) -> per-step factor


def _t4_bound_agrees(factor: Contraction, case: tuple[float, float, float, float, int]) -> bool:
    """T4's ``evaluate`` equals L* + factor(η, μ)^t (L_0 − L*), with η = 1/β."""
    L0, gap, eta, mu_frac, steps = case
    L_star, beta = L0 - gap, 1.0 / eta
    mu = mu_frac * beta
    value = pl_convergence.THEOREM.evaluate(L0=L0, L_star=L_star, eta=eta, mu=mu, t=steps)
    return value == pytest.approx(L_star + factor(eta, mu) ** steps * gap, rel=1e-12, abs=1e-12)


@given(case=t4_cases)
def test_t4_symbolic_bound_equals_numpy(case: tuple[float, float, float, float, int]) -> None:
    assert _t4_bound_agrees(lambda eta, mu: 1 - eta * mu, case)


t6_cases = st.tuples(st.floats(-5, 5), nonneg, nonneg, st.floats(0, 0.999), st.integers(0, 200))
TailPath = Callable[[float, float, int], float]  # (u_K, c, n) -> path-length bound


def _t6_forms_agree(path: TailPath, case: tuple[float, float, float, float, int]) -> bool:
    """T6's floor, n-step bound and ``tail_bound`` equal L_K − G·path(u_K, c, n) (n = ∞ for
    the floor) and order correctly."""
    L_K, G, u_K, c, n = case
    thm = contraction_tail.THEOREM
    floor, horizon = L_K - G * path(u_K, c, -1), L_K - G * path(u_K, c, n)
    tol = 1e-9 * (1 + abs(floor))
    tb = contraction_tail.tail_bound(L_K=L_K, G=G, u_K=u_K, c=c, threshold=floor - 1.0)
    return (
        abs(thm.evaluate(L_K=L_K, G=G, u_K=u_K, c=c) - floor) <= tol
        and abs(thm.horizon(L_K=L_K, G=G, u_K=u_K, c=c, n=n) - horizon) <= tol
        and abs(tb.floor - floor) <= tol
        and tb.certifies_every_step
        and not contraction_tail.tail_bound(
            L_K=L_K, G=G, u_K=u_K, c=c, threshold=tb.floor
        ).certifies_every_step
    )


def direct_tail_path(u_K: float, c: float, n: int) -> float:
    """u_K Σ_{i<n} c^i (n = -1: the infinite sum u_K/(1 − c))."""
    return u_K / (1 - c) if n < 0 else u_K * sum(c**i for i in range(n))


@given(case=t6_cases)
def test_t6_symbolic_forms_equal_numpy(case: tuple[float, float, float, float, int]) -> None:
    assert _t6_forms_agree(direct_tail_path, case)


t7_cases = st.tuples(nonneg, nonneg, pos).filter(lambda v: v[0] > 0 or v[1] > 0)
RadiusFn = Callable[[float, float, float], float]  # (eps, G_g, beta_g) -> radius


def _t7_radius_is_root(radius: RadiusFn, case: tuple[float, float, float]) -> bool:
    """radius(ε) ≥ 0 solves T7's bound = ε, and is below ε/G_g and √(2ε/β_g)."""
    G_g, beta_g, eps = case
    r = radius(eps, G_g, beta_g)
    at_r = stability_displacement.THEOREM.evaluate(G_g=G_g, beta_g=beta_g, delta_norm=r)
    below_linear = G_g == 0 or r <= eps / G_g * (1 + 1e-12)
    below_quadratic = beta_g == 0 or r <= math.sqrt(2 * eps / beta_g) * (1 + 1e-12)
    return r >= 0 and abs(at_r - eps) <= 1e-9 * eps and below_linear and below_quadratic


@given(case=t7_cases)
def test_t7_radius_is_the_root_of_the_bound(case: tuple[float, float, float]) -> None:
    assert _t7_radius_is_root(
        lambda eps, G_g, beta_g: stability_displacement.certified_radius(
            eps=eps, G_g=G_g, beta_g=beta_g
        ),
        case,
    )


@pytest.mark.negative_control
def test_negative_control_symbolic_numeric_checks_catch_wrong_forms() -> None:
    """The same agreement checks must catch: Kingma & Ba's a (T3), (1 − 2ημ) (T4), a floor
    without 1/(1 − c) (T6), and the linear radius ε/G_g that ignores curvature (T7)."""
    kb: UniformA = lambda b1, b2: (1 - b1) / math.sqrt(1 - b2)  # noqa: E731
    find(t3_cases, lambda case: not _t3_bound_agrees(kb, case), settings=FIND)
    find(
        t4_cases, lambda case: not _t4_bound_agrees(lambda e, m: 1 - 2 * e * m, case), settings=FIND
    )
    no_sum: TailPath = lambda u, c, n: u if n < 0 else direct_tail_path(u, c, n)  # noqa: E731
    find(t6_cases, lambda case: not _t6_forms_agree(no_sum, case), settings=FIND)
    linear: RadiusFn = lambda eps, G, b: eps / G if G > 0 else math.sqrt(2 * eps / b)  # noqa: E731
    find(t7_cases, lambda case: not _t7_radius_is_root(linear, case), settings=FIND)


def test_t7_radius_forms_agree_and_limits() -> None:
    thm = stability_displacement.THEOREM
    assert sp.simplify(thm.radius - thm.radius_root) == 0
    G_g, beta_g, eps = sp.symbols("G_g beta_g eps", real=True)
    assert sp.limit(thm.radius_root.subs(G_g, 1), beta_g, 0) == eps
    assert stability_displacement.certified_radius(eps=1.0, G_g=0.0, beta_g=0.0) == math.inf
    assert stability_displacement.certified_radius(eps=3.0, G_g=2.0, beta_g=0.0) == 1.5


def test_t1_sides_and_curvature() -> None:
    thm = smoothness_sandwich.THEOREM
    values = {"L0": 1.0, "gdot": -0.5, "beta": 2.0, "delta_norm": 0.5}
    assert thm.evaluate(**values) == 0.25
    assert thm.upper(**values) == 0.75
    assert thm.holds(L1=0.5, **values)
    assert not thm.holds(L1=0.8, **values)
    assert not thm.holds(L1=0.2, **values)
    kappa = smoothness_sandwich.segment_curvature(L0=1.0, L1=0.75, gdot=-0.5, delta_norm=0.5)
    assert kappa == 2.0  # on the upper side: |kappa| = beta


# ---------------------------------------------------------------------- steps solvers
def _brute_force(
    thm: Theorem,
    values: dict[str, float],
    threshold: float,
    limit: int,
    expr: sp.Expr | None = None,
    step: str = "t",
) -> float:
    """The first step <= ``limit`` whose bound (``thm.bound`` or ``expr``, lambdified with
    numpy over all steps at once) is <= ``threshold``; ``math.inf`` if none."""
    expr = thm.bound if expr is None else expr
    names = sorted(s.name for s in expr.free_symbols)
    fn = sp.lambdify(names, expr, modules="numpy")
    steps = np.arange(limit + 1, dtype=np.float64)
    bound = np.broadcast_to(fn(**{**values, step: steps}), steps.shape)
    hits = np.flatnonzero(bound <= threshold)
    return float(hits[0]) if hits.size else math.inf


t2_solver_cases = st.tuples(
    st.floats(0.5, 5), st.floats(0.01, 1.0), nonneg, pos, nonneg, st.floats(1e-3, 1.0)
)


def _t2_solver_matches_brute_force(
    solver: Callable[..., float], case: tuple[float, float, float, float, float, float]
) -> bool:
    """``solver(tau, **values)`` is the smallest t whose T2 bound is <= tau (scanned)."""
    L0, drop, G, C, beta, eta = case
    thm = clipped_sgd_progress.THEOREM
    tau = L0 - drop * L0
    values = {"L0": L0, "G": G, "C": C, "beta": beta, "eta": eta}
    rate = G * eta * C + beta * eta**2 * C**2 / 2
    if rate > 0 and (L0 - tau) / rate >= 3000:
        return True  # outside the scanned range
    return solver(tau, **values) == _brute_force(thm, values, tau, 3000)


@given(case=t2_solver_cases)
def test_t2_steps_solver_matches_brute_force_and_schedule(
    case: tuple[float, float, float, float, float, float],
) -> None:
    assert _t2_solver_matches_brute_force(clipped_sgd_progress.THEOREM.steps_to_threshold, case)
    L0, drop, G, C, beta, eta = case
    tau = L0 - drop * L0
    expected = clipped_sgd_progress.THEOREM.steps_to_threshold(
        tau, L0=L0, G=G, C=C, beta=beta, eta=eta
    )
    schedule = clipped_sgd_progress.certified_min_steps_schedule(
        L0=L0, threshold=tau, G=G, C=C, beta=beta, learning_rates=np.full(3000, eta)
    )
    assert schedule == expected or (schedule == math.inf and expected >= 3000)


@pytest.mark.negative_control
def test_negative_control_t2_solver_check_catches_round_instead_of_ceil() -> None:
    """A solver that rounds (L0 - tau)/rate to the nearest integer must be caught."""

    def wrong(tau: float, **v: float) -> float:
        rate = v["G"] * v["eta"] * v["C"] + v["beta"] * v["eta"] ** 2 * v["C"] ** 2 / 2
        return math.inf if rate == 0 else float(max(0, round((v["L0"] - tau) / rate)))

    find(
        t2_solver_cases, lambda case: not _t2_solver_matches_brute_force(wrong, case), settings=FIND
    )


def test_steps_at_exact_boundaries() -> None:
    """Closed forms whose root is an integer: rounding must not move the certificate."""
    t2 = clipped_sgd_progress.THEOREM
    # rate 0.1 per step (G = 1, eta = 0.1, C = 1, beta = 0): L0 - t*0.1 <= 0.7 first at t = 3
    assert t2.steps_to_threshold(0.7, L0=1.0, G=1.0, eta=0.1, C=1.0, beta=0.0) == 3.0
    assert t2.steps_to_threshold(1.0, L0=1.0, G=1.0, eta=0.1, C=1.0, beta=0.0) == 0.0
    assert t2.steps_to_threshold(0.5, L0=1.0, G=0.0, eta=0.1, C=1.0, beta=0.0) == math.inf
    t4 = pl_convergence.THEOREM
    for k in range(1, 12):
        tau = 0.5**k
        assert t4.steps_to_threshold(tau, L0=1.0, L_star=0.0, eta=0.5, mu=1.0, beta=2.0) == k
    assert t4.steps_to_threshold(0.3, L0=1.0, L_star=0.0, eta=1.0, mu=1.0, beta=1.0) == 1.0
    assert t4.steps_to_threshold(2.0, L0=1.0, L_star=0.0, eta=1.0, mu=1.0, beta=1.0) == 0.0
    t6 = contraction_tail.THEOREM
    assert t6.steps_to_threshold(1.5, L_K=2.0, G=1.0, u_K=0.1, c=0.5) == math.inf
    assert t6.steps_to_threshold(1.85, L_K=2.0, G=1.0, u_K=0.1, c=0.5) == 2.0
    assert t6.steps_to_threshold(1.9, L_K=2.0, G=1.0, u_K=0.1, c=0.0) == 1.0
    assert first_step_at_or_below(lambda t: -t, -3.0, 2.999999999) == 3.0
    assert first_step_at_or_below(lambda t: -t, -3.0, 3.000000001) == 3.0
    assert first_step_at_or_below(lambda t: -t, -3.0, math.inf) == math.inf


Solver = Callable[..., float]  # (threshold, **values) -> steps
t3_solver_cases = st.tuples(
    st.floats(0.5, 5),
    st.floats(0.01, 1.0),
    pos,
    st.floats(1e-4, 1e-2),
    st.floats(0.5, 0.9999),
    st.floats(0.0, 0.99),
    st.integers(1, 1000),
)


def _t3_solver_matches(solver: Solver, case: tuple[Any, ...]) -> bool:
    L0, drop, G, eta, beta2, ratio, d = case
    thm = path_length_adam.THEOREM
    values = {
        "L0": L0,
        "G": G,
        "eta": eta,
        "beta1": ratio * math.sqrt(beta2),
        "beta2": beta2,
        "d": d,
    }
    tau = L0 - drop * L0
    brute = _brute_force(thm, values, tau, 2000)
    return brute == math.inf or solver(tau, **values) == brute


@given(case=t3_solver_cases)
def test_t3_steps_solver_matches_brute_force(case: tuple[Any, ...]) -> None:
    thm = path_length_adam.THEOREM
    assert _t3_solver_matches(thm.steps_to_threshold, case)
    L0, drop, G, eta, beta2, ratio, d = case
    beta1, tau = ratio * math.sqrt(beta2), L0 - drop * L0
    steps = thm.steps_to_threshold(tau, L0=L0, G=G, eta=eta, beta1=beta1, beta2=beta2, d=d)
    schedule = path_length_adam.certified_min_steps_schedule(
        L0=L0, threshold=tau, G=G, learning_rates=np.full(2000, eta), beta1=beta1, beta2=beta2, d=d
    )
    assert schedule >= steps  # the exact a_k <= a_inf certifies at least as many steps


t4_solver_cases = st.tuples(
    st.floats(0.1, 5),
    st.floats(0.1, 5),
    st.floats(1e-3, 0.999),
    st.floats(0.05, 1.0),
    st.floats(0.01, 1.0),
)


def _t4_solver_matches(solver: Solver, case: tuple[Any, ...]) -> bool:
    L0, gap, frac, eta_frac, mu_frac = case
    thm = pl_convergence.THEOREM
    values = {"L0": L0, "L_star": L0 - gap, "eta": eta_frac, "mu": mu_frac}  # beta = 1
    tau = L0 - gap + frac * gap
    brute = _brute_force(thm, values, tau, 3000)
    return brute == math.inf or solver(tau, beta=1.0, **values) == brute


@given(case=t4_solver_cases)
def test_t4_steps_solver_matches_brute_force(case: tuple[Any, ...]) -> None:
    assert _t4_solver_matches(pl_convergence.THEOREM.steps_to_threshold, case)


t6_solver_cases = st.tuples(
    st.floats(0.5, 5), pos, pos, st.floats(0.0, 0.99), st.floats(0.01, 0.99)
)


def _t6_solver_matches(solver: Solver, case: tuple[Any, ...]) -> bool:
    L_K, G, u_K, c, frac = case
    thm = contraction_tail.THEOREM
    values = {"L_K": L_K, "G": G, "u_K": u_K, "c": c}
    tau = L_K - frac * (L_K - thm.evaluate(**values))
    brute = _brute_force(thm, values, tau, 3000, contraction_tail.HORIZON_BOUND, "n")
    return brute == math.inf or solver(tau, **values) == brute


@given(case=t6_solver_cases)
def test_t6_steps_solver_matches_brute_force(case: tuple[Any, ...]) -> None:
    assert _t6_solver_matches(contraction_tail.THEOREM.steps_to_threshold, case)


def _off_by_one(solver: Solver) -> Solver:
    def wrong(threshold: float, **values: float) -> float:
        return max(0.0, solver(threshold, **values) - 1.0)

    return wrong


@pytest.mark.negative_control
def test_negative_control_solver_checks_catch_an_off_by_one_solver() -> None:
    """T3, T4 and T6's brute-force checks must catch a solver one step short."""
    find(
        t3_solver_cases,
        lambda c: (
            not _t3_solver_matches(_off_by_one(path_length_adam.THEOREM.steps_to_threshold), c)
        ),
        settings=FIND,
    )
    find(
        t4_solver_cases,
        lambda c: not _t4_solver_matches(_off_by_one(pl_convergence.THEOREM.steps_to_threshold), c),
        settings=FIND,
    )
    find(
        t6_solver_cases,
        lambda c: (
            not _t6_solver_matches(_off_by_one(contraction_tail.THEOREM.steps_to_threshold), c)
        ),
        settings=FIND,
    )


# ---------------------------------------------------------------------- monotonicity
t2_monotone_cases = st.tuples(
    st.floats(0.5, 5),
    st.floats(0.01, 1.0),
    pos,
    pos,
    pos,
    st.floats(1e-4, 1.0),
    st.sampled_from(["eta", "G", "beta", "C"]),
    st.floats(1.0, 10.0),
)


def _t2_min_steps_non_increasing(
    solver: Callable[..., float], case: tuple[float, float, float, float, float, float, str, float]
) -> bool:
    """Larger eta, G, beta or C never certify more steps."""
    L0, drop, G, C, beta, eta, which, factor = case
    tau = L0 * (1 - drop)
    base = {"L0": L0, "G": G, "C": C, "beta": beta, "eta": eta}
    larger = {**base, which: base[which] * factor}
    return solver(tau, **larger) <= solver(tau, **base)


@given(case=t2_monotone_cases)
def test_t2_min_steps_non_increasing_in_eta_G_beta_C(
    case: tuple[float, float, float, float, float, float, str, float],
) -> None:
    assert _t2_min_steps_non_increasing(clipped_sgd_progress.THEOREM.steps_to_threshold, case)


@pytest.mark.negative_control
def test_negative_control_t2_monotonicity_catches_an_inverted_rate() -> None:
    """A solver that multiplies by the rate instead of dividing must be caught."""

    def wrong(tau: float, **v: float) -> float:
        rate = v["G"] * v["eta"] * v["C"] + v["beta"] * v["eta"] ** 2 * v["C"] ** 2 / 2
        return float(math.ceil((v["L0"] - tau) * rate))

    find(
        t2_monotone_cases, lambda case: not _t2_min_steps_non_increasing(wrong, case), settings=FIND
    )


t3_monotone_cases = st.tuples(
    st.floats(0.5, 5),
    st.floats(0.01, 1.0),
    pos,
    st.floats(1e-4, 1e-1),
    st.integers(1, 10**5),
    st.sampled_from(["eta", "G", "d"]),
    st.integers(1, 10),
)


def _t3_min_steps_non_increasing(solver: Solver, case: tuple[Any, ...]) -> bool:
    """Larger eta, G or d never certify more steps."""
    L0, drop, G, eta, d, which, factor = case
    tau = L0 * (1 - drop)
    base = {"L0": L0, "G": G, "eta": eta, "beta1": 0.9, "beta2": 0.999, "d": d}
    larger = {**base, which: base[which] * factor}
    return solver(tau, **larger) <= solver(tau, **base)


@given(case=t3_monotone_cases)
def test_t3_min_steps_non_increasing_in_eta_G_d(case: tuple[Any, ...]) -> None:
    assert _t3_min_steps_non_increasing(path_length_adam.THEOREM.steps_to_threshold, case)


@pytest.mark.negative_control
def test_negative_control_t3_monotonicity_catches_sqrt_d_in_the_denominator_swapped() -> None:
    """A solver multiplying by √d instead of dividing must be caught."""

    def wrong(tau: float, **v: float) -> float:
        a = direct_a_inf(v["beta1"], v["beta2"])
        return float(math.ceil((v["L0"] - tau) * math.sqrt(v["d"]) / (v["G"] * v["eta"] * a)))

    find(
        t3_monotone_cases, lambda case: not _t3_min_steps_non_increasing(wrong, case), settings=FIND
    )


t4_monotone_cases = st.tuples(
    st.floats(0.1, 5),
    st.floats(0.1, 5),
    st.floats(1e-3, 0.999),
    pos,
    st.floats(0.01, 1.0),
    st.floats(0.01, 1.0),
    st.sampled_from(["eta", "mu"]),
    st.floats(1.0, 10.0),
)


def _t4_max_steps_non_increasing(
    solver: Callable[..., float],
    case: tuple[float, float, float, float, float, float, str, float],
) -> bool:
    """Larger mu or eta (within mu <= beta, eta <= 1/beta) never certify more steps."""
    L0, gap, frac, beta, eta_frac, mu_frac, which, factor = case
    L_star = L0 - gap
    tau = L_star + frac * gap
    base = {"L0": L0, "L_star": L_star, "beta": beta, "eta": eta_frac / beta, "mu": mu_frac * beta}
    cap = {"eta": 1.0 / beta, "mu": beta}[which]
    larger = {**base, which: min(base[which] * factor, cap)}
    return solver(tau, **larger) <= solver(tau, **base)


@given(case=t4_monotone_cases)
def test_t4_max_steps_non_increasing_in_mu_and_eta(
    case: tuple[float, float, float, float, float, float, str, float],
) -> None:
    assert _t4_max_steps_non_increasing(pl_convergence.THEOREM.steps_to_threshold, case)


@pytest.mark.negative_control
def test_negative_control_t4_monotonicity_catches_log_of_the_wrong_factor() -> None:
    """A solver dividing by log(eta*mu) instead of log(1 - eta*mu) must be caught."""

    def wrong(tau: float, **v: float) -> float:
        q = v["eta"] * v["mu"]
        if q >= 1:
            return 1.0
        ratio = (tau - v["L_star"]) / (v["L0"] - v["L_star"])
        return float(math.ceil(math.log(ratio) / math.log(q)))

    find(
        t4_monotone_cases, lambda case: not _t4_max_steps_non_increasing(wrong, case), settings=FIND
    )


def test_warmup_schedule_starting_at_zero_is_accepted_and_counted() -> None:
    """A warm-up schedule starts at eta_0 = 0: that step moves nothing, and is still counted."""
    rates = np.array([0.0, 0.05, 0.1, 0.1])
    env = clipped_sgd_progress.envelope(L0=1.0, G=1.0, C=1.0, beta=1.0, learning_rates=rates)
    assert env[0] == env[1] == 1.0
    assert np.all(np.diff(env[1:]) < 0)
    shifted = clipped_sgd_progress.envelope(
        L0=1.0, G=1.0, C=1.0, beta=1.0, learning_rates=rates[1:]
    )
    np.testing.assert_allclose(env[1:], shifted)


def test_segment_curvature_refuses_a_step_whose_square_underflows() -> None:
    """||Delta|| > 0 but ||Delta||^2 == 0 in float64: one clear error, not ZeroDivisionError."""
    with pytest.raises(AssumptionError, match="delta_norm_squared_positive"):
        smoothness_sandwich.segment_curvature(L0=1.0, L1=1.0, gdot=0.0, delta_norm=1e-170)
