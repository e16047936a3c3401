"""The ``hfta`` command-line interface (typer).

Each command lives in its own module under ``empirical.commands`` and registers itself on
``app``; ``COMMAND_MODULES`` lists them. Heavy imports (torch, transformers) happen inside
the command bodies so that ``hfta --help`` and theory-only commands start fast.

Exit codes: 0 success; 1 a claimed condition is violated or inconclusive; 2 bad input, with
one line on stderr and no traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer
from pydantic import ValidationError

from theory.errors import HftaInputError

app = typer.Typer(
    name="hfta",
    help="Formal, testable immunization against harmful fine-tuning attacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
    """Formal, testable immunization against harmful fine-tuning attacks."""


COMMAND_MODULES: tuple[str, ...] = (
    "bounds",
    "build_model",
    "attack",
    "prove",
    "verify",
    "immunize",
)


def _register() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(f"empirical.commands.{module}")


def fail(message: str) -> None:
    """Report bad input the toolkit's way: one line on stderr, exit code 2."""
    sys.stderr.write(f"hfta: error: {message}\n")
    raise SystemExit(2)


def main() -> None:
    """Entry point of the ``hfta`` console script."""
    _register()
    try:
        app()
    except HftaInputError as exc:
        fail(str(exc))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "input"
        fail(f"{where}: {first.get('msg', 'invalid value')}")
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        fail(f"{exc.strerror}: {exc.filename}")


if __name__ == "__main__":  # ``python -m empirical.cli``: commands register on the module's app
    import empirical.cli as _module

    _module.main()
