"""Proofs are tied to theory's statements: change a statement and the proof must notice.

Each test replaces one of theory's expressions by a deliberately wrong one (as a future edit
of theory/ might) and checks that the proof obligation built from it fails.
"""

from __future__ import annotations

import dataclasses

import pytest
import sympy as sp

from proofs.obligation import Budget, Proof, Status
from proofs.theorems import clipped_sgd_progress, pl_convergence, smoothness_sandwich
from theory import symbols as sym
from theory.theorems import clipped_sgd_progress as t2
from theory.theorems import pl_convergence as t4
from theory.theorems import smoothness_sandwich as t1

BUDGET = Budget(timeout_s=10.0)


def _status(proof: Proof, name: str) -> Status:
    obligation = next(o for o in proof.obligations if o.name.startswith(name))
    return obligation.run(BUDGET).status


def test_unchanged_statements_are_proved() -> None:
    assert _status(smoothness_sandwich.proof(), "sandwich") is Status.PROVED
    assert _status(clipped_sgd_progress.proof(), "one step") is Status.PROVED
    assert (
        _status(pl_convergence.proof(), "t steps (theory's conclusion): inductive") is Status.PROVED
    )


@pytest.mark.negative_control
def test_a_sharper_sandwich_in_theory_is_refuted(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = t1.THEOREM.conclusion.xreplace({sym.beta: sym.beta / 4})
    monkeypatch.setattr(t1, "THEOREM", dataclasses.replace(t1.THEOREM, conclusion=wrong))
    assert _status(smoothness_sandwich.proof(), "sandwich") is Status.FAILED


@pytest.mark.negative_control
def test_a_smaller_step_decrease_in_theory_is_refuted(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = sp.Ge(sym.L_next, sym.L_s - sym.G * sym.eta * sym.C)  # the curvature term dropped
    monkeypatch.setattr(t2, "STEP_CONCLUSION", wrong)
    assert _status(clipped_sgd_progress.proof(), "one step") is Status.FAILED


@pytest.mark.negative_control
def test_a_faster_pl_rate_in_theory_is_refuted(monkeypatch: pytest.MonkeyPatch) -> None:
    faster = 1 - 2 * sym.eta * sym.mu
    bound = sym.L_star + faster**sym.t * (sym.L0 - sym.L_star)
    wrong = dataclasses.replace(t4.THEOREM, conclusion=sp.Le(sym.L_t, bound), bound=bound)
    monkeypatch.setattr(t4, "THEOREM", wrong)
    monkeypatch.setattr(t4, "CONTRACTION", faster)
    proof = pl_convergence.proof()
    assert _status(proof, "t steps (theory's conclusion): inductive") is Status.FAILED
