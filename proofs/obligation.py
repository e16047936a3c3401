"""Proof obligations, negative controls, and the outcome of discharging them.

A proof of a catalogued theorem is a finite list of *obligations*: claims a machine settles
(z3 for real arithmetic, sympy for algebraic identities, an exhaustive computation for the
statistical statements that are checked rather than proved). Alongside them stand *negative
controls*: deliberately wrong variants of the same claims (an assumption dropped, a constant
perturbed, an inequality turned) that the same machinery must refute with a counterexample.
A control that is not refuted means the check cannot tell right from wrong, so the proof run
fails.

Every discharge function *attempts to establish* its claim and answers with an ``Outcome``:
``proved`` / ``checked`` (the claim holds), ``failed`` with a counterexample (it does not),
``unknown`` (the solver gave up, e.g. a z3 timeout). ``Obligation.run`` then reads the attempt
according to the kind: for a control, an attempt that failed with a counterexample is the
expected result and is reported as ``refuted``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from theory.theorem import Theorem

Kind = Literal["obligation", "control"]
Method = Literal["z3", "sympy", "exhaustive"]


class Status(StrEnum):
    """Status of one row of a proof run."""

    PROVED = "proved"  # an obligation a solver established (z3 unsat of the negation, sympy)
    CHECKED = "checked"  # an obligation established by exhaustive computation, never "proved"
    REFUTED = "refuted"  # a negative control the solver refuted (the expected outcome)
    FAILED = "failed"  # an obligation refuted or erroring, or a control not refuted
    UNKNOWN = "unknown"  # the solver gave up (timeout): a failure


#: statuses that make a row a success, by kind
SUCCESS: dict[Kind, frozenset[Status]] = {
    "obligation": frozenset({Status.PROVED, Status.CHECKED}),
    "control": frozenset({Status.REFUTED}),
}


@dataclass(frozen=True)
class Outcome:
    """The answer of one discharge attempt.

    ``counterexample`` is a readable assignment (``beta=1, L1=1/2``) when the claim was found
    false; ``detail`` says what was done or why it failed.
    """

    status: Status
    detail: str = ""
    counterexample: str = ""


@dataclass(frozen=True)
class Budget:
    """Resources one discharge may use: the per-obligation solver timeout in seconds."""

    timeout_s: float = 10.0


Discharge = Callable[[Budget], Outcome]


@dataclass(frozen=True)
class Obligation:
    """One claim of a proof (``kind="obligation"``) or one negative control.

    ``statement`` is one line of mathematics a reader can compare with docs/theorems.md;
    ``uses`` names the axioms (``proofs.axioms``) and earlier lemmas it rests on.
    """

    name: str
    statement: str
    method: Method
    discharge: Discharge
    kind: Kind = "obligation"
    uses: tuple[str, ...] = ()

    def run(self, budget: Budget) -> Outcome:
        """Discharge the claim and read the attempt according to ``kind``."""
        try:
            attempt = self.discharge(budget)
        except Exception as exc:  # a crash is a failure of the row, never of the whole run
            return Outcome(Status.FAILED, f"error: {type(exc).__name__}: {exc}")
        if self.kind == "obligation":
            return attempt
        if attempt.status is Status.FAILED and attempt.counterexample:
            return replace(attempt, status=Status.REFUTED)
        if attempt.status in (Status.PROVED, Status.CHECKED):
            return Outcome(
                Status.FAILED,
                f"negative control was {attempt.status.value}: the check cannot tell right "
                "from wrong",
            )
        if attempt.status is Status.FAILED:
            return Outcome(
                Status.FAILED, f"control not refuted by a counterexample: {attempt.detail}"
            )
        return attempt


def control(obligation: Obligation) -> Obligation:
    """The same claim marked as a negative control (its refutation is expected)."""
    return replace(obligation, kind="control")


@dataclass(frozen=True)
class Proof:
    """A machine-checked proof of one catalogued theorem: its obligations and controls."""

    theorem: Theorem
    obligations: tuple[Obligation, ...]
    summary: str = ""

    @property
    def controls(self) -> tuple[Obligation, ...]:
        return tuple(o for o in self.obligations if o.kind == "control")


@dataclass(frozen=True)
class Row:
    """One line of the proof report (the JSON schema of ``python -m proofs --json``)."""

    label: str
    theorem: str
    obligation: str
    kind: Kind
    method: str
    status: Status
    seconds: float
    statement: str = ""
    counterexample: str = ""
    detail: str = ""
    uses: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS[self.kind]

    def as_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "theorem": self.theorem,
            "obligation": self.obligation,
            "kind": self.kind,
            "method": self.method,
            "status": self.status.value,
            "seconds": round(self.seconds, 4),
            "statement": self.statement,
            "counterexample": self.counterexample,
            "detail": self.detail,
            "uses": list(self.uses),
        }


def timed(obligation: Obligation, budget: Budget) -> tuple[Outcome, float]:
    """Run ``obligation`` and measure its wall-clock seconds."""
    started = time.perf_counter()
    outcome = obligation.run(budget)
    return outcome, time.perf_counter() - started
