"""``hfta verify --explain``: the resolved threat model and every attack, nothing run or written."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path
from unittest import mock

from empirical.cli import main
from empirical.verify.claim import DEFAULT_CLAIM, load_claim

STRONG = DEFAULT_CLAIM.parent / "strong_attacker.toml"


def _explain(claim: Path, cwd: Path) -> tuple[int, str, str]:
    out, errors = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with (
            mock.patch.object(sys, "argv", ["hfta", "verify", str(claim), "--explain"]),
            mock.patch("empirical.verify.api.verify", side_effect=AssertionError("ran")),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(errors),
        ):
            try:
                main()
            except SystemExit as exc:
                return int(exc.code or 0), out.getvalue(), errors.getvalue()
    finally:
        os.chdir(previous)
    return 0, out.getvalue(), errors.getvalue()


def test_explain_lists_every_attack_and_writes_nothing(tmp_path: Path) -> None:
    code, out, errors = _explain(STRONG, tmp_path)
    assert code == 0, errors
    threat = load_claim(STRONG).threat_model
    listed = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert listed == [setting.label() for setting in threat.attack_settings()]
    assert len(listed) == 8
    assert "log-uniform in [0.0003, 0.003]" in out and "attacker's range [0.0003, 0.003]" in out
    assert list(tmp_path.iterdir()) == []  # no runs/, no cache


def test_explain_refuses_a_bad_claim_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_CLAIM.read_text().replace("phi = 0.5", "phi = 2.0"))
    code, out, errors = _explain(bad, tmp_path)
    assert code == 2 and out == ""
    assert errors.count("\n") == 1 and "harm.phi" in errors
