r"""The power of the trajectory checks: how often each catches wrong constants or a wrong bound.

A check earns trust only if it would have failed had the theory or the constants been wrong
(docs/science.md, §4 "Verification that can fail"). This module runs every trajectory check of
``empirical.certify`` on real trajectories three ways:

* ``correct``: the constants the verifier measures (``PathConstants``) and theory's bounds, as
  ``check_all`` runs them. Any violation here is a *false alarm* (the rate must be 0).
* ``constants`` perturbations: each constant a check uses multiplied by a factor f ∈ {0.5, 0.8}
  in the direction that *tightens* the bound (all of a check's constants together, ``all×f``,
  and each alone, ``G×f``). For the lower bounds (T1, T2, T3, T6, T9) smaller constants
  tighten; T4 is an upper bound on the loss, so its μ is *divided* by f (a PL constant too
  large), which the record says.
* ``statement`` perturbations: a wrong theorem, implemented as a variant of the check (a
  bound built from theory's own sympy expression with one term changed; theory/ is not
  touched): T1's lower side with β/4 for β/2 (and the upper side likewise), T2's
  (β/2)η²C² term dropped, T3's a_k halved (the step lemma and the envelope), T6's geometric
  factor 1/(1 − c) replaced by 1, T9's β terms dropped.

A run *detects* a perturbation when the check reports at least one violation;
``DetectionRate.rate`` is the fraction of applicable runs that detect it, with a one-sided
Clopper–Pearson lower bound (``theory.statistics.clopper_pearson``). ``power_table``
evaluates every check × perturbation on a list of ``PowerSubject`` (a trajectory and its
constants): ``attack_subject`` wraps a measured attack (``empirical.certify.attack_and_measure``),
``descent_subject`` a torch gradient-descent run of ``empirical.testing`` with its exact
constants (T4 and T9 apply only to gradient descent on the probe loss itself).

Where a check cannot reach high power, by construction: T1 at β×f fails only on a step whose
curvature exceeds f·β_s, and β_s is the largest |eigenvalue| at the step's ends while the step's
curvature is a Rayleigh quotient along one direction; the envelope checks (T2, T3, T9) are
cumulative worst cases (every step at the largest gradient, aligned), so they fail at ×0.5 only
on runs that realise at least half of the worst-case progress. T3's path-length and envelope
checks detect 0/4 at ×0.5 on the demo and not by a bug (G is the only constant they scale, and
every t is checked): one G, the largest gradient norm on the path (4.5–4.8 × ‖∇L(θ_0)‖), with
steps at cos 0.34–0.65 to the gradient, so the runs realise at most 0.40 of the path-length
bound (0.26 of the envelope). Why each weak check cannot detect, with the measurements and
per run: ``empirical.certify.weak_checks``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import sympy as sp
from pydantic import BaseModel, ConfigDict

from empirical.certify.checks_base import gradient_descent_on_probe, optimizer_of
from empirical.certify.clipped_sgd_progress import check_sgd_progress
from empirical.certify.contraction_tail import check_contraction_tail
from empirical.certify.gradient_steps_exact import check_gradient_steps
from empirical.certify.path_length_adam import (
    check_adam_path,
    check_adam_steps,
    check_path_length,
)
from empirical.certify.pl_convergence import check_pl_convergence
from empirical.certify.records import BoundCheck, Constant, PathConstants, given_constant
from empirical.certify.smoothness_sandwich import check_step_sandwich
from empirical.measurement.trajectory import Trajectory
from theory import symbols as sym
from theory.errors import AssumptionError
from theory.theorem import lambdified
from theory.theorems import clipped_sgd_progress as t2
from theory.theorems import contraction_tail as t6
from theory.theorems import gradient_steps_exact as t9
from theory.theorems import path_length_adam as t3
from theory.theorems import pl_convergence as t4
from theory.theorems import smoothness_sandwich as t1

__all__ = [
    "CHECK_SPECS",
    "FACTORS",
    "CheckSpec",
    "DetectionRate",
    "Perturbation",
    "PowerSubject",
    "PowerTable",
    "attack_subject",
    "descent_subject",
    "detection_rate",
    "perturbations_of",
    "power_table",
    "run_check",
]

PerturbationKind = Literal["correct", "constants", "statement"]
#: The factors the constants are perturbed by (issue 14, item 3).
FACTORS: tuple[float, ...] = (0.5, 0.8)


class Perturbation(BaseModel):
    """One way of running a check: correct, constants scaled, or a wrong statement.

    ``scales``: constant name → factor it is multiplied by (the check's tightening direction,
    see the module docstring); ``statement``: the name of a wrong-statement variant.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    kind: PerturbationKind
    scales: dict[str, float] = {}
    statement: str | None = None
    description: str = ""


class DetectionRate(BaseModel):
    """How often one check detected one perturbation over the runs it applied to.

    ``rate`` = detected / runs (``None`` when no run applied); ``lower_95`` the one-sided
    95% Clopper–Pearson lower bound on the detection probability (for ``correct`` the rate is
    the false-alarm rate and ``upper_95`` its one-sided upper bound).
    """

    model_config = ConfigDict(frozen=True)

    check: str
    perturbation: str
    kind: PerturbationKind
    description: str
    runs: int
    detected: int
    not_applicable: int
    rate: float | None
    lower_95: float | None
    upper_95: float | None
    detecting_runs: list[str]


class PowerTable(BaseModel):
    """Every check × perturbation's ``DetectionRate`` over one set of runs."""

    model_config = ConfigDict(frozen=True)

    runs: list[str]
    rates: list[DetectionRate]

    def rate(self, check: str, perturbation: str) -> DetectionRate:
        """The row of ``check`` (e.g. "T1 smoothness_sandwich") and ``perturbation``."""
        for row in self.rates:
            if row.check == check and row.perturbation == perturbation:
                return row
        raise KeyError((check, perturbation))

    def false_alarms(self) -> list[DetectionRate]:
        """The ``correct`` rows that detected anything (must be empty)."""
        return [r for r in self.rates if r.kind == "correct" and r.detected]

    def figures(self, prefix: str = "power") -> dict[str, float | str]:
        """Flat figures ``<prefix>.<check>.<perturbation>`` → rate (rows that applied; runs
        of characters other than letters, digits, ``.`` and ``:`` become ``_``)."""
        out: dict[str, float | str] = {f"{prefix}_runs": float(len(self.runs))}
        for row in self.rates:
            if row.rate is not None:
                name = f"{row.check}.{row.perturbation}"
                key = f"{prefix}." + re.sub(r"[^\w.:]+", "_", name).strip("_")
                out[key] = row.rate
        return out

    def table(self) -> str:
        """A text table: check, perturbation, detected/runs, rate, 95% bound."""
        lines = [f"{'check':52} {'perturbation':24} {'detected':>9} {'rate':>6} {'95% bound':>9}"]
        for row in self.rates:
            if row.rate is None:
                continue
            bound = row.upper_95 if row.kind == "correct" else row.lower_95
            lines.append(
                f"{row.check:52} {row.perturbation:24} {row.detected:>4}/{row.runs:<4} "
                f"{row.rate:6.2f} {bound if bound is not None else math.nan:9.2f}"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class PowerSubject:
    """One real trajectory and the constants the verifier would check it with."""

    name: str
    trajectory: Trajectory
    constants: PathConstants


# ---------------------------------------------------------------------- wrong statements
def _variant(expression: sp.Expr) -> Callable[..., float]:
    """A keyword-evaluated bound from a sympy expression (theory's, with one term changed)."""
    args = tuple(sorted(expression.free_symbols, key=lambda s: s.name))  # type: ignore[attr-defined]
    fn = lambdified(expression, args)  # type: ignore[arg-type]

    def bound(**values: float) -> float:
        return float(fn(*(values[a.name] for a in args)))

    return bound


#: T1's lower side with β/4 where theory has β/2 (and the upper side likewise).
T1_LOWER_QUARTER = _variant(t1.LOWER_BOUND.subs(sym.beta, sym.beta / 2))
T1_UPPER_QUARTER = _variant(t1.UPPER_BOUND.subs(sym.beta, sym.beta / 2))
#: T6 with the geometric sum's 1/(1 − c) replaced by 1.
T6_NO_GEOMETRIC_HORIZON = _variant(t6.HORIZON_BOUND.subs(1 - sym.c, 1))
T6_NO_GEOMETRIC_FLOOR = _variant(t6.BOUND.subs(1 - sym.c, 1))
#: T9 with its β terms dropped: L_t ≥ L_0 − t η G².
T9_NO_BETA = _variant(t9.BOUND.subs(sym.beta, 0))


def _t2_no_beta(**values: Any) -> Any:
    """T2's envelope with the (β/2)η_s²C² term dropped (β = 0 in theory's envelope)."""
    return t2.envelope(**{**values, "beta": 0.0})


def _t3_half_a_steps(**values: Any) -> Any:
    """T3's step bounds with a_k halved in the step's own term η_s a_k √d (AdamW keeps its
    λR_s term as theory computes it)."""
    full = t3.step_norm_bounds(**values)
    adam_part = t3.step_norm_bounds(
        learning_rates=values["learning_rates"],
        beta1=values["beta1"],
        beta2=values["beta2"],
        d=values["d"],
    )
    return full - 0.5 * adam_part


def _t3_half_a_envelope(**values: Any) -> Any:
    """T3's envelope on the step bounds with a_k halved."""
    inputs = {k: v for k, v in values.items() if k not in ("L0", "G")}
    return t3.path_envelope(L0=values["L0"], G=values["G"], step_norms=_t3_half_a_steps(**inputs))


# ---------------------------------------------------------------------- the checks
def _scaled(constant: Constant | None, factor: float) -> Constant | None:
    if constant is None or factor == 1.0:
        return constant
    return constant.model_copy(
        update={"value": constant.value * factor, "note": f"{constant.note} (x{factor:g})"}
    )


Runner = Callable[[PowerSubject, dict[str, float], str | None], BoundCheck | None]


def _t1(
    subject: PowerSubject, scales: dict[str, float], statement: str | None
) -> BoundCheck | None:
    constants = subject.constants
    f = scales.get("beta", 1.0)
    beta: Any
    if constants.beta_segments is not None:
        beta = [None if b is None else b * f for b in constants.beta_segments]
    elif constants.beta is not None:
        beta = _scaled(constants.beta, f)
    else:
        return None
    lower = T1_LOWER_QUARTER if statement == "lower_beta_over_4" else None
    upper = T1_UPPER_QUARTER if statement == "upper_beta_over_4" else None
    return check_step_sandwich(subject.trajectory, beta, lower=lower, upper=upper)


def _t2(
    subject: PowerSubject, scales: dict[str, float], statement: str | None
) -> BoundCheck | None:
    c = subject.constants
    if optimizer_of(subject.trajectory) != "sgd" or c.G_iterates is None or c.beta is None:
        return None
    if gradient_descent_on_probe(subject.trajectory, t2.THEOREM.label) is None:
        return None  # gradient descent subjects are for T4/T9
    return check_sgd_progress(
        subject.trajectory,
        _scaled(c.G_iterates, scales.get("G", 1.0)),  # type: ignore[arg-type]
        _scaled(c.beta, scales.get("beta", 1.0)),  # type: ignore[arg-type]
        _scaled(c.C, scales.get("C", 1.0)),
        theta0_norm=None if c.theta0_norm is None else c.theta0_norm.value,
        envelope=_t2_no_beta if statement == "beta_term_dropped" else None,
    )


def _t3_path(
    subject: PowerSubject, scales: dict[str, float], statement: str | None
) -> BoundCheck | None:
    g_path = subject.constants.G_path
    if g_path is None:
        return None
    return check_path_length(subject.trajectory, _scaled(g_path, scales.get("G", 1.0)))  # type: ignore[arg-type]


def _t3_step(
    subject: PowerSubject, scales: dict[str, float], statement: str | None
) -> BoundCheck | None:
    if optimizer_of(subject.trajectory) not in ("adam", "adamw"):
        return None
    f = scales.get("a_k", 1.0)
    bounds: Callable[..., Any] | None = None
    if statement == "a_k_halved":
        bounds = _t3_half_a_steps
    elif f != 1.0:

        def bounds(**values: Any) -> Any:
            full = t3.step_norm_bounds(**values)
            adam_part = t3.step_norm_bounds(
                learning_rates=values["learning_rates"],
                beta1=values["beta1"],
                beta2=values["beta2"],
                d=values["d"],
            )
            return full - (1.0 - f) * adam_part

    return check_adam_steps(
        subject.trajectory, theta0_norm=subject.constants.theta0_norm, step_bounds=bounds
    )


def _t3_envelope(
    subject: PowerSubject, scales: dict[str, float], statement: str | None
) -> BoundCheck | None:
    c = subject.constants
    if optimizer_of(subject.trajectory) not in ("adam", "adamw") or c.G_path is None:
        return None
    return check_adam_path(
        subject.trajectory,
        _scaled(c.G_path, scales.get("G", 1.0)),  # type: ignore[arg-type]
        theta0_norm=c.theta0_norm,
        envelope=_t3_half_a_envelope if statement == "a_k_halved" else None,
    )


def _t6(
    subject: PowerSubject, scales: dict[str, float], statement: str | None
) -> BoundCheck | None:
    c = subject.constants
    if c.contraction_start is None or c.c is None or c.G_path is None:
        return None
    wrong = statement == "geometric_factor_dropped"
    return check_contraction_tail(
        subject.trajectory,
        c.contraction_start,
        _scaled(c.c, scales.get("c", 1.0)),  # type: ignore[arg-type]
        _scaled(c.G_path, scales.get("G", 1.0)),  # type: ignore[arg-type]
        horizon=T6_NO_GEOMETRIC_HORIZON if wrong else None,
        floor=T6_NO_GEOMETRIC_FLOOR if wrong else None,
    )


def _t4(
    subject: PowerSubject, scales: dict[str, float], statement: str | None
) -> BoundCheck | None:
    c = subject.constants
    if c.mu is None or c.beta is None or c.loss_star is None:
        return None
    if gradient_descent_on_probe(subject.trajectory, t4.THEOREM.label) is not None:
        return None
    mu = c.mu.model_copy(update={"value": c.mu.value / scales.get("mu", 1.0)})
    return check_pl_convergence(subject.trajectory, mu, c.beta, c.loss_star)


def _t9(
    subject: PowerSubject, scales: dict[str, float], statement: str | None
) -> BoundCheck | None:
    c = subject.constants
    if c.G_iterates is None or c.beta is None:
        return None
    if gradient_descent_on_probe(subject.trajectory, t9.THEOREM.label) is not None:
        return None
    return check_gradient_steps(
        subject.trajectory,
        _scaled(c.G_iterates, scales.get("G", 1.0)),  # type: ignore[arg-type]
        _scaled(c.beta, scales.get("beta", 1.0)),  # type: ignore[arg-type]
        theta0_norm=None if c.theta0_norm is None else c.theta0_norm.value,
        bound=T9_NO_BETA if statement == "beta_terms_dropped" else None,
    )


@dataclass(frozen=True)
class CheckSpec:
    """One trajectory check: its name, the constants a perturbation scales, its wrong
    statements (name → description), and the runner (None: not applicable to the subject)."""

    check: str
    constants: tuple[str, ...]
    statements: dict[str, str]
    run: Runner
    direction: str = "x f (smaller constants tighten this lower bound)"


CHECK_SPECS: tuple[CheckSpec, ...] = (
    CheckSpec(
        "T1 smoothness_sandwich",
        ("beta",),
        {
            "lower_beta_over_4": "lower side L + <g,D> - (beta/4)|D|^2",
            "upper_beta_over_4": "upper side L + <g,D> + (beta/4)|D|^2",
        },
        _t1,
    ),
    CheckSpec(
        "T2 clipped_sgd_progress",
        ("G", "beta", "C"),
        {"beta_term_dropped": "envelope without (beta/2) eta^2 C^2"},
        _t2,
    ),
    CheckSpec("T3 path_length_adam:path_length", ("G",), {}, _t3_path),
    CheckSpec(
        "T3 path_length_adam:adam_step",
        ("a_k",),
        {"a_k_halved": "step bound eta a_k/2 sqrt(d) (+ lam R_s)"},
        _t3_step,
    ),
    CheckSpec(
        "T3 path_length_adam",
        ("G",),
        {"a_k_halved": "envelope on step bounds with a_k halved"},
        _t3_envelope,
    ),
    CheckSpec(
        "T6 contraction_tail",
        ("c", "G"),
        {"geometric_factor_dropped": "1/(1 - c) replaced by 1"},
        _t6,
    ),
    CheckSpec(
        "T4 pl_convergence",
        ("mu",),
        {},
        _t4,
        direction="mu / f (a larger PL constant tightens this upper bound)",
    ),
    CheckSpec(
        "T9 gradient_steps_exact",
        ("G", "beta"),
        {"beta_terms_dropped": "L_0 - t eta G^2"},
        _t9,
    ),
)


def perturbations_of(spec: CheckSpec, factors: Sequence[float] = FACTORS) -> list[Perturbation]:
    """``correct``; every constant together and each alone at each factor; each wrong
    statement."""
    out = [Perturbation(name="correct", kind="correct", description="measured constants")]
    for f in factors:
        out.append(
            Perturbation(
                name=f"all x{f:g}",
                kind="constants",
                scales=dict.fromkeys(spec.constants, f),
                description=f"{', '.join(spec.constants)}: {spec.direction} (f = {f:g})",
            )
        )
        if len(spec.constants) > 1:
            for name in spec.constants:
                out.append(
                    Perturbation(
                        name=f"{name} x{f:g}",
                        kind="constants",
                        scales={name: f},
                        description=f"{name} alone",
                    )
                )
    for name, text in spec.statements.items():
        out.append(Perturbation(name=name, kind="statement", statement=name, description=text))
    return out


def run_check(
    spec: CheckSpec, subject: PowerSubject, perturbation: Perturbation
) -> BoundCheck | None:
    """The check of ``spec`` on ``subject`` under ``perturbation``; None when it does not
    apply (the check is not for this run, a constant is missing, or the perturbed constants
    break the theorem's parameter assumptions)."""
    try:
        result = spec.run(subject, perturbation.scales, perturbation.statement)
    except AssumptionError:
        return None
    if result is None or not result.applicable:
        return None
    return result


def detection_rate(
    check: str,
    perturbation: Perturbation,
    results: Sequence[tuple[str, BoundCheck | None]],
) -> DetectionRate:
    """One row from (run name, check result or None when it did not apply) pairs: a run
    detects when its check reports at least one violation."""
    from theory.statistics import clopper_pearson  # scipy: imported only when rates are made

    applied = [(name, r) for name, r in results if r is not None and r.applicable]
    detecting = [name for name, r in applied if r.violations]
    runs = len(applied)
    lower = upper = None
    if runs:
        lower = clopper_pearson(len(detecting), runs, side="lower").lower
        upper = clopper_pearson(len(detecting), runs, side="upper").upper
    return DetectionRate(
        check=check,
        perturbation=perturbation.name,
        kind=perturbation.kind,
        description=perturbation.description,
        runs=runs,
        detected=len(detecting),
        not_applicable=len(results) - runs,
        rate=len(detecting) / runs if runs else None,
        lower_95=lower,
        upper_95=upper,
        detecting_runs=detecting,
    )


def power_table(
    subjects: Sequence[PowerSubject],
    specs: Sequence[CheckSpec] = CHECK_SPECS,
    factors: Sequence[float] = FACTORS,
) -> PowerTable:
    """Every check × perturbation over ``subjects``: detection = at least one violation."""
    rows = [
        detection_rate(
            spec.check,
            perturbation,
            [(subject.name, run_check(spec, subject, perturbation)) for subject in subjects],
        )
        for spec in specs
        for perturbation in perturbations_of(spec, factors)
    ]
    return PowerTable(runs=[s.name for s in subjects], rates=rows)


# ---------------------------------------------------------------------- subjects
def attack_subject(name: str, measured: Any) -> PowerSubject:
    """A measured attack (``empirical.certify.MeasuredAttack``) with its path constants."""
    return PowerSubject(name=name, trajectory=measured.trajectory, constants=measured.constants)


def descent_subject(name: str, problem: Any, steps: int) -> PowerSubject:
    """Gradient descent (torch SGD, float64) on a problem of ``empirical.testing`` with its
    exact constants: β the problem's global smoothness, G the largest gradient norm at the
    iterates (T9's hypothesis, exactly), μ and L* the problem's own."""
    from empirical.testing import descend

    trajectory = descend(problem, steps).trajectory
    gradients = [g for g in trajectory.probe_grad_norm or [] if g is not None]
    mu = problem.pl_constant
    return PowerSubject(
        name=name,
        trajectory=trajectory,
        constants=PathConstants(
            beta=given_constant("beta", problem.smoothness, "global smoothness of the problem"),
            G_iterates=given_constant("G", max(gradients), "largest gradient norm at iterates"),
            mu=None if mu is None else given_constant("mu", mu, "the problem's PL constant"),
            loss_star=given_constant("L_star", problem.loss_star, "the problem's minimum"),
            theta0_norm=given_constant("theta0_norm", float(np.linalg.norm(problem.theta_0))),
        ),
    )
