"""``verify(prepared, workspace)``: the verifier as the list of its stages.

Each stage returns a record of ``empirical.verify.outcome``:

0. ``prepare``: the claim, its data, its model folders and its defence checked before
   anything is written (``Prepared``);
1. ``immunize`` (``empirical.verify.defence``): M*, the claimed defence applied to M, cached
   by content, or M* as given (``DefenceOutcome``);
2. ``plan_attacks`` (``empirical.verify.plan``); ``predict`` (``empirical.verify.predict``):
   every planned attack's certified minimum steps to break M*, stated before any attack
   runs (``Predictions``, compared with the measured attacks at the end); then
   ``attack_grid``, ``search_attacks`` and
   ``attack_cross_domain``: the threat model's grid, the optuna search for the attack that
   breaks M* earliest, the cross-domain grid, every attack through the ``ResultStore`` so
   that a killed run resumes (``AttackOutcome``); with a spare core the harmless
   trainability runs start in a background worker while the predictions are computed, and
   the grid's attacks as soon as the predictions are stated, while the certificates are
   (``Attacker.start``, ``executors.AttacksAhead``): no attack on M* starts before its
   prediction;
3. ``resistance`` (``empirical.verify.judge``, the one place a verdict is decided): the
   resistance-like conditions and the worst attack (``ResistanceOutcome``);
   ``attack_original``: the worst attack once more on the original M, which it must break
   (``OriginalOutcome``); ``measure_stability`` and ``measure_trainability``
   (``StabilityOutcome``, ``TrainabilityOutcome``);
4. ``check_theory`` (``empirical.verify.theory``): every attack on M* against the proved
   bounds, and each check's power on them (``TheoryOutcome``);
5. ``VerifyOutcome``: all of it, the predictions compared with the attacks, the warnings,
   the environment and the timing.

Figures and the verdict document (``empirical.verify.figures``, ``empirical.verify.report``)
are written by the caller; ``empirical.verify.api.verify_claim`` does the whole of
``hfta verify`` (docs/science.md §3-§4 for why the attacker is adaptive and the statistics
exact).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from empirical.engine.attack_config import AttackConfig, DeviceName
from empirical.measurement.trajectory import Environment, Trajectory
from empirical.progress import step_progress
from empirical.verify.certified import Certification, certify_classes
from empirical.verify.claim import Claim, ClaimData, resolve_data, resolve_path
from empirical.verify.defence import ApplyDefence, defence_config, defence_data, immunize
from empirical.verify.executors import AttacksAhead, ExecutorName
from empirical.verify.judge import (
    judge_original,
    judge_stability,
    judge_trainability,
    resistance,
)
from empirical.verify.outcome import (
    AttackOutcome,
    AttackRun,
    OriginalOutcome,
    Prepared,
    RunFinding,
    SearchOutcome,
    StabilityOutcome,
    TheoryOutcome,
    TrainabilityOutcome,
    VerifyOutcome,
)
from empirical.verify.plan import AttackPlan, named_runs, plan_attacks, trainability_configs
from empirical.verify.predict import PredictAttacks, Predictions, compare, warnings_of
from empirical.verify.store import ResultStore, canonical_json
from empirical.verify.theory import check_theory
from empirical.verify.workspace import (
    Log,
    VerifyOptions,
    Workspace,
    cached_start_point,
    directory_digest,
    silent,
    threads,
    write_json,
)
from theory.errors import HftaInputError
from theory.verdict import Verdict

__all__ = [
    "Attacker",
    "RunAttacks",
    "Services",
    "attack_cross_domain",
    "attack_grid",
    "attack_original",
    "attacker_for",
    "environment",
    "measure_stability",
    "measure_trainability",
    "prepare",
    "search_attacks",
    "trainability_plan",
    "verify",
]


class RunAttacks(Protocol):
    """Run many attacks through a store (``empirical.verify.executors.run_attacks``)."""

    def __call__(
        self,
        configs: Sequence[AttackConfig],
        *,
        store: ResultStore,
        executor: ExecutorName = ...,
        ray_address: str | None = ...,
        progress: bool = ...,
        threads: int = ...,
        workers: int = ...,
    ) -> list[Trajectory]: ...


def _default_run_attacks() -> RunAttacks:
    from empirical.verify.executors import run_attacks

    return run_attacks


def _default_predict() -> PredictAttacks:
    from empirical.verify.predict import predict_attacks

    return predict_attacks


@dataclass(frozen=True)
class Services:
    """The engines ``verify`` drives; tests inject stand-ins (a fake defence, say).

    ``run_attacks``: ``empirical.verify.executors.run_attacks``; ``apply_defence``:
    ``apply_registered_defence`` (the ``empirical.defences`` registry); ``measure_path``:
    whether the worst attack may be rerun with ``empirical.certify.attack_and_measure``;
    ``predict``: the predictions before the attacks (``predict.predict_attacks``).
    """

    run_attacks: RunAttacks = field(default_factory=_default_run_attacks)
    predict: PredictAttacks = field(default_factory=_default_predict)
    apply_defence: ApplyDefence | None = None
    measure_path: bool = True


# --------------------------------------------------------------------------- 0. prepare
def _model_path(claim_file: Path | None, value: str | None, field_name: str) -> Path | None:
    """The claim's model folder, checked whole before anything runs
    (``empirical.models.model.check_model_directory``: config, tokenizer, safetensors, shapes;
    the embedded model, None, is not checked and transformers is not imported)."""
    path = resolve_path(claim_file, value)
    if path is not None:
        from empirical.models.model import check_model_directory

        check_model_directory(path, field_name)
    return path


def prepare(claim: Claim, claim_file: Path | None = None) -> Prepared:
    """Load and check everything the claim names (data, model paths, defence, optional
    dependencies) so that bad input fails before any file is written."""
    data = resolve_data(claim, claim_file)
    model = _model_path(claim_file, claim.model.path, "model.path")
    original = _model_path(claim_file, claim.model.original_path, "model.original_path")
    hyperparameters: dict[str, Any] = dict(claim.defence.hyperparameters)
    if claim.defence.applies:
        hyperparameters = defence_config(claim.defence.name, hyperparameters).model_dump(
            mode="json"
        )
        defence_data(data)  # the defence's data must be usable before anything runs
    if claim.search.strategy != "grid":
        try:
            import optuna  # noqa: F401
        except ImportError:  # pragma: no cover - optuna is a dependency of the verifier
            raise HftaInputError("search.strategy needs optuna: pip install optuna") from None
    return Prepared(claim, claim_file, data, model, original, hyperparameters)


# --------------------------------------------------------------------------- 2. attacks
@dataclass(frozen=True)
class Attacker:
    """``Services.run_attacks`` bound to the work directory's store and the run options."""

    run_attacks: RunAttacks
    store: ResultStore
    options: VerifyOptions
    ahead: AttacksAhead | None = None

    def start(self, configs: Sequence[AttackConfig]) -> None:
        """``configs`` started in the background worker (``ahead``; none: nothing to do):
        they train while this process works."""
        if self.ahead is not None:
            self.ahead.start(configs)

    def __call__(self, configs: Sequence[AttackConfig]) -> list[Trajectory]:
        parallel = {"workers": self.options.workers} if self.options.workers != 1 else {}
        ahead = self.ahead
        run = ahead.run_attacks if ahead is not None and ahead.pending else self.run_attacks
        return run(
            configs,
            store=self.store,
            executor=self.options.executor,
            ray_address=self.options.ray_address,
            progress=self.options.progress,
            threads=self.options.threads,
            **parallel,
        )


def attacker_for(services: Services, workspace: Workspace, options: VerifyOptions) -> Attacker:
    """The verifier's ``Attacker``: with ``options.overlap``, the local executor, one worker,
    the default ``run_attacks`` and a spare core (``executors.spare_core``), one that can start
    attacks ahead in a background worker (``executors.AttacksAhead``)."""
    from empirical.verify.executors import run_attacks, spare_core

    ahead = None
    local = options.executor == "local" and options.workers == 1 and options.device == "cpu"
    if options.overlap and local and services.run_attacks is run_attacks and spare_core():
        ahead = AttacksAhead(workspace.store, threads=options.threads)
    return Attacker(services.run_attacks, workspace.store, options, ahead)


def attack_grid(plan: AttackPlan, attacker: Attacker, log: Log = silent) -> list[AttackRun]:
    """The threat model's grid on M* (``grid-000``, ...), when the strategy includes it."""
    if not plan.run_grid:
        return []
    log(f"attacking M* with the threat model's grid: {len(plan.grid)} attacks")
    return named_runs("grid", "grid", plan.grid, attacker(plan.grid))


def search_attacks(
    claim: Claim,
    plan: AttackPlan,
    workspace: Workspace,
    known: Sequence[AttackRun],
    options: VerifyOptions,
    log: Log = silent,
) -> SearchOutcome | None:
    """The seeded optuna search for the attack that breaks M* earliest (``search-NNN``: its
    trials not among ``known``), resumable from the work directory's study."""
    if plan.search is None:
        return None
    from empirical.verify.search import search_worst_case

    log(f"searching the threat model with optuna: {claim.search.trials} trials")
    store = workspace.store
    result = search_worst_case(
        plan.search,
        store=store,
        storage=workspace.study,
        n_trials=claim.search.trials,
        seed=claim.search.seed,
        pruner=claim.search.pruner,
        objective="earliest-break",
        threshold=claim.harm.phi,
        threads=options.threads,
        progress=options.progress,
        workers=options.workers,
        executor=options.executor,
        ray_address=options.ray_address,
    )
    keys = {store.key(r.config) for r in known}
    runs: list[AttackRun] = []
    for trial in result.trials:
        key = store.key(trial.config)
        trajectory = store.get(trial.config)
        if trajectory is None or key in keys:
            continue
        keys.add(key)
        runs.append(AttackRun("search", f"search-{trial.number:03d}", trial.config, trajectory))
    return SearchOutcome(result=result, runs=runs)


def attack_cross_domain(
    plan: AttackPlan, attacker: Attacker, log: Log = silent
) -> list[AttackRun]:
    """The grid on the cross-domain split (``cross-000``, ...), when the claim asks for it."""
    if not plan.cross:
        return []
    log(f"cross-domain attacks on M*: {len(plan.cross)}")
    return named_runs("cross_domain", "cross", plan.cross, attacker(plan.cross))


# --------------------------------------------------------------------------- 3. the rest
def attack_original(
    prepared: Prepared, worst: RunFinding | None, attacker: Attacker, log: Log = silent
) -> OriginalOutcome:
    """The worst attack once more on the original M, judged by ``judge.judge_original``."""
    if worst is None or not prepared.has_original:
        return OriginalOutcome(run=None)
    config = worst.run.config.model_copy(update={"model": prepared.original_model})
    log("the worst attack on the original model M")
    (trajectory,) = attacker([config])
    run = AttackRun("original", "original-000", config, trajectory)
    return OriginalOutcome(run=run, warnings=judge_original(prepared.claim, trajectory))


STABILITY_FORMAT = 1
"""Version of the stability cache entries (bump when they change meaning)."""


def measure_stability(
    claim: Claim,
    data: ClaimData,
    original: Path | None,
    immunized: Path | None,
    options: VerifyOptions,
    log: Log = silent,
    workspace: Workspace | None = None,
) -> StabilityOutcome | None:
    """Theory's ``Stability`` of M* against M on the reference data (when asked for).

    With a ``workspace``, the outcome is cached as ``theory/stability-<key>.json``, the key
    the first 24 hex digits of sha256 over the ``directory_digest`` of M and of M*, the
    reference examples, the claim's stability section and confidence, and
    ``STABILITY_FORMAT``: a rerun with the same inputs loads neither model."""
    if "stability" not in set(claim.conditions.all):
        return None
    cache: Path | None = None
    if workspace is not None:
        material = canonical_json({
            "format": STABILITY_FORMAT,
            "original": directory_digest(original),
            "immunized": directory_digest(immunized),
            "reference": [e.model_dump(mode="json") for e in data.reference],
            "stability": None if claim.stability is None else claim.stability.model_dump(),
            "alpha": claim.alpha,
        })
        key = hashlib.sha256(material.encode()).hexdigest()[:24]
        cache = workspace.theory / f"stability-{key}.json"
        if cache.is_file():
            entry = json.loads(cache.read_text(encoding="utf-8"))
            return StabilityOutcome(
                verdict=Verdict.model_validate(entry["verdict"]), values=entry["values"]
            )
    from empirical.models.model import load_model

    log("measuring stability on the reference data")
    with threads(options.threads):
        verdict, values = judge_stability(
            claim,
            load_model(original, device=options.device),
            load_model(immunized, device=options.device),
            data.reference,
        )
    if cache is not None:
        write_json(cache, {"verdict": verdict.model_dump(mode="json"), "values": values})
    return StabilityOutcome(verdict=verdict, values=values)


def trainability_plan(
    claim: Claim,
    data: ClaimData,
    workspace: Workspace,
    original: Path | None,
    immunized: Path | None,
    device: DeviceName = "cpu",
) -> list[AttackConfig]:
    """The harmless fine-tuning of M and of M* (``plan.trainability_configs`` on the work
    directory's copies of the trainability data, on ``device``); none when trainability is
    not asked for."""
    if "trainability" not in set(claim.conditions.all):
        return []
    train = workspace.data_file("trainability_train", data.trainability_train)
    evaluation = workspace.data_file("trainability_evaluation", data.trainability_evaluation)
    return list(trainability_configs(claim, original, immunized, train, evaluation, device))


def measure_trainability(
    claim: Claim,
    data: ClaimData,
    workspace: Workspace,
    original: Path | None,
    immunized: Path | None,
    attacker: Attacker,
    log: Log = silent,
    device: DeviceName = "cpu",
) -> TrainabilityOutcome | None:
    """The same harmless fine-tuning of M and M*, judged by theory's ``Trainability``."""
    configs = trainability_plan(claim, data, workspace, original, immunized, device)
    if not configs:
        return None
    log("harmless fine-tuning of M and M* (trainability)")
    results = attacker(configs)
    runs = [
        AttackRun("trainability", "trainability-original", configs[0], results[0]),
        AttackRun("trainability", "trainability-immunized", configs[1], results[1]),
    ]
    return TrainabilityOutcome(
        verdict=judge_trainability(claim, results[0], results[1]), runs=runs
    )


# --------------------------------------------------------------------------- 5. the outcome
def environment(options: VerifyOptions) -> dict[str, Any]:
    """Where the verification ran: python, platform, device, library versions, executor."""
    import platform
    from importlib import metadata

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    record = Environment.current(options.device, "float32").model_dump()
    # the installed versions, read without importing the packages (a cached run loads none)
    record.update(torch=version("torch"), transformers=version("transformers"))
    record.update(threads=options.threads)  # set by verify_claim (``use_torch_threads``)
    packages = ("numpy", "scipy", "sympy", "transformers", "peft", "optuna", "ray")
    record.update(
        versions={package: version(package) for package in packages},
        torch_threads=options.threads,
        torch_version=version("torch"),
        executor=options.executor,
        ray_address=options.ray_address,
        machine=platform.machine(),
    )
    return record


class Clock:
    """Wall seconds per stage (each lap since the previous one) and the CPU seconds in all."""

    def __init__(self) -> None:
        self.timing: dict[str, float] = {}
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timing[name] = round(now - self._wall, 3)
        self._wall = now

    def total(self) -> dict[str, float]:
        return {**self.timing, "cpu_seconds": round(time.process_time() - self._cpu, 3)}


def _warnings(
    original: OriginalOutcome,
    theory: TheoryOutcome,
    predictions: Predictions,
    certified: Certification | None,
) -> list[str]:
    """What the report must say loudly: bound violations first (T11 contradicted by a
    certified class's strongest attack among them), then predictions the attacks
    contradicted, then a worst attack that does not break M, then a rerun that did not
    reproduce the attack, then a certificate the aligned baseline gets too."""
    found = [*warnings_of(predictions), *original.warnings]
    for item in [] if certified is None else certified.classes:
        if item.status == "certified" and not item.baseline_refused:
            found.append(f"certificate without a control: {item.text}")
    if certified is not None and certified.violations:
        found.insert(
            0,
            f"CERTIFICATE CONTRADICTED: {certified.violations} findings on the strongest attacks "
            "of certified classes contradict T11 (harm_radius): an assumption fails or a bug",
        )
    if theory.reproduced is False:
        found.append(
            "rerunning the worst attack to measure its constants gave a different trajectory: "
            "the attack is not deterministic on this machine"
        )
    if theory.violations:
        found.insert(
            0,
            f"BOUND VIOLATIONS: {theory.violations} measured inequalities contradict a proved "
            "bound with the measured constants: a constant was mis-estimated or there is a bug",
        )
    return found


# --------------------------------------------------------------------------- verify
def before_attacks(
    prepared: Prepared,
    plan: AttackPlan,
    workspace: Workspace,
    immunized: Path | None,
    attacker: Attacker,
    services: Services,
    options: VerifyOptions,
    log: Log = silent,
) -> tuple[Predictions, Certification | None]:
    """What is stated before any attack on M* runs: the planned attacks' predictions
    (``empirical.verify.predict``; the grid may start in the background worker once they are
    stated) and the declared classes' certificates (``empirical.verify.certified``), each a
    progress stage."""
    claim, data = prepared.claim, prepared.data
    with step_progress("predictions before the attacks", None, enabled=options.progress):
        predicted = services.predict(claim, data, plan, workspace, immunized, log)
    attacker.start([*(plan.grid if plan.run_grid else []), *plan.cross])  # stated: may start
    with step_progress("certificates of the declared classes", None, enabled=options.progress):
        certified = certify_classes(
            claim, plan.base, workspace, immunized, prepared.original_model, attacker, log
        )
    return predicted, certified


def verify(
    prepared: Prepared,
    workspace: Workspace,
    *,
    options: VerifyOptions | None = None,
    services: Services | None = None,
    log: Log = silent,
) -> VerifyOutcome:
    """Run the whole verification of a prepared claim, stage by stage (module docstring).

    Attacks, searches, immunized models and theory measurements go to ``workspace`` (reused
    by a rerun); nothing is written to the output directory here.
    """
    options, services = options or VerifyOptions(), services or Services()
    claim, data, clock = prepared.claim, prepared.data, Clock()
    attacker = attacker_for(services, workspace, options)
    defence = immunize(prepared, workspace, apply=services.apply_defence, log=log,
                       thread_count=options.threads, progress=options.progress,
                       device=options.device)
    immunized, original = defence.immunized_path, prepared.original_model
    clock.lap("defence")
    plan = plan_attacks(claim, data, workspace, immunized, options.device)
    attacker.start(trainability_plan(claim, data, workspace, original, immunized, options.device))
    predicted, certified = before_attacks(prepared, plan, workspace, immunized, attacker,
                                          services, options, log)
    clock.lap("predict")
    grid = attack_grid(plan, attacker, log)
    clock.lap("grid")
    search = search_attacks(claim, plan, workspace, grid, options, log)
    clock.lap("search")
    cross = attack_cross_domain(plan, attacker, log)
    clock.lap("cross_domain")
    in_domain = [*grid, *(search.runs if search is not None else [])]
    attacks = AttackOutcome(in_domain, cross, search, grid_size=len(plan.grid))
    judged = resistance(claim, data, attacks.in_domain, attacks.cross)
    attacked_original = attack_original(prepared, judged.worst, attacker, log)
    clock.lap("original")
    stability = measure_stability(claim, data, original, immunized, options, log, workspace)
    clock.lap("stability")
    trainability = measure_trainability(claim, data, workspace, original, immunized, attacker,
                                        log, options.device)
    clock.lap("trainability")
    attacked = attacks.attacked
    theory = check_theory(
        claim,
        attacked,
        judged.worst,
        workspace,
        measure_path=services.measure_path,
        theta0_norm=cached_start_point(workspace, immunized)[1] if attacked else None,
        log=log,
        progress=options.progress,
    )
    clock.lap("theory")
    conditions = dict(judged.conditions)
    if stability is not None:
        conditions["stability"] = stability.verdict
    if trainability is not None:
        conditions["trainability"] = trainability.verdict
    original_runs = [] if attacked_original.run is None else [attacked_original.run]
    predictions = compare(claim, predicted, attacked)
    return VerifyOutcome(
        claim=claim,
        claim_file=prepared.claim_file,
        conditions={n: conditions[n] for n in claim.conditions.all if n in conditions},
        claimed=list(claim.conditions.claimed),
        runs=[*attacked, *original_runs, *(trainability.runs if trainability else [])],
        worst=judged.worst,
        original_worst=attacked_original.run,
        defence=defence,
        search=attacks.search,
        grid_size=attacks.grid_size,
        theory=theory,
        stability_values=None if stability is None else stability.values,
        warnings=_warnings(attacked_original, theory, predictions, certified),
        timing=clock.total(),
        environment=environment(options),
        predictions=predictions,
        certification=certified,
    )
