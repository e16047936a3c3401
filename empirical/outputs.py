"""Output folders a command may write: never a user's files, one run at a time.

Every command that writes a folder (``hfta verify``, ``hfta attack``, ``hfta immunize``)
marks it as its own with ``MARKER``, a small JSON file naming the command. Before any compute
is spent, ``claim_output`` decides what may happen to ``--out``:

* absent, or an empty folder: it will be created;
* a previous run of the same command (its marker names that command): it will be replaced,
  and the command says so;
* anything else (a file, a folder of the user's, another command's run): refused with one
  line (``HftaInputError``, exit 2), untouched, unless ``force`` is given; ``--force``
  replaces a folder, never a plain file.

``RunLock`` serialises runs on one output: a second run on the same ``--out`` while the first
holds the lock is refused at once with one "busy" line (``OutputBusyError``, exit 2) and
writes nothing. The lock is ``filelock``'s, on a file inside the command's own work folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from filelock import FileLock, Timeout

from theory.errors import HftaInputError

MARKER = ".hfta-output.json"
"""The file that marks a folder as written by an hfta command."""

Disposition = Literal["create", "replace"]


class OutputBusyError(HftaInputError):
    """Another run holds the lock on this output."""


@dataclass(frozen=True)
class OutputPlan:
    """What will happen to an output folder: created, or replacing a previous run."""

    path: Path
    command: str
    disposition: Disposition

    def notice(self) -> str | None:
        """The line a command prints when it replaces a previous run (``None`` otherwise)."""
        if self.disposition == "replace":
            return f"replacing the previous `hfta {self.command}` output in {self.path}"
        return None


def marker_command(path: Path) -> str | None:
    """The command named by ``path``'s marker (``None``: no readable marker)."""
    try:
        content = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    command = content.get("command") if isinstance(content, dict) else None
    return command if isinstance(command, str) else None


def claim_output(
    path: Path, command: str, *, force: bool = False, option: str = "--out"
) -> OutputPlan:
    """Decide, before any compute, what ``command`` may do to ``path`` (see the module doc).

    Raises:
        HftaInputError: ``path`` is a file, or a non-empty folder that is not a previous run
            of ``command`` and ``force`` is not given.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HftaInputError(f"{option} {path}: exists and is not a directory; left untouched")
    if not path.is_dir() or not any(path.iterdir()):
        return OutputPlan(path, command, "create")
    owner = marker_command(path)
    if owner == command or force:
        return OutputPlan(path, command, "replace")
    what = "a folder that no hfta command wrote" if owner is None else f"an `hfta {owner}` output"
    raise HftaInputError(
        f"{option} {path}: {what}; left untouched (choose another {option}, or pass --force "
        "to replace it)"
    )


def claim_work_folder(work: Path, command: str) -> None:
    """Check that ``work`` (``OUT.cache``) is absent, empty or ``command``'s own work folder,
    and mark it so. A folder of the user's under that name is refused (never written to)."""
    work = Path(work)
    owner = f"{command} (work folder)"
    if work.exists() and not work.is_dir():
        raise HftaInputError(f"{work}: the work folder's path holds a file; left untouched")
    if work.is_dir() and any(work.iterdir()) and marker_command(work) != owner:
        raise HftaInputError(
            f"{work}: the work folder of this --out holds files no `hfta {command}` wrote; left "
            "untouched (choose another --out)"
        )
    work.mkdir(parents=True, exist_ok=True)
    if marker_command(work) != owner:
        write_marker(work, owner)


def write_marker(folder: Path, command: str) -> None:
    """Mark ``folder`` (a staging folder about to be published) as ``command``'s output."""
    (folder / MARKER).write_text(json.dumps({"command": command}) + "\n", encoding="utf-8")


def publish(staging: Path, plan: OutputPlan) -> None:
    """Move the finished ``staging`` folder to ``plan.path`` (marked as ``plan.command``'s).

    The destination is checked again first (another process may have written it since the
    plan was made): anything the plan did not allow is refused, and the staging folder kept.
    ``plan.path`` never holds a partial result: the old output, absent for the instant
    between two renames, or the new one.
    """
    destination = plan.path
    current = claim_output(destination, plan.command, force=plan.disposition == "replace")
    write_marker(staging, plan.command)
    ordinary_permissions(staging)
    destination.parent.mkdir(parents=True, exist_ok=True)
    retired: Path | None = None
    if destination.exists():
        if current.disposition == "create":  # an empty folder
            destination.rmdir()
        else:
            retired = Path(
                tempfile.mkdtemp(prefix=f".{destination.name}.old-", dir=destination.parent)
            )
            os.replace(destination, retired / destination.name)
    try:
        os.replace(staging, destination)
    except BaseException:
        if retired is not None and not destination.exists():
            os.replace(retired / destination.name, destination)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def ordinary_permissions(folder: Path) -> None:
    """Give a staged folder the permissions of a freshly made one (``mkdtemp`` makes owner-only
    folders): 0o777 for folders and 0o666 for files, less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


class RunLock:
    """An exclusive, non-blocking lock on one output's work folder (``filelock``).

    ``with RunLock(work, "verify", out):`` creates ``work`` when missing, takes
    ``work/lock`` or raises ``OutputBusyError`` at once.
    """

    def __init__(self, work: Path, command: str, out: Path) -> None:
        self.work = Path(work)
        self.command = command
        self.out = Path(out)
        self._lock: FileLock | None = None

    def __enter__(self) -> RunLock:
        self.work.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.work / "lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise OutputBusyError(
                f"busy: another `hfta {self.command}` is running on {self.out} (lock "
                f"{self.work / 'lock'}); wait for it to finish or choose another --out"
            ) from None
        self._lock = lock
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
