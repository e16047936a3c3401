"""``hfta certify --schedule exponential --decay γ`` without ``--budget``: the strong (every-t)
certificate through the real entry point, in process.

Exit 0 certified, 1 refused (γ close to 1: R_∞ = 10), 2 bad combinations: one line on stderr,
no traceback, before any compute (the certificate function fails the test if reached).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import run_hfta as _hfta

pytestmark = pytest.mark.slow


def _certify_exponential(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    data: Path,
    decay: str,
    *more: str,
) -> tuple[int, str]:
    """``hfta certify --data DATA --schedule exponential --decay γ --lr-max 0.01 --quiet
    MORE``: its exit code and standard output."""
    capsys.readouterr()
    code = _hfta(
        monkeypatch,
        "certify",
        "--data",
        str(data),
        "--schedule",
        "exponential",
        "--decay",
        decay,
        "--lr-max",
        "0.01",
        "--quiet",
        *more,
    )
    return code, capsys.readouterr().out


def test_an_unbounded_contracting_class_is_certified_for_every_t(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], held_out_file: Path
) -> None:
    code, out = _certify_exponential(monkeypatch, capsys, held_out_file, "0.95")
    assert code == 0, out
    assert "T11 harm_radius + T6 contraction_tail: certified (strong resistance)" in out
    assert "R_inf = 0.2;" in out and "every step t (no budget)" in out
    assert "certified minimum steps to phi: never" in out
    assert "contract with c = gamma exactly" in out  # the class's own hypothesis, printed


@pytest.mark.negative_control
def test_gamma_close_to_one_is_refused_with_exit_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], held_out_file: Path
) -> None:
    code, out = _certify_exponential(monkeypatch, capsys, held_out_file, "0.999", "--json")
    payload = json.loads(out)
    assert code == 1
    assert payload["status"] == "not certified" and payload["resistance"] == "strong"
    assert payload["reachable_radius"] == pytest.approx(10.0, rel=1e-9)
    assert payload["attacker_class"]["budget_steps"] is None


def test_an_exponential_budget_is_a_weak_certificate(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], held_out_file: Path
) -> None:
    code, out = _certify_exponential(
        monkeypatch, capsys, held_out_file, "0.999", "--budget", "20", "--json"
    )
    payload = json.loads(out)
    assert code == 0 and payload["resistance"] == "weak"
    assert payload["reachable_radius"] == pytest.approx(0.01 * (1 - 0.999**20) / 0.001, rel=1e-9)
