"""T2 ``clipped_sgd_progress`` against real torch SGD, step by step.

T2: L_t ≥ L_0 − Σ_{s<t} (G η_s C + (β/2) η_s² C²) on every step, and measured ≥ certified
steps to any threshold τ (``empirical.certify.check_sgd_progress``).

* Descent with exact constants (``torch.optim.SGD`` in float64 on quadratics, least squares
  and Σ x_i² + 3 sin²(x_i), momentum and clipping drawn): G the largest gradient norm at the
  iterates, β the known global smoothness, C the clipping norm or the largest gradient norm.
* Real SGD attacks of tiny random-init transformers (clipped or not, with momentum): G the
  largest probe-gradient norm at the iterates (T2's hypothesis is about the iterates only),
  β the path maximum of the Lanczos estimates, C the clipping norm or the largest recorded
  minibatch-gradient norm; T6 too wherever the update norms contract from some K on.

Negative controls: G halved in the envelope (on descent, and on full-batch SGD attacks where
the cumulative decrease runs close to G·η·C).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from empirical import certify
from empirical.engine.attack import AttackConfig
from empirical.testing import GradientProblem, TransformerSpec, descend
from empirical.testing import strategies as hst
from tests.properties._runs import (
    CLIPPING,
    MOMENTA,
    PROBLEMS,
    TINY,
    contraction_tail_if_any,
    examples,
    measure,
    no_violation,
    threshold_at,
)
from theory.theorems import clipped_sgd_progress


def _halved_g_envelope(**values: Any) -> Any:
    return clipped_sgd_progress.envelope(**{**values, "G": values["G"] / 2.0})


# ---------------------------------------------------------------------- descent
def descent_property(envelope: Callable[..., Any] | None = None) -> Callable[[], None]:
    @given(
        problem=PROBLEMS,
        steps=st.integers(1, 30),
        momentum=MOMENTA,
        clip=CLIPPING,
        position=st.floats(0.0, 1.0),
    )
    def prop(
        problem: GradientProblem,
        steps: int,
        momentum: float,
        clip: float | None,
        position: float,
    ) -> None:
        note(repr(problem))
        trajectory = descend(problem, steps, momentum=momentum, max_grad_norm=clip).trajectory
        constants = certify.constants_from_trajectory(trajectory)
        assert constants.G_iterates is not None
        losses = [float(v) for v in trajectory.probe_loss or [] if v is not None]
        threshold = min(losses) + position * (losses[0] - min(losses))
        check = certify.check_sgd_progress(
            trajectory,
            constants.G_iterates,
            problem.smoothness,
            threshold=threshold,
            envelope=envelope,
        )
        note(check.summary())
        assert check.violations == 0, check.summary()
        assert check.certified_steps is not None and check.measured_steps is not None
        assert check.measured_steps >= check.certified_steps

    return prop


def test_t2_envelope_holds_on_every_step() -> None:
    descent_property()()


@pytest.mark.negative_control
def test_t2_with_g_halved_is_refuted(expect_falsified: Callable[..., None]) -> None:
    expect_falsified(descent_property(_halved_g_envelope))


# ---------------------------------------------------------------------- attacks
SGD_ATTACKS = hst.attack_configs(optimizers=("sgd",), budget=(12, 24))
#: Full-batch SGD at small rates: the minibatch is the whole attack set (24 examples), the
#: probe too, so every step is a gradient step on the probe loss and the cumulative decrease
#: runs close to G·η·C: the regime where a halved G is refutable.
FULL_BATCH_SGD = hst.attack_configs(
    optimizers=("sgd",),
    methods=("full",),
    clipping=(None,),
    schedules=("constant",),
    warmup_fractions=(0.0,),
    learning_rates={"sgd": (1e-3, 1e-2)},
    batch_sizes=(24,),
    probe_size=24,
    budget=(4, 8),
)


def attack_property(
    configs: st.SearchStrategy[AttackConfig], envelope: Callable[..., Any] | None = None
) -> Callable[[], None]:
    @given(spec=TINY, config=configs, position=st.floats(0.0, 1.0))
    def prop(spec: TransformerSpec, config: AttackConfig, position: float) -> None:
        measured = measure(spec, config)
        constants = measured.constants
        assert constants.G_iterates is not None and constants.beta is not None
        assert constants.theta0_norm is not None
        losses = measured.trajectory.probe_loss or []
        check = certify.check_sgd_progress(
            measured.trajectory,
            constants.G_iterates,
            constants.beta,
            constants.C,
            threshold=threshold_at(list(losses), position),
            theta0_norm=constants.theta0_norm.value,
            envelope=envelope,
        )
        no_violation(check)
        assert check.measured_steps is not None
        assert check.certified_steps is not None and check.measured_steps >= check.certified_steps
        contraction_tail_if_any(measured)

    return prop


@pytest.mark.slow
def test_t2_envelope_holds_on_every_step_of_sgd_attacks() -> None:
    settings(max_examples=examples(4))(attack_property(SGD_ATTACKS))()


@pytest.mark.slow
@pytest.mark.negative_control
def test_t2_with_g_halved_is_refuted_on_full_batch_attacks(
    expect_falsified: Callable[..., None],
) -> None:
    """The same property passes on full-batch SGD and fails with G/2 in the envelope."""
    settings(max_examples=examples(3))(attack_property(FULL_BATCH_SGD))()
    expect_falsified(attack_property(FULL_BATCH_SGD, envelope=_halved_g_envelope), examples(3))
