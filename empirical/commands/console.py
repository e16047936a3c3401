"""Output fit for pipes: tables that never wrap off a terminal, and ``--json`` alone on stdout.

Every command that prints a table takes ``--json``: the same rows, as one JSON document and
nothing else on stdout (progress and notices go to stderr), so ``hfta ... --json | jq`` parses.
Without ``--json`` a table is drawn for the terminal's width on a terminal; in a pipe or a file
it is drawn ``PIPE_WIDTH`` wide, without colour, so that a row stays one line and a cell is never
folded. Imports no torch.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

#: Width of the tables when stdout is not a terminal: wide enough that no cell wraps.
PIPE_WIDTH = 100_000


def stdout_console() -> Console:
    """A terminal's width on a terminal; in a pipe or a file, no wrapping at all (a table row
    stays one line, a name is never split, LaTeX keeps its lines)."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=PIPE_WIDTH, no_color=True, highlight=False)


def echo_json(payload: Any) -> None:
    """``payload`` as indented JSON on stdout (values JSON does not know become text)."""
    typer.echo(json.dumps(payload, indent=2, default=str))
