"""Run many attacks, locally or on ray, reusing every attack the store already finished.

``run_attacks(configs, store=...)`` returns one trajectory per configuration, in order. An
attack whose entry is in the ``ResultStore`` is read back, not rerun; every attack that
finishes is written to the store at once, so a run killed at any moment (SIGKILL included)
and started again with the same configurations redoes only the unfinished attacks and ends
with the same trajectories as an uninterrupted run. Configurations that are the same attack
(equal keys) run once.

Executors:

* ``"local"``: in this process, one attack after another (``workers=1``, the default), or
  ``workers`` attacks at a time in a pool of ``workers`` worker processes on this machine
  (forked from a ``forkserver`` that imported the attack code, torch, transformers and the
  model classes once and never ran torch: a fork of a process that already ran torch's
  thread pools may deadlock; ``spawn`` where there is no forkserver), each attack written to
  the store as it finishes;
* ``"ray"``: one ray task per pending attack (``num_cpus = threads`` each), written to the
  store as each finishes. Without ``ray_address`` a local ray instance is started with
  ``ray.init(num_cpus=2, include_dashboard=False)`` and shut down afterwards; with an
  address the tasks go to that cluster (its workers need this package installed and the
  model and data paths readable at the same absolute paths; paths are made absolute first).

Attacks ahead (``AttacksAhead``, the verifier's ``VerifyOptions.overlap``): attacks started
before they are asked for, in one background worker process, while this process does other
work; asked for, the ones the worker has not begun are run here meanwhile. The worker is a
plain fork of this process when that is safe (``_ahead_context``: one thread, torch on one
intra-op thread: no pool to inherit), so it pays no imports; else a forkserver worker as
above. The verifier uses it only when a core is spare (``spare_core``: 1-minute load below
the cores − 0.5): under load two processes lose (below).

Bit-identical results: ``run_attack`` is deterministic for a configuration on a given
machine and thread count, so both executors run every attack with torch's intra-op threads
set to ``threads`` (1 by default; the caller's setting is restored afterwards), and the
trajectories from ray or from worker processes equal the local ones field for field (the
timing aside). With ``c`` cores, ``n`` attacks of equal cost ideally take ``⌈n / min(c,
workers)⌉`` attack-times plus the pool's start-up; ``benchmarks/scaling_bench.py`` measures
it. Where a parallel grid's time goes, and what is done about it (CPU seconds measured on
the 2-core machine while other jobs shared it, the embedded model, 40-step attacks):

* imports: ``empirical.engine.attack`` (torch) costs ≈ 1.8 CPU s and GPT-2's modelling
  code, which transformers imports on the first load, ≈ 2.6 CPU s more. The forkserver
  imports both once (``WORKER_PRELOAD``), so a worker's first attack costs ≈ 2.1-2.3 CPU s,
  not the ≈ 4.4 s of a first attack in a fresh process; ``warm_up_workers`` starts the
  forkserver in the background as soon as a caller knows it will want workers (the
  verifier: before applying the defence; ``scaling_bench``: before reading its grid), so
  those imports overlap the caller's own instead of delaying the first attack; this module
  imports no torch itself (``default_attack``), so the parent of a parallel grid need not;
* threads: each worker runs its attacks on ``threads`` intra-op threads (1 by default), so
  w workers use w · threads cores; a larger ``threads`` is not lowered silently (results are
  deterministic per thread count, and a lower count would change them): choose
  threads × workers ≤ cores;
* per attack: each attack loads the model from disk (the engine's ``run_attack``) and
  generates the embedded data once per process (cached); the configuration and the
  trajectory cross the process boundary as JSON text. An attack costs ≈ 1.2 CPU s (median;
  0.95-1.4) one after another and ≈ 1.45 (1.26-1.56) in each of two concurrent workers: two
  processes share the caches and memory bandwidth of the two cores;
* the machine's own load decides the rest: two workers on two cores that other jobs also
  use get less than two cores (an attack's CPU seconds stay near those figures while its
  wall seconds grow several-fold), so a speed-up > 1 needs the cores to be free enough.
  Measured (``scaling_bench``'s grid child, a fresh process timed whole, sequential then two
  workers): with a 1-minute load of 1.2-1.5 on the two cores, 4 attacks 8.8 → 6.6 s (×1.33),
  8 attacks 14.3 → 8.9 and 16.2 → 9.0 s (×1.6, ×1.8), 16 attacks 28.9 → 16.4 and 24.6 →
  14.8 s (×1.8, ×1.7); the same grids the way this module ran them before (the parent
  importing torch, no warm-up, GPT-2's code imported by each worker's first attack): ×1.03,
  ×1.28-1.29, ×1.14-1.50. With a load of 4-5 (other jobs on both cores) two workers were
  slower than one (×0.6-0.9, either way): what a benchmark then measures is the machine.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Literal

from empirical.engine.attack_config import AttackConfig
from empirical.measurement.trajectory import Trajectory
from empirical.verify.store import ResultStore, canonical_config
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = [
    "AttackFunction",
    "AttacksAhead",
    "ExecutorName",
    "default_attack",
    "run_attacks",
    "run_pending",
    "spare_core",
    "torch_threads",
    "warm_up_workers",
]

ExecutorName = Literal["local", "ray"]
AttackFunction = Callable[[AttackConfig], Trajectory]
"""Runs one attack to its end: ``run_attack`` by default (tests inject stand-ins)."""

LOCAL_RAY_CPUS = 2
WORKER_PRELOAD: tuple[str, ...] = (
    "empirical.engine.attack",
    "empirical.verify.executors",
    "empirical.models.model",
    "transformers.models.gpt2.modeling_gpt2",
)
"""What the forkserver imports once for every worker: the attack loop (torch), the model
loader and GPT-2's modelling code (transformers imports a model's code on first use; the
embedded model is a GPT-2)."""


def default_attack(config: AttackConfig) -> Trajectory:
    """``empirical.engine.attack.run_attack`` (imported on the first call: torch is imported
    only when an attack actually runs)."""
    from empirical.engine.attack import run_attack

    return run_attack(config)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` inside, the previous one restored."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_threads(threads: int, name: str = "threads") -> None:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise HftaInputError(f"{name} must be a positive integer, got {threads!r}")


def check_executor(executor: str, ray_address: str | None, threads: int, workers: int) -> None:
    """Raise ``HftaInputError`` for an unknown executor, an address without ray, or a thread
    or worker count that is not a positive integer."""
    if executor not in ("local", "ray"):
        raise HftaInputError(f"executor must be 'local' or 'ray', not {executor!r}")
    if ray_address is not None and executor != "ray":
        raise HftaInputError("ray_address applies to the ray executor only (executor='ray')")
    _check_threads(threads)
    _check_threads(workers, "workers")


def run_attacks(
    configs: Sequence[AttackConfig],
    *,
    store: ResultStore,
    executor: ExecutorName = "local",
    ray_address: str | None = None,
    progress: bool = True,
    threads: int = 1,
    attack: AttackFunction = default_attack,
    workers: int = 1,
) -> list[Trajectory]:
    """The trajectory of every configuration, in order (see the module docstring).

    ``attack`` runs one attack (default ``run_attack``, through ``default_attack``); for ray
    or worker processes it must be importable by the workers (a module-level function).
    ``workers``: concurrent worker processes of the local executor (1: this process).
    ``progress`` shows a progress bar on stderr.

    Raises:
        HftaInputError: an unknown executor, ``ray_address`` without the ray executor, a bad
            thread or worker count, or bad input in an attack (the first one met; the attacks
            finished before it stay in the store).
    """
    check_executor(executor, ray_address, threads, workers)
    canonical = [canonical_config(c) for c in configs]
    keys = [store.key(c) for c in canonical]
    results: dict[str, Trajectory] = {}
    pending: dict[str, AttackConfig] = {}
    for key, config in zip(keys, canonical, strict=True):
        if key in results or key in pending:
            continue
        stored = store.get(config)
        if stored is None:
            pending[key] = config
        else:
            results[key] = stored
    with _progress_bar(progress) as bar:
        task = bar.add_task("attacks", total=len(results) + len(pending), completed=len(results))

        def finished(key: str, trajectory: Trajectory) -> None:
            store.put(pending[key], trajectory)
            results[key] = trajectory
            bar.advance(task)

        run_pending(pending, finished, executor=executor, workers=workers, threads=threads,
                    attack=attack, ray_address=ray_address)
    return [results[key] for key in keys]


Finished = Callable[[str, Trajectory], None]
Runner = Callable[[Mapping[str, AttackConfig], Finished], None]
"""Runs every attack of a mapping key → configuration, calling ``finished(key, trajectory)``
in the calling process as each one finishes."""


def run_pending(
    pending: Mapping[str, AttackConfig],
    finished: Finished,
    *,
    executor: ExecutorName = "local",
    workers: int = 1,
    threads: int = 1,
    attack: AttackFunction = default_attack,
    ray_address: str | None = None,
) -> None:
    """Run every attack of ``pending`` once on a fresh ``attack_runner`` (see there)."""
    if not pending:
        check_executor(executor, ray_address, threads, workers)
        return
    with attack_runner(executor=executor, workers=min(workers, len(pending)), threads=threads,
                       attack=attack, ray_address=ray_address) as run:
        run(pending, finished)


@contextlib.contextmanager
def attack_runner(
    *,
    executor: ExecutorName = "local",
    workers: int = 1,
    threads: int = 1,
    attack: AttackFunction = default_attack,
    ray_address: str | None = None,
) -> Iterator[Runner]:
    """A ``Runner`` on ``executor`` whose workers live until the block ends, so that many
    rounds of attacks (a concurrent search) pay the workers' start-up once.

    ``finished(key, trajectory)`` is called in completion order (in key order for the local
    executor with one worker). An attack's error is raised from the runner after the
    attacks still running are cancelled.
    """
    check_executor(executor, ray_address, threads, workers)
    if executor == "ray":
        with _ray_session(ray_address) as ray:
            yield lambda pending, finished: _run_ray(
                ray, dict(pending), finished, threads=threads, attack=attack
            )
    elif workers == 1:
        yield lambda pending, finished: _run_local(
            dict(pending), finished, threads=threads, attack=attack
        )
    else:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context())
        try:
            yield lambda pending, finished: _run_processes(
                pool, dict(pending), finished, threads=threads, attack=attack
            )
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _progress_bar(enabled: bool) -> Iterator[Progress]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
    with bar:
        yield bar


def _run_local(
    pending: dict[str, AttackConfig],
    finished: Callable[[str, Trajectory], None],
    *,
    threads: int,
    attack: AttackFunction,
) -> None:
    with torch_threads(threads):
        for key, config in list(pending.items()):
            finished(key, attack(config))


def _worker_context() -> multiprocessing.context.BaseContext:
    """How worker processes start: ``forkserver`` where the platform has it, the server
    having imported ``WORKER_PRELOAD`` once, so each worker is a fork of a process that never
    ran a torch operation (no thread pool to inherit) and skips the imports; else ``spawn``.
    (Measured on this 2-core machine, 8 attacks on 2 workers: 21 s wall with forkserver,
    26-31 s with spawn.)"""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(WORKER_PRELOAD))
        return context
    return multiprocessing.get_context("spawn")


def warm_up_workers(executor: ExecutorName = "local", workers: int = 1) -> None:
    """Start the forkserver of the local worker processes now, in the background, when
    ``workers`` > 1 will be asked for: its imports (``WORKER_PRELOAD``) then overlap the
    caller's own work instead of delaying the first attack. Does nothing otherwise (one
    worker, ray, or a platform without forkserver)."""
    if executor != "local" or workers < 2:
        return
    context = _worker_context()
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _remote_attack(config_json: str, threads: int, attack: AttackFunction) -> str:
    """The body of a worker's task (a process of the pool, a ray task): one attack with
    ``threads`` torch threads, returned as JSON text."""
    with torch_threads(threads):
        trajectory = attack(AttackConfig.model_validate_json(config_json))
    return trajectory.model_dump_json()


def _run_processes(
    pool: ProcessPoolExecutor,
    pending: dict[str, AttackConfig],
    finished: Finished,
    *,
    threads: int,
    attack: AttackFunction,
) -> None:
    """The attacks as tasks of ``pool`` (spawned worker processes), results as they finish."""
    futures: dict[Future[str], str] = {
        pool.submit(_remote_attack, config.model_dump_json(), threads, attack): key
        for key, config in pending.items()
    }
    order = {future: index for index, future in enumerate(futures)}
    waiting = set(futures)
    try:
        while waiting:
            done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=order.__getitem__):
                text = future.result()
                finished(futures[future], Trajectory.model_validate_json(text))
    finally:
        for future in waiting:
            future.cancel()


# ---------------------------------------------------------------------- attacks ahead
#: ``spare_core``: a background worker is used while the 1-minute load average is below the
#: usable cores minus this (the verifier's own process counts about 1)
SPARE_CORE_MARGIN = 0.5


def spare_core() -> bool:
    """Whether a background worker would get a core of its own: at least two usable cores and
    a 1-minute load average below their number minus ``SPARE_CORE_MARGIN``. Two processes on
    cores that other jobs already use lose time (the module docstring; and the worker's
    imports cost ≈ 3-4 CPU s), and the results are the same either way."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cores or 1) < 2:
        return False
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this platform
        return True
    return load < (cores or 1) - SPARE_CORE_MARGIN


#: How often a background worker checks that the process that started it is alive (seconds).
PARENT_CHECK_SECONDS = 0.5


def _exit_with_parent() -> None:
    """A background worker's initializer: exit as soon as the process that started it is gone.
    A plain-``fork`` worker inherits its parent's end of the task pipe, so when the verifier is
    killed (SIGKILL: no cleanup runs) the worker never reads end-of-file and would wait, with
    the verifier's memory, for ever; it is reparented instead, and a daemon thread that sees
    its parent id change ends it."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="hfta-parent-watch", daemon=True).start()


def _ahead_context() -> multiprocessing.context.BaseContext:
    """How the background worker starts: a plain ``fork`` of this process when that is safe,
    else ``_worker_context``. Safe: this is the only thread and torch (if loaded) runs on one
    intra-op thread, so no thread pool or lock of another thread is copied half-way; the worker
    then needs no imports and shares this process's caches (the embedded data, the loaded
    modules), where a forkserver worker pays ≈ 4-5 CPU s of imports and set-up."""
    import sys
    import threading

    torch = sys.modules.get("torch")
    one_thread = torch is None or torch.get_num_threads() == 1
    if one_thread and threading.active_count() == 1:
        with contextlib.suppress(ValueError):
            return multiprocessing.get_context("fork")
    return _worker_context()


class AttacksAhead:
    """Attacks started before they are asked for, in one background worker process, while
    this process does other work (the verifier: its predictions and certificates while the
    grid trains on the other core).

    ``start(configs)`` submits every configuration the store does not hold to a pool of one
    worker (``_ahead_context``; ``threads`` torch threads per attack, so each trajectory
    equals the one this process would compute, as for ``workers``). ``run_attacks`` has
    ``run_attacks``'s signature: for the configurations asked for, the submitted attacks the
    worker has not begun are taken back and run here, at the same time as the worker
    finishes the ones it began; then every result is written to the store and the
    trajectories are returned in order. The pool is shut down once
    nothing submitted is left (``close`` does it at once). A worker's error is raised when
    its attack is asked for.
    """

    def __init__(
        self, store: ResultStore, *, threads: int = 1, attack: AttackFunction = default_attack
    ) -> None:
        _check_threads(threads)
        self.store = store
        self.threads = threads
        self.attack = attack
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[str, tuple[AttackConfig, Future[str]]] = {}

    @property
    def pending(self) -> int:
        """Submitted attacks not collected yet (running, queued or finished)."""
        return len(self._futures)

    def start(self, configs: Sequence[AttackConfig]) -> int:
        """Submit every configuration neither stored nor submitted already; how many were."""
        submitted = 0
        for config in map(canonical_config, configs):
            key = self.store.key(config)
            if key in self._futures or self.store.path(config).is_file():
                continue
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=_ahead_context(), initializer=_exit_with_parent
                )
            future = self._pool.submit(
                _remote_attack, config.model_dump_json(), self.threads, self.attack
            )
            self._futures[key] = (config, future)
            submitted += 1
        return submitted

    def run_attacks(
        self, configs: Sequence[AttackConfig], *, store: ResultStore, **options: Any
    ) -> list[Trajectory]:
        """``run_attacks(configs, store=store, **options)`` with the submitted ones collected
        (the class docstring); ``store`` must be this instance's."""
        if store.directory != self.store.directory:
            raise HftaInputError("attacks ahead: another result store than the one submitted to")
        canonical = [canonical_config(c) for c in configs]
        running: dict[str, tuple[AttackConfig, Future[str]]] = {}
        for key in dict.fromkeys(store.key(c) for c in canonical):
            submitted = self._futures.pop(key, None)
            if submitted is not None and not submitted[1].cancel():
                running[key] = submitted
        if running:  # this process runs the rest while the worker finishes its own
            here = [c for c in canonical if store.key(c) not in running]
            run_attacks(here, store=store, **options)
            for config, future in running.values():
                store.put(config, Trajectory.model_validate_json(future.result()))
        if not self._futures:
            self.close()
        return run_attacks(canonical, store=store, **options)

    def close(self) -> None:
        """Cancel what the worker has not begun and shut the pool down (waiting for the
        attack it is running)."""
        self._futures.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# ---------------------------------------------------------------------- ray


@contextlib.contextmanager
def _ray_session(address: str | None) -> Iterator[Any]:
    """ray, initialised: at ``address``, or a local instance of ``LOCAL_RAY_CPUS`` CPUs.

    A ray session this function started is shut down on exit; one already running is kept.
    """
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is an optional dependency
        raise HftaInputError("the ray executor needs ray: pip install 'ray[default]'") from None
    started = False
    if not ray.is_initialized():
        options: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "log_to_driver": False,
        }
        try:
            if address is None:
                ray.init(num_cpus=LOCAL_RAY_CPUS, **options)
            else:
                ray.init(address=address, **options)
        except ConnectionError as exc:
            raise HftaInputError(f"ray: cannot connect to {address}: {exc}") from None
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _run_ray(
    ray: Any,
    pending: dict[str, AttackConfig],
    finished: Finished,
    *,
    threads: int,
    attack: AttackFunction,
) -> None:
    if not pending:
        return
    remote = ray.remote(num_cpus=threads, max_retries=0)(_remote_attack)
    futures = {
        remote.remote(config.model_dump_json(), threads, attack): key
        for key, config in pending.items()
    }
    waiting = list(futures)
    try:
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            for future in done:
                try:
                    text = ray.get(future)
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, HftaInputError):
                        raise HftaInputError(str(cause)) from None
                    raise
                finished(futures[future], Trajectory.model_validate_json(text))
    finally:
        for future in waiting:
            with contextlib.suppress(Exception):
                ray.cancel(future, force=True)
