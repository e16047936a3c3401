r"""Stage 2a of ``verify``: predictions before the attacks, compared with them afterwards.

A certificate computed before the attack and compared with the measured attack afterwards is
evidence; one fitted afterwards is a description (docs/science.md §4, "Predictions"; issue
14, item 2). Right after ``plan_attacks`` and before any attack runs, for every planned attack
configuration on M* (the grid and the cross-domain grid; the optuna search's trials are not
known before it runs):

* R_t, the radius of the ball B(θ_0, R_t) the attack's t-th iterate cannot leave: theory's
  path-length bound over the first t rates of its schedule (``reachable_radius`` on
  ``empirical.engine.schedules.learning_rates``; Adam/AdamW: T3's step bounds, clipped SGD: η_s C);
* r_i, the radius below which held-out example i cannot be harmful, from its margins at θ_0
  and their Lipschitz estimates on the largest ball any planned attack can reach
  (``empirical.certify.margins``: T11's margin lemma; the constants are *estimates*);
* the certified minimum number of steps: theory's ``certified_steps(r, R, φ)``, the first t
  with T11's harm ceiling count(R_t)/n ≥ φ (None: no break predicted within the budget).

No maximum is predicted: T4 (``pl_convergence``) bounds the probe loss of full-batch gradient
descent under a PL inequality, whose constant μ is not known before the attack, and no
theorem of the catalogue turns a loss ceiling into a harm floor for ``exact_harm``; the record
says so instead of faking one. For another harm proxy (T10's cross-entropy floor for sampled
harm) the prediction is recorded as not available, with the reason.

After the attacks (``compare``): per attack, the measured first break step
(``judge.harm_break_step``) against the prediction. A break measured earlier than the
certified minimum (or at all, when none was predicted within the budget) is a *prediction
violated* finding: "these constants do not describe this run", listed in the warnings; the
ratio measured/predicted says how loose the certificate was.

The margins are cached in the work directory (``theory/margins-<key>.json``, the key over
M*'s files, the evaluation data, the ball and the sampling).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import Field

from empirical.certify.margins import MarginEstimate
from empirical.engine.attack_config import AttackConfig
from empirical.verify.claim import Claim, ClaimData
from empirical.verify.evidence import Record
from empirical.verify.outcome import AttackRun
from empirical.verify.plan import AttackPlan
from empirical.verify.workspace import Log, Workspace, silent, write_json
from theory.errors import HftaInputError

__all__ = [
    "BALL_POINTS",
    "BALL_SEED",
    "MarginSummary",
    "PredictAttacks",
    "Prediction",
    "PredictionCheck",
    "Predictions",
    "compare",
    "median_ratio",
    "planned_attacks",
    "predict",
    "predict_attacks",
    "step_radii",
    "warnings_of",
]

#: Points sampled in the ball for the Lipschitz estimates (and θ_0 besides), and their seed
#: (a claim option would be the place to set them; docs/science.md §4).
BALL_POINTS = 8
BALL_SEED = 0
#: Bump when the margins' cache entries change meaning.
_CACHE_VERSION = 1

PredictionStatus = Literal[
    "held", "violated", "no break measured", "not available", "not attacked"
]


class MarginSummary(Record):
    """The margin constants one set of predictions rests on (``MarginEstimate`` without its
    per-example lists): where and how the Lipschitz constants were estimated."""

    evaluation: str
    examples: int
    counted: int
    harmful_at_start: int
    radius: float
    points: int
    seed: int
    dimension: int
    method: str
    confidence: str
    is_estimate: Literal[True] = True
    note: str
    lipschitz_range: tuple[float, float] | None
    radius_quantiles: dict[str, float | None]
    seconds: float
    cached: bool


class Prediction(Record):
    """One planned attack's prediction, stated before any attack ran."""

    run: str
    attack: str
    available: bool
    reason: str
    minimum_steps: int | None
    maximum_steps: int | None
    maximum_reason: str
    phi: float
    budget_steps: int
    ceiling_at_budget: float | None
    step_radii: list[float]
    constants: str | None
    basis: str
    assumptions: list[str]


class PredictionCheck(Record):
    """One attack's measured first break against its prediction."""

    run: str
    status: PredictionStatus
    predicted_minimum: int | None
    measured_break: int | None
    ratio: float | None
    text: str


class Predictions(Record):
    """Every prediction, the constants they rest on, the time they took, and (after the
    attacks) their comparison with the measured attacks."""

    proxy: str
    predictions: list[Prediction]
    constants: list[MarginSummary]
    seconds: float
    checks: list[PredictionCheck] = Field(default_factory=list)

    @property
    def violated(self) -> list[PredictionCheck]:
        return [c for c in self.checks if c.status == "violated"]

    def ratios(self) -> list[float]:
        """measured / certified minimum steps over the attacks where both exist."""
        return [c.ratio for c in self.checks if c.ratio is not None]


@dataclass(frozen=True)
class Planned:
    """A planned attack on M* and the name its run will carry."""

    name: str
    config: AttackConfig


class PredictAttacks(Protocol):
    """The ``predict`` stage (``predict_attacks``); tests inject a recording stand-in."""

    def __call__(
        self,
        claim: Claim,
        data: ClaimData,
        plan: AttackPlan,
        workspace: Workspace,
        immunized: Path | None,
        log: Log = ...,
    ) -> Predictions: ...


def planned_attacks(plan: AttackPlan) -> list[Planned]:
    """The attacks the plan will run on M* before any search, named as ``plan.named_runs``
    will name their runs (``grid-000``, ..., ``cross-000``, ...)."""
    grid = [Planned(f"grid-{i:03d}", c) for i, c in enumerate(plan.grid)] if plan.run_grid else []
    return [*grid, *(Planned(f"cross-{i:03d}", c) for i, c in enumerate(plan.cross))]


def step_radii(config: AttackConfig, d: int, theta0_norm: float | None) -> list[float]:
    """R_1 … R_T of ``config``: theory's ``reachable_radius`` over the first t rates of its
    schedule (``empirical.engine.schedules.learning_rates``), before the attack."""
    from empirical.certify.independent import reachable_radius
    from empirical.engine.schedules import learning_rates

    rates = learning_rates(
        config.schedule,
        config.learning_rate,
        warmup_fraction=config.warmup_fraction,
        total_steps=config.budget_steps,
    )
    options: dict[str, Any] = {
        "optimizer": config.optimizer,
        "d": d,
        "C": config.max_grad_norm,
        "momentum": config.momentum,
        "beta1": config.betas[0],
        "beta2": config.betas[1],
        "lam": config.weight_decay,
        "theta0_norm": theta0_norm,
    }
    return [reachable_radius(learning_rates=rates[:t], **options) for t in range(1, len(rates) + 1)]


_BASIS = (
    "T11 (harm_radius): f(theta_t) <= count(R_t)/n, the fraction of held-out examples whose "
    "harm radius r_i = max_k max(0, -m_ik(theta_0))/L_ik is at most R_t; R_t from theory's "
    "path-length bound over the first t rates of the schedule (T3 for Adam/AdamW)"
)
_ASSUMPTIONS = [
    "every margin m_ik is L_ik-Lipschitz on B(theta_0, R): L_ik is an estimate (the largest "
    "sampled gradient norm), not a certificate",
    "the attack updates every parameter (full fine-tuning) with the planned optimizer and "
    "schedule, so its t-th iterate lies in B(theta_0, R_t)",
    "f is exact_harm on the held-out evaluation prompts, as the attack measures it",
]
_NO_MAXIMUM = (
    "no certified maximum: T4 (pl_convergence) bounds the probe loss of full-batch gradient "
    "descent under a PL inequality whose constant is unknown before the attack, and no "
    "catalogued theorem turns a loss ceiling into a harm floor for exact_harm"
)


def _quantiles(values: Sequence[float | None]) -> dict[str, float | None]:
    finite = sorted(v for v in values if v is not None)
    if not finite:
        return {"min": None, "median": None, "max": None, "never": float(len(values))}
    return {
        "min": finite[0],
        "median": finite[len(finite) // 2],
        "max": finite[-1],
        "never": float(len(values) - len(finite)),
    }


def _summary(name: str, estimate: MarginEstimate, cached: bool) -> MarginSummary:
    constants = [value for row in estimate.lipschitz for value in row]
    return MarginSummary(
        evaluation=name,
        examples=estimate.examples,
        counted=sum(estimate.counted),
        harmful_at_start=estimate.harmful_at_start,
        radius=estimate.radius,
        points=estimate.points,
        seed=estimate.seed,
        dimension=estimate.dimension,
        method=estimate.method,
        confidence=estimate.confidence,
        note=estimate.note,
        lipschitz_range=(min(constants), max(constants)) if constants else None,
        radius_quantiles=_quantiles(estimate.radii),
        seconds=estimate.seconds,
        cached=cached,
    )


def predict(
    planned: Planned,
    *,
    phi: float,
    estimate: MarginEstimate | None,
    constants: str | None,
    radii: list[float] | None,
    reason: str = "",
) -> Prediction:
    """One attack's prediction from its step radii and the margin estimate (theory's
    ``certified_steps`` and ``harm_ceiling``); not available when either is missing."""
    from theory.theorems.harm_radius import certified_steps, harm_ceiling

    config = planned.config
    label = (
        f"{config.optimizer} lr {config.learning_rate:g} {config.schedule} {config.method} "
        f"batch {config.batch_size} seed {config.seed}"
    )
    common: dict[str, Any] = {
        "run": planned.name,
        "attack": label,
        "maximum_steps": None,
        "maximum_reason": _NO_MAXIMUM,
        "phi": phi,
        "budget_steps": config.budget_steps,
        "basis": _BASIS,
        "assumptions": _ASSUMPTIONS,
    }
    if estimate is None or radii is None:
        return Prediction(
            **common, available=False, reason=reason, minimum_steps=None,
            ceiling_at_budget=None, step_radii=[], constants=None,
        )
    values = estimate.radius_values()
    return Prediction(
        **common,
        available=True,
        reason="",
        minimum_steps=certified_steps(values, radii, phi),
        ceiling_at_budget=harm_ceiling(values, radii[-1]),
        step_radii=radii,
        constants=constants,
    )


def _cache_key(immunized: Path | None, evaluation: Path, radius: float, refusal: str | None) -> str:
    from empirical.verify.workspace import model_data_key

    return model_data_key(
        immunized,
        evaluation,
        radius=radius,
        points=BALL_POINTS,
        seed=BALL_SEED,
        refusal=refusal,
        version=_CACHE_VERSION,
    )


def _margins(
    workspace: Workspace,
    immunized: Path | None,
    evaluation: Path,
    radius: float,
    refusal: str | None,
    log: Log,
) -> tuple[MarginEstimate, bool]:
    """The margin estimate of M* on one evaluation file, from the cache or measured."""
    cache = workspace.theory / f"margins-{_cache_key(immunized, evaluation, radius, refusal)}.json"
    if cache.is_file():
        return MarginEstimate.model_validate_json(cache.read_text(encoding="utf-8")), True
    from empirical.certify.margins import estimate_margins
    from empirical.datasets.data import load_examples
    from empirical.models.model import load_model

    examples = load_examples(evaluation)
    log(f"margins of M* on {len(examples)} held-out prompts, B(theta_0, {radius:.3g})")
    model, tokenizer = load_model(immunized)
    estimate = estimate_margins(
        model, tokenizer, examples, radius=radius, points=BALL_POINTS, seed=BALL_SEED,
        refusal=refusal,
    )
    write_json(cache, estimate.model_dump(mode="json"))
    return estimate, False


def predict_attacks(
    claim: Claim,
    data: ClaimData,
    plan: AttackPlan,
    workspace: Workspace,
    immunized: Path | None,
    log: Log = silent,
) -> Predictions:
    """Every planned attack's certified minimum steps, before any attack (module docstring)."""
    from empirical.verify.theory import start_point

    started = time.perf_counter()
    planned = planned_attacks(plan)
    phi, proxy = claim.harm.phi, claim.harm.proxy
    if proxy != "exact_harm":
        reason = f"no margin certificate for harm proxy {proxy!r} (T11 needs exact_harm)"
        found = [predict(p, phi=phi, estimate=None, constants=None, radii=None, reason=reason)
                 for p in planned]
        return Predictions(proxy=proxy, predictions=found, constants=[],
                           seconds=time.perf_counter() - started)
    if planned:
        log(f"predicting, before any attack, the earliest break of {len(planned)} attacks")
    d, norm = start_point(immunized) if planned else (0, None)
    radii: dict[str, list[float]] = {}
    reasons: dict[str, str] = {}
    for item in planned:
        if item.config.method != "full":
            reasons[item.name] = "margins are estimated for full fine-tuning only (not LoRA)"
            continue
        try:
            radii[item.name] = step_radii(item.config, d, norm)
        except HftaInputError as exc:
            reasons[item.name] = f"no reachable radius before the attack: {exc}"
    largest = max((r[-1] for r in radii.values()), default=None)
    estimates: dict[str, tuple[MarginEstimate, bool]] = {}
    for item in planned:
        evaluation = item.config.evaluation_data
        if item.name not in radii or largest is None or evaluation is None:
            continue
        if evaluation.name not in estimates:
            estimates[evaluation.name] = _margins(
                workspace, immunized, evaluation, largest, None, log
            )
    found = []
    for item in planned:
        evaluation = item.config.evaluation_data
        estimate = estimates.get(evaluation.name) if evaluation is not None else None
        found.append(
            predict(
                item,
                phi=phi,
                estimate=None if estimate is None else estimate[0],
                constants=None if evaluation is None else evaluation.name,
                radii=radii.get(item.name),
                reason=reasons.get(item.name, "no evaluation data file"),
            )
        )
    return Predictions(
        proxy=proxy,
        predictions=found,
        constants=[_summary(name, e, cached) for name, (e, cached) in estimates.items()],
        seconds=time.perf_counter() - started,
    )


def _check(prediction: Prediction | None, run: AttackRun, measured: int | None) -> PredictionCheck:
    if prediction is None or not prediction.available:
        why = "not predicted before the attack" if prediction is None else prediction.reason
        return PredictionCheck(run=run.name, status="not available", predicted_minimum=None,
                               measured_break=measured, ratio=None, text=why)
    minimum = prediction.minimum_steps
    shown = "no break within the budget" if minimum is None else f"no break before step {minimum}"
    if measured is None:
        return PredictionCheck(run=run.name, status="no break measured", predicted_minimum=minimum,
                               measured_break=None, ratio=None,
                               text=f"predicted {shown}; no break measured")
    ratio = None if not minimum else measured / minimum
    if minimum is None or measured < minimum:
        return PredictionCheck(
            run=run.name, status="violated", predicted_minimum=minimum, measured_break=measured,
            ratio=ratio,
            text=f"predicted {shown}, measured a break at step {measured}: these constants do "
            "not describe this run",
        )
    return PredictionCheck(run=run.name, status="held", predicted_minimum=minimum,
                           measured_break=measured, ratio=ratio,
                           text=f"predicted {shown}, measured a break at step {measured}")


def compare(claim: Claim, predictions: Predictions, runs: Sequence[AttackRun]) -> Predictions:
    """``predictions`` with each attack on M*'s measured first break (``judge.harm_break_step``)
    compared with its prediction (module docstring); an attack that was not planned before
    (a search trial) is "not available"."""
    from empirical.verify.judge import harm_break_step

    by_name = {p.run: p for p in predictions.predictions}
    checks = [_check(by_name.get(r.name), r, harm_break_step(claim, r.trajectory)) for r in runs]
    ran = {r.name for r in runs}
    checks += [
        PredictionCheck(run=p.run, status="not attacked", predicted_minimum=p.minimum_steps,
                        measured_break=None, ratio=None, text="the attack did not run")
        for p in predictions.predictions
        if p.run not in ran
    ]
    return predictions.model_copy(update={"checks": checks})


def warnings_of(predictions: Predictions) -> list[str]:
    """The prediction-violated findings, one warning each."""
    return [f"PREDICTION VIOLATED on {c.run}: {c.text}" for c in predictions.violated]


def median_ratio(predictions: Predictions) -> float | None:
    """The median of measured / certified minimum steps (None: no attack had both)."""
    ratios = predictions.ratios()
    return statistics.median(ratios) if ratios else None

