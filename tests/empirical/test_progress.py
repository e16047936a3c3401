"""``empirical.progress``: a line per stage when not a terminal, nothing when quiet, and the
defence loop reports every step."""

from __future__ import annotations

import pytest

from empirical.progress import step_progress


def test_not_a_terminal_gives_one_line_per_stage(capsys: pytest.CaptureFixture[str]) -> None:
    with step_progress("stage", 5) as advance:
        for done in range(1, 6):
            advance(done, 5)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "stage: 5 steps" and lines[1].startswith("stage: done in")
    assert len(lines) == 2


def test_quiet_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with step_progress("stage", 5, enabled=False) as advance:
        advance(1, 5)
    assert capsys.readouterr().err == ""
