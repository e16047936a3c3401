"""``python -m proofs`` and ``hfta prove``: exit codes, the table, the ``--json`` schema."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import z3
from typer.testing import CliRunner

from empirical import cli
from proofs import runner
from proofs.obligation import Obligation, Proof, control
from proofs.registry import Registry
from proofs.solver import z3_obligation
from theory.theorems.smoothness_sandwich import THEOREM as T1

HFTA = Path(sys.executable).with_name("hfta")
ROW_KEYS = {
    "label",
    "theorem",
    "obligation",
    "kind",
    "method",
    "status",
    "seconds",
    "statement",
    "counterexample",
    "detail",
    "uses",
    "needed",
    "not_needed",
    "defining",
}
STATUSES = {"proved", "checked", "refuted", "failed", "unknown"}

x = z3.Real("x")
TRUE_CLAIM = z3_obligation("x^2 >= 0", "x^2 >= 0", x * x >= 0, [])
FALSE_CLAIM = z3_obligation("x^2 >= 1", "x^2 >= 1", x * x >= 1, [])


def _registry(*obligations: Obligation) -> Registry:
    def build(only: Sequence[str]) -> list[Proof]:
        return [Proof(T1, obligations)]

    return build


def test_a_sound_registry_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code = runner.main([], _registry(TRUE_CLAIM, control(FALSE_CLAIM)))
    assert code == 0
    out = capsys.readouterr().out
    assert "ALL PROVED" in out
    assert "refuted" in out and "x=" in out  # the control's counterexample is shown


@pytest.mark.negative_control
def test_a_false_obligation_exits_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    code = runner.main([], _registry(FALSE_CLAIM, control(FALSE_CLAIM)))
    assert code == 1
    out = capsys.readouterr().out
    assert "failed" in out and "FAILURE" in out


@pytest.mark.negative_control
def test_a_control_that_is_not_refuted_exits_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    code = runner.main(["--json"], _registry(TRUE_CLAIM, control(TRUE_CLAIM)))
    assert code == 1
    rows = json.loads(capsys.readouterr().out)
    assert rows[1]["kind"] == "control" and rows[1]["status"] == "failed"


@pytest.mark.negative_control
def test_a_proof_without_controls_exits_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    code = runner.main([], _registry(TRUE_CLAIM))
    assert code == 1
    assert "no negative control" in capsys.readouterr().out


@pytest.mark.negative_control
def test_a_solver_timeout_is_unknown_and_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c, d = z3.Reals("a b c d")
    hard = z3_obligation(
        "hard",
        "a nonlinear claim",
        a * b * c * d + a * a * b <= c * c * d * d + 7,
        [a * a + b * b + c * c + d * d <= 4, a * b * c > 0],
    )
    code = runner.main(["--json", "--timeout", "0.001"], _registry(hard, control(FALSE_CLAIM)))
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["status"] == "unknown"
    assert code == 1


def test_bad_input_exits_two_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--only", "T99"], ["--timeout", "-1"], ["--timeout", "nan"], ["--bogus"]):
        assert runner.main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert len(captured.err.strip().splitlines()) == 1
        assert captured.err.startswith("proofs: error:")


def test_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main(["--json", "--only", "T7"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and rows
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["theorem"] == "stability_displacement" and row["label"] == "T7"
        assert row["status"] in STATUSES
        assert row["method"] in {"z3", "sympy", "exhaustive", "coq"}
        assert row["kind"] in {"obligation", "control"}


def test_python_dash_m_proofs_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "proofs", "--only", "T1"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split()[:2] == ["theorem", "obligation"]
    assert "smoothness_sandwich" in out.stdout


def test_hfta_prove_matches_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    cli._register()
    result = CliRunner().invoke(cli.app, ["prove", "--only", "T1", "--json"])
    assert result.exit_code == 0, result.output
    assert {r["theorem"] for r in json.loads(result.output)} == {"smoothness_sandwich"}
    monkeypatch.setattr(runner, "registry", lambda: _registry(FALSE_CLAIM, control(FALSE_CLAIM)))
    failing = CliRunner().invoke(cli.app, ["prove"])
    assert failing.exit_code == 1
    assert "FAILURE" in failing.output


def test_hfta_prove_bad_input_exits_two() -> None:
    out = subprocess.run([str(HFTA), "prove", "--only", "T99"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("hfta: error: unknown theorem 'T99'")
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
