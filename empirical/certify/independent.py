r"""Constants from data the checked run did not produce (issue 14, item 1; docs/science.md §4).

A constant estimated on the very segment it then checks makes the check nearly tautological.
Two independent sources, each returned with its estimation record:

* ``constants_before_attack``: β and G estimated *before* the attack, on the region the threat
  model can reach: the ball B(θ_0, R) whose radius R is the path-length bound of the attack's
  budget, computed through theory (``reachable_radius``): for clipped SGD R = Σ_s ‖Δ_s‖ with
  theory's step bounds (η_s C without momentum: ``theory.optimizers.sgd_step_bounds``), for
  Adam/AdamW the sum of T3's step bounds η_s(a_{s+1}√d + λR_s)
  (``theory.theorems.path_length_adam.step_norm_bounds``). β: Lanczos on Hessian-vector
  products (``empirical.measurement.estimators.smoothness_of``, both ends of the spectrum, × (1 +
  tol))
  at θ_0 and at k points drawn uniformly in the ball; G: the largest gradient norm there.
* ``prefix_fit``: β, G and T6's contraction factor c fitted on the first ``split`` steps of a
  trajectory; the record says how to check the rest (per-segment β with the prefix left out,
  T6 from K = split).
* ``directional_fit`` (``empirical.certify.directional``): T1's directional smoothness β_dir,
  the largest trustworthy |κ_s| along the steps of the run's first half or of another run of
  its class.

Confidence, honestly. The maximum of k i.i.d. samples of a quantity X exceeds the q-quantile
of X's distribution over the sampled region with probability 1 − q^k (a distribution-free
order-statistic bound; k = 8 gives 1 − 0.9^8 ≈ 0.57 for q = 0.9 and 1 − 0.5^8 ≈ 0.996 for
the median). It does *not* bound the supremum over the ball (a sharp ridge of curvature of
small measure is missed), and a Ritz value is itself a lower estimate of |λ|_max at its point.
A violation with these constants therefore reads "these constants do not describe this run":
the run visited a point with a larger curvature or gradient than the sampled region.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from empirical.certify.checks_base import measured_prefix
from empirical.certify.constants import LANCZOS_TOLERANCE
from empirical.certify.contraction_tail import THEOREM as T6_THEOREM
from empirical.certify.contraction_tail import check_contraction_tail
from empirical.certify.directional import (
    DIRECTIONAL_MARGIN,
    DirectionalFit,
    curvature_roundings,
    directional_fit,
    segment_curvatures,
)
from empirical.certify.power import FACTORS, DetectionRate, Perturbation, PowerTable, detection_rate
from empirical.certify.records import BoundCheck, Constant
from empirical.certify.smoothness_sandwich import THEOREM as T1_THEOREM
from empirical.certify.smoothness_sandwich import check_step_sandwich
from empirical.measurement.trajectory import Trajectory
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from torch import Tensor

    from empirical.certify.capture import MeasuredAttack
    from empirical.engine.attack import AttackConfig
    from empirical.measurement.hvp import LossLandscape

__all__ = [
    "DIRECTIONAL_MARGIN",
    "T1_PREFIX_DIRECTIONAL",
    "T1_SIBLING_DIRECTIONAL",
    "BallConstants",
    "DirectionalFit",
    "IndependentRun",
    "PrefixFit",
    "constants_before_attack",
    "curvature_roundings",
    "directional_fit",
    "independent_power",
    "independent_run",
    "loss_side_only",
    "order_statistic_confidence",
    "prefix_fit",
    "radius_for_config",
    "reachable_radius",
    "segment_curvatures",
]


def order_statistic_confidence(samples: int, quantile: float) -> float:
    """P(max of ``samples`` i.i.d. draws ≥ the ``quantile``-quantile) = 1 − q^k."""
    if samples < 1 or not 0.0 < quantile < 1.0:
        raise HftaInputError(f"need samples >= 1 and 0 < quantile < 1, got {samples}, {quantile}")
    return 1.0 - quantile**samples


def reachable_radius(
    *,
    optimizer: str,
    learning_rates: Sequence[float],
    d: int,
    C: float | None = None,
    momentum: float = 0.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    lam: float = 0.0,
    theta0_norm: float | None = None,
) -> float:
    """R = Σ_s (theory's bound on ‖Δ_s‖): every iterate of the attack lies in B(θ_0, R).

    SGD: ``theory.optimizers.sgd_step_bounds`` (needs the clipping norm C; without clipping no
    step is bounded before the attack); Adam/AdamW: T3's ``step_norm_bounds``.
    """
    from theory import optimizers
    from theory.theorems import path_length_adam

    rates = [max(float(r), 0.0) or float("1e-300") for r in learning_rates]
    if optimizer == "sgd":
        if C is None:
            raise HftaInputError("SGD without clipping: no step bound before the attack")
        steps = optimizers.sgd_step_bounds(rates, C=C, momentum=momentum)
    elif optimizer in ("adam", "adamw"):
        steps = path_length_adam.step_norm_bounds(
            learning_rates=rates,
            beta1=beta1,
            beta2=beta2,
            d=d,
            lam=lam if optimizer == "adamw" else 0.0,
            theta0_norm=theta0_norm,
        )
    else:
        raise HftaInputError(f"no path-length bound for optimizer {optimizer!r}")
    return float(math.fsum(float(s) for s in steps))


def radius_for_config(config: AttackConfig, d: int, theta0_norm: float | None = None) -> float:
    """``reachable_radius`` of an attack configuration (its schedule's rates, before the
    attack: ``empirical.engine.schedules.learning_rates``)."""
    from empirical.engine.schedules import attack_rates

    rates = attack_rates(config)
    return reachable_radius(
        optimizer=config.optimizer,
        learning_rates=rates,
        d=d,
        C=config.max_grad_norm,
        momentum=config.momentum,
        beta1=config.betas[0],
        beta2=config.betas[1],
        lam=config.weight_decay,
        theta0_norm=theta0_norm,
    )


class BallConstants(BaseModel):
    """β and G estimated on B(θ_0, R) before the attack, with the estimation record (β None:
    not estimated, ``constants_before_attack(..., beta=False)``)."""

    model_config = ConfigDict(frozen=True)

    beta: Constant | None
    G: Constant
    radius: float
    points: int
    seed: int
    confidence: str
    record: dict[str, Any]


def constants_before_attack(
    landscape: LossLandscape,
    theta0: Tensor,
    radius: float,
    *,
    points: int = 8,
    seed: int = 0,
    lanczos_tolerance: float = LANCZOS_TOLERANCE,
    beta: bool = True,
) -> BallConstants:
    """β and G at θ_0 and ``points`` points uniform in B(θ_0, ``radius``) (direction Gaussian,
    norm R·U^{1/d}), drawn with ``torch.Generator`` seed ``seed``: β the largest Lanczos
    estimate × (1 + tol), G the largest gradient norm (module docstring: what the maximum
    of k samples does and does not guarantee). ``beta=False``: G alone (no Lanczos, the
    costly part)."""
    import torch

    from empirical.measurement.estimators import smoothness_of

    if points < 1 or not (math.isfinite(radius) and radius >= 0.0):
        raise HftaInputError(f"need points >= 1 and a finite radius >= 0, got {points}, {radius}")
    center = theta0.to(landscape.dtype)
    generator = torch.Generator().manual_seed(seed)
    d = center.numel()
    sampled = [center]
    for _ in range(points):
        direction = torch.randn(d, generator=generator, dtype=torch.float64)
        direction /= torch.linalg.vector_norm(direction)
        u = float(torch.rand(1, generator=generator, dtype=torch.float64))
        step = (radius * u ** (1.0 / d) * direction).to(center.device, center.dtype)
        sampled.append(center + step)
    betas: list[float] = []
    gradients: list[float] = []
    for point in sampled:
        if beta:
            estimate = smoothness_of(landscape, point, tolerance=lanczos_tolerance, seed=seed)
            betas.append(estimate.beta * (1.0 + lanczos_tolerance))
        gradients.append(float(torch.linalg.vector_norm(landscape.gradient(point)[1])))
    confidence = (
        f"max of {points} uniform samples of B(theta_0, R) and theta_0: exceeds the q-quantile "
        f"of the sampled quantity over the ball with probability 1 - q^{points} "
        f"({order_statistic_confidence(points, 0.9):.2f} for q = 0.9); no bound on the supremum"
    )
    method = f"ball B(theta_0, R = {radius:.4g}) from theory's path-length bound"
    return BallConstants(
        beta=Constant(
            name="beta",
            value=max(betas),
            method=f"Lanczos (both spectrum ends) x (1 + {lanczos_tolerance:g}) on the {method}",
            points=len(sampled),
            note="estimated before the attack, on points the attack did not produce",
            provenance={"values": betas, "seed": seed},
        )
        if betas
        else None,
        G=Constant(
            name="G",
            value=max(gradients),
            method=f"max gradient norm on the {method}",
            points=len(sampled),
            note="estimated before the attack, on points the attack did not produce",
            provenance={"values": gradients, "seed": seed},
        ),
        radius=radius,
        points=len(sampled),
        seed=seed,
        confidence=confidence,
        record={"betas": betas, "gradient_norms": gradients, "dimension": d},
    )


class PrefixFit(BaseModel):
    """Constants fitted on steps 0 … split−1 (iterates θ_0 … θ_split) to check the rest.

    ``beta_rest``: per-segment β for ``check_step_sandwich`` (None on the prefix, so only
    steps ≥ split are checked; ``beta`` and ``beta_rest`` None when not estimated); T6:
    ``check_contraction_tail(trajectory, split, c, G)``.
    ``c`` is None when the prefix's update norms do not contract (no ratio < 1 at its end).
    """

    model_config = ConfigDict(frozen=True)

    split: int
    beta: Constant | None
    G: Constant
    c: Constant | None
    beta_rest: list[float | None] | None
    confidence: str


def prefix_fit(
    trajectory: Trajectory,
    landscape: LossLandscape | None,
    iterates: Sequence[Tensor] | None,
    split: int,
    *,
    segment_samples: int = 4,
    lanczos_tolerance: float = LANCZOS_TOLERANCE,
    seed: int = 0,
    beta: bool = True,
) -> PrefixFit:
    """β (Lanczos at θ_0 … θ_split; ``beta=False``: not estimated), G
    (``gradient_bound_along_path`` on the prefix's segments) and c (the largest ratio
    ‖u_{s+1}‖/‖u_s‖ over the prefix's contracting tail,
    ``empirical.measurement.estimators.contraction``), for checking steps split … T−1.
    Without ``landscape`` and ``iterates`` (the trajectory alone: no evaluation at all), no β
    and G the largest probe-gradient norm at the prefix iterates, a stand-in for the
    segments, labelled as such."""
    from empirical.measurement.estimators import (
        contraction,
        gradient_bound_along_path,
        smoothness_of,
    )

    steps = measured_prefix(trajectory)
    if not 2 <= split < steps:
        raise HftaInputError(f"split {split} must be in [2, {steps})")
    betas: list[float] = []
    if landscape is not None and iterates is not None:
        points = [iterates[i].to(landscape.dtype) for i in range(split + 1)]
        betas = [
            smoothness_of(landscape, p, tolerance=lanczos_tolerance, seed=seed).beta
            * (1.0 + lanczos_tolerance)
            for p in (points if beta else [])
        ]
        gradient = gradient_bound_along_path(landscape, points, segment_samples)
        g = Constant(
            name="G",
            value=gradient.value,
            method=f"{gradient.method} on prefix segments 0..{split - 1}",
            points=gradient.points,
            note="fitted on the prefix; checked on the rest",
        )
    else:
        norms = [n for n in (trajectory.probe_grad_norm or [])[: split + 1] if n is not None]
        if not norms:
            raise HftaInputError("no probe-gradient norm on the prefix (attack with probe=True)")
        g = Constant(
            name="G",
            value=max(norms),
            method=f"largest probe-gradient norm at prefix iterates 0..{split} (stand-in for "
            "the segments)",
            points=len(norms),
            note="fitted on the prefix; checked on the rest; measured at the iterates only",
        )
    updates = [float(u) for u in trajectory.update_norm[:split] if u is not None]
    start = split - 2
    while start > 0 and updates[start] > 0.0 and updates[start] < updates[start - 1]:
        start -= 1  # extend back while the prefix's norms keep contracting
    estimate = contraction(updates, start)
    c = None
    if estimate.value < 1.0:
        c = Constant(
            name="c",
            value=estimate.value,
            method=f"max ratio of update norms over prefix steps {start}..{split - 1}",
            points=split - start,
            note="fitted on the prefix; checked on the rest",
        )
    fitted = None
    if betas:
        fitted = Constant(
            name="beta",
            value=max(betas),
            method=f"Lanczos x (1 + {lanczos_tolerance:g}) at prefix iterates 0..{split}",
            points=len(betas),
            note="fitted on the prefix; checked on the rest",
            provenance={"values": betas},
        )
    rest: list[float | None] | None = None
    if fitted is not None:
        rest = [None] * split + [fitted.value] * (trajectory.n_steps - split)
    return PrefixFit(
        split=split,
        beta=fitted,
        G=g,
        c=c,
        beta_rest=rest,
        confidence="a description of the prefix: holds on the rest only if the rest stays in "
        "the region the prefix explored (no probabilistic guarantee)",
    )


@dataclass(frozen=True)
class IndependentRun:
    """One measured attack with the constants estimated independently of its checked steps:
    ``ball`` (None where no path-length bound exists before the attack, e.g. unclipped SGD,
    or where it was not estimated), ``prefix`` (fitted on the first half; None where the
    iterates were not captured), ``directional`` (β_dir of the first half's segment
    curvatures, ``directional_fit``) and ``sibling`` (β_dir of another run of the same attack
    class; None when none was given). None where the source had no trustworthy curvature."""

    name: str
    trajectory: Trajectory
    ball: BallConstants | None
    prefix: PrefixFit | None
    directional: DirectionalFit | None = None
    sibling: DirectionalFit | None = None


def independent_run(
    name: str,
    config: AttackConfig,
    measured: MeasuredAttack,
    *,
    points: int = 8,
    seed: int = 0,
    lanczos: bool = True,
    checked: Trajectory | None = None,
    sibling: tuple[str, Trajectory] | None = None,
    segment_samples: int = 4,
) -> IndependentRun:
    """``constants_before_attack`` on the ball of ``radius_for_config`` (when the budget
    bounds the path), ``prefix_fit`` and ``directional_fit`` at split T // 2, and β_dir of
    ``sibling`` (name, trajectory of another run of the class) when given, for one measured
    attack. ``checked``: the trajectory the checks read (``MeasuredAttack.checked``, e.g.
    float64 columns; default the recorded one); ``lanczos=False``: no β by Lanczos (G and c
    only: the verifier's budget)."""
    trajectory = checked or measured.trajectory
    norm0 = measured.constants.theta0_norm
    ball = None
    try:
        radius = radius_for_config(
            config, trajectory.trainable_parameters, None if norm0 is None else norm0.value
        )
    except HftaInputError:
        radius = None
    if radius is not None:
        ball = constants_before_attack(
            measured.landscape,
            measured.iterates[0],
            radius,
            points=points,
            seed=seed,
            beta=lanczos,
        )
    split = trajectory.n_steps // 2
    fit = prefix_fit(
        trajectory,
        measured.landscape,
        measured.iterates,
        split,
        beta=lanczos,
        segment_samples=segment_samples,
    )
    other = None
    if sibling is not None:
        other = directional_fit(sibling[1], trajectory, source_name=sibling[0])
    return IndependentRun(
        name=name,
        trajectory=trajectory,
        ball=ball,
        prefix=fit,
        directional=directional_fit(trajectory, trajectory, split=split),
        sibling=other,
    )


def _t1_ball(run: IndependentRun, f: float, statement: str | None) -> BoundCheck | None:
    if run.ball is None or run.ball.beta is None:
        return None
    return _t1_with(run.trajectory, f * run.ball.beta.value, statement)


def _t1_prefix(run: IndependentRun, f: float, statement: str | None) -> BoundCheck | None:
    if run.prefix is None or run.prefix.beta_rest is None:
        return None
    beta = [None if b is None else f * b for b in run.prefix.beta_rest]
    return _t1_with(run.trajectory, beta, statement)


def _t1_directional(
    run: IndependentRun, fit: DirectionalFit | None, f: float, statement: str | None
) -> BoundCheck | None:
    if fit is None:
        return None
    beta = [None if b is None else f * b for b in fit.beta_rest]
    return _t1_with(run.trajectory, beta, statement)


def _t1_with(
    trajectory: Trajectory, beta: float | list[float | None], statement: str | None
) -> BoundCheck:
    """T1 with ``beta``, or with one of the wrong statements of ``power``'s T1 spec."""
    from empirical.certify.power import T1_LOWER_QUARTER, T1_UPPER_QUARTER

    lower = T1_LOWER_QUARTER if statement == "lower_beta_over_4" else None
    upper = T1_UPPER_QUARTER if statement == "upper_beta_over_4" else None
    return check_step_sandwich(trajectory, beta, lower=lower, upper=upper)


def _t6(run: IndependentRun, fc: float, fg: float, G: Constant | None) -> BoundCheck | None:
    if run.prefix is None:
        return None
    c = run.prefix.c
    if c is None or G is None:
        return None
    return check_contraction_tail(run.trajectory, run.prefix.split, fc * c.value, fg * G.value)


def loss_side_only(check: BoundCheck | None) -> BoundCheck | None:
    """A T6 result with only its loss-inequality violations counted (the refutations of the
    contraction hypothesis, ``details["contraction_refuted_at"]``, taken out): a violation
    then says the loss went below T6's floor, not that the run stopped contracting."""
    if check is None or not check.applicable:
        return check
    refuted = len(check.details.get("contraction_refuted_at", []))
    return check.model_copy(update={"violations": check.violations - refuted})


#: The row names of the T1 checks with a directional β (``independent_power``).
T1_PREFIX_DIRECTIONAL = "T1 smoothness_sandwich [prefix directional beta]"
T1_SIBLING_DIRECTIONAL = "T1 smoothness_sandwich [sibling directional beta]"

Case = Callable[[IndependentRun, float, float, "str | None"], "BoundCheck | None"]


def independent_power(
    runs: Sequence[IndependentRun], factors: Sequence[float] = FACTORS
) -> PowerTable:
    """T1 and T6 with independent constants (correct, every constant × f, and T1's wrong
    statements of ``empirical.certify.power.CHECK_SPECS``): the detection rates
    (``empirical.certify.power.detection_rate``). T1 with one β from the ball or the prefix
    (checked on the rest), and with the directional β_dir of the prefix (checked on the rest)
    or of another run of the class (checked on every step); T6 from K = split with the
    prefix's c and the prefix's G, or the ball's G; and T6's loss inequalities alone
    (``loss_side_only``): a prefix-fitted c is refuted on runs whose updates stop contracting,
    which is the check working ("these constants do not describe this run"), not the loss
    bound failing. Rows whose constants were not estimated (no ball, no Lanczos, no sibling)
    apply to no run."""
    from empirical.certify.power import CHECK_SPECS

    correct = Perturbation(name="correct", kind="correct", description="independent constants")
    cases: list[tuple[str, Case]] = [
        ("T1 smoothness_sandwich [ball beta]", lambda r, f, g, w: _t1_ball(r, f, w)),
        ("T1 smoothness_sandwich [prefix beta]", lambda r, f, g, w: _t1_prefix(r, f, w)),
        (T1_PREFIX_DIRECTIONAL, lambda r, f, g, w: _t1_directional(r, r.directional, f, w)),
        (T1_SIBLING_DIRECTIONAL, lambda r, f, g, w: _t1_directional(r, r.sibling, f, w)),
        (
            "T6 contraction_tail [prefix c, prefix G]",
            lambda r, f, g, w: _t6(r, f, g, None if r.prefix is None else r.prefix.G),
        ),
        (
            "T6 contraction_tail [prefix c, ball G]",
            lambda r, f, g, w: _t6(r, f, g, None if r.ball is None else r.ball.G),
        ),
        (
            "T6 contraction_tail [prefix c, prefix G] loss side",
            lambda r, f, g, w: loss_side_only(
                _t6(r, f, g, None if r.prefix is None else r.prefix.G)
            ),
        ),
    ]
    t1_statements = CHECK_SPECS[0].statements
    rows: list[DetectionRate] = []
    for check, run_one in cases:
        variants: list[tuple[Perturbation, float, float]] = [(correct, 1.0, 1.0)]
        for f in factors:
            variants.append((Perturbation(name=f"all x{f:g}", kind="constants"), f, f))
            if check.startswith(T6_THEOREM.label):
                variants.append((Perturbation(name=f"c x{f:g}", kind="constants"), f, 1.0))
                variants.append((Perturbation(name=f"G x{f:g}", kind="constants"), 1.0, f))
        if check.startswith(T1_THEOREM.label):
            variants += [
                (Perturbation(name=n, kind="statement", statement=n, description=t), 1.0, 1.0)
                for n, t in t1_statements.items()
            ]
        for perturbation, f_first, f_second in variants:
            results = [
                (r.name, run_one(r, f_first, f_second, perturbation.statement)) for r in runs
            ]
            rows.append(detection_rate(check, perturbation, results))
    return PowerTable(runs=[r.name for r in runs], rates=rows)
