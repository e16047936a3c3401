"""Run the proofs, print the table (or JSON), and turn the result into an exit code.

``python -m proofs`` and ``hfta prove`` are both this module:

    python -m proofs                 # table: theorem, obligation/control, method, status, ...
    python -m proofs --json          # the same rows as a JSON list
    python -m proofs --only T2 --only pl_convergence --timeout 5

Exit code 0 when every obligation is proved or checked and every negative control is
refuted; 1 otherwise (a failure, an unknown, a theorem with no control); 2 for bad input
(one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from proofs.obligation import Budget, Proof, Row, Status, timed
from proofs.registry import Registry, UnknownTheoremError, collect

DEFAULT_TIMEOUT_S = 10.0


class BadInputError(ValueError):
    """A command-line value the runner cannot use (exit code 2)."""


@dataclass(frozen=True)
class Options:
    """What to run and how: theorem keys (label or name; empty = all), solver timeout, format."""

    only: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    as_json: bool = False


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


def run(proofs: Sequence[Proof], budget: Budget) -> list[Row]:
    """Discharge every obligation and control of ``proofs``; one row each."""
    rows: list[Row] = []
    for proof in proofs:
        label, name = proof.theorem.label, proof.theorem.name
        for obligation in proof.obligations:
            outcome, seconds = timed(obligation, budget)
            rows.append(
                Row(
                    label=label,
                    theorem=name,
                    obligation=obligation.name,
                    kind=obligation.kind,
                    method=obligation.method,
                    status=outcome.status,
                    seconds=seconds,
                    statement=obligation.statement,
                    counterexample=outcome.counterexample,
                    detail=outcome.detail,
                    uses=obligation.uses,
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
    return rows


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
    lines.append(summary(rows, seconds))
    return "\n".join(lines)


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
    rows = run(proofs, Budget(timeout_s=options.timeout_s))
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
        help=f"z3 timeout per obligation (default {DEFAULT_TIMEOUT_S:g})",
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
