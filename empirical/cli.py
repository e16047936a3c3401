"""The ``hfta`` command-line interface (typer).

Each command lives in its own module under ``empirical.commands`` and registers itself on
``app``; ``COMMAND_MODULES`` lists them. Heavy imports (torch, transformers) happen inside
the command bodies so that ``hfta --help`` and theory-only commands start fast.

The exit-code contract (README, "Exit codes"; ``tests/test_exit_codes.py``):

* 0: success (for ``verify``: every claimed condition holds);
* 1: a claimed condition is violated or inconclusive (``verify``), a check that failed;
* 2: bad input: one line on stderr, no traceback, nothing written;
* 3: an internal error or a run that does not reproduce: the traceback goes to a log file
  (in the command's work folder when it has one, else ``$TMPDIR/hfta-logs``) and one line
  on stderr points to it;
* 130: interrupted (Ctrl-C): "interrupted; rerun the same command to resume".
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
import traceback
from pathlib import Path

import typer
from pydantic import ValidationError

from theory.errors import HftaInputError, HftaRunError

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
    "certify",
)


def _register() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(f"empirical.commands.{module}")


def fail(message: str) -> None:
    """Report bad input the toolkit's way: one line on stderr, exit code 2."""
    sys.stderr.write(f"hfta: error: {message}\n")
    raise SystemExit(2)


EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

_log_directory: Path | None = None


def set_log_directory(path: Path | None) -> None:
    """Where an internal error's traceback goes from now on (a command's work folder)."""
    global _log_directory
    _log_directory = path


def write_error_log(error: BaseException) -> Path:
    """Write ``error``'s traceback to a new log file; its path."""
    directory = _log_directory or Path(tempfile.gettempdir()) / "hfta-logs"
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = directory / f"error-{stamp}-{time.monotonic_ns() % 10**9}.log"
    path.write_text(
        "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        encoding="utf-8",
    )
    return path


def internal_error(error: BaseException) -> None:
    """Report an internal error: traceback to a log file, one line on stderr, exit code 3."""
    try:
        where = f"traceback in {write_error_log(error)}"
    except OSError as exc:  # the log itself could not be written: say so, still one line
        where = f"no log written ({exc.strerror})"
    kind = "run not reproduced" if isinstance(error, HftaRunError) else "internal error"
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    sys.stderr.write(f"hfta: {kind}: {message}; {where}\n")
    raise SystemExit(EXIT_INTERNAL)


def main() -> None:
    """Entry point of the ``hfta`` console script (exit codes: the module docstring)."""
    _register()
    try:
        code = app(standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        sys.stderr.write("hfta: interrupted; rerun the same command to resume\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except HftaInputError as exc:
        fail(str(exc))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "input"
        fail(f"{where}: {first.get('msg', 'invalid value')}")
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        fail(f"{exc.strerror}: {exc.filename}")
    except typer.exceptions.TyperException as exc:  # usage errors: click's message, exit 2
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    except SystemExit:
        raise
    except Exception as exc:
        internal_error(exc)
    else:
        if code == EXIT_INTERRUPTED:  # typer turns Ctrl-C into Exit(130), without a message
            sys.stderr.write("hfta: interrupted; rerun the same command to resume\n")
            raise SystemExit(EXIT_INTERRUPTED)
        if isinstance(code, int) and code != 0:
            raise SystemExit(code)


if __name__ == "__main__":  # ``python -m empirical.cli``: commands register on the module's app
    import empirical.cli as _module

    _module.main()
