"""The whole proof run: every obligation proved or checked, every negative control refuted."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from proofs import runner
from proofs.obligation import Row, Status
from theory.theorems import CATALOGUE_MODULES


def _execute() -> tuple[list[Row], int]:
    rows, _, code = runner.execute(runner.Options())
    return rows, code


@pytest.fixture(scope="module")
def run() -> tuple[list[Row], int]:
    """The whole run in a fresh (spawned) interpreter, as ``python -m proofs`` runs: every
    attempt is a ``fork`` (``with_deadline``), and a pytest session that has run other tests
    may hold threads whose locks a fork would copy half-taken."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_execute).result()


def test_every_obligation_is_proved_or_checked(run: tuple[list[Row], int]) -> None:
    rows, code = run
    failures = [f"{r.label} {r.obligation}: {r.status} {r.detail}" for r in rows if not r.ok]
    assert failures == []
    assert code == 0
    for row in rows:
        if row.kind == "obligation":
            assert row.status in (Status.PROVED, Status.CHECKED)


def test_every_control_is_refuted_with_a_counterexample(run: tuple[list[Row], int]) -> None:
    rows, _ = run
    controls = [r for r in rows if r.kind == "control"]
    assert {r.theorem for r in controls} == set(CATALOGUE_MODULES)
    for row in controls:
        assert row.status is Status.REFUTED, row.obligation
        assert row.counterexample, row.obligation


def test_statistics_is_checked_never_proved(run: tuple[list[Row], int]) -> None:
    rows, _ = run
    coverage = [r for r in rows if "Clopper-Pearson" in r.obligation and r.kind == "obligation"]
    assert len(coverage) == 3
    assert {r.status for r in coverage} == {Status.CHECKED}
    assert {r.method for r in coverage} == {"exhaustive"}
    assert all(r.status is not Status.CHECKED for r in rows if r.method != "exhaustive")


def test_inductive_theorems_have_base_and_step(run: tuple[list[Row], int]) -> None:
    rows, _ = run
    for theorem in (
        "clipped_sgd_progress",
        "path_length_adam",
        "pl_convergence",
        "contraction_tail",
    ):
        names = [r.obligation for r in rows if r.theorem == theorem]
        assert any(n.endswith(": base case") for n in names), theorem
        assert any(n.endswith(": inductive step") for n in names), theorem


def test_the_adam_bound_rests_on_proved_cauchy_schwarz(run: tuple[list[Row], int]) -> None:
    rows, _ = run
    adam = [r for r in rows if r.theorem == "path_length_adam"]
    bound = next(r for r in adam if r.obligation.startswith("Adam coordinate bound"))
    assert "weighted Cauchy-Schwarz" in bound.uses
    assert "cauchy_schwarz" not in bound.uses  # proved by induction, not assumed
    steps = [r for r in adam if r.obligation.startswith("weighted Cauchy-Schwarz:")]
    assert {r.status for r in steps} == {Status.PROVED}


#: each theorem's defining hypothesis and the main obligation that must need it
DEFINING = {
    ("T1", "sandwich (theory's conclusion)"): "beta_smooth",
    ("T2", "one step"): "gradient_bounded_at_iterates",
    ("T3", "segment L_{s+1} >= L_s - G ||Delta_s||"): "gradient_bounded_on_path",
    ("T4", "one step"): "mu_pl",
    ("T6", "tail path: inductive step"): "contraction",
    ("T9", "trapezoid step (theory's TRAPEZOID_STEP)"): "beta_smooth",
}


def test_the_audit_finds_every_defining_hypothesis_needed(run: tuple[list[Row], int]) -> None:
    rows, _ = run
    by_key = {(r.label, r.obligation): r for r in rows}
    for key, hypothesis in DEFINING.items():
        row = by_key[key]
        assert hypothesis in row.defining, key
        assert hypothesis in row.needed, (key, row.needed, row.not_needed)


def test_the_new_controls_are_refuted(run: tuple[list[Row], int]) -> None:
    rows, _ = run
    refuted = {r.obligation for r in rows if r.kind == "control" and r.status is Status.REFUTED}
    assert {"T1 without beta-smoothness", "T4 without PL", "T9 without beta-smoothness"} <= refuted


def test_the_calculus_axioms_are_coq_lemmas(run: tuple[list[Row], int]) -> None:
    rows, _ = run
    coq_rows = {r.obligation: r for r in rows if r.method == "coq" and r.kind == "obligation"}
    for lemma, label in (
        ("descent_sandwich", "T1"),
        ("segment_bound", "T3"),
        ("trapezoid_bound", "T9"),
    ):
        row = coq_rows[f"Coq: {lemma} (premises stated)"]
        assert row.label == label and row.status is Status.PROVED
    sandwich = next(r for r in rows if r.obligation == "sandwich (theory's conclusion)")
    assert "descent_sandwich" in sandwich.needed  # the Coq lemma is what the z3 step rests on
