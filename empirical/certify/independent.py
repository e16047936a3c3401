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
from empirical.certify.power import FACTORS, DetectionRate, Perturbation, PowerTable, detection_rate
from empirical.certify.records import BoundCheck, Constant
from empirical.certify.smoothness_sandwich import check_step_sandwich
from empirical.measurement.trajectory import Trajectory
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from torch import Tensor

    from empirical.certify.capture import MeasuredAttack
    from empirical.engine.attack import AttackConfig
    from empirical.measurement.hvp import LossLandscape

__all__ = [
    "BallConstants",
    "IndependentRun",
    "PrefixFit",
    "constants_before_attack",
    "independent_power",
    "independent_run",
    "loss_side_only",
    "order_statistic_confidence",
    "prefix_fit",
    "radius_for_config",
    "reachable_radius",
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
    from empirical.engine.schedules import learning_rates

    rates = learning_rates(
        config.schedule,
        config.learning_rate,
        warmup_fraction=config.warmup_fraction,
        total_steps=config.budget_steps,
    )
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
    """β and G estimated on B(θ_0, R) before the attack, with the estimation record."""

    model_config = ConfigDict(frozen=True)

    beta: Constant
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
) -> BallConstants:
    """β and G at θ_0 and ``points`` points uniform in B(θ_0, ``radius``) (direction Gaussian,
    norm R·U^{1/d}), drawn with ``torch.Generator`` seed ``seed``: β the largest Lanczos
    estimate × (1 + tol), G the largest gradient norm (module docstring: what the maximum
    of k samples does and does not guarantee)."""
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
        sampled.append(center + (radius * u ** (1.0 / d) * direction).to(center.dtype))
    betas: list[float] = []
    gradients: list[float] = []
    for point in sampled:
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
        ),
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
    steps ≥ split are checked); T6: ``check_contraction_tail(trajectory, split, c, G)``.
    ``c`` is None when the prefix's update norms do not contract (no ratio < 1 at its end).
    """

    model_config = ConfigDict(frozen=True)

    split: int
    beta: Constant
    G: Constant
    c: Constant | None
    beta_rest: list[float | None]
    confidence: str


def prefix_fit(
    trajectory: Trajectory,
    landscape: LossLandscape,
    iterates: Sequence[Tensor],
    split: int,
    *,
    segment_samples: int = 4,
    lanczos_tolerance: float = LANCZOS_TOLERANCE,
    seed: int = 0,
) -> PrefixFit:
    """β (Lanczos at θ_0 … θ_split), G (``gradient_bound_along_path`` on the prefix's
    segments) and c (the largest ratio ‖u_{s+1}‖/‖u_s‖ over the prefix's contracting tail,
    ``empirical.measurement.estimators.contraction``), for checking steps split … T−1."""
    from empirical.measurement.estimators import (
        contraction,
        gradient_bound_along_path,
        smoothness_of,
    )

    steps = measured_prefix(trajectory)
    if not 2 <= split < steps:
        raise HftaInputError(f"split {split} must be in [2, {steps})")
    points = [iterates[i].to(landscape.dtype) for i in range(split + 1)]
    betas = [
        smoothness_of(landscape, p, tolerance=lanczos_tolerance, seed=seed).beta
        * (1.0 + lanczos_tolerance)
        for p in points
    ]
    gradient = gradient_bound_along_path(landscape, points, segment_samples)
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
    beta = Constant(
        name="beta",
        value=max(betas),
        method=f"Lanczos x (1 + {lanczos_tolerance:g}) at prefix iterates 0..{split}",
        points=len(betas),
        note="fitted on the prefix; checked on the rest",
        provenance={"values": betas},
    )
    g = Constant(
        name="G",
        value=gradient.value,
        method=f"{gradient.method} on prefix segments 0..{split - 1}",
        points=gradient.points,
        note="fitted on the prefix; checked on the rest",
    )
    rest: list[float | None] = [None] * split + [beta.value] * (trajectory.n_steps - split)
    return PrefixFit(
        split=split,
        beta=beta,
        G=g,
        c=c,
        beta_rest=rest,
        confidence="a description of the prefix: holds on the rest only if the rest stays in "
        "the region the prefix explored (no probabilistic guarantee)",
    )


@dataclass(frozen=True)
class IndependentRun:
    """One measured attack with the constants estimated independently of its checked steps:
    ``ball`` (None where no path-length bound exists before the attack, e.g. unclipped SGD)
    and ``prefix`` (fitted on the first half)."""

    name: str
    trajectory: Trajectory
    ball: BallConstants | None
    prefix: PrefixFit


def independent_run(
    name: str, config: AttackConfig, measured: MeasuredAttack, *, points: int = 8, seed: int = 0
) -> IndependentRun:
    """``constants_before_attack`` on the ball of ``radius_for_config`` (when the budget
    bounds the path) and ``prefix_fit`` at split T // 2, for one measured attack."""
    trajectory = measured.trajectory
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
            measured.landscape, measured.iterates[0], radius, points=points, seed=seed
        )
    fit = prefix_fit(trajectory, measured.landscape, measured.iterates, trajectory.n_steps // 2)
    return IndependentRun(name=name, trajectory=trajectory, ball=ball, prefix=fit)


def _t1_ball(run: IndependentRun, f: float) -> BoundCheck | None:
    if run.ball is None:
        return None
    return check_step_sandwich(run.trajectory, f * run.ball.beta.value)


def _t1_prefix(run: IndependentRun, f: float) -> BoundCheck | None:
    beta = [None if b is None else f * b for b in run.prefix.beta_rest]
    return check_step_sandwich(run.trajectory, beta)


def _t6(run: IndependentRun, fc: float, fg: float, G: Constant | None) -> BoundCheck | None:
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


def independent_power(
    runs: Sequence[IndependentRun], factors: Sequence[float] = FACTORS
) -> PowerTable:
    """T1 and T6 with independent constants (correct, and every constant × f): the
    detection rates (``empirical.certify.power.detection_rate``). T1 with one β from the
    ball or the prefix (checked on the rest); T6 from K = split with the prefix's c and the
    prefix's G, or the ball's G; and T6's loss inequalities alone (``loss_side_only``): a
    prefix-fitted c is refuted on runs whose updates stop contracting, which is the check
    working ("these constants do not describe this run"), not the loss bound failing."""
    correct = Perturbation(name="correct", kind="correct", description="independent constants")
    cases: list[tuple[str, Callable[[IndependentRun, float, float], BoundCheck | None]]] = [
        ("T1 smoothness_sandwich [ball beta]", lambda r, f, g: _t1_ball(r, f)),
        ("T1 smoothness_sandwich [prefix beta]", lambda r, f, g: _t1_prefix(r, f)),
        ("T6 contraction_tail [prefix c, prefix G]", lambda r, f, g: _t6(r, f, g, r.prefix.G)),
        (
            "T6 contraction_tail [prefix c, ball G]",
            lambda r, f, g: _t6(r, f, g, None if r.ball is None else r.ball.G),
        ),
        (
            "T6 contraction_tail [prefix c, prefix G] loss side",
            lambda r, f, g: loss_side_only(_t6(r, f, g, r.prefix.G)),
        ),
    ]
    rows: list[DetectionRate] = []
    for check, run_one in cases:
        variants: list[tuple[Perturbation, float, float]] = [(correct, 1.0, 1.0)]
        for f in factors:
            variants.append((Perturbation(name=f"all x{f:g}", kind="constants"), f, f))
            if check.startswith(T6_THEOREM.label):
                variants.append((Perturbation(name=f"c x{f:g}", kind="constants"), f, 1.0))
                variants.append((Perturbation(name=f"G x{f:g}", kind="constants"), 1.0, f))
        for perturbation, f_first, f_second in variants:
            results = [(r.name, run_one(r, f_first, f_second)) for r in runs]
            rows.append(detection_rate(check, perturbation, results))
    return PowerTable(runs=[r.name for r in runs], rates=rows)
