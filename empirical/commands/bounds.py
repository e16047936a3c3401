"""``hfta bounds``: the theorem catalogue, and certified bounds evaluated on numbers.

Theory-only: imports no torch. About 1.3 s of CPU time on a shared machine (1.7 s before the
theorems derived their statements lazily, in the same interleaved runs), of which about 0.2 s
imports sympy and 0.3 s solves the example steps certificates (T2-T4's ``steps_solution``).

    hfta bounds                      # the catalogue, then every certificate on example constants
    hfta bounds --theorem T2 --set eta=1e-3 --set C=1 --set G=2 --set beta=10 \\
                --set L0=2.5 --set t=100 --threshold 0.5
    hfta bounds --theorem T4 --latex
    hfta bounds --json

Values are given by name (``--set NAME=VALUE``) and parsed as floats, never evaluated.
``--json`` prints the catalogue and the certificates as JSON; in a pipe the tables are
printed without wrapping (one line per row).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

import theory
from empirical.cli import app
from empirical.commands.console import stdout_console
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from theory.theorem import Theorem

#: Illustrative constants for the no-argument demonstration (not measured on any model; the
#: verifier measures them). Chosen to resemble the embedded tiny GPT-2 under attack: harmful
#: loss 2.5 to be pushed down to 0.5, gradient norm up to 2, curvature up to 50.
EXAMPLES: dict[str, dict[str, float]] = {
    "T1": {"L0": 2.5, "gdot": -0.02, "beta": 50.0, "delta_norm": 0.01, "L1": 2.48},
    "T2": {"L0": 2.5, "eta": 1e-2, "C": 1.0, "G": 2.0, "beta": 50.0, "t": 50},
    "T3": {"L0": 2.5, "eta": 3e-4, "G": 2.0, "beta1": 0.9, "beta2": 0.999, "d": 108_000, "t": 50},
    "T4": {"L0": 2.5, "L_star": 0.0, "mu": 0.05, "beta": 50.0, "eta": 0.02, "t": 50},
    "T6": {"L_K": 2.0, "G": 2.0, "c": 0.9, "u_K": 0.02},
    "T7": {"G_g": 0.5, "beta_g": 50.0, "delta_norm": 0.01},
}
EXAMPLE_THRESHOLD = 0.5


def _parse_values(pairs: list[str]) -> dict[str, float]:
    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise HftaInputError(f"--set expects NAME=VALUE, got '{pair}'")
        try:
            value = float(raw)
        except ValueError:
            raise HftaInputError(f"--set {name}: '{raw}' is not a number") from None
        if not math.isfinite(value):
            raise HftaInputError(f"--set {name}: value must be finite, got {raw}")
        values[name.strip()] = value
    return values


def _certify(thm: Theorem, values: dict[str, float], threshold: float | None) -> dict[str, Any]:
    """Evaluate ``thm`` on ``values``: its bound where all inputs are given, its steps solver."""
    row: dict[str, Any] = {"label": thm.label, "name": thm.name, "values": values}
    if all(s.name in values for s in thm.parameters):
        row["bound"] = thm.evaluate(**values)
    if threshold is not None and thm.steps_kind is not None:
        row["steps_kind"] = thm.steps_kind
        steps = thm.steps_to_threshold(threshold, **values)
        row["steps_to_threshold"] = steps if math.isfinite(steps) else "never"
    return row


def catalogue_table(chosen: list[Theorem]) -> Table:
    """The catalogue as a rich table (label, name, title, certified steps, source)."""
    table = Table(title="Theorem catalogue (theory.catalogue())")
    for column in ("label", "name", "title", "certifies steps", "source"):
        table.add_column(column, overflow="fold")
    for t in chosen:
        table.add_row(t.label, t.name, t.title, t.steps_kind or "-", t.source)
    return table


@app.command("bounds")
def bounds(
    theorem: Annotated[
        str | None, typer.Option("--theorem", "-t", help="Label (T2) or name of one theorem.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="A value by name, NAME=VALUE (repeatable)."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Loss threshold tau for the steps-to-threshold solver.")
    ] = None,
    latex: Annotated[bool, typer.Option(help="Print the LaTeX statement(s).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """List the theorem catalogue and evaluate certified bounds and steps-to-threshold."""
    console = stdout_console()
    chosen = [theory.theorem(theorem)] if theorem else theory.catalogue()
    given = _parse_values(set_ or [])
    if theorem and given:
        rows = [_certify(chosen[0], given, threshold)]
    elif theorem and threshold is not None:
        raise HftaInputError("--threshold needs the theorem's values (--set NAME=VALUE ...)")
    else:
        rows = [
            _certify(t, EXAMPLES[t.label], EXAMPLE_THRESHOLD if t.steps_kind else None)
            for t in chosen
            if t.label in EXAMPLES
        ]
    if as_json:
        payload = {"catalogue": [t.describe() for t in chosen], "certificates": rows}
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    console.print(catalogue_table(chosen))
    if latex:
        for t in chosen:
            console.print(
                f"[bold]{t.label}[/bold] {t.latex()}", markup=True, highlight=False,
                soft_wrap=True,
            )
    if rows:
        title = "Certificates" if given else "Certificates on example constants (not measured)"
        cert = Table(title=title)
        for column in ("theorem", "values", "bound", "steps to threshold"):
            cert.add_column(column, overflow="fold")
        for row in rows:
            steps = row.get("steps_to_threshold", "-")
            kind = row.get("steps_kind")
            shown = f"{kind} {steps}" if kind else str(steps)
            values = ", ".join(f"{k}={v:g}" for k, v in row["values"].items())
            bound = f"{row['bound']:.6g}" if "bound" in row else "-"
            cert.add_row(row["label"], values, bound, shown)
        console.print(cert)
        if not given:
            console.print(f"threshold tau = {EXAMPLE_THRESHOLD} for the steps solvers")
