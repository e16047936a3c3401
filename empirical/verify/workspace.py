"""The verifier's work directory, its content digests and how a verification runs.

Work directory (``work_directory(out)`` = ``OUT.cache``, next to the output): the attack
store (``attacks/``, ``empirical.verify.store.ResultStore``), the optuna study
(``search.sqlite3``), the data files the attacks read (``data/``, named by the sha256 of
their content), the immunized models (``models/<defence>-<key>``, keyed by
``defence.defence_cache_key``) and the theory measurements (``theory/<attack key>.json``),
the attacked model's start point (``theory/start-<key>.json``, ``cached_start_point``) and the
stability measurement (``theory/stability-<key>.json``). Deleting it costs only
recomputation; keeping it makes a rerun reuse all of it, so that a rerun whose every stage
hits its cache loads no model and never imports transformers.

torch's intra-op threads: ``use_torch_threads(n)`` sets them for the rest of the process
without importing torch (through ``OMP_NUM_THREADS`` when torch is not loaded yet).

Claiming the output and work folders, the run lock and the atomic publication of the output
live in ``empirical.outputs`` (``claim_output``, ``claim_work_folder``, ``RunLock``,
``publish``); ``empirical.verify.api.verify_claim`` uses them around ``verify``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empirical.datasets.data import Example, fingerprint, save_examples
from empirical.verify.store import ResultStore

if TYPE_CHECKING:
    from empirical.engine.attack_config import DeviceName
    from empirical.verify.executors import ExecutorName

__all__ = [
    "WORK_FORMAT",
    "Log",
    "VerifyOptions",
    "Workspace",
    "cached_start_point",
    "device_root",
    "directory_digest",
    "silent",
    "threads",
    "use_torch_threads",
    "work_directory",
    "write_json",
]

WORK_FORMAT = 1
"""Version of the work directory's layout (part of the immunized-model cache key)."""

Log = Callable[[str], None]
"""Where the verifier says what it is doing (one line per stage)."""


def silent(message: str) -> None:
    """A ``Log`` that drops every message."""


@dataclass(frozen=True)
class VerifyOptions:
    """How to run (not what to verify): executor, ray address, progress bars, torch threads,
    and ``workers``: attacks (and optuna trials) run at once in local worker processes (1: one
    after another in this process; the results are the same, ``empirical.verify.executors``).
    ``overlap`` (with the local executor and one worker): the threat model's grid trains in one
    background worker process while this one computes the predictions and certificates
    (``executors.AttacksAhead``; the same trajectories, on two cores; False: one after another
    in this process). ``device``: where every model of the verification is loaded and trained
    (the defence, the attacks, the predictions' and certificates' passes, the theory's
    measurements): ``"cpu"`` or ``"cuda"``; with ``"cuda"`` everything runs in this process,
    one attack after another (one local worker, no overlap: ``api.check_options``), and the
    work directory is ``OUT.cache/cuda`` (``device_root``), so that nothing computed on one
    device is reused by a run on another (their kernels round differently)."""

    executor: ExecutorName = "local"
    ray_address: str | None = None
    progress: bool = True
    threads: int = 1
    workers: int = 1
    overlap: bool = True
    device: DeviceName = "cpu"


def work_directory(out: Path) -> Path:
    """The work directory of an output directory: ``OUT.cache`` next to it."""
    out = Path(out).resolve()
    return out.with_name(out.name + ".cache")


def device_root(work: Path, device: str) -> Path:
    """The root of the caches of a verification on ``device``: the work directory itself on
    the CPU (the layout of every earlier run), ``work/<device>`` elsewhere."""
    return work if device == "cpu" else work / device


@dataclass(frozen=True)
class Workspace:
    """The work directory's layout (see the module docstring)."""

    root: Path

    @property
    def store(self) -> ResultStore:
        return ResultStore(self.root / "attacks")

    @property
    def study(self) -> Path:
        return self.root / "search.sqlite3"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def theory(self) -> Path:
        return self.root / "theory"

    def data_file(self, split: str, examples: Sequence[Example]) -> Path:
        """A JSONL copy of ``examples`` named by its content (written once, atomically).

        The name is ``SPLIT-H`` with H the first 16 hex digits of sha256 over, per example,
        its fingerprint, its safety bit and its category, in order."""
        digest = hashlib.sha256()
        for example in examples:
            digest.update(fingerprint(example).encode())
            digest.update(b"1" if example.is_safe else b"0")
            digest.update(example.category.encode())
        path = self.root / "data" / f"{split}-{digest.hexdigest()[:16]}.jsonl"
        if not path.is_file():
            save_examples(examples, path)
        return path


def directory_digest(path: Path | None) -> str:
    """sha256 over the files of a model directory (relative names and the sha256 of each
    file's bytes, sorted by name); ``None`` is the embedded model."""
    from empirical.models.model import EMBEDDED_MODEL_DIR

    directory = EMBEDDED_MODEL_DIR if path is None else path
    digest = hashlib.sha256()
    for item in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(directory)).encode())
        digest.update(hashlib.sha256(item.read_bytes()).digest())
    return digest.hexdigest()


def model_data_key(model: Path | None, data: Path, **settings: Any) -> str:
    """A cache key for what a model measured on a data file gives: sha256 (24 hex digits) over
    the model directory (``directory_digest``), the data file's bytes and ``settings`` (JSON;
    a cache-format version among them)."""
    text = json.dumps(
        {
            "model": directory_digest(model),
            "data": hashlib.sha256(data.read_bytes()).hexdigest(),
            **settings,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as JSON to ``path`` atomically (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=1, sort_keys=True)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` inside the block (restored after)."""
    from empirical.verify.executors import torch_threads

    with torch_threads(count):
        yield


def use_torch_threads(count: int) -> None:
    """torch's intra-op threads set to ``count`` for the rest of the process: at once when
    torch is loaded, else through ``OMP_NUM_THREADS``, which torch reads when it is first
    imported (so that a run that never computes never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)
    else:
        os.environ["OMP_NUM_THREADS"] = str(count)


START_FORMAT = 1
"""Version of the start-point cache entries (bump when they change meaning)."""


def cached_start_point(workspace: Workspace, model: Path | None) -> tuple[int, float]:
    """``empirical.verify.theory.start_point`` of ``model`` (d and ‖θ_0‖ over the trainable
    parameters, as a full fine-tuning attack sees them), cached as
    ``theory/start-<key>.json`` with key the first 24 hex digits of sha256 over the model's
    ``directory_digest`` and ``START_FORMAT``: a rerun reads two numbers instead of loading
    the model."""
    material = json.dumps({"model": directory_digest(model), "format": START_FORMAT})
    key = hashlib.sha256(material.encode()).hexdigest()[:24]
    cache = workspace.theory / f"start-{key}.json"
    if cache.is_file():
        entry = json.loads(cache.read_text(encoding="utf-8"))
        return int(entry["d"]), float(entry["norm"])
    from empirical.verify.theory import start_point

    d, norm = start_point(model)
    write_json(cache, {"d": d, "norm": norm})
    return d, norm
