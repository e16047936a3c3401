"""Progress for long work: a rich bar on a terminal, one line per stage elsewhere.

``step_progress(description, total, enabled=...)`` is a context manager yielding a callback
``advance(done, total)``. On a terminal (stderr is a TTY) it draws a rich progress bar on
stderr; when stderr is not a terminal it writes one line when the stage starts and one when
it ends (so logs and pipes get a line per stage, not a redraw per step); with
``enabled=False`` (``--quiet``) it writes nothing.

``attack_progress(total, enabled=...)`` is the bar of one harmful fine-tuning attack
(``hfta attack``): a context manager yielding ``AttackHooks``, the ``on_iterate`` and
``on_evaluation`` callbacks of ``empirical.engine.attack.attack``. On a terminal the bar counts the
steps s = 0..T (one ``on_iterate(s, θ_s)`` per iterate) and shows, after each evaluation,
the held-out harmful loss and the harm proxy measured there (the attack's per-step training
loss reaches no hook). When stderr is not a terminal, or with ``enabled=False``, both hooks
are ``None``: nothing is written and the attack loop calls nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from empirical.measurement.trajectory import Evaluation

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


@dataclass(frozen=True)
class AttackHooks:
    """The attack loop's callbacks that drive a bar (``None``: no bar, nothing to call)."""

    on_iterate: Callable[[int, Any], None] | None = None
    on_evaluation: Callable[[Evaluation], bool] | None = None


def measured_text(evaluation: Evaluation | None) -> str:
    """What the bar shows of the last evaluation: harmful loss and harm (or why not)."""
    if evaluation is None:
        return "not evaluated yet"
    loss = "not measured" if evaluation.harmful_loss is None else f"{evaluation.harmful_loss:.3f}"
    harm = "not measured" if evaluation.harm is None else f"{evaluation.harm:.3f}"
    return f"step {evaluation.step}: harmful loss {loss}, harm {harm}"


@contextmanager
def attack_progress(
    total: int, *, enabled: bool = True, description: str = "attack"
) -> Iterator[AttackHooks]:
    """A bar of ``total`` attack steps on a terminal's stderr (module docstring)."""
    if not enabled or not sys.stderr.isatty():
        yield AttackHooks()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[measured]}"),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total, measured=measured_text(None))

        def on_iterate(step: int, _parameters: Any) -> None:
            bar.update(task, completed=step)

        def on_evaluation(evaluation: Evaluation) -> bool:
            bar.update(task, completed=evaluation.step, measured=measured_text(evaluation))
            return False  # never asks the attack to stop

        yield AttackHooks(on_iterate=on_iterate, on_evaluation=on_evaluation)
