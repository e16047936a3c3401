"""``empirical.progress``: a line per stage when not a terminal, nothing when quiet, and the
defence loop reports every step; ``hfta attack``'s bar (steps, harmful loss, harm) on a
terminal and nothing elsewhere."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from empirical.measurement.trajectory import Evaluation, Trajectory
from empirical.progress import AttackHooks, attack_progress, measured_text, step_progress
from tests.cli_helpers import run_hfta as _hfta


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


# ---------------------------------------------------------------------- hfta attack's bar
class _Terminal(io.StringIO):
    """stderr as a terminal would present it (``isatty``), recording what is written."""

    def isatty(self) -> bool:
        return True


def _drive(hooks: AttackHooks, budget: int, evaluations: list[Evaluation]) -> None:
    """What the attack loop calls: every iterate, and an evaluation where one is given."""
    assert hooks.on_iterate is not None and hooks.on_evaluation is not None
    at = {e.step: e for e in evaluations}
    for step in range(budget + 1):
        hooks.on_iterate(step, None)
        if step in at:
            assert hooks.on_evaluation(at[step]) is False  # the bar never stops an attack


def test_attack_bar_on_a_terminal_shows_steps_loss_and_harm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    evaluations = [Evaluation(step=0, harmful_loss=3.25, harm=0.125),
                   Evaluation(step=6, harmful_loss=1.5, harm=0.625)]
    with attack_progress(6) as hooks:
        _drive(hooks, 6, evaluations)
    shown = terminal.getvalue()
    assert "6/6" in shown
    assert "step 6: harmful loss 1.500, harm 0.625" in shown


def test_attack_bar_shows_what_was_not_measured() -> None:
    assert measured_text(None) == "not evaluated yet"
    unmeasured = Evaluation(step=2, harmful_loss=None, harm=None)
    assert measured_text(unmeasured) == "step 2: harmful loss not measured, harm not measured"


@pytest.mark.negative_control
def test_attack_bar_draws_nothing_off_a_terminal_or_when_quiet(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with attack_progress(6) as hooks:  # capsys: stderr is not a terminal
        assert hooks == AttackHooks()
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with attack_progress(6, enabled=False) as hooks:
        assert hooks == AttackHooks()
    assert terminal.getvalue() == "" and capsys.readouterr().err == ""


@pytest.mark.slow
def test_hfta_attack_draws_the_bar_of_the_real_attack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The embedded model attacked for 4 steps through ``hfta attack`` on a fake terminal: the
    bar reaches 4/4 and shows the harm the trajectory recorded at its last evaluation; with
    ``--quiet`` the same terminal gets nothing."""
    quick = ["attack", "--budget", "4", "--eval-every", "2", "--batch-size", "8"]
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert _hfta(monkeypatch, *quick, "--out", str(tmp_path / "shown")) == 0
    last = Trajectory.load(tmp_path / "shown" / "trajectory.json").evaluations[-1]
    assert last.step == 4
    shown = terminal.getvalue()
    assert "4/4" in shown and measured_text(last) in shown

    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert _hfta(monkeypatch, *quick, "--quiet", "--out", str(tmp_path / "quiet")) == 0
    assert quiet.getvalue() == ""
