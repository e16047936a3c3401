"""``verify_claim(claim, out)``: what ``hfta verify`` does, as one Python call.

1. load the claim (a TOML file, or a ``Claim`` already parsed; default the bundled
   ``claims/demo.toml``) and claim the output folder (``empirical.outputs.claim_output``: an
   existing folder that is not a previous ``hfta verify`` output is refused unless
   ``force``);
2. ``prepare`` it: the data, the model folders, the defence, checked before anything is
   written (bad input raises ``HftaInputError``);
3. claim the work folder ``OUT.cache`` (``claim_work_folder``) and take its lock
   (``RunLock``: a second run on the same output is refused as busy);
4. ``verify`` (``empirical.verify.stages``), caching its attacks in ``OUT.cache``;
5. draw the figures, write ``verdict.json``, ``report.md``, the figures and trajectories in
   a staging folder (``empirical.verify.report.write_outputs``) and ``publish`` it as ``OUT``
   atomically.

The returned ``VerifyResult`` holds the verdict document as written (``record``), the
outcome the report was rendered from, and the exit code ``hfta verify`` gives for it (0 when
every claimed condition holds, 1 otherwise).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empirical.verify.claim import Claim
from empirical.verify.outcome import VerifyOutcome
from empirical.verify.stages import Services, prepare, verify
from empirical.verify.workspace import (
    Log,
    VerifyOptions,
    Workspace,
    device_root,
    silent,
    use_torch_threads,
    work_directory,
)
from theory.errors import HftaInputError
from theory.verdict import Status

__all__ = ["EXECUTORS", "VerifyResult", "check_device", "check_options", "verify_claim"]

EXECUTORS: tuple[str, ...] = ("local", "ray")
"""Where the attacks may run (``VerifyOptions.executor``)."""


@dataclass(frozen=True)
class VerifyResult:
    """A published verification: the verdict document as written to ``out/verdict.json``
    (``record``), the outcome it renders, where it went and how long it took."""

    record: dict[str, Any]
    outcome: VerifyOutcome
    out: Path
    work: Path
    seconds: float

    @property
    def status(self) -> Status:
        """The claim's verdict (``judge.overall_status`` of the claimed conditions)."""
        return self.outcome.status

    @property
    def exit_code(self) -> int:
        """``hfta verify``'s exit code: 0 when every claimed condition holds, 1 otherwise."""
        return self.outcome.exit_code


def check_options(options: VerifyOptions) -> None:
    """Refuse options that cannot run (``HftaInputError``, one line)."""
    if options.executor not in EXECUTORS:
        raise HftaInputError(f"executor must be local or ray, not {options.executor!r}")
    if options.ray_address is not None and options.executor != "ray":
        raise HftaInputError("a ray address needs the ray executor")
    if options.threads < 1:
        raise HftaInputError(f"threads must be at least 1, got {options.threads}")
    check_device(options)


def check_device(options: VerifyOptions) -> None:
    """Refuse a device that cannot run (``HftaInputError``, one line): one that is not cpu or
    cuda, cuda where torch sees no CUDA device (torch imported only then: a CPU run that hits
    every cache imports none), and cuda with several workers, the ray executor or a
    background worker: the device's runs are one process's, one after another."""
    from empirical.engine.attack_config import checked_device

    if options.device == "cpu":
        return
    if options.device == "cuda" and (options.executor != "local" or options.workers != 1):
        raise HftaInputError(
            "--device cuda runs every attack in this process: use the local executor and "
            "one worker"
        )
    checked_device(options.device)


def quiet_libraries(threads: int) -> None:
    """torch's intra-op threads set to ``threads`` (``use_torch_threads``) and transformers'
    progress bars off, at once for a library already imported, else when it is imported
    (``HF_HUB_DISABLE_PROGRESS_BARS``, which transformers reads on import)."""
    use_torch_threads(threads)
    transformers = sys.modules.get("transformers")
    if transformers is None:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    else:
        transformers.utils.logging.disable_progress_bar()


def resolve_claim(
    claim: Claim | Path | str | None, claim_file: Path | None
) -> tuple[Claim, Path | None]:
    """The parsed claim and the file its relative paths resolve against."""
    from empirical.verify.claim import DEFAULT_CLAIM, load_claim

    if isinstance(claim, Claim):
        return claim, claim_file
    path = DEFAULT_CLAIM if claim is None else Path(claim)
    if claim is None and not path.is_file():
        raise HftaInputError(
            f"no claim given and the bundled default {path} is missing (give a claim file)"
        )
    return load_claim(path), path


def default_output() -> Path:
    """``runs/verify-<local time>`` under the working directory."""
    return Path("runs") / time.strftime("verify-%Y%m%d-%H%M%S")


def verify_claim(
    claim: Claim | Path | str | None = None,
    out: Path | str | None = None,
    *,
    force: bool = False,
    options: VerifyOptions | None = None,
    services: Services | None = None,
    claim_file: Path | None = None,
    log: Log = silent,
    on_locked: Callable[[Path], None] | None = None,
) -> VerifyResult:
    """Verify ``claim`` and publish the verdict in ``out`` (module docstring).

    ``claim``: a claim file, a parsed ``Claim`` (its relative data and model paths resolve
    against ``claim_file``), or None for the bundled demo claim. ``out``: the output folder
    (default ``runs/verify-<time>``); its work folder is ``OUT.cache``. ``options``: how to
    run (executor, threads, progress bars); ``services``: stand-in engines for tests.
    ``on_locked`` is called with the work folder once its lock is held (``hfta verify``
    points its error log there). Sets torch's intra-op threads to ``options.threads`` and
    silences transformers' progress bars, as ``hfta verify`` does, without importing either
    (``quiet_libraries``): a rerun whose every stage is cached imports neither.
    """
    from empirical.outputs import RunLock, claim_output, claim_work_folder, publish

    options = options or VerifyOptions()
    check_options(options)
    parsed, source = resolve_claim(claim, claim_file)
    destination = default_output() if out is None else Path(out)
    claim_output(destination, "verify", force=force)
    prepared = prepare(parsed, source)
    work = work_directory(destination)
    claim_work_folder(work, "verify")
    quiet_libraries(options.threads)
    if options.workers > 1:
        from empirical.verify.executors import warm_up_workers

        warm_up_workers(options.executor, options.workers)  # its imports overlap the defence
    with RunLock(work, "verify", destination):
        plan = claim_output(destination, "verify", force=force)  # again, under the lock
        notice = plan.notice()
        if notice is not None:
            log(notice)
        if on_locked is not None:
            on_locked(work)
        started = time.perf_counter()
        workspace = Workspace(device_root(work, options.device))
        workspace.root.mkdir(exist_ok=True)
        outcome = verify(prepared, workspace, options=options, services=services, log=log)
        log("drawing the figures and writing the report")
        from empirical.verify.figures import figures
        from empirical.verify.report import write_outputs

        staging = Path(tempfile.mkdtemp(prefix="partial-", dir=work))
        record = write_outputs(outcome, staging, figures(outcome))
        publish(staging, plan)
    return VerifyResult(
        record=record,
        outcome=outcome,
        out=destination,
        work=work,
        seconds=time.perf_counter() - started,
    )
