"""``empirical.progress``: a line per stage when not a terminal, nothing when quiet, and the
defence loop reports every step; ``hfta attack``'s bar (steps, harmful loss, harm) on a
terminal and nothing elsewhere; stages sharing one bar; the hooks of the long steps (Lanczos
and power iteration, G along a path, a measured attack, scoring M and M*) driving a real bar;
the pytest plugin showing the verifier's stage lines as they come."""

from __future__ import annotations

import io
import re
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import pytest

from empirical.measurement.trajectory import Evaluation, Trajectory
from empirical.progress import (
    AttackHooks,
    attack_progress,
    measured_text,
    progress_stages,
    step_progress,
)
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

    def plain(self) -> str:
        """What was written, without the terminal's control sequences (colours, cursor)."""
        return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", self.getvalue())


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
    evaluations = [
        Evaluation(step=0, harmful_loss=3.25, harm=0.125),
        Evaluation(step=6, harmful_loss=1.5, harm=0.625),
    ]
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


# ---------------------------------------------------------------------- stages on one display
def test_stages_on_a_terminal_share_one_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stages on one rich bar: the counted one reaches 3/3, the one of unknown length
    shows the count of the units it reported (7), not a made-up total."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_stages() as stages:
        assert stages.bar is not None
        with stages.stage("counted", 3) as advance:
            for done in range(1, 4):
                advance(done, 3)
        with stages.stage("open-ended") as advance:
            for done in range(1, 8):
                advance(done, 0)
        assert [t.description for t in stages.bar.tasks] == ["counted", "open-ended"]
        assert all(t.finished for t in stages.bar.tasks)
    shown = terminal.plain()
    assert re.search(r"counted\s+━+\s+3/3\s", shown)
    assert re.search(r"open-ended\s+━+\s+7\s", shown) and "7/" not in shown


def test_stages_off_a_terminal_write_a_start_and_an_end_line_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with progress_stages() as stages:
        assert stages.bar is None
        with stages.stage("first", 2) as advance:
            advance(1, 2)
            advance(2, 2)
        with stages.stage("second") as advance:
            advance(5, 0)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "first: 2 steps" and lines[1].startswith("first: done in")
    assert lines[2] == "second: started" and lines[3].startswith("second: done in")
    assert len(lines) == 4


@pytest.mark.negative_control
def test_quiet_stages_write_nothing_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_stages(enabled=False) as stages, stages.stage("hidden", 3) as advance:
        assert stages.bar is None
        advance(3, 3)
    with step_progress("hidden too", None, enabled=False) as advance:
        advance(1, 0)
    assert terminal.getvalue() == "" and capsys.readouterr().err == ""


# ---------------------------------------------------------------------- curvature estimates
class _Spy:
    """An ``Advance`` that records every call and passes it on to the bar's."""

    def __init__(self, advance: Any) -> None:
        self.advance = advance
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))
        self.advance(done, total)


@pytest.fixture(scope="module")
def embedded_landscape() -> Any:
    """The probe loss of the embedded model on 8 harmful examples of its benchmark."""
    import torch

    from empirical.datasets.benchmark import embedded_benchmark
    from empirical.datasets.text import encode
    from empirical.measurement.hvp import model_landscape
    from empirical.models.model import load_model

    torch.manual_seed(0)
    model, tokenizer = load_model(None)
    examples = [e for e in embedded_benchmark(seed=0).attack if not e.is_safe][:8]
    return model_landscape(model, encode(tokenizer, examples, 32), trainable_only=True)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_the_curvature_estimate_advances_a_bar_per_hessian_vector_product(
    monkeypatch: pytest.MonkeyPatch, embedded_landscape: Any, method: Literal["lanczos", "power"]
) -> None:
    """β of the embedded model by Lanczos and by power iteration on a fake terminal: the hook
    is called once per Hessian-vector product, counting up, and the bar ends showing as many
    products as the estimate says it used."""
    from empirical.measurement.estimators import smoothness_of

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with step_progress(f"beta by {method}", None) as advance:
        spy = _Spy(advance)
        estimate = smoothness_of(
            embedded_landscape, method=method, tolerance=1e-2, max_iterations=60, advance=spy
        )
    done = [d for d, _ in spy.calls]
    assert estimate.hvps > 2 and done == list(range(1, estimate.hvps + 1))
    assert all(total == 0 for _, total in spy.calls)  # the number needed is not known ahead
    assert re.search(rf"beta by {method}\s+━+\s+{estimate.hvps}\s", terminal.plain())


def test_the_gradient_bound_along_a_path_advances_to_every_point(
    monkeypatch: pytest.MonkeyPatch, embedded_landscape: Any
) -> None:
    import torch

    from empirical.measurement.estimators import gradient_bound_along_path

    origin = embedded_landscape.origin
    direction = torch.randn(origin.shape, generator=torch.Generator().manual_seed(1))
    path = [origin + (0.01 * s) * direction.to(origin.dtype) for s in range(3)]
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with step_progress("G along the path", 9) as advance:
        spy = _Spy(advance)
        estimate = gradient_bound_along_path(embedded_landscape, path, 4, advance=spy)
    assert estimate.points == 9 and spy.calls == [(i, 9) for i in range(1, 10)]
    assert re.search(r"G along the path\s+━+\s+9/9\s", terminal.plain())


@pytest.mark.slow
def test_a_measured_attack_advances_through_its_iterates_and_its_constants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``attack_and_measure`` of a real 6-step attack: the hook counts the 7 iterates, then
    the constants, then the float64 columns (9 units), and the bar reaches 9/9."""
    import torch

    from empirical.certify import attack_and_measure
    from empirical.engine.attack import AttackConfig

    config = AttackConfig(probe=True, budget_steps=6, learning_rate=1e-3, probe_size=8)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    torch.manual_seed(0)
    with step_progress("measuring the constants", None) as advance:
        spy = _Spy(advance)
        attack_and_measure(config, beta_every=3, segment_samples=1, float64=True, advance=spy)
    assert spy.calls == [(i, 9) for i in range(1, 10)]
    assert re.search(r"measuring the constants\s+━+\s+9/9\s", terminal.plain())


# ---------------------------------------------------------------------- evaluations
def test_scoring_both_models_advances_a_bar_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    """``hfta immunize``'s evaluation stage: M and M* scored on the embedded held-out data,
    the bar at 1/2 after the first model and 2/2 after the second (here M twice)."""
    from empirical.commands.immunize import _scores
    from empirical.defences.evaluation import score_on_benchmark
    from empirical.models.model import load_model

    model, tokenizer = load_model(None)
    seen: list[int] = []

    def score(scored: Any, given: Any) -> Any:
        assert stages.bar is not None
        seen.append(int(stages.bar.tasks[-1].completed))  # the bar before this model
        return score_on_benchmark(scored, given)

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_stages() as stages:
        before, after = _scores(score, (model, model), tokenizer, stages)
        assert stages.bar is not None and stages.bar.tasks[-1].completed == 2
    assert seen == [0, 1] and before == after and before is not None
    assert re.search(r"scoring M and M\* on held-out data\s+━+\s+2/2\s", terminal.plain())


# ---------------------------------------------------------------------- property runs
_FAKE_VERIFIER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    if "--quiet" not in sys.argv:
        for stage in ("applying the defence", "attacking M*"):
            sys.stderr.write(f"verify: {stage}\\n")
            sys.stderr.flush()
    out.mkdir(parents=True)
    (out / "verdict.json").write_text(json.dumps({"conditions": {}}))
    """
)


class _Reporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str) -> None:
        self.lines.append(line)


def _runs(tmp_path: Path, verbose: int) -> tuple[Any, _Reporter]:
    from empirical.pytest_plugin import VerifierRuns

    reporter = _Reporter()
    plugins = {"terminalreporter": reporter, "capturemanager": None}
    config = SimpleNamespace(
        getoption=lambda name: verbose,
        pluginmanager=SimpleNamespace(get_plugin=plugins.get),
    )
    runs = VerifierRuns(config, ["c.toml"], str(tmp_path))  # type: ignore[arg-type]
    return runs, reporter


@pytest.mark.parametrize("verbose", [0, -1])
def test_the_plugin_shows_the_verifiers_stage_lines_as_they_come(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, verbose: int
) -> None:
    """``pytest --hfta-claim``: the verifier's stderr lines reach pytest's terminal reporter,
    indented under 'hfta: verifying'; under ``pytest -q`` the verifier gets ``--quiet`` and
    only the first line is shown."""
    from empirical.pytest_plugin import VerifierRuns

    runs, reporter = _runs(tmp_path, verbose)
    real = runs.command("c.toml", tmp_path / "c")
    assert real[-1] == "--quiet" if verbose < 0 else "--quiet" not in real
    monkeypatch.setattr(
        VerifierRuns,
        "command",
        lambda self, claim, out: [sys.executable, "-c", _FAKE_VERIFIER, *real[3:]],
    )
    assert runs.record("c.toml")["conditions"] == {}
    stages = ["  verify: applying the defence", "  verify: attacking M*"]
    assert reporter.lines == [
        f"hfta: verifying c.toml -> {tmp_path / 'c'}",
        *(stages if verbose >= 0 else []),
    ]


@pytest.mark.negative_control
def test_a_failing_verifier_still_fails_with_its_last_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Streaming the lines keeps the failure message: the verifier's last stderr line."""
    from empirical.pytest_plugin import ClaimViolationError, VerifierRuns

    runs, reporter = _runs(tmp_path, 0)
    refuse = (
        "import sys; sys.stderr.write('verify: a stage\\nhfta: bad input here\\n'); sys.exit(2)"
    )
    monkeypatch.setattr(
        VerifierRuns, "command", lambda self, claim, out: [sys.executable, "-c", refuse]
    )
    with pytest.raises(ClaimViolationError, match=r"exit code 2\): hfta: bad input here$"):
        runs.record("c.toml")
    assert reporter.lines[1:] == ["  verify: a stage", "  hfta: bad input here"]


# ---------------------------------------------------------------------- hfta certify
@pytest.mark.slow
def test_hfta_certify_reports_its_convex_program_as_one_stage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``hfta certify`` on 20 prompts: a pipe gets the stage's start and end lines, a terminal
    its bar (no count: the convex program reports no units), ``--quiet`` nothing."""
    from empirical.datasets.data import save_examples
    from empirical.engine.attack import _embedded_benchmark

    data = tmp_path / "evaluation.jsonl"
    evaluation = _embedded_benchmark(0).evaluation
    save_examples([e for e in evaluation if e.category in ("next", "flip")][::10], data)
    stage = "certify: harm radii of 20 prompts (one convex program)"
    arguments = ["certify", "--data", str(data), "--lr-max", "0.01", "--budget", "200"]
    capsys.readouterr()
    assert _hfta(monkeypatch, *arguments) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"{stage}: started" and lines[1].startswith(f"{stage}: done in")
    assert len(lines) == 2

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert _hfta(monkeypatch, *arguments) == 1
    assert re.search(re.escape(stage) + r"\s+━+\s+\d:\d\d:\d\d", terminal.plain())

    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert _hfta(monkeypatch, *arguments, "--quiet") == 1
    assert quiet.getvalue() == ""
