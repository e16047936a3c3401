"""The power records of the verdict in report.md and report.html: why each weak check is weak
with its largest detecting factor (``PowerRecord.weak_reasons``), the independent counterpart
of a weak check (``CheckPower.counterpart``), and the independent constants
(``PowerRecord.estimates``) with method, points, provenance and what they can be trusted for.

The run folders are written by the verifier's own writer (``write_outputs``) from the
synthetic verdict of tests/verify/test_html.py with a power record set here. Control: a
record whose checks are all strong, with no reasons, counterparts or estimates, shows none
of these sections in either report.
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import pytest

from empirical.certify.records import Constant
from empirical.verify.markdown import WEAK_REASONS_LEAD, estimate_confidence, provenance_text
from empirical.verify.report import write_outputs
from empirical.verify.theory import CheckPower, IndependentEstimate, PowerRecord
from tests.verify.test_html import _outcome, _parse

WEAK = "T3 path_length_adam:path_length"
INDEPENDENT = "T1 smoothness_sandwich [sibling directional beta]"
WEAK_T1 = "T1 smoothness_sandwich"
REASON = (
    "one G charged to every step; measured: it detects its constants x f only for f <= 0.4 "
    "(largest over 2 runs; median 0.367)"
)
SIBLING = "a description of the source's steps (no probabilistic guarantee)"
BALL = "max of 8 uniform samples of the ball; no bound on the supremum"


def _row(check: str, rate: float, *, counterpart: str | None = None) -> CheckPower:
    return CheckPower(
        check=check, runs=2, not_applicable=0, detection_x05=rate, detection_x08=rate,
        lower_95_x05=None, statements=[], false_alarms=0, weak=rate < 0.9,
        independent="[" in check, counterpart=counterpart,
    )


def _estimate(check: str, constant: Constant, confidence: str) -> IndependentEstimate:
    return IndependentEstimate(
        run="grid-000", check=check, constant=constant, confidence=confidence,
        instances=19, violations=1,
    )


BETA = Constant(
    name="beta", value=118.678091, method="1 x max |kappa_s| over 3 segment curvatures",
    points=3, provenance={"source": "grid-001", "abs_curvatures": [11.5, 19.1, 118.678091],
                          "margin": 1.0},
)
BALL_G = Constant(
    name="G", value=18.1812, method="max gradient norm on the ball B(theta_0, R = 4.6)",
    points=9, provenance={"values": [1.0] * 9, "seed": 0},
)
PREFIX_C = Constant(name="c", value=0.9938, method="max ratio of update norms", points=28)

POWER = PowerRecord(
    subjects=["grid-000", "grid-001"],
    note="synthetic",
    checks=[
        _row(WEAK_T1, 0.0, counterpart=INDEPENDENT),
        _row(WEAK, 0.0),
        _row(INDEPENDENT, 1.0),
    ],
    seconds=0.0,
    estimates=[
        _estimate(INDEPENDENT, BETA, SIBLING),
        _estimate("T6 contraction_tail [prefix c, ball G]", PREFIX_C, SIBLING + "."),
        _estimate("T6 contraction_tail [prefix c, ball G]", BALL_G, BALL),
    ],
    weak_reasons={WEAK: REASON},
)

#: The control: every check strong, nothing to explain.
STRONG = PowerRecord(
    subjects=["grid-000", "grid-001"], note="synthetic",
    checks=[_row("T3 path_length_adam:adam_step", 1.0)], seconds=0.0,
)

MARKS = (WEAK_REASONS_LEAD, "independent counterpart", "How far each check's independent")
HTML_IDS = ('id="weak-reasons"', 'id="counterparts"', 'id="estimates-table"',
            'id="estimate-confidence"')


def _written(folder: Path, power: PowerRecord) -> tuple[str, str]:
    outcome = _outcome(broken=True)
    outcome = dataclasses.replace(outcome, theory=dataclasses.replace(outcome.theory, power=power))
    write_outputs(outcome, folder)
    return (
        (folder / "report.md").read_text(encoding="utf-8"),
        (folder / "report.html").read_text(encoding="utf-8"),
    )


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return _written(tmp_path_factory.mktemp("power") / "out", POWER)


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return _written(tmp_path_factory.mktemp("strong") / "out", STRONG)


def test_markdown_shows_why_a_check_is_weak_and_its_counterpart(
    reports: tuple[str, str],
) -> None:
    report, _ = reports
    assert f"{WEAK_REASONS_LEAD}\n\n- {WEAK}: {REASON}.\n" in report
    assert f"- {WEAK_T1}: independent counterpart {INDEPENDENT}.\n" in report
    assert "**Weak checks** (detection at x0.5 below 0.9): T1 smoothness_sandwich, " in report


def test_markdown_shows_each_independent_constant_with_points_and_provenance(
    reports: tuple[str, str],
) -> None:
    report, _ = reports
    assert "| run | check | constant | method | points | provenance | violations |" in report
    assert (
        f"| grid-000 | {INDEPENDENT} | beta = 118.7 | 1 x max \\|kappa_s\\| over 3 segment "
        "curvatures | 3 | source grid-001, abs_curvatures (3 values), margin 1 | 1/19 |"
    ) in report
    assert "| c = 0.9938 | max ratio of update norms | 28 | – | 1/19 |" in report
    assert f"- {INDEPENDENT} (beta); T6 contraction_tail [prefix c, ball G] (c): {SIBLING}.\n" in (
        report
    )
    assert f"- T6 contraction_tail [prefix c, ball G] (G): {BALL}.\n" in report


def test_html_shows_the_same_records_escaped(reports: tuple[str, str]) -> None:
    _, page = reports
    assert _parse(page).errors == []  # balanced tags around the new lists and table
    for marker in HTML_IDS:
        assert marker in page
    assert f"<li><strong>{WEAK}</strong>: {html.escape(REASON)}.</li>" in page
    assert "f &lt;= 0.4" in page  # escaped, never raw markup
    assert f"<li>{WEAK_T1}: independent counterpart {INDEPENDENT}.</li>" in page
    assert "<td>beta = 118.7</td>" in page
    assert "<td>3</td><td>source grid-001, abs_curvatures (3 values), margin 1</td>" in page
    assert "<td>9</td><td>values (9 values), seed 0</td><td>1/19</td>" in page
    assert html.escape(BALL) in page


def test_a_record_without_weak_checks_shows_no_reasons_counterparts_or_estimates(
    control: tuple[str, str],
) -> None:
    report, page = control
    assert "## Power of the checks" in report and 'id="power-table"' in page  # still shown
    assert "No applicable check is weak" in report
    for mark in MARKS:
        assert mark not in report
        assert html.escape(mark) not in page
    for marker in HTML_IDS:
        assert marker not in page


def test_provenance_text_is_short_and_says_when_there_is_none() -> None:
    assert provenance_text({}) == "–"
    assert provenance_text({"source": "prefix", "values": [1.0, 2.0], "margin": 1.0}) == (
        "source prefix, values (2 values), margin 1"
    )
    assert provenance_text({"per_point": {"a": 1}, "seed": 3}) == "per_point (1 entry), seed 3"


def test_confidence_is_said_once_per_statement() -> None:
    grouped = estimate_confidence(POWER)
    assert grouped == {
        f"{INDEPENDENT} (beta); T6 contraction_tail [prefix c, ball G] (c)": SIBLING,
        "T6 contraction_tail [prefix c, ball G] (G)": BALL,
    }
    assert estimate_confidence(STRONG) == {}  # the control: no estimates, nothing said
