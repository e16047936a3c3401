"""The predictions' bases in report.md and report.html: a threat model with full fine-tuning
and LoRA attacks predicts them on two bases (T11 (iv)-(v) on the full parameters, and (vii)
mapping the adapters' reach to the merged weights, ``empirical.verify.predict_lora``), and
both reports state each distinct basis once. Control: predictions on one basis state it once.

The run folders are written by the verifier's own writer (``write_outputs``) from the
synthetic verdict of tests/verify/test_html.py with a ``Predictions`` record set here.
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import pytest

from empirical.verify.predict import Prediction, Predictions
from empirical.verify.predict_lora import LORA_BASIS
from empirical.verify.report import write_outputs
from tests.verify.test_html import _outcome

FULL_BASIS = "T11 (harm_radius) (iv)-(v): a synthetic basis for full fine-tuning"


def _prediction(run: str, basis: str) -> Prediction:
    return Prediction(
        run=run, attack=f"attack {run}", available=True, reason="", minimum_steps=7,
        maximum_steps=None, maximum_reason="", phi=0.5, budget_steps=20,
        ceiling_at_budget=None, step_radii=[0.1] * 20, constants=None, basis=basis,
        assumptions=[],
    )


def _written(folder: Path, bases: list[str]) -> tuple[str, str]:
    predictions = Predictions(
        proxy="exact_harm", constants=[], seconds=0.1,
        predictions=[_prediction(f"grid-{i:03d}", b) for i, b in enumerate(bases)],
    )
    outcome = dataclasses.replace(_outcome(broken=True), predictions=predictions)
    write_outputs(outcome, folder)
    return (
        (folder / "report.md").read_text(encoding="utf-8"),
        (folder / "report.html").read_text(encoding="utf-8"),
    )


@pytest.mark.parametrize("report", [0, 1], ids=["markdown", "html"])
def test_every_distinct_basis_is_stated_once(tmp_path: Path, report: int) -> None:
    text = _written(tmp_path / "out", [FULL_BASIS, LORA_BASIS, FULL_BASIS, LORA_BASIS])[report]
    if report == 1:
        text = html.unescape(text)
    assert text.count(FULL_BASIS) == 1 and text.count(LORA_BASIS) == 1


@pytest.mark.parametrize("report", [0, 1], ids=["markdown", "html"])
def test_control_one_basis_is_stated_once_and_lora_not_at_all(tmp_path: Path, report: int) -> None:
    text = _written(tmp_path / "out", [FULL_BASIS, FULL_BASIS])[report]
    if report == 1:
        text = html.unescape(text)
    assert text.count(FULL_BASIS) == 1 and LORA_BASIS not in text
