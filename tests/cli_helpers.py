"""Running ``hfta`` in process from a test (not a test module)."""

from __future__ import annotations

import sys

import pytest

from empirical.cli import main


def run_hfta(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Exit code of ``hfta ARGS`` run through the real entry point, in process."""
    monkeypatch.setattr(sys, "argv", ["hfta", *args])
    try:
        main()
    except SystemExit as exited:
        return 0 if exited.code is None else int(exited.code)
    return 0
