"""``hfta bounds`` and ``hfta prove`` in a pipe: JSON on request, tables that never wrap, and
no torch or transformers imported (they answer from theory/ and proofs/ alone)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from rich.console import Console

import theory
from empirical.commands.bounds import EXAMPLES, catalogue_table

HEAVY = ("torch", "transformers", "peft", "matplotlib")

#: Runs a command through the CLI's entry point, then prints the heavy modules it imported.
PROBE = """
import sys
sys.argv = ["hfta", *sys.argv[1:]]
import empirical.cli as cli
try:
    cli.main()
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
sys.stderr.write("HEAVY=" + ",".join(heavy) + "\\n")
""".replace("HEAVY)", repr(HEAVY) + ")")


def _run(*args: str, code: str = PROBE) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
        check=False, env=env,
    )


def _heavy(result: subprocess.CompletedProcess[str]) -> list[str]:
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("HEAVY=")][-1]
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


def test_bounds_json_gives_theorys_numbers_without_torch() -> None:
    result = _run("bounds", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    rows = {row["label"]: row for row in payload["certificates"]}
    t2 = theory.theorem("T2")
    assert rows["T2"]["bound"] == pytest.approx(t2.evaluate(**EXAMPLES["T2"]), rel=1e-12)
    assert [t["label"] for t in payload["catalogue"]] == [t.label for t in theory.catalogue()]
    assert _heavy(result) == []


def test_bounds_in_a_pipe_keeps_every_row_on_one_line() -> None:
    result = _run("bounds", "--latex")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for t in theory.catalogue():
        assert any(t.name in line and t.source in line for line in lines), t.label
        assert sum(line.startswith(f"{t.label} ") for line in lines) == 1  # LaTeX on one line
    assert _heavy(result) == []


@pytest.mark.negative_control
def test_the_one_line_check_catches_an_80_column_table() -> None:
    buffer = io.StringIO()
    Console(file=buffer, width=80).print(catalogue_table(theory.catalogue()))
    lines = buffer.getvalue().splitlines()
    assert not all(
        any(t.name in line and t.source in line for line in lines) for t in theory.catalogue()
    )


def test_prove_json_without_torch() -> None:
    result = _run("prove", "--only", "T8", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows and {r["label"] for r in rows} == {"T8"}
    assert {r["status"] for r in rows} <= {"proved", "checked", "refuted"}
    assert _heavy(result) == []


@pytest.mark.negative_control
def test_the_import_probe_sees_torch_when_it_is_imported() -> None:
    code = PROBE.replace(
        "import empirical.cli as cli", "import empirical.engine.attack\nimport empirical.cli as cli"
    )
    result = _run("bounds", "--json", code=code)
    assert "torch" in _heavy(result)


@pytest.mark.parametrize("args", [("--help",), ("immunize", "--list"), ("verify", "--help")])
def test_the_cli_starts_without_torch(args: tuple[str, ...]) -> None:
    """``hfta --help``, ``hfta immunize --list`` and a command's help answer without torch,
    transformers, peft or matplotlib (the commands import them inside their bodies)."""
    result = _run(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert _heavy(result) == []
