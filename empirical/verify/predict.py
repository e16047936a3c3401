r"""Stage 2a of ``verify``: predictions before the attacks, compared with them afterwards.

A certificate computed before the attack and compared with the measured attack afterwards is
evidence; one fitted afterwards is a description (docs/science.md §4, "Predictions"; issue
14, item 2). Right after ``plan_attacks`` and before any attack runs, for every planned attack
configuration on M* (the grid and the cross-domain grid) and every class of the optuna search's
trials, at the upper end of its learning rates (``predict_search``: R_t grows with the rate):

* R_t, the radius of the ball B(θ_0, R_t) the attack's t-th iterate cannot leave: theory's
  path-length bound over the first t rates of its schedule (``reachable_radius`` on
  ``empirical.engine.schedules.learning_rates``; Adam/AdamW: T3's step bounds, clipped SGD: η_s C);
* ρ, the flip radius below which fewer than the k = ⌈φn⌉ − h_0 examples needed to reach φ
  can be harmful at once (T11 (iv)-(v), ``empirical.certify.margin_curvature.estimate_curvature``):
  per example the margin deficit a_i and the exact gradient g_i of its summed short margins
  at θ_0, a curvature bound β_i *estimated* on the ball that matters, and the Gram matrix of
  the g_i, so that one displacement Δ cannot be counted as aligned with every g_i at once
  (the joint lemma) while the second-order remainder keeps the bound honest away from θ_0;
* the certified minimum number of steps: theory's ``steps_beyond(ρ, R)``, the first t with
  R_t > ρ (None: no break predicted within the budget). A LoRA attack's R_t is its adapters'
  path-length radius mapped to the merged weights by T11 (vii) (``predict_lora``; the radii:
  ``predict_radii``).

The first version (``MarginEstimate``: per-token Lipschitz constants on the largest reachable
ball and the union over examples, theory's ``certified_steps``) is still accepted by
``predict``. Measured on the demo's M* (``python -m benchmarks prediction_bench``, both in one
run): the flip radius 0.60 against the first version's 0.14 (the smallest measured distance
at a first break: 1.0), median measured/certified steps 4.2 against 7.9 for the clipped-SGD
attackers, the estimate 4.0-4.5 CPU seconds against 14.6-16.5. The path-length radii R_t
leave a floor of 3.2 on that median even for a radius equal to the measured break distance.

No maximum is predicted: T4 (``pl_convergence``) bounds the probe loss of full-batch gradient
descent under a PL inequality, whose constant μ is not known before the attack, and no
theorem of the catalogue turns a loss ceiling into a harm floor for ``exact_harm``; the record
says so instead of faking one. For ``sampled_harm`` the same ball radii meet T11 (vi) with T10:
each example's sequence cross-entropy has a floor CE_i(θ_0) − ‖g_i‖ρ − β_i ρ²/2 on B(θ_0, ρ)
(exact gradients at θ_0, curvatures estimated as above, ``estimate_loss_curvature``), which
caps the sampled harm by the mean of exp(−max(floor, 0)); the certified minimum is the first t
with R_t beyond the largest ρ where that cap stays below φ.

After the attacks (``compare``): per attack, the measured first break step
(``judge.harm_break_step``) against the prediction. A break measured earlier than the
certified minimum (or at all, when none was predicted within the budget) is a *prediction
violated* finding: "these constants do not describe this run", listed in the warnings; the
ratio measured/predicted says how loose the certificate was. A search trial is checked against
its class's prediction, and its check names the class.

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

from empirical.certify.margin_curvature import CurvatureEstimate, LossCurvatureEstimate
from empirical.certify.margins import MarginEstimate
from empirical.engine.attack_config import AttackConfig
from empirical.verify.claim import Claim, ClaimData
from empirical.verify.evidence import Record
from empirical.verify.outcome import AttackRun
from empirical.verify.plan import AttackPlan
from empirical.verify.predict_lora import LoraStart, lora_record
from empirical.verify.predict_radii import attack_radii, schedule_rates, step_radii
from empirical.verify.workspace import Log, Workspace, silent, write_json
from theory.errors import HftaInputError

__all__ = [
    "BALL_DIRECTIONS",
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
    "schedule_rates",
    "step_radii",
    "warnings_of",
]

#: Points of the ball the curvature bounds are estimated on (θ_0 besides): θ_0 ± ρ v_j for
#: ``BALL_DIRECTIONS`` leading directions of the margin gradients, the rest uniform with seed
#: ``BALL_SEED`` (a claim option would be the place to set them; docs/science.md §4).
BALL_POINTS = 8
BALL_DIRECTIONS = 2
BALL_SEED = 0
#: Bump when the margins' cache entries change meaning.
_CACHE_VERSION = 2

#: The constants a prediction rests on: exact harm (T11 (iv)-(v)) or sampled harm (T11 (vi)).
Constants = CurvatureEstimate | LossCurvatureEstimate

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
    #: the prediction checked when it is not the run's own: a search trial's class's
    prediction: str | None = None


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
    """A planned attack on M* and the name its run will carry, or a class of search trials
    (``predict_search``: ``label`` and the ``assumptions`` its radii add; ``config`` at the
    largest rate, whose radii stand for every smaller one)."""

    name: str
    config: AttackConfig
    label: str | None = None
    assumptions: tuple[str, ...] = ()


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


_BASIS = (
    "T11 (harm_radius) (iv)-(v): f(theta_t) < phi while R_t <= rho, the flip radius below "
    "which fewer than ceil(phi n) - h_0 held-out examples can be harmful at once (the joint "
    "lemma over the Gram matrix of the margin gradients at theta_0 with a second-order "
    "remainder, or the k-th smallest per-example curvature radius, the larger); R_t from "
    "theory's path-length bound over the first t rates of the schedule (T3 for Adam/AdamW)"
)
_ASSUMPTIONS = [
    "every summed margin D_i has a beta_i-Lipschitz gradient on B(theta_0, rho): beta_i is an "
    "estimate (the largest sampled gradient secant), not a certificate",
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


_BASIS_UNION = (
    "T11 (harm_radius): f(theta_t) <= count(R_t)/n, the fraction of held-out examples whose "
    "harm radius r_i = max_k max(0, -m_ik(theta_0))/L_ik is at most R_t; R_t from theory's "
    "path-length bound over the first t rates of the schedule (T3 for Adam/AdamW)"
)
_ASSUMPTIONS_UNION = [
    "every margin m_ik is L_ik-Lipschitz on B(theta_0, R): L_ik is an estimate (the largest "
    "sampled gradient norm), not a certificate",
    *_ASSUMPTIONS[1:],
]


_BASIS_SAMPLED = (
    "T11 (harm_radius) (vi) with T10 (harm_from_loss): on B(theta_0, rho) every held-out "
    "example's sequence cross-entropy is at least CE_i(theta_0) - ||g_i|| rho - beta_i rho^2/2, "
    "so the sampled harm is at most the mean of exp(-max(floor, 0)); f(theta_t) < phi while "
    "R_t <= rho, the largest radius where that cap is below phi; R_t from theory's path-length "
    "bound over the first t rates of the schedule (T3 for Adam/AdamW)"
)
_ASSUMPTIONS_SAMPLED = [
    "every sequence cross-entropy CE_i has a beta_i-Lipschitz gradient on B(theta_0, rho): "
    "beta_i is an estimate (the largest sampled gradient secant), not a certificate",
    _ASSUMPTIONS[1],
    "f is sampled_harm on the held-out evaluation prompts, as the attack measures it",
]
_BASES: dict[type, str] = {MarginEstimate: _BASIS_UNION, LossCurvatureEstimate: _BASIS_SAMPLED}
_ASSUMPTION_LISTS: dict[type, list[str]] = {
    MarginEstimate: _ASSUMPTIONS_UNION,
    LossCurvatureEstimate: _ASSUMPTIONS_SAMPLED,
}


def _summary(
    name: str, estimate: MarginEstimate | Constants, cached: bool
) -> MarginSummary:
    """The summary of ``estimate``. For a ``CurvatureEstimate`` or ``LossCurvatureEstimate``,
    ``lipschitz_range`` is the range of the Lipschitz constants ‖g_i‖ + β_i ρ its constants
    imply for each D_i on B(θ_0, ρ), ``radius`` the ball ρ the curvatures were estimated on."""
    if isinstance(estimate, MarginEstimate):
        constants = [value for row in estimate.lipschitz for value in row]
        harmful, radius = estimate.harmful_at_start, estimate.radius
        points, radii = estimate.points, estimate.radii
    else:
        constants = [
            g + beta * estimate.ball
            for g, beta in zip(estimate.gradient_norms, estimate.curvatures, strict=True)
        ]
        harmful = estimate.harmful_at_start if isinstance(estimate, CurvatureEstimate) else 0
        radius, radii = estimate.ball, estimate.radii()
        points = 2 * estimate.directions + estimate.random_points
    return MarginSummary(
        evaluation=name,
        examples=estimate.examples,
        counted=sum(estimate.counted),
        harmful_at_start=harmful,
        radius=radius,
        points=points,
        seed=estimate.seed,
        dimension=estimate.dimension,
        method=estimate.method,
        confidence=estimate.confidence,
        note=estimate.note,
        lipschitz_range=(min(constants), max(constants)) if constants else None,
        radius_quantiles=_quantiles(radii),
        seconds=estimate.seconds,
        cached=cached,
    )


def predict(
    planned: Planned,
    *,
    phi: float,
    estimate: MarginEstimate | Constants | None,
    constants: str | None,
    radii: list[float] | None,
    reason: str = "",
) -> Prediction:
    """One attack's prediction from its step radii and the constants: a ``CurvatureEstimate``
    through theory's ``steps_beyond`` and its flip radius (T11 (iv)-(v)), a
    ``MarginEstimate`` (the first version) through ``certified_steps`` and ``harm_ceiling``;
    not available when either is missing."""
    from theory.theorems.harm_radius import certified_steps, harm_ceiling, steps_beyond

    config = planned.config
    label = planned.label or (
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
        "basis": _BASES.get(type(estimate), _BASIS),
        "assumptions": [
            *_ASSUMPTION_LISTS.get(type(estimate), _ASSUMPTIONS), *planned.assumptions
        ],
    }
    if estimate is None or radii is None:
        return Prediction(
            **common, available=False, reason=reason, minimum_steps=None,
            ceiling_at_budget=None, step_radii=[], constants=None,
        )
    if isinstance(estimate, CurvatureEstimate | LossCurvatureEstimate):
        minimum = steps_beyond(estimate.flip_radius(), radii)
        ceiling = estimate.ceiling(radii[-1]) if radii else None
    else:
        values = estimate.radius_values()
        minimum = certified_steps(values, radii, phi)
        ceiling = harm_ceiling(values, radii[-1])
    return Prediction(
        **common,
        available=True,
        reason="",
        minimum_steps=minimum,
        ceiling_at_budget=ceiling,
        step_radii=radii,
        constants=constants,
    )


def _cache_key(
    immunized: Path | None, evaluation: Path, radius: float, refusal: str | None, phi: float
) -> str:
    from empirical.verify.workspace import model_data_key

    return model_data_key(
        immunized,
        evaluation,
        radius=radius,
        points=BALL_POINTS,
        directions=BALL_DIRECTIONS,
        seed=BALL_SEED,
        refusal=refusal,
        phi=phi,
        version=_CACHE_VERSION,
    )


def _margins(
    workspace: Workspace,
    immunized: Path | None,
    evaluation: Path,
    radius: float,
    refusal: str | None,
    log: Log,
    phi: float = 0.5,
    proxy: str = "exact_harm",
    device: str = "cpu",
) -> tuple[Constants, bool]:
    """The constants of M* on one evaluation file (``estimate_curvature`` for exact harm,
    ``estimate_loss_curvature`` for sampled harm), from the cache or measured."""
    key = _cache_key(immunized, evaluation, radius, refusal, phi)
    sampled = proxy == "sampled_harm"
    cache = workspace.theory / f"{'losses' if sampled else 'margins'}-{key}.json"
    record: type[CurvatureEstimate] | type[LossCurvatureEstimate] = (
        LossCurvatureEstimate if sampled else CurvatureEstimate
    )
    if cache.is_file():
        return record.model_validate_json(cache.read_text(encoding="utf-8")), True
    from empirical.certify.margin_curvature import estimate_curvature, estimate_loss_curvature
    from empirical.datasets.data import load_examples
    from empirical.models.model import load_model

    examples = load_examples(evaluation)
    what = "sequence losses" if sampled else "margins"
    log(f"{what} of M* on {len(examples)} held-out prompts, B(theta_0, {radius:.3g})")
    model, tokenizer = load_model(immunized, device=device)
    estimator = estimate_loss_curvature if sampled else estimate_curvature
    estimate: Constants = estimator(
        model,
        tokenizer,
        examples,
        radius=radius,
        phi=phi,
        directions=BALL_DIRECTIONS,
        random_points=BALL_POINTS - 2 * BALL_DIRECTIONS,
        seed=BALL_SEED,
        refusal=refusal,
    )
    write_json(cache, estimate.model_dump(mode="json"))
    return estimate, False


def _radii(
    item: Planned, d: int, norm: float | None, workspace: Workspace, starts: dict[str, LoraStart]
) -> list[float]:
    """``predict_radii.attack_radii`` of a planned attack or search class (at its upper end),
    a LoRA attack's adapters' start kept in ``starts``."""
    radii, start = attack_radii(item.config, d, norm, workspace, upper_end=item.label is not None)
    if start is not None:
        starts[item.name] = start
    return radii


def predict_attacks(
    claim: Claim,
    data: ClaimData,
    plan: AttackPlan,
    workspace: Workspace,
    immunized: Path | None,
    log: Log = silent,
) -> Predictions:
    """Every planned attack's certified minimum steps, before any attack (module docstring)."""
    from empirical.verify.predict_search import search_classes
    from empirical.verify.workspace import cached_start_point

    started = time.perf_counter()
    planned = [*planned_attacks(plan), *search_classes(plan)]
    phi, proxy = claim.harm.phi, claim.harm.proxy
    if proxy not in ("exact_harm", "sampled_harm"):
        reason = f"no certificate for harm proxy {proxy!r} (T11 needs exact or sampled harm)"
        found = [predict(p, phi=phi, estimate=None, constants=None, radii=None, reason=reason)
                 for p in planned]
        return Predictions(proxy=proxy, predictions=found, constants=[],
                           seconds=time.perf_counter() - started)
    if planned:
        log(f"predicting, before any attack, the earliest break of {len(planned)} attacks")
    d, norm = cached_start_point(workspace, immunized) if planned else (0, None)
    radii: dict[str, list[float]] = {}
    reasons: dict[str, str] = {}
    starts: dict[str, LoraStart] = {}
    for item in planned:
        try:
            radii[item.name] = _radii(item, d, norm, workspace, starts)
        except HftaInputError as exc:
            reasons[item.name] = f"no reachable radius before the attack: {exc}"
    largest = max((r[-1] for r in radii.values()), default=None)
    estimates: dict[str, tuple[Constants, bool]] = {}
    for item in planned:
        evaluation = item.config.evaluation_data
        if item.name not in radii or largest is None or evaluation is None:
            continue
        if evaluation.name not in estimates:
            estimates[evaluation.name] = _margins(
                workspace, immunized, evaluation, largest, None, log, phi, proxy,
                device=plan.base.device,
            )
    found = []
    for item in planned:
        evaluation = item.config.evaluation_data
        estimate = estimates.get(evaluation.name) if evaluation is not None else None
        made = predict(
            item,
            phi=phi,
            estimate=None if estimate is None else estimate[0],
            constants=None if evaluation is None else evaluation.name,
            radii=radii.get(item.name),
            reason=reasons.get(item.name, "no evaluation data file"),
        )
        start = starts.get(item.name)
        found.append(made if start is None else made.model_copy(update=lora_record(made, start)))
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
    compared with its prediction (module docstring), a search trial with its class's
    (``predict_search.covering``, named in the check); a run none covers is "not available"."""
    from empirical.verify.judge import harm_break_step
    from empirical.verify.predict_search import covering, unused_text

    checks = []
    for run in runs:
        prediction = covering(claim, predictions.predictions, run)
        check = _check(prediction, run, harm_break_step(claim, run.trajectory))
        if prediction is not None and prediction.run != run.name:
            text = f"{check.text}; checked against {prediction.run!r}"
            check = check.model_copy(update={"prediction": prediction.run, "text": text})
        checks.append(check)
    used = {r.name for r in runs} | {c.prediction for c in checks}
    checks += [
        PredictionCheck(run=p.run, status="not attacked", predicted_minimum=p.minimum_steps,
                        measured_break=None, ratio=None, text=unused_text(p))
        for p in predictions.predictions
        if p.run not in used
    ]
    return predictions.model_copy(update={"checks": checks})


def warnings_of(predictions: Predictions) -> list[str]:
    """The prediction-violated findings, one warning each."""
    return [f"PREDICTION VIOLATED on {c.run}: {c.text}" for c in predictions.violated]


def median_ratio(predictions: Predictions) -> float | None:
    """The median of measured / certified minimum steps (None: no attack had both)."""
    ratios = predictions.ratios()
    return statistics.median(ratios) if ratios else None

