"""Progress for long work: a rich bar on a terminal, one line per stage elsewhere.

``step_progress(description, total, enabled=...)`` is a context manager yielding a callback
``advance(done, total)``. On a terminal (stderr is a TTY) it draws a rich progress bar on
stderr; when stderr is not a terminal it writes one line when the stage starts and one when
it ends (so logs and pipes get a line per stage, not a redraw per step); with
``enabled=False`` (``--quiet``) it writes nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int, int], None]


@contextmanager
def step_progress(description: str, total: int, *, enabled: bool = True) -> Iterator[Advance]:
    """Report ``total`` steps of ``description`` (module docstring)."""
    if not enabled:
        yield lambda done, total: None
        return
    if not sys.stderr.isatty():
        started = time.perf_counter()
        sys.stderr.write(f"{description}: {total} steps\n")
        yield lambda done, total: None
        sys.stderr.write(f"{description}: done in {time.perf_counter() - started:.1f} s\n")
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance(done: int, steps: int) -> None:
            bar.update(task, completed=done, total=steps)

        yield advance
