r"""Which check checks which theorem: the registry keyed by the catalogue's theorem names.

``CHECKS`` maps ``THEOREM.name`` (the theorem objects of ``theory.theorems``, as each check
module imports them) to the module that checks it and that module's planners; ``NO_CHECK``
maps the name of every catalogued theorem that has no check of an attack trajectory to the
reason why. ``tests/test_catalogue_complete.py`` requires every theorem of
``theory.catalogue()`` to be in exactly one of them.

``check_all`` runs the planners in ``RUN_ORDER`` (T1, T3's path-length bound, T2, T3's Adam
checks, T6, T4, T9: the order of its output), each planner returning the checks its theorem
contributes for the trajectory's optimizer and the constants known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from empirical.certify import (
    clipped_sgd_progress,
    contraction_tail,
    gradient_steps_exact,
    harm_from_loss,
    harm_radius,
    path_length_adam,
    pl_convergence,
    smoothness_sandwich,
)
from empirical.certify.checks_base import Planner
from empirical.certify.records import BoundCheck, PathConstants
from empirical.measurement.trajectory import Trajectory
from theory.theorem import Theorem
from theory.theorems import binomial_confidence, quadratic_gd, stability_displacement

__all__ = [
    "CHECKS",
    "NO_CHECK",
    "RUN_ORDER",
    "TheoremChecks",
    "certified_steps",
    "check_all",
]


@dataclass(frozen=True)
class TheoremChecks:
    """The checks of one theorem: the theorem, the module that holds them (its dotted name)
    and the planners through which ``check_all`` runs them."""

    theorem: Theorem
    module: str
    planners: tuple[Planner, ...]


def _by_name(*entries: TheoremChecks) -> dict[str, TheoremChecks]:
    return {entry.theorem.name: entry for entry in entries}


#: theorem name → its checks (keys are ``THEOREM.name`` of theory's theorem objects).
CHECKS: Mapping[str, TheoremChecks] = _by_name(
    TheoremChecks(
        smoothness_sandwich.THEOREM, smoothness_sandwich.__name__, (smoothness_sandwich.plan,)
    ),
    TheoremChecks(
        clipped_sgd_progress.THEOREM, clipped_sgd_progress.__name__, (clipped_sgd_progress.plan,)
    ),
    TheoremChecks(
        path_length_adam.THEOREM,
        path_length_adam.__name__,
        (path_length_adam.plan_path_length, path_length_adam.plan_adam),
    ),
    TheoremChecks(pl_convergence.THEOREM, pl_convergence.__name__, (pl_convergence.plan,)),
    TheoremChecks(contraction_tail.THEOREM, contraction_tail.__name__, (contraction_tail.plan,)),
    TheoremChecks(
        gradient_steps_exact.THEOREM, gradient_steps_exact.__name__, (gradient_steps_exact.plan,)
    ),
    TheoremChecks(harm_from_loss.THEOREM, harm_from_loss.__name__, (harm_from_loss.plan,)),
    TheoremChecks(harm_radius.THEOREM, harm_radius.__name__, (harm_radius.plan,)),
)

#: theorem name → why no attack trajectory is checked against it.
NO_CHECK: Mapping[str, str] = {
    quadratic_gd.THEOREM.name: (
        "T5 is the closed form of gradient descent on a quadratic; an attack on a language "
        "model is not one, so no attack trajectory is checked against it. Its property test "
        "compares real torch descent on quadratics and least squares with the closed form; "
        "the condition-number defence uses it (empirical.defences.condition_number)."
    ),
    stability_displacement.THEOREM.name: (
        "T7 bounds the change of the capability loss under one displacement "
        "(theta_immunized - theta_original), not the steps of an attack, so there is no attack "
        "trajectory to check; its property test checks it on real torch losses with known "
        "constants."
    ),
    binomial_confidence.THEOREM.name: (
        "T8 is a statistics theorem (confidence intervals of rates and mean scores) used by the "
        "verdicts through theory.statistics, not a bound on an attack's losses; its property "
        "test checks the intervals' coverage by simulation and exact computation."
    ),
}

#: The order in which ``check_all`` runs the planners (the order of its output).
RUN_ORDER: tuple[Planner, ...] = (
    smoothness_sandwich.plan,
    path_length_adam.plan_path_length,
    clipped_sgd_progress.plan,
    path_length_adam.plan_adam,
    contraction_tail.plan,
    pl_convergence.plan,
    gradient_steps_exact.plan,
    harm_from_loss.plan,
    harm_radius.plan,
)


def check_all(
    trajectory: Trajectory, constants: PathConstants, *, threshold: float | None = None
) -> list[BoundCheck]:
    """Every check that applies to the trajectory's optimizer, with the given constants.

    Always: T1 (with the per-segment β if measured, else the path β) and T3's path-length
    bound (any optimizer). SGD: T2. Adam/AdamW: T3's step lemma and certified envelope. T6
    when a contraction start K and c are known. T4 when μ and L* are known and the run is
    gradient descent on the probe loss; T9 whenever the run is gradient descent on the probe
    loss. Checks whose constants are missing come back
    ``not_applicable`` with the reason, and so do checks whose constants break the theorem's
    parameter assumptions (``PlannedCheck``).

    Rounding allowances: ‖θ_0‖ (``constants.theta0_norm``) enters the bounds on step norms
    (T2, T3), whose intended steps the rounded parameters can overshoot. It does not enter
    T1's loss-evaluation allowance (a float32 causal-LM loss agrees with float64 to ~1 ulp of
    L, measured, so 8 ulp of L is the honest allowance there) nor T6's hypothesis (c measured
    from the same rounded update norms it is compared with).
    """
    return [check() for planner in RUN_ORDER for check in planner(trajectory, constants, threshold)]


def certified_steps(
    trajectory: Trajectory, constants: PathConstants, threshold: float
) -> dict[str, BoundCheck]:
    """Certified against measured steps to reach ``threshold`` for every theorem that has a
    steps solver and applies (key: the theorem's label, ``"T2"``, ``"T3"``, ``"T6"``,
    ``"T4"``, ``"T9"``)."""
    return {
        check.label: check
        for check in check_all(trajectory, constants, threshold=threshold)
        if check.steps_kind is not None
    }
