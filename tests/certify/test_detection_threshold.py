"""``empirical.certify.weak_checks.detection_threshold``: the largest factor f* at which a
check with all its constants × f still reports a violation, the figure the verdict gives for a
weak check.

Subjects: gradient descent on random quadratics with their exact constants
(``benchmarks.power_bench.descent_subjects``; T1 with the problem's global β, T9 with G and β).
The bisection must bracket the switch: the check detects at f* and not just above it, and a
check that detects even at its correct constants (a wrong β, the negative control) has f* = 1.
"""

from __future__ import annotations

import functools

import pytest

from benchmarks.power_bench import descent_subjects
from empirical.certify.power import CHECK_SPECS, CheckSpec, Perturbation, PowerSubject, run_check
from empirical.certify.records import given_constant
from empirical.certify.weak_checks import detection_threshold

SPECS = {spec.check: spec for spec in CHECK_SPECS}


@functools.lru_cache(maxsize=1)
def subjects() -> list[PowerSubject]:
    return descent_subjects(4)


def detects(spec: CheckSpec, subject: PowerSubject, f: float) -> bool:
    scales = dict.fromkeys(spec.constants, f)
    result = run_check(spec, subject, Perturbation(name="f", kind="constants", scales=scales))
    assert result is not None
    return result.violations > 0


@pytest.mark.parametrize("check", ["T1 smoothness_sandwich", "T9 gradient_steps_exact"])
def test_the_threshold_brackets_the_switch(check: str) -> None:
    spec = SPECS[check]
    for subject in subjects():
        f = detection_threshold(spec, subject)
        assert f is not None and 1e-3 <= f < 1.0
        assert not detects(spec, subject, 1.0)  # exact constants: no false alarm
        if f > 1e-3:
            assert detects(spec, subject, f)
            assert not detects(spec, subject, min(1.0, f * 1.01))


@pytest.mark.negative_control
def test_a_check_failing_at_its_own_constants_has_threshold_one() -> None:
    """β a tenth of the problem's: T1 fails at ×1, so f* = 1 (the check reports it)."""
    spec = SPECS["T1 smoothness_sandwich"]
    subject = subjects()[0]
    beta = subject.constants.beta
    assert beta is not None
    wrong = subject.constants.model_copy(
        update={"beta": given_constant("beta", beta.value / 10.0, "a tenth of the true beta")}
    )
    assert detection_threshold(spec, PowerSubject(subject.name, subject.trajectory, wrong)) == 1.0


def test_a_check_that_does_not_apply_has_no_threshold() -> None:
    """T3's envelope is for Adam; a gradient-descent run has none."""
    assert detection_threshold(SPECS["T3 path_length_adam"], subjects()[0]) is None
