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

Every attempt runs in a forked worker process with a hard deadline (``with_deadline``): a
sympy ``simplify`` that never returns, or a solver that ignores its timeout, is killed at the
deadline and the row reads ``unknown``; the run always ends.

An obligation may name its *premises* (labelled hypotheses and axiom instances) and offer
``attempt_without``: the same attempt with some premises dropped. The necessity audit of
``proofs.runner`` uses it to report which premises each obligation really needs.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from theory.theorem import Theorem

Kind = Literal["obligation", "control"]
Method = Literal["z3", "sympy", "exhaustive", "coq"]


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
#: the attempt with the named premises dropped (for the necessity audit)
AttemptWithout = Callable[[frozenset[str], Budget], Outcome]

#: seconds a worker may run past its budget (fork, pickling) before it is killed
DEADLINE_SLACK_S = 1.0


def with_deadline(attempt: Callable[[], Outcome], seconds: float) -> Outcome:
    """``attempt()`` in a forked worker, killed after ``seconds``: ``unknown`` at the deadline.

    The worker sends its ``Outcome`` back pickled through a pipe; an exception in the worker
    is a ``failed`` outcome naming it. Nothing the attempt does (a sympy ``simplify`` that
    never returns included) can keep the caller waiting past the deadline.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the worker process (its coverage is not collected)
        os.close(read_end)
        try:
            try:
                outcome = attempt()
            except Exception as exc:
                outcome = Outcome(Status.FAILED, f"error: {type(exc).__name__}: {exc}")
            payload = pickle.dumps(outcome)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(0)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + max(0.0, seconds)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return Outcome(Status.UNKNOWN, f"deadline: no answer within {seconds:.1f} s")
            ready, _, _ = select.select([read_end], [], [], left)
            if not ready:
                continue
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if not chunks:
        return Outcome(Status.FAILED, "the worker ended without an answer")
    outcome = pickle.loads(b"".join(chunks))
    if not isinstance(outcome, Outcome):  # pragma: no cover - defensive
        return Outcome(Status.FAILED, "the worker answered something other than an outcome")
    return outcome


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
    premises: tuple[str, ...] = ()
    attempt_without: AttemptWithout | None = None

    def attempt(self, budget: Budget) -> Outcome:
        """Discharge the claim under a hard deadline (``with_deadline``), before reading it.

        Coq obligations run ``coqc`` in a subprocess with its own time limit, in this
        process (so its compiled result is shared by the rows that cite it).
        """
        if self.method == "coq":
            return self.discharge(budget)
        return with_deadline(lambda: self.discharge(budget), budget.timeout_s + DEADLINE_SLACK_S)

    def attempt_dropping(self, dropped: frozenset[str], budget: Budget) -> Outcome:
        """The attempt with the premises ``dropped`` left out, under the same deadline.

        Also in a worker: z3's heuristics depend on the state of its global context, so the
        main process never runs a solver (every attempt starts from the same context).
        """
        without = self.attempt_without
        if without is None:
            return Outcome(Status.FAILED, "this obligation cannot drop premises")
        return with_deadline(lambda: without(dropped, budget), budget.timeout_s + DEADLINE_SLACK_S)

    def run(self, budget: Budget) -> Outcome:
        """Discharge the claim and read the attempt according to ``kind``."""
        try:
            attempt = self.attempt(budget)
        except Exception as exc:  # a crash is a failure of the row, never of the whole run
            return Outcome(Status.FAILED, f"error: {type(exc).__name__}: {exc}")
        return self.read(attempt)

    def read(self, attempt: Outcome) -> Outcome:
        """An attempt's outcome read according to ``kind`` (a refuted control succeeds)."""
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
    #: the theorem's defining hypotheses, by the obligation that must need them: the
    #: necessity audit fails the run when that obligation is proved without the premise
    defining: tuple[tuple[str, str], ...] = ()

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
    #: the necessity audit: premises whose removal breaks the proof, and those that do not
    needed: tuple[str, ...] = field(default=())
    not_needed: tuple[str, ...] = field(default=())
    #: defining hypotheses this obligation must need (checked by the audit)
    defining: tuple[str, ...] = field(default=())

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
            "needed": list(self.needed),
            "not_needed": list(self.not_needed),
            "defining": list(self.defining),
        }


def timed(obligation: Obligation, budget: Budget) -> tuple[Outcome, float]:
    """Run ``obligation`` and measure its wall-clock seconds."""
    started = time.perf_counter()
    outcome = obligation.run(budget)
    return outcome, time.perf_counter() - started
