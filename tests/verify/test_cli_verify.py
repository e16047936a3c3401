"""``hfta verify`` on the command line: bad input, exit codes, resuming after SIGKILL."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from empirical.cli import main
from empirical.verify.claim import DEFAULT_CLAIM
from tests.verify._claims import tiny_claim

HFTA = [sys.executable, "-c", "from empirical.cli import main; main()"]
DEMO_TEXT = DEFAULT_CLAIM.read_text(encoding="utf-8")
KEY_LINE = re.compile(r"^(?P<key>[A-Za-z_]+) = (?P<value>.+?)(?P<comment>\s+#.*)?$")
REQUIRED = {"name", "budget_steps", "learning_rates", "phi", "claimed"}


class ReachedTheRunError(Exception):
    """A claim that should have been rejected was accepted and the verification started."""


def _key_lines(text: str) -> list[tuple[int, str, str]]:
    found = []
    for index, line in enumerate(text.splitlines()):
        match = KEY_LINE.match(line)
        if match:
            found.append((index, match["key"], match["value"]))
    return found


def _numbers(value: str) -> list[str]:
    return re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?", value)


@st.composite
def malformed_claims(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """demo.toml with one mutation, and the key the error must name (None: any line)."""
    lines = DEMO_TEXT.splitlines()
    kind = draw(st.sampled_from(["delete", "rename", "type", "nan", "negative", "garbage"]))
    candidates = _key_lines(DEMO_TEXT)
    if kind == "delete":
        candidates = [c for c in candidates if c[1] in REQUIRED]
    elif kind in ("nan", "negative"):
        candidates = [
            c for c in candidates if any(float(n) != 0 for n in _numbers(c[2]))
            and not c[2].startswith('"')
        ]
    if kind == "garbage":
        where = draw(st.integers(0, len(lines)))
        junk = draw(st.binary(min_size=1, max_size=20))
        text = "\n".join(lines).encode()
        offset = len("\n".join(lines[:where]).encode())
        return text[:offset] + b"\xff" + junk + text[offset:], None
    index, key, value = draw(st.sampled_from(candidates))
    if kind == "delete":
        lines[index] = ""
    elif kind == "rename":
        lines[index] = lines[index].replace(f"{key} =", f"{key}_typo =", 1)
    elif kind == "type":
        wrong = "12" if value.startswith('"') else '"oops"'
        lines[index] = f"{key} = {wrong}"
    elif kind == "nan":
        lines[index] = f"{key} = " + re.sub(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?", "nan", value)
    else:
        lines[index] = f"{key} = " + re.sub(
            r"(?<![\w.-])(\d+(?:\.\d+)?(?:e-?\d+)?)", r"-\1", value
        )
    return ("\n".join(lines) + "\n").encode(), key


def _invoke(args: list[str]) -> tuple[int, str]:
    """``hfta ARGS`` in this process: (exit code, stderr)."""
    errors = io.StringIO()
    with (
        mock.patch.object(sys, "argv", ["hfta", *args]),
        contextlib.redirect_stderr(errors),
        contextlib.redirect_stdout(io.StringIO()),
        mock.patch("empirical.verify.api.verify", side_effect=ReachedTheRunError),
    ):
        try:
            main()
        except SystemExit as exc:
            return int(exc.code or 0), errors.getvalue()
        except ReachedTheRunError:
            return -1, errors.getvalue()
    return 0, errors.getvalue()


def _assert_bad_input(content: bytes, key: str | None, directory: Path) -> None:
    """Exit 2, one line on stderr naming ``key``, no traceback, nothing written."""
    claim = directory / "claim.toml"
    out = directory / "out"
    claim.write_bytes(content)
    code, errors = _invoke(["verify", str(claim), "--out", str(out), "--quiet"])
    assert code == 2, f"exit code {code}, stderr {errors!r}"
    lines = errors.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hfta: error:"), errors
    assert "Traceback" not in errors
    if key is not None:
        assert key in lines[0], f"{key!r} not named in {lines[0]!r}"
    assert not out.exists() and not out.with_name("out.cache").exists()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=malformed_claims())
def test_malformed_claims_exit_2_naming_the_field(
    mutation: tuple[bytes, str | None], tmp_path: Path
) -> None:
    content, key = mutation
    _assert_bad_input(content, key, tmp_path)


@pytest.mark.negative_control
def test_the_bad_input_check_fails_on_the_valid_claim(tmp_path: Path) -> None:
    with pytest.raises(AssertionError):
        _assert_bad_input(DEMO_TEXT.encode(), None, tmp_path)


def test_bad_options_exit_2(tmp_path: Path) -> None:
    for args in (
        ["verify", "--executor", "cluster"],
        ["verify", "--ray-address", "auto"],
        ["verify", "--threads", "0"],
        ["verify", "--workers", "0"],
        ["verify", str(tmp_path / "absent.toml")],
    ):
        code, errors = _invoke([*args, "--out", str(tmp_path / "out")])
        assert code == 2, (args, errors)
        assert len(errors.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_data_file_exits_2_before_writing(tmp_path: Path) -> None:
    text = """
[claim]
name = "files"
[defence]
name = "none"
[data]
source = "files"
defence = "d.jsonl"
attack = "a.jsonl"
evaluation = "e.jsonl"
reference = "r.jsonl"
[threat_model]
budget_steps = 10
learning_rates = [1e-3]
[harm]
phi = 0.5
[conditions]
claimed = ["weak_resistance"]
"""
    _assert_bad_input(text.encode(), "data.defence", tmp_path)


def _hfta(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HFTA, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def test_bad_claim_in_a_real_process_exits_2_without_traceback(tmp_path: Path) -> None:
    claim = tmp_path / "claim.toml"
    claim.write_text(DEMO_TEXT.replace("phi = 0.5", "phi = 2.0"), encoding="utf-8")
    result = _hfta(["verify", str(claim), "--out", str(tmp_path / "out")], tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "harm.phi" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- resume after SIGKILL
RESUMABLE = tiny_claim("resumable", budget_steps=20, attack_examples=40, evaluation_examples=20)


def _run_in_process(args: list[str]) -> int:
    """The same command in this process (its imports are warm): the exit code."""
    with (
        mock.patch.object(sys, "argv", ["hfta", *args]),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()) as errors,
    ):
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
            assert code != 2, errors.getvalue()
            return code
    return 0


def _statuses(out: Path) -> dict[str, str]:
    record = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
    return {name: entry["status"] for name, entry in record["conditions"].items()}


def _comparable(out: Path) -> dict[str, object]:
    from empirical.measurement.trajectory import Trajectory

    return {
        path.name: Trajectory.load(path).model_dump(exclude={"timing", "config"})
        for path in sorted((out / "trajectories").glob("*.json"))
    }


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_verdict(tmp_path: Path) -> None:
    claim = tmp_path / "claim.toml"
    claim.write_text(RESUMABLE, encoding="utf-8")
    out = tmp_path / "killed"
    store = tmp_path / "killed.cache" / "attacks"
    process = subprocess.Popen(
        [*HFTA, "verify", str(claim), "--out", str(out), "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if store.is_dir() and list(store.glob("*.json")):
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not out.exists()  # nothing half-written
    finished = {p.name: p.stat().st_mtime_ns for p in store.glob("*.json")}
    assert finished

    resumed = _run_in_process(["verify", str(claim), "--out", str(out), "--quiet"])
    assert resumed in (0, 1)
    for name, mtime in finished.items():  # finished attacks were reused, not rerun
        assert (store / name).stat().st_mtime_ns == mtime

    fresh = tmp_path / "fresh"
    assert _run_in_process(["verify", str(claim), "--out", str(fresh), "--quiet"]) == resumed
    assert _statuses(out) == _statuses(fresh)
    assert _comparable(out) == _comparable(fresh)
