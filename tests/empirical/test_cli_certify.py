"""``hfta certify`` through the real entry point (``empirical.cli.main``), in process.

Exit 0 certified, 1 not certified, 2 bad input: one line on stderr, no traceback, and no
compute (the certificate function is replaced by one that fails the test if reached).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.cli_helpers import run_hfta as _hfta

pytestmark = pytest.mark.slow


def test_a_wide_class_is_refused_with_exit_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], held_out_file: Path
) -> None:
    capsys.readouterr()
    code = _hfta(
        monkeypatch, "certify", "--data", str(held_out_file), "--lr-max", "0.01", "--budget", "200"
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "T11 harm_radius: not certified" in out and "R_T = 2" in out
    assert "head-only attacker" in out  # the assumptions are printed


def test_a_small_class_is_certified_with_exit_zero_and_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], held_out_file: Path
) -> None:
    capsys.readouterr()
    code = _hfta(
        monkeypatch,
        "certify",
        "--data",
        str(held_out_file),
        "--lr-max",
        "1e-3",
        "--schedule",
        "cosine",
        "--warmup",
        "0.1",
        "--json",
    )
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert payload["status"] == "certified" and payload["certified_steps"] is None
    assert payload["examples"] == 20 and payload["harm_ceiling"] == 0.0
    assert payload["attacker_class"]["schedule"] == "cosine"
    assert 0.0 < payload["reachable_radius"] < 0.1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--phi", "2"], "--phi must lie in (0, 1]"),
        (["--confidence", "1"], "--confidence must lie in (0, 1)"),
        (["--optimizer", "rmsprop"], "--optimizer must be sgd, adam or adamw"),
        (["--schedule", "step"], "--schedule must be"),
        (["--clip", "0"], "clipping norm"),
        (["--budget", "0"], "budget_steps"),
        (["--lr-max", "-1"], "max_learning_rate"),
        (["--model", "MISSING"], "--model"),
        (["--data", "MISSING"], "MISSING"),
        # the exponential (unbounded) classes' combinations
        (["--decay", "0.9"], "decay is given with, and only with, schedule 'exponential'"),
        (["--schedule", "exponential"], "decay is given with, and only with"),
        (["--schedule", "exponential", "--decay", "1.5"], "decay"),
        (["--schedule", "exponential", "--decay", "0"], "decay"),
        (["--schedule", "exponential", "--decay", "0.9", "--optimizer", "adam"], "budget_steps"),
        (["--schedule", "exponential", "--decay", "0.9", "--warmup", "0.1"], "no warm-up"),
        (["--schedule", "exponential", "--decay", "0.9", "--clip", "0"], "clipping norm"),
        (["--constant-steps", "5"], "constant_steps"),
        (["--schedule", "geometric"], "--schedule must be"),
        (["--device", "tpu"], "device must be cpu or cuda"),
        pytest.param(
            ["--device", "cuda"], "no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs"),
        ),
    ],
)
def test_bad_input_is_one_line_exit_two_before_any_compute(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    arguments: list[str],
    message: str,
) -> None:
    import empirical.certify.harm_radius as module

    def reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("certify_class ran on bad input")

    monkeypatch.setattr(module, "certify_class", reached)
    replaced = [str(tmp_path / "no-such-thing") if a == "MISSING" else a for a in arguments]
    message = str(tmp_path / "no-such-thing") if message == "MISSING" else message
    capsys.readouterr()
    code = _hfta(monkeypatch, "certify", *replaced)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("hfta: error:") and message in lines[0]
    assert "Traceback" not in captured.err + captured.out
