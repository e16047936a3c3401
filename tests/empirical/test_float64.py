"""The probe columns evaluated again in float64, trustworthy curvature, and denser β sampling
(issue 14, item 6: rounding must not decide a check; constants sampled densely enough).

Measured on the default attack (AdamW 3e-4, 200 steps) when this was written: the recorded
float32 probe loss differs from the float64 evaluation at the same iterates by up to 65 float32
ulp (relative 7.8e-6) at L ≈ 0.003, against the 8 ulp a check allows; the float32 recorder kept
145 of 199 curvatures (the others rounding noise), the largest 15.0, the float64 one 15.0.
The tests below use a short attack so that they take seconds.
"""

from __future__ import annotations

import math

import pytest
import torch

from empirical.certify import attack_and_measure
from empirical.certify.capture import MeasuredAttack, _probe_batch
from empirical.certify.checks_base import loss_tolerance
from empirical.certify.constants import measure_constants
from empirical.certify.float64 import in_float64
from empirical.certify.smoothness_sandwich import check_step_sandwich
from empirical.engine.attack import AttackConfig
from empirical.models.model import load_model
from theory.errors import HftaInputError
from theory.theorems.smoothness_sandwich import (
    curvature_rounding_bound,
    segment_curvature,
    trustworthy_curvature,
)

CONFIG = AttackConfig(
    probe=True, record_curvature=True, budget_steps=16, learning_rate=1e-3, probe_size=8
)


@pytest.fixture(scope="module")
def measured() -> MeasuredAttack:
    torch.manual_seed(0)
    return attack_and_measure(CONFIG, beta_every=8, segment_samples=1, float64=True)


def test_float64_columns_agree_with_the_recorded_ones_to_float32_precision(
    measured: MeasuredAttack,
) -> None:
    recorded, again = measured.trajectory, measured.checked
    assert again.probe_dtype == "float64" and recorded.probe_dtype is None
    assert again.probe_loss is not None and recorded.probe_loss is not None
    for f32, f64 in zip(recorded.probe_loss, again.probe_loss, strict=True):
        assert f32 is not None and f64 is not None
        assert math.isclose(f32, f64, rel_tol=1e-4)
    # the parameters' columns are the run's own
    assert again.update_norm == recorded.update_norm
    assert again.distance_from_start == recorded.distance_from_start


def test_float64_allowance_is_float64_sized(measured: MeasuredAttack) -> None:
    recorded, again = measured.trajectory, measured.checked
    assert loss_tolerance(again, 1.0) == pytest.approx(8 * 2.0**-52)
    assert loss_tolerance(recorded, 1.0) == pytest.approx(8 * 2.0**-23)


def test_t1_on_float64_columns_holds_and_catches_half_beta(measured: MeasuredAttack) -> None:
    beta = measured.constants.beta
    assert beta is not None
    curvatures = [abs(k) for k in measured.checked.curvature or [] if k is not None]
    assert curvatures, "no trustworthy curvature on the run"
    holds = check_step_sandwich(measured.checked, measured.constants.beta_segments)
    assert holds.status == "holds", holds
    # negative control: a beta below the largest trustworthy curvature must be caught
    too_small = 0.5 * max(curvatures)
    caught = check_step_sandwich(measured.checked, too_small)
    assert caught.status == "violated" and caught.violations >= 1


def test_wrong_probe_batch_is_refused(measured: MeasuredAttack) -> None:
    _, tokenizer = load_model(None)
    other = CONFIG.model_copy(update={"seed": 5})
    batch = _probe_batch(other, tokenizer, measured.model, None, None, None)
    with pytest.raises(HftaInputError, match="probe batch"):
        in_float64(measured.trajectory, measured.model, batch, measured.iterates)


def test_refine_samples_densely_until_stable(measured: MeasuredAttack) -> None:
    sparse = measure_constants(
        measured.trajectory, measured.landscape, measured.iterates, beta_every=8,
        segment_samples=1,
    )
    refined = measure_constants(
        measured.trajectory, measured.landscape, measured.iterates, beta_every=8,
        segment_samples=1, refine=0.05,
    )
    assert sparse.beta is not None and refined.beta is not None
    steps = refined.beta.provenance["refinement"]
    assert steps[0]["interval"] == 8 and len(steps) >= 2
    assert [s["interval"] for s in steps] == sorted((s["interval"] for s in steps), reverse=True)
    assert refined.beta.value >= sparse.beta.value
    # it stops at every iterate or after two halvings in a row that changed beta <= 5%
    if steps[-1]["interval"] != 1:
        assert len(steps) >= 3
        for later, earlier in ((steps[-1], steps[-2]), (steps[-2], steps[-3])):
            assert later["beta"] <= earlier["beta"] * 1.05
    with pytest.raises(HftaInputError):
        measure_constants(
            measured.trajectory, measured.landscape, measured.iterates, refine=0.0
        )


def test_curvature_rounding_bound_is_the_formula() -> None:
    rho = curvature_rounding_bound(L0=1.0, L1=0.5, gdot=-0.25, delta_norm=0.5, unit_roundoff=1e-3)
    assert rho == pytest.approx(2 * 8 * 1e-3 * 1.75 / 0.25)


def test_tiny_step_curvature_is_noise_and_a_real_one_is_kept() -> None:
    eps32 = 2.0**-23
    assert trustworthy_curvature(
        L0=1.0, L1=0.75, gdot=-0.5, delta_norm=0.5, unit_roundoff=eps32
    ) == segment_curvature(L0=1.0, L1=0.75, gdot=-0.5, delta_norm=0.5)
    # a numerator of one ulp over a tiny step: the formula gives a large kappa, the rule none
    noisy = dict(L0=1.0, L1=1.0 + eps32, gdot=0.0, delta_norm=1e-4)
    assert abs(segment_curvature(**noisy)) > 1.0
    assert trustworthy_curvature(**noisy, unit_roundoff=eps32) is None
    # the same numbers in float64 units of roundoff are far from noise
    assert trustworthy_curvature(**noisy, unit_roundoff=2.0**-52) is not None
