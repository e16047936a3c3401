"""``empirical.certify`` as the verifier uses it: saved trajectories, missing inputs, records.

The bound checks must give the same result on a trajectory read back from disk (the verifier
checks saved runs), say "not applicable" with a reason where a measurement or constant is
missing instead of passing silently, and refuse constants measured on a loss that is not the
trajectory's probe loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from empirical import certify
from empirical.attack import AttackConfig
from empirical.testing import GradientProblem, SinusoidalPLProblem, descend
from empirical.testing import strategies as hst
from empirical.trajectory import Trajectory
from theory.errors import HftaInputError

PROBLEMS = st.one_of(
    hst.quadratic_problems(step="pl"), hst.least_squares_problems(step="pl"),
    hst.sinusoidal_pl_problems(),
)


def _constants(problem: GradientProblem, trajectory: Trajectory) -> certify.PathConstants:
    base = certify.constants_from_trajectory(trajectory)
    mu = problem.pl_constant
    return base.model_copy(
        update={
            "beta": certify.given_constant("beta", problem.smoothness, "global, exact"),
            "G_path": base.G_iterates,
            "mu": None if mu is None else certify.given_constant("mu", mu),
            "loss_star": certify.given_constant("L_star", problem.loss_star),
        }
    )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(problem=PROBLEMS, steps=st.integers(1, 25), suffix=st.sampled_from([".json", ".parquet"]))
def test_checks_of_a_saved_trajectory_equal_those_of_the_run(
    tmp_path: Path, problem: GradientProblem, steps: int, suffix: str
) -> None:
    note(repr(problem))
    trajectory = descend(problem, steps).trajectory
    constants = _constants(problem, trajectory)
    loaded = Trajectory.load(trajectory.save(tmp_path / f"run{suffix}"))
    before = [c.model_dump() for c in certify.check_all(trajectory, constants)]
    after = [c.model_dump() for c in certify.check_all(loaded, constants)]
    assert before == after
    labels = {c["label"] for c in before if c["status"] != "not_applicable"}
    assert {"T2", "T3"} <= labels
    moved = any(u for u in trajectory.update_norm)
    assert ("T1" in labels) == moved  # T1 skips steps that do not move
    for check in certify.check_all(trajectory, constants):
        round_trip = certify.BoundCheck.model_validate_json(check.model_dump_json())
        assert round_trip.status == check.status and round_trip.violations == check.violations


@given(problem=PROBLEMS, steps=st.integers(1, 10))
def test_without_a_probe_every_check_says_why_it_does_not_apply(
    problem: GradientProblem, steps: int
) -> None:
    trajectory = descend(problem, steps).trajectory
    bare = trajectory.model_copy(
        update={
            "probe_loss": None,
            "probe_grad_norm": None,
            "probe_directional_derivative": None,
            "curvature": None,
        }
    )
    checks = certify.check_all(bare, _constants(problem, trajectory))
    assert checks
    for check in checks:
        assert check.status == "not_applicable", check.summary()
        assert check.reason


def test_missing_constants_are_reported_not_passed() -> None:
    problem = SinusoidalPLProblem(theta_0=np.array([1.5]), learning_rate=0.1)
    trajectory = descend(problem, 5).trajectory
    checks = certify.check_all(trajectory, certify.PathConstants())
    assert {c.label for c in checks} >= {"T1", "T3"}
    assert all(c.status == "not_applicable" and "not measured" in c.reason for c in checks)


def test_constants_from_another_loss_are_refused() -> None:
    problem = SinusoidalPLProblem(theta_0=np.array([1.5, -0.5]), learning_rate=0.1)
    run = descend(problem, 4)
    other = SinusoidalPLProblem(theta_0=np.array([1.5, -0.5]), learning_rate=0.1)

    def shifted(theta: torch.Tensor) -> torch.Tensor:
        return other.loss(theta) + 1.0

    with pytest.raises(HftaInputError, match="not the probe loss"):
        certify.descent_constants(run.trajectory, shifted, run.iterate_tensors())
    with pytest.raises(HftaInputError, match="iterates"):
        certify.descent_constants(run.trajectory, problem.loss, run.iterate_tensors()[:-1])


def test_attack_and_measure_needs_the_probe() -> None:
    with pytest.raises(HftaInputError, match="probe"):
        certify.attack_and_measure(AttackConfig(probe=False, record_curvature=False))
