"""``hfta prove``: machine-check every theorem of the catalogue (the same as ``python -m proofs``).

    hfta prove                     # table: theorem, obligation/control, method, status, ...
    hfta prove --json              # the same rows as a JSON list
    hfta prove --only T2 --timeout 5

Exit code 0 when every obligation is proved or checked and every negative control refuted,
1 otherwise, 2 for bad input. Imports no torch (proofs/ imports theory only).
"""

from __future__ import annotations

from typing import Annotated

import typer

from empirical.cli import app
from theory.errors import HftaInputError


@app.command("prove")
def prove(
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Label (T2) or name of a theorem to prove (repeatable)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="z3 timeout per obligation, in seconds.")
    ] = 10.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON rows instead of a table.")
    ] = False,
) -> None:
    """Prove every catalogued theorem (z3, sympy) and refute every negative control."""
    from proofs import runner

    options = runner.Options(tuple(only or ()), float(timeout), as_json)
    try:
        _, text, code = runner.execute(options, runner.registry())
    except runner.BadInputError as exc:
        raise HftaInputError(str(exc)) from None
    typer.echo(text)
    raise typer.Exit(code)
