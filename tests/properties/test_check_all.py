"""``empirical.certify`` as the verifier uses it: ``check_all``, saved trajectories, missing
inputs, records, and the iterates a real attack hands to its ``on_iterate`` callback.

The bound checks must give the same result on a trajectory read back from disk (the verifier
checks saved runs), say "not applicable" with a reason where a measurement or constant is
missing instead of passing silently, and refuse constants measured on a loss that is not the
trajectory's probe loss. ``check_all`` runs every registered planner exactly once, and finds
no violation on real attacks of the released model. The iterates captured through
``on_iterate`` are the attack's own (their differences have the recorded update norms; a
perturbed or misordered capture is refused) and capturing them does not change the attack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from empirical import certify
from empirical.certify.registry import CHECKS, RUN_ORDER
from empirical.datasets.benchmark import Benchmark
from empirical.engine.attack import AttackConfig, attack
from empirical.measurement.trajectory import Trajectory
from empirical.testing import GradientProblem, SinusoidalPLProblem, TransformerSpec, descend
from empirical.testing import strategies as hst
from tests.properties._runs import (
    EMBEDDED,
    EMBEDDED_ATTACKS,
    benchmark,
    examples,
    measure,
    recorded,
)
from theory.errors import HftaInputError

PROBLEMS = st.one_of(
    hst.quadratic_problems(step="pl"),
    hst.least_squares_problems(step="pl"),
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


# ---------------------------------------------------------------------- the registry
def test_check_all_runs_every_registered_planner_once() -> None:
    planners = [p for entry in CHECKS.values() for p in entry.planners]
    assert sorted(map(id, planners)) == sorted(map(id, RUN_ORDER))
    assert len(set(map(id, RUN_ORDER))) == len(RUN_ORDER)


def test_every_check_names_its_registered_theorem() -> None:
    """Each planned check carries the label and name of the theorem it is registered under
    (a check name may add a suffix: ``path_length_adam:adam_step``)."""
    problem = SinusoidalPLProblem(theta_0=np.array([1.5]), learning_rate=0.1)
    trajectory = descend(problem, 5).trajectory
    for name, entry in CHECKS.items():
        for planner in entry.planners:
            for planned in planner(trajectory, certify.PathConstants(), None):
                assert planned.label == entry.theorem.label
                assert planned.name.split(":")[0] == name


# ---------------------------------------------------------------------- iterates
def _tiny_attack(on_iterate: certify.IterateCapture | None) -> Trajectory:
    bench: Benchmark = benchmark()
    model, tokenizer = TransformerSpec().build()
    config = AttackConfig(optimizer="adam", learning_rate=1e-2, budget_steps=3, probe=True)
    return attack(
        config,
        model=model,
        tokenizer=tokenizer,
        data=bench.attack,
        evaluation=bench.evaluation,
        reference=bench.reference,
        on_iterate=on_iterate,
    ).trajectory


def test_on_iterate_hands_over_the_attacks_own_iterates() -> None:
    capture = certify.IterateCapture()
    trajectory = _tiny_attack(capture)
    iterates = capture.iterates(trajectory)
    assert len(iterates) == trajectory.n_steps + 1 == 4
    distances = [float((theta - iterates[0]).norm()) for theta in iterates]
    np.testing.assert_allclose(
        np.asarray(distances),
        np.asarray(recorded(trajectory.distance_from_start)),
        rtol=1e-5,
        atol=1e-12,
    )
    assert _tiny_attack(None).comparable() == trajectory.comparable()


def test_a_perturbed_or_misordered_capture_is_refused() -> None:
    capture = certify.IterateCapture()
    trajectory = _tiny_attack(capture)
    perturbed = certify.IterateCapture()
    for s, theta in enumerate(capture.points):
        perturbed(s, theta * 1.001 if s == 2 else theta)
    with pytest.raises(HftaInputError, match="captured step 1"):
        perturbed.iterates(trajectory)
    with pytest.raises(HftaInputError, match="iterate 2"):
        certify.IterateCapture()(2, capture.points[0])
    short = certify.IterateCapture()
    short(0, capture.points[0])
    with pytest.raises(HftaInputError, match="captured 1 iterates"):
        short.iterates(trajectory)


# ---------------------------------------------------------------------- real attacks
@pytest.mark.slow
@settings(max_examples=examples(2))
@given(spec=EMBEDDED, config=EMBEDDED_ATTACKS)
def test_check_all_passes_on_attacks_of_the_embedded_model(
    spec: TransformerSpec, config: AttackConfig
) -> None:
    """``check_all`` (what ``hfta verify`` runs) finds no violation on real attacks of the
    released model, and applies at least T1 and the theorem of the attack's optimizer."""
    measured = measure(spec, config)
    checks = measured.check_all()
    for check in checks:
        note(check.summary())
    assert not [c for c in checks if c.status == "violated"]
    applied = {c.label for c in checks if c.applicable}
    expected = "T2" if config.optimizer == "sgd" else "T3"
    assert {"T1", expected} <= applied
    np.testing.assert_equal(len(measured.iterates), measured.trajectory.n_steps + 1)
