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

``progress_stages(enabled=...)`` puts several stages of one command on one display (a
context manager yielding ``Stages``; ``step_progress`` is one such stage alone): each
``stages.stage(description, total)`` is a context manager yielding an ``Advance`` and adds
one line to the shared rich bar on a terminal; elsewhere it writes its start and end lines;
quiet, nothing. ``total=None`` is a stage whose amount of work is not known in advance (one
convex program, an eigen-solver's Hessian-vector products): the bar pulses and counts the
units reported, and ``advance(done, 0)`` reports ``done`` units of such a stage. A hook
``advance(done, total)`` is the pattern of every long loop of the toolkit (``on_step`` of a
defence, ``advance`` of ``empirical.measurement.estimators`` and
``empirical.certify.capture``): the loop calls it, this module draws it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress, Task, TaskID
    from rich.text import Text

    from empirical.measurement.trajectory import Evaluation

Advance = Callable[[int, int], None]
"""``advance(done, total)``: ``done`` units of ``total`` finished (``total`` 0: not known)."""


def _ignore(done: int, total: int) -> None:
    """The ``Advance`` of a quiet stage."""


class Stages:
    """The stages of one command on one display (module docstring): ``bar`` is the shared
    rich ``Progress`` on a terminal, ``None`` elsewhere; ``enabled`` False writes nothing."""

    def __init__(self, *, enabled: bool, bar: Progress | None) -> None:
        self.enabled = enabled
        self.bar = bar

    @contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Advance]:
        """One stage of ``total`` units (``None``: not known in advance)."""
        if not self.enabled:
            yield _ignore
            return
        if self.bar is None:
            started = time.perf_counter()
            sys.stderr.write(f"{description}: {'started' if total is None else f'{total} steps'}\n")
            yield _ignore
            sys.stderr.write(f"{description}: done in {time.perf_counter() - started:.1f} s\n")
            return
        bar = self.bar
        task = bar.add_task(description, total=total, known=total is not None, count=0)
        yield lambda done, steps: _update(bar, task, done, steps)
        _finish(bar, task)


def _update(bar: Progress, task: TaskID, done: int, total: int) -> None:
    if total > 0:
        bar.update(task, completed=done, total=total, known=True, count=done)
    else:
        bar.update(task, completed=done, count=done)


def _finish(bar: Progress, task: TaskID) -> None:
    """Stop the stage's clock; a stage of unknown length ends as a full bar of its count."""
    shown = bar.tasks[[t.id for t in bar.tasks].index(task)]
    if shown.total is None:
        units = max(int(shown.completed), 1)
        bar.update(task, total=units, completed=units)
    bar.stop_task(task)


def _count_column() -> Any:
    """``done/total``, or the bare count of the units of a stage of unknown length (nothing
    when it reported none)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task: Task) -> Text:
            if task.fields.get("known", True) and task.total is not None:
                return Text(f"{int(task.completed)}/{int(task.total)}", style="progress.download")
            count = int(task.fields.get("count", 0))
            return Text(str(count) if count else "", style="progress.download")

    return Count()


@contextmanager
def progress_stages(*, enabled: bool = True) -> Iterator[Stages]:
    """Stages sharing one display: a rich bar on a terminal's stderr, lines elsewhere."""
    if not enabled or not sys.stderr.isatty():
        yield Stages(enabled=enabled, bar=None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        _count_column(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        yield Stages(enabled=True, bar=bar)


@contextmanager
def step_progress(
    description: str, total: int | None, *, enabled: bool = True
) -> Iterator[Advance]:
    """Report ``total`` steps of ``description`` (module docstring): one stage alone."""
    with progress_stages(enabled=enabled) as stages, stages.stage(description, total) as advance:
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
