"""The compatibility surface of the verifier: every name ``empirical.verify.pipeline`` had.

The verifier is split by stage (``empirical.verify.stages`` lists them): ``workspace`` (the
work directory, digests, options), ``defence`` (config, data, apply, the cached M*), ``plan``
(attack configurations from the threat model), ``judge`` (harm bands, aggregation,
stability, trainability: the one place a verdict is decided), ``theory`` (the bound checks
and their constants), ``outcome`` (the typed records), ``stages`` (``prepare``, ``verify``)
and ``api`` (``verify_claim``, what ``hfta verify`` does). This module only re-exports them
so that ``from empirical.verify.pipeline import ...`` keeps working; new code imports from
the stage modules.
"""

from __future__ import annotations

from empirical.verify.defence import (
    ApplyDefence,
    apply_registered_defence,
    defence_cache_key,
    defence_config,
    defence_data,
    immunize,
)
from empirical.verify.judge import (
    BandFunction,
    HarmBand,
    aggregate,
    difference_interval,
    harm_band,
    judge_resistance,
    judge_run,
    judge_stability,
    judge_trainability,
    overall_status,
    rate_interval,
    worst_finding,
)
from empirical.verify.outcome import (
    AttackOutcome,
    AttackRun,
    BoundSummary,
    DefenceOutcome,
    OriginalOutcome,
    Prepared,
    ResistanceOutcome,
    RunFinding,
    SearchOutcome,
    StabilityOutcome,
    TheoryOutcome,
    TrainabilityOutcome,
    VerifyOutcome,
)
from empirical.verify.plan import (
    AttackPlan,
    attack_base,
    grid_configs,
    plan_attacks,
    search_space,
    searched_space,
    trainability_configs,
)
from empirical.verify.stages import RunAttacks, Services, prepare, verify
from empirical.verify.theory import check_theory, stand_in_constants, start_norm
from empirical.verify.workspace import (
    WORK_FORMAT,
    Log,
    VerifyOptions,
    Workspace,
    directory_digest,
    work_directory,
)

_rate_interval = rate_interval
"""The former private name of ``judge.rate_interval`` (tests import it)."""

__all__ = [
    "WORK_FORMAT",
    "ApplyDefence",
    "AttackOutcome",
    "AttackPlan",
    "AttackRun",
    "BandFunction",
    "BoundSummary",
    "DefenceOutcome",
    "HarmBand",
    "Log",
    "OriginalOutcome",
    "Prepared",
    "ResistanceOutcome",
    "RunAttacks",
    "RunFinding",
    "SearchOutcome",
    "Services",
    "StabilityOutcome",
    "TheoryOutcome",
    "TrainabilityOutcome",
    "VerifyOptions",
    "VerifyOutcome",
    "Workspace",
    "aggregate",
    "apply_registered_defence",
    "attack_base",
    "check_theory",
    "defence_cache_key",
    "defence_config",
    "defence_data",
    "difference_interval",
    "directory_digest",
    "grid_configs",
    "harm_band",
    "immunize",
    "judge_resistance",
    "judge_run",
    "judge_stability",
    "judge_trainability",
    "overall_status",
    "plan_attacks",
    "prepare",
    "rate_interval",
    "search_space",
    "searched_space",
    "stand_in_constants",
    "start_norm",
    "trainability_configs",
    "verify",
    "work_directory",
    "worst_finding",
]
