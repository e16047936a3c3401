"""Premises, the necessity audit, hard deadlines, the Coq lemmas, and mutated statements.

Each mechanism is shown to work and, with a deliberately broken input, to fail: an audit
that cannot fail, a deadline that never fires, or a Coq check that accepts a changed
statement would prove nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import z3

from proofs import coq, runner
from proofs.obligation import Budget, Obligation, Outcome, Proof, Status, with_deadline
from proofs.registry import Registry
from proofs.solver import premise, z3_obligation
from proofs.theorems import pl_convergence, smoothness_sandwich
from theory import quadratic
from theory.theorems import quadratic_gd as t5
from theory.theorems import smoothness_sandwich as t1

BUDGET = Budget(timeout_s=10.0)
x, y = z3.Reals("x y")


def _registry(*proofs: Proof) -> Registry:
    return lambda only: list(proofs)


# --------------------------------------------------------------------------- the audit
def _proof_with(defining_premise: str) -> Proof:
    """x >= 1 from the premises "x >= y" (needed) and "y >= 1" (needed), plus "y >= 0"
    (not needed); the proof declares ``defining_premise`` defining for its obligation."""
    obligation = z3_obligation(
        "x >= 1",
        "x >= 1",
        x >= 1,
        [
            premise("x_above_y", x >= y),
            premise("y_above_one", y >= 1),
            premise("y_above_0", y >= 0),
        ],
    )
    control = z3_obligation("x >= 2", "x >= 2", x >= 2, [x >= y, y >= 1], kind="control")
    return Proof(t1.THEOREM, (obligation, control), defining=(("x >= 1", defining_premise),))


def test_the_audit_lists_needed_and_spare_premises() -> None:
    rows, text, code = runner.execute(runner.Options(), _registry(_proof_with("y_above_one")))
    assert code == 0
    row = rows[0]
    assert row.needed == ("x_above_y", "y_above_one") and row.not_needed == ("y_above_0",)
    assert "needs x_above_y, y_above_one*; not needed: y_above_0" in text


@pytest.mark.negative_control
def test_a_defining_hypothesis_the_proof_does_not_need_fails_the_run() -> None:
    rows, _, code = runner.execute(runner.Options(), _registry(_proof_with("y_above_0")))
    assert code == 1
    assert rows[0].status is Status.FAILED and "y_above_0 is not needed" in rows[0].detail


@pytest.mark.negative_control
def test_a_defining_hypothesis_that_is_no_premise_fails_the_run() -> None:
    rows, _, code = runner.execute(runner.Options(), _registry(_proof_with("mu_pl")))
    assert code == 1 and "is not a premise" in rows[0].detail


@pytest.mark.parametrize(
    ("proof", "obligation", "hypothesis"),
    [
        (smoothness_sandwich.proof, smoothness_sandwich.MAIN, "beta_smooth"),
        (pl_convergence.proof, "one step", "mu_pl"),
    ],
)
def test_the_defining_hypothesis_is_needed_and_its_control_refuted(
    proof: Callable[[], Proof], obligation: str, hypothesis: str
) -> None:
    built = proof()
    assert (obligation, hypothesis) in built.defining
    main = next(o for o in built.obligations if o.name == obligation)
    assert main.run(BUDGET).status is Status.PROVED
    assert main.attempt_dropping(frozenset({hypothesis}), BUDGET).status is Status.FAILED
    label = "T1 without beta-smoothness" if hypothesis == "beta_smooth" else "T4 without PL"
    control = next(o for o in built.obligations if o.name == label)
    outcome = control.run(BUDGET)
    assert outcome.status is Status.REFUTED and outcome.counterexample


# --------------------------------------------------------------------------- deadlines
def _sleeps() -> Outcome:
    time.sleep(30)
    return Outcome(Status.PROVED)


def _crashes() -> Outcome:
    raise ZeroDivisionError("in the worker")


def test_a_worker_past_its_deadline_is_unknown() -> None:
    outcome = with_deadline(_sleeps, 0.5)
    assert outcome.status is Status.UNKNOWN and "deadline" in outcome.detail


def test_a_worker_within_its_deadline_answers() -> None:
    assert with_deadline(lambda: Outcome(Status.PROVED, "fine"), 10.0) == Outcome(
        Status.PROVED, "fine"
    )
    crashed = with_deadline(_crashes, 10.0)
    assert crashed.status is Status.FAILED and "ZeroDivisionError" in crashed.detail


def test_a_spent_run_budget_leaves_rows_unknown() -> None:
    slow = Obligation("sleeps", "sleeps", "sympy", lambda budget: _sleeps())
    control = z3_obligation("x >= 2", "x >= 2", x >= 2, [x >= 1], kind="control")
    proof = Proof(t1.THEOREM, (slow, slow, control))
    rows = runner.run([proof], Budget(timeout_s=1.0), run_budget_s=1.5)
    assert [r.status for r in rows] == [Status.UNKNOWN, Status.UNKNOWN, Status.UNKNOWN]
    assert "run budget" in rows[1].detail


@pytest.mark.negative_control
def test_mutated_t5_statements_end_the_run_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    """T5's excess-loss exponent 2t -> 2(t+1) once sent sympy's simplify into a search that did
    not end; with the iterate's exponent t -> t+1 the run must still end, and fail."""
    mutant = t5.EXCESS_LOSS_SUMMAND.subs(2 * t5.t, 2 * (t5.t + 1))
    monkeypatch.setattr(t5, "EXCESS_LOSS_SUMMAND", mutant)
    monkeypatch.setattr(
        t5, "THEOREM", dataclasses.replace(t5.THEOREM, excess_loss=t5.compile_excess_loss(mutant))
    )
    exact = quadratic.iterate_at_step

    def shifted(
        hessian: np.typing.ArrayLike,
        theta_0: np.typing.ArrayLike,
        theta_star: np.typing.ArrayLike,
        eta: float,
        t: int,
    ) -> np.typing.NDArray[np.float64]:
        return exact(hessian, theta_0, theta_star, eta, t + 1)

    monkeypatch.setattr(quadratic, "iterate_at_step", shifted)
    rows, _, code = runner.execute(runner.Options(only=("T5",), timeout_s=3.0))
    assert code == 1
    status = {r.obligation: r.status for r in rows}
    assert status["iterate_at_step is the proved trajectory"] is Status.FAILED
    assert status["T5 evaluate is the proved loss"] is Status.FAILED
    assert status["mode loss"] in (Status.FAILED, Status.UNKNOWN)


# --------------------------------------------------------------------------- Coq
def test_the_coq_lemmas_are_proved_with_the_cited_statements() -> None:
    compiled = coq.compile_all()
    assert compiled.ok, compiled.detail
    for name in coq.STATEMENTS:
        assert coq.check_lemma(name, compiled).status is Status.PROVED
        assert set(compiled.assumptions[name]) <= coq.ALLOWED_AXIOMS
    for name in coq.CONTROLS:
        assert coq.control_obligation(name).run(BUDGET).status is Status.REFUTED


@pytest.mark.negative_control
def test_a_changed_coq_statement_or_an_added_axiom_is_caught() -> None:
    compiled = coq.compile_all()
    changed = dataclasses.replace(
        compiled,
        statements={**compiled.statements, "descent_sandwich": "forall x : R, x = x"},
    )
    assert coq.check_lemma("descent_sandwich", changed).status is Status.FAILED
    admitted = dataclasses.replace(
        compiled,
        assumptions={**compiled.assumptions, "segment_bound": ("Segment.helper",)},
    )
    outcome = coq.check_lemma("segment_bound", admitted)
    assert outcome.status is Status.FAILED and "Segment.helper" in outcome.detail


@pytest.mark.negative_control
def test_coq_rejects_a_sharper_sandwich(tmp_path: Path) -> None:
    """The sandwich with beta D / 4 is false: Coq must not compile the file with it."""
    source = (coq.COQ_DIR / "Segment.v").read_text(encoding="utf-8")
    claim = "Rabs (phi 1 - phi 0 - dphi 0) <= beta * D / 2."
    assert claim in source
    (tmp_path / "Segment.v").write_text(
        source.replace(claim, "Rabs (phi 1 - phi 0 - dphi 0) <= beta * D / 4.", 1),
        encoding="utf-8",
    )
    compiled = coq.compile_files(source=tmp_path)
    assert not compiled.ok and "Segment.v failed" in compiled.detail
