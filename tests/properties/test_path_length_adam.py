"""T3 ``path_length_adam`` against real torch runs, step by step.

T3: with ‖∇L‖ ≤ G on the segments, L_t ≥ L_0 − G Σ_{s<t} ‖Δ_s‖ (any optimizer), and Adam's
steps obey ‖Δ_s‖ ≤ η_s a_{s+1} √d (AdamW: + η_s λ R_s) whatever the gradients, which gives
the certified envelope L_t ≥ L_0 − G Σ_{s<t} (step bound_s).

* Descent (``torch.optim.SGD`` in float64 on problems with a known β): the constants measured
  along the path (``certify.descent_constants``: Lanczos β, G on 4 points per segment) agree
  with the known ones, and the path-length bound holds with the measured G.
* Real Adam/AdamW attacks of tiny random-init transformers (full or LoRA): the step lemma on
  every step (``check_adam_steps``), the path-length bound with the measured update norms
  (``check_path_length``) and the certified envelope with measured ≥ certified steps to a
  threshold (``check_adam_path``), with G the largest probe-gradient norm on points sampled
  along the segments; T6 too wherever the update norms contract from some K on.

Negative controls: G halved in the path-length bound (descent), and the per-coordinate bound
η a_k used as the bound on the step's norm (√d dropped; attacks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from empirical import certify
from empirical.engine.attack import AttackConfig
from empirical.testing import GradientProblem, QuadraticProblem, TransformerSpec, descend
from empirical.testing import strategies as hst
from tests.properties._runs import (
    MOMENTA,
    PROBLEMS,
    TINY,
    contraction_tail_if_any,
    examples,
    measure,
    no_violation,
    threshold_at,
)
from theory.theorems import path_length_adam


# ---------------------------------------------------------------------- descent
def descent_property(path_envelope: Callable[..., Any] | None = None) -> Callable[[], None]:
    @given(problem=PROBLEMS, steps=st.integers(1, 12), momentum=MOMENTA)
    def prop(problem: GradientProblem, steps: int, momentum: float) -> None:
        note(repr(problem))
        run = descend(problem, steps, momentum=momentum)
        constants = certify.descent_constants(run.trajectory, problem.loss, run.iterate_tensors())
        assert constants.beta is not None and constants.G_path is not None
        tolerance = certify.LANCZOS_TOLERANCE
        assert constants.beta.value <= problem.smoothness * (1 + tolerance) ** 2 + 1e-9
        if isinstance(problem, QuadraticProblem) or hasattr(problem, "as_quadratic"):
            # a quadratic's Hessian is H everywhere: Lanczos finds λ_max at every point
            assert constants.beta.value >= problem.smoothness * (1 - tolerance)
        check = certify.check_path_length(
            run.trajectory, constants.G_path, path_envelope=path_envelope
        )
        note(check.summary())
        assert check.violations == 0, check.summary()

    return prop


def test_t3_path_length_and_estimators_agree_with_known_constants() -> None:
    """Constants measured along the path (``certify.descent_constants``: Lanczos β, G on 4
    points per segment) against the known ones, then T3's path-length bound with them."""
    descent_property()()


def _halved_g_path_envelope(**values: Any) -> Any:
    return path_length_adam.path_envelope(**{**values, "G": values["G"] / 2.0})


@pytest.mark.negative_control
def test_t3_path_length_with_g_halved_is_refuted(expect_falsified: Callable[..., None]) -> None:
    """Gradient descent with η ≤ 1/β lowers L by about ‖∇L‖‖Δ‖ per step: more than G/2."""
    expect_falsified(descent_property(_halved_g_path_envelope))


# ---------------------------------------------------------------------- attacks
ADAM_ATTACKS = hst.attack_configs(optimizers=("adam", "adamw"), budget=(12, 24))


def attack_property(step_bounds: Callable[..., Any] | None = None) -> Callable[[], None]:
    @given(spec=TINY, config=ADAM_ATTACKS, position=st.floats(0.0, 1.0))
    def prop(spec: TransformerSpec, config: AttackConfig, position: float) -> None:
        measured = measure(spec, config)
        constants = measured.constants
        assert constants.G_path is not None and constants.theta0_norm is not None
        trajectory = measured.trajectory
        no_violation(
            certify.check_adam_steps(
                trajectory, theta0_norm=constants.theta0_norm, step_bounds=step_bounds
            )
        )
        no_violation(certify.check_path_length(trajectory, constants.G_path))
        check = certify.check_adam_path(
            trajectory,
            constants.G_path,
            theta0_norm=constants.theta0_norm,
            threshold=threshold_at(list(trajectory.probe_loss or []), position),
        )
        no_violation(check)
        assert check.certified_steps is not None and check.measured_steps is not None
        assert check.measured_steps >= check.certified_steps
        contraction_tail_if_any(measured)

    return prop


@pytest.mark.slow
def test_t3_step_lemma_path_length_and_envelope_hold_on_adam_attacks() -> None:
    settings(max_examples=examples(4))(attack_property())()


def _bounds_without_sqrt_d(**values: Any) -> Any:
    """The per-coordinate bound η a_k used as a bound on the step's norm (√d dropped)."""
    return path_length_adam.step_norm_bounds(**values) / math.sqrt(values["d"])


@pytest.mark.slow
@pytest.mark.negative_control
def test_t3_without_the_sqrt_d_factor_is_refuted(expect_falsified: Callable[..., None]) -> None:
    expect_falsified(attack_property(step_bounds=_bounds_without_sqrt_d), examples(4))
