"""Run the proofs, print the table (or JSON), and turn the result into an exit code.

``python -m proofs`` and ``hfta prove`` are both this module:

    python -m proofs                 # table: theorem, obligation/control, method, status, ...
    python -m proofs --json          # the same rows as a JSON list
    python -m proofs --only T2 --only pl_convergence --timeout 5

Exit code 0 when every obligation is proved or checked and every negative control is
refuted; 1 otherwise (a failure, an unknown, a theorem with no control); 2 for bad input
(one line on stderr).

Time limits: every attempt runs under a hard deadline (``proofs.obligation.with_deadline``;
``--timeout`` seconds, z3's own timeout included), and the whole run (building the proofs
included) under ``RUN_BUDGET_S``: once it is spent, the remaining rows read ``unknown``. The
run therefore ends, failing, even when a mutated statement sends sympy or z3 into a search
that would not end on its own.

Necessity audit: after the proofs, every proved obligation that names its premises (theory
assumptions, axiom instances: ``proofs.solver.premise``) is attempted again with each premise
dropped, one at a time (``AUDIT_TIMEOUT_S`` each). A premise is *needed* when the proof no
longer goes through without it; the table lists each obligation's needed premises (its
minimal support under single deletions) and those it does not need. Each proof names its
theorem's *defining* hypotheses (β-smoothness for T1, μ-PL for T4, ...) and the obligation
that must need them; the run fails when one is not needed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from proofs import coq
from proofs.obligation import Budget, Obligation, Outcome, Proof, Row, Status
from proofs.registry import Registry, UnknownTheoremError, collect

DEFAULT_TIMEOUT_S = 10.0
#: the whole run (building the proofs, discharging them, the audit) stops starting new
#: attempts after this many seconds: with the imports and an attempt's slack it ends within 60
RUN_BUDGET_S = 45.0
#: the time limit of one attempt of the necessity audit (an unknown counts as "needed")
AUDIT_TIMEOUT_S = 2.0
#: an attempt is not started with less than this left of the run budget
MIN_ATTEMPT_S = 0.25


class BadInputError(ValueError):
    """A command-line value the runner cannot use (exit code 2)."""


@dataclass(frozen=True)
class Options:
    """What to run and how: theorem keys (label or name; empty = all), solver timeout, format."""

    only: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    as_json: bool = False
    run_budget_s: float = RUN_BUDGET_S


def select(proofs: Sequence[Proof], only: Sequence[str]) -> list[Proof]:
    """The proofs whose theorem's label or name is in ``only`` (all when empty)."""
    if not only:
        return list(proofs)
    keys = set(only)
    known = {p.theorem.label for p in proofs} | {p.theorem.name for p in proofs}
    unknown = sorted(keys - known)
    if unknown:
        raise BadInputError(f"unknown theorem {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return [p for p in proofs if {p.theorem.label, p.theorem.name} & keys]


class Clock:
    """The run budget: how many seconds an attempt may still take."""

    def __init__(self, total_s: float) -> None:
        self._deadline = time.perf_counter() + total_s

    def left(self) -> float:
        return self._deadline - time.perf_counter()

    def budget(self, limit_s: float) -> Budget | None:
        """A budget of at most ``limit_s`` seconds, or None when the run budget is spent."""
        left = self.left()
        if left < MIN_ATTEMPT_S:
            return None
        return Budget(timeout_s=min(limit_s, left))


def _row(label: str, name: str, obligation: Obligation, clock: Clock, timeout_s: float) -> Row:
    limit = max(timeout_s, coq.COQ_ROW_TIMEOUT_S) if obligation.method == "coq" else timeout_s
    budget = clock.budget(limit)
    started = time.perf_counter()
    if budget is None:
        outcome = obligation.read(
            Outcome(Status.UNKNOWN, f"run budget of {RUN_BUDGET_S:g} s spent before this row")
        )
    else:
        outcome = obligation.run(budget)
    return Row(
        label=label,
        theorem=name,
        obligation=obligation.name,
        kind=obligation.kind,
        method=obligation.method,
        status=outcome.status,
        seconds=time.perf_counter() - started,
        statement=obligation.statement,
        counterexample=outcome.counterexample,
        detail=outcome.detail,
        uses=obligation.uses,
    )


def run(
    proofs: Sequence[Proof], budget: Budget, *, run_budget_s: float = RUN_BUDGET_S
) -> list[Row]:
    """Discharge every obligation and control of ``proofs``; one row each; then the audit."""
    clock = Clock(run_budget_s)
    if any(o.method == "coq" for p in proofs for o in p.obligations):
        coq.start()  # coqc runs in the background while z3 works
    # Coq rows last: coqc compiles in the background meanwhile
    order = [
        (i, j)
        for coq_pass in (False, True)
        for i, proof in enumerate(proofs)
        for j, obligation in enumerate(proof.obligations)
        if (obligation.method == "coq") is coq_pass
    ]
    done: dict[tuple[int, int], Row] = {}
    try:
        for i, j in order:
            proof = proofs[i]
            done[(i, j)] = _row(
                proof.theorem.label,
                proof.theorem.name,
                proof.obligations[j],
                clock,
                budget.timeout_s,
            )
    finally:
        coq.discard()
    rows: list[Row] = []
    audited: list[tuple[int, Obligation, tuple[str, ...]]] = []
    for i, proof in enumerate(proofs):
        label, name = proof.theorem.label, proof.theorem.name
        defining: dict[str, list[str]] = {}
        for obligation_name, hypothesis in proof.defining:
            defining.setdefault(obligation_name, []).append(hypothesis)
        names = {o.name for o in proof.obligations}
        for j, obligation in enumerate(proof.obligations):
            wanted = tuple(defining.get(obligation.name, ()))
            rows.append(replace(done[(i, j)], defining=wanted))
            if obligation.kind == "obligation" and obligation.premises:
                audited.append((len(rows) - 1, obligation, wanted))
        for obligation_name in sorted(set(defining) - names):
            rows.append(
                Row(
                    label,
                    name,
                    obligation_name,
                    "obligation",
                    "-",
                    Status.FAILED,
                    0.0,
                    detail="a defining hypothesis names an obligation the proof does not have",
                )
            )
        if not proof.controls:
            rows.append(
                Row(
                    label,
                    name,
                    "negative controls",
                    "control",
                    "-",
                    Status.FAILED,
                    0.0,
                    detail="the proof has no negative control",
                )
            )
    # the audit: obligations with a defining hypothesis first, so the budget never skips them
    audited.sort(key=lambda item: not item[2])
    for index, obligation, wanted in audited:
        rows[index] = audit(rows[index], obligation, wanted, clock)
    return rows


def audit(row: Row, obligation: Obligation, defining: Sequence[str], clock: Clock) -> Row:
    """``row`` with the necessity audit of ``obligation``: each premise dropped in turn.

    A premise whose removal leaves the proof standing is *not needed*; one whose removal
    makes it fail, or leaves it unknown within ``AUDIT_TIMEOUT_S``, is *needed*. The row
    fails when a defining hypothesis is not a premise of the obligation or is not needed.
    """
    missing = [h for h in defining if h not in obligation.premises]
    if missing:
        return replace(
            row,
            status=Status.FAILED,
            detail=f"defining hypothesis {missing[0]} is not a premise of this obligation",
        )
    if row.status is not Status.PROVED:
        return row
    needed: list[str] = []
    not_needed: list[str] = []
    unknown: list[str] = []
    for name in obligation.premises:
        budget = clock.budget(AUDIT_TIMEOUT_S)
        if budget is None:
            unknown.append(name)
            continue
        outcome = obligation.attempt_dropping(frozenset({name}), budget)
        (not_needed if outcome.status is Status.PROVED else needed).append(name)
    audited = replace(row, needed=tuple(needed), not_needed=tuple(not_needed))
    unchecked = [h for h in defining if h in unknown]
    if unchecked:
        return replace(
            audited,
            status=Status.UNKNOWN,
            detail=f"run budget spent before the audit of {unchecked[0]}",
        )
    idle = [h for h in defining if h in not_needed]
    if idle:
        return replace(
            audited,
            status=Status.FAILED,
            detail=f"defining hypothesis {idle[0]} is not needed: the proof does not use it",
        )
    return audited


def render_table(rows: Sequence[Row], seconds: float) -> str:
    """The human-readable report: one line per obligation/control, then a summary."""
    header = ("theorem", "obligation / control", "method", "status", "seconds", "counterexample")
    body = [
        (
            f"{r.label} {r.theorem}",
            ("[control] " if r.kind == "control" else "") + r.obligation,
            r.method,
            r.status.value if r.ok else f"{r.status.value} !",
            f"{r.seconds:.3f}",
            r.counterexample if r.counterexample else ("" if r.ok else r.detail),
        )
        for r in rows
    ]
    widths = [
        min(76, max(len(h), *(len(line[i]) for line in body))) if body else len(h)
        for i, h in enumerate(header[:-1])
    ]

    def fmt(cells: Sequence[str]) -> str:
        fixed = [c[:w].ljust(w) for c, w in zip(cells[:-1], widths, strict=True)]
        return "  ".join([*fixed, _clip(cells[-1], 110)]).rstrip()

    lines = [fmt(header), fmt(["-" * w for w in widths] + ["-" * 14])]
    lines += [fmt(line) for line in body]
    lines.append("")
    lines.extend(render_audit(rows))
    lines.append("")
    lines.append(summary(rows, seconds))
    return "\n".join(lines)


def render_audit(rows: Sequence[Row]) -> list[str]:
    """The necessity audit: per audited obligation, the premises it needs (minimal support
    under single deletions, defining hypotheses marked *) and those it does not need."""
    lines = ["necessity audit (each premise dropped in turn; * = defining hypothesis)"]
    for r in rows:
        if not (r.needed or r.not_needed):
            continue
        needs = ", ".join(f"{n}*" if n in r.defining else n for n in r.needed) or "-"
        spare = ", ".join(f"{n}*" if n in r.defining else n for n in r.not_needed) or "-"
        lines.append(f"  {r.label} {r.obligation}: needs {needs}; not needed: {spare}")
    return lines


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def summary(rows: Sequence[Row], seconds: float) -> str:
    """One line: how many proved / checked / refuted, how many failures, total seconds."""
    count = {s: sum(1 for r in rows if r.status is s) for s in Status}
    failures = sum(1 for r in rows if not r.ok)
    theorems = len({r.theorem for r in rows})
    verdict = "ALL PROVED" if failures == 0 else f"{failures} FAILURE(S)"
    return (
        f"{verdict}: {theorems} theorems, {count[Status.PROVED]} proved, "
        f"{count[Status.CHECKED]} checked, {count[Status.REFUTED]} controls refuted, "
        f"{count[Status.FAILED]} failed, {count[Status.UNKNOWN]} unknown; {seconds:.1f} s"
    )


def registry() -> Registry:
    """The registry ``python -m proofs`` and ``hfta prove`` run: ``collect`` (one proof per
    catalogued theorem). Tests replace this function to run a deliberately failing registry."""
    return collect


def execute(options: Options, proofs_of: Registry | None = None) -> tuple[list[Row], str, int]:
    """Run the selected proofs: (rows, rendered output, exit code 0/1). Raises ``BadInputError``."""
    if not (math.isfinite(options.timeout_s) and options.timeout_s > 0):
        raise BadInputError(
            f"--timeout must be a positive number of seconds, got {options.timeout_s}"
        )
    started = time.perf_counter()
    try:
        built = (proofs_of or registry())(options.only)
    except UnknownTheoremError as exc:
        raise BadInputError(str(exc)) from None
    proofs = select(built, options.only)
    left = options.run_budget_s - (time.perf_counter() - started)  # building counts too
    rows = run(proofs, Budget(timeout_s=options.timeout_s), run_budget_s=left)
    seconds = time.perf_counter() - started
    if options.as_json:
        text = json.dumps([r.as_dict() for r in rows], indent=2, ensure_ascii=False)
    else:
        text = render_table(rows, seconds)
    code = 0 if rows and all(r.ok for r in rows) else 1
    return rows, text, code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInputError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m proofs", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--json", dest="as_json", action="store_true", help="print JSON rows")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="THEOREM",
        help="label (T2) or name of a theorem to prove (repeatable; default all)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"time limit per obligation, sympy and z3 (default {DEFAULT_TIMEOUT_S:g})",
    )
    return p


def main(argv: Sequence[str] | None = None, proofs_of: Registry | None = None) -> int:
    """``python -m proofs``: print the report, return the exit code (2 on bad input)."""
    try:
        args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        options = Options(tuple(args.only), float(args.timeout), bool(args.as_json))
        _, text, code = execute(options, proofs_of)
    except BadInputError as exc:
        sys.stderr.write(f"proofs: error: {exc}\n")
        return 2
    sys.stdout.write(text + "\n")
    return code
