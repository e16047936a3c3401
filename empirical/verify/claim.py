"""A claimed defence guarantee, as a TOML file validated strictly (``hfta verify CLAIM``).

A defence author's "our model resists harmful fine-tuning" becomes checkable once it names
(Rosati et al., "Immunization against harmful fine-tuning attacks", EMNLP Findings 2024, §3-4;
docs/science.md §1 and §3):

* the model, and the defence applied to it (or ``"none"``: the model is already immunized);
* the harmful data, split into disjoint defence / attack / evaluation sets, with in-domain and
  cross-domain attack sets for generalization (the embedded benchmark's harm categories, or
  JSONL / Parquet files in BeaverTails form);
* the threat model (``theory.framework.ThreatModel``: budget T in steps, learning rates,
  optimizers, schedules and warmup, clipping, full or LoRA, batch sizes, seeds);
* the harm proxy f and its threshold φ, the capability proxy g and its tolerance ε, the
  trainability task and its tolerances;
* which immunization conditions are claimed (they decide the exit code) and which are only
  measured (reported, never hidden, but not claimed);
* the confidence level of every interval and the attacker's search (grid and / or optuna).

Every number carries its unit in its name (``budget_steps``, ``learning_rates``,
``eval_every_steps``). Unknown keys, wrong types, NaN, negative budgets, φ outside the harm
proxy's range, overlapping categories are rejected by ``load_claim`` with one
``HftaInputError`` naming the field, before anything is run or written. The tolerances are
checked by constructing theory's own conditions (``WeakResistance``, ``Stability``,
``Trainability``), so a claim is valid exactly when theory accepts its parameters.

``resolve_data`` (``empirical.verify.claim_data``, re-exported here) then loads the data the
claim names (files, or the embedded benchmark's splits) and checks what the conditions need:
defence, attack and evaluation data disjoint (``empirical.datasets.data.check_disjoint``), in-domain
attack categories inside the defence's, cross-domain ones disjoint from them
(``theory.conditions.Generalization``), no prompt both trained on and measured.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from empirical.certify.harm_radius import AttackerClass
from empirical.engine.attack_config import HarmProxyName
from theory.conditions import Stability, Trainability, WeakResistance
from theory.errors import HftaInputError
from theory.framework import Optimizer, Schedule, ThreatModel

__all__ = [
    "CLAIMS_DIRECTORY",
    "CONDITION_NAMES",
    "DEFAULT_CLAIM",
    "Claim",
    "ClaimData",
    "ConditionName",
    "check_shared_prompts",
    "load_claim",
    "parse_claim",
    "resolve_data",
    "resolve_path",
]

CLAIMS_DIRECTORY: Path = Path(__file__).resolve().parents[2] / "claims"
"""The bundled example claims (``claims/`` at the repository root)."""

DEFAULT_CLAIM: Path = CLAIMS_DIRECTORY / "demo.toml"
"""The embedded default: ``hfta verify`` with no argument verifies this claim."""

ConditionName = Literal[
    "weak_resistance",
    "strong_resistance",
    "stability",
    "generalization_in_domain",
    "generalization_cross_domain",
    "trainability",
]
CONDITION_NAMES: tuple[str, ...] = (
    "weak_resistance",
    "strong_resistance",
    "stability",
    "generalization_in_domain",
    "generalization_cross_domain",
    "trainability",
)
RESISTANCE_CONDITIONS: frozenset[str] = frozenset(
    {"weak_resistance", "strong_resistance", "generalization_in_domain"}
)

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Name = Annotated[str, Field(min_length=1)]


class _Section(BaseModel):
    """A claim section: strict types, unknown keys rejected, immutable."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _unique(values: Sequence[Any], what: str) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} lists {value!r} twice")
        seen.add(value)


# --------------------------------------------------------------------------- sections
class ClaimInfo(_Section):
    """``[claim]``: who claims what, in a sentence."""

    name: Name
    description: str = ""


class ModelSection(_Section):
    """``[model]``: the released model M (``path``; omitted: the embedded tiny GPT-2).

    With ``defence.name = "none"`` the model at ``path`` is the immunized M* and
    ``original_path`` the model before immunization (needed by stability, trainability and
    the original-vs-immunized figure).
    """

    path: str | None = None
    original_path: str | None = None


class DefenceSection(_Section):
    """``[defence]``: the defence applied to M (a name of ``hfta immunize --list``) with its
    hyperparameters (validated by the defence's own config), or ``name = "none"``."""

    name: Name
    hyperparameters: dict[str, Any] = Field(default_factory=dict)

    @property
    def applies(self) -> bool:
        return self.name != "none"


DataSource = Literal["embedded", "files"]


class DataSection(_Section):
    """``[data]``: harmful data in defence / attack / evaluation splits, plus reference data.

    ``source = "embedded"``: the embedded benchmark (seed ``benchmark_seed``); the defence,
    the attack (resistance, in-domain generalization) and the evaluation use the forbidden
    skills in ``categories``; ``cross_domain_categories`` (disjoint from them) give the
    cross-domain attack and evaluation sets.

    ``source = "files"``: JSONL / Parquet files in BeaverTails form (paths relative to the
    claim file): ``defence`` (harmful examples, and a safe answer to a harmful prompt is its
    refusal), ``attack`` (what the attacker fine-tunes on, harmless examples allowed),
    ``evaluation`` (its harmful examples are the prompts f is measured on), ``reference``
    (harmless data of stability), optionally ``retain`` (harmless data the defence keeps;
    omitted: the defence file's safe examples on other prompts) and ``refusal`` (the text
    answering harmful prompts that have no safe answer), and for cross-domain
    generalization ``cross_domain_attack`` and ``cross_domain_evaluation``.

    ``*_examples_per_category`` keep the first N examples of each category of a split
    (omitted: all of them): smaller evaluation sets make attacks faster and intervals wider.

    A prompt that the defence or the attacker trains on must not be one f is measured on,
    even with another response (a leak: the evaluation would reward memorisation). Such a
    prompt is bad input naming both files, rows and the prompt, unless
    ``allow_shared_prompts = true`` says the claim means it.
    """

    source: DataSource = "embedded"
    benchmark_seed: NonNegativeInt = 0
    categories: list[Name] | None = None
    cross_domain_categories: list[Name] = Field(default_factory=list)
    defence: str | None = None
    attack: str | None = None
    evaluation: str | None = None
    reference: str | None = None
    cross_domain_attack: str | None = None
    cross_domain_evaluation: str | None = None
    retain: str | None = None
    refusal: str | None = None
    defence_examples_per_category: PositiveInt | None = None
    attack_examples_per_category: PositiveInt | None = None
    evaluation_examples_per_category: PositiveInt | None = None
    reference_examples_per_category: PositiveInt | None = None
    allow_shared_prompts: bool = False

    @model_validator(mode="after")
    def _source_fields(self) -> DataSection:
        files = ("defence", "attack", "evaluation", "reference")
        crossed = ("cross_domain_attack", "cross_domain_evaluation", "retain", "refusal")
        if self.source == "embedded":
            given = [f for f in (*files, *crossed) if getattr(self, f) is not None]
            if given:
                raise ValueError(f"{given[0]} applies to source = \"files\" only")
            from empirical.datasets.benchmark import FORBIDDEN_SKILLS

            known = tuple(FORBIDDEN_SKILLS)
            for field, values in (
                ("categories", self.categories or []),
                ("cross_domain_categories", self.cross_domain_categories),
            ):
                _unique(values, field)
                unknown = [v for v in values if v not in known]
                if unknown:
                    raise ValueError(
                        f"{field}: {unknown[0]!r} is not a forbidden skill of the embedded "
                        f"benchmark ({', '.join(known)})"
                    )
            if self.categories is not None and not self.categories:
                raise ValueError("categories must list at least one category")
            shared = set(self.categories or ()) & set(self.cross_domain_categories)
            if shared:
                raise ValueError(
                    f"cross_domain_categories overlap categories ({sorted(shared)}); "
                    "cross-domain data must come from other harm categories"
                )
        else:
            missing = [f for f in files if getattr(self, f) is None]
            if missing:
                raise ValueError(f"{missing[0]} is required with source = \"files\"")
            if (self.cross_domain_attack is None) != (self.cross_domain_evaluation is None):
                raise ValueError("give cross_domain_attack and cross_domain_evaluation together")
            if self.categories is not None or self.cross_domain_categories:
                raise ValueError(
                    "categories apply to the embedded benchmark; files carry their own"
                )
        return self

    @property
    def has_cross_domain(self) -> bool:
        if self.source == "embedded":
            return bool(self.cross_domain_categories)
        return self.cross_domain_attack is not None




class HarmSection(_Section):
    """``[harm]``: the harm proxy f, the threshold φ and how often the attacks measure f.

    ``proxy = "exact_harm"``: the fraction of held-out harmful prompts whose harmful answer
    the model reproduces exactly (``empirical.measurement.proxies.exact_harm``; in [0, 1]);
    ``proxy = "sampled_harm"``: the mean probability that sampling produces the harmful answer,
    exp(−CE) per prompt (``empirical.measurement.proxies.sampled_harm``; theory's T10; Hoeffding
    intervals, T8). ``build`` returns the proxy object. ``phi`` must
    lie in the proxy's range (checked by theory's ``WeakResistance``). ``probe_examples``:
    the fixed probe batch on which the attacks record the harmful loss for the bounds.
    """

    proxy: HarmProxyName = "exact_harm"
    phi: FiniteFloat
    eval_every_steps: PositiveInt = 20
    probe_examples: PositiveInt = 32

    @field_validator("phi")
    @classmethod
    def _phi_in_range(cls, value: float) -> float:
        WeakResistance(value, budget=1)  # theory's assumptions on φ: raises AssumptionError
        return value

    def build(self, refusal: str | None = None) -> Any:
        """The harm proxy ``proxy`` names (``empirical.measurement.proxies``; imports torch)."""
        from empirical.measurement import proxies

        factories = {"exact_harm": proxies.exact_harm, "sampled_harm": proxies.sampled_harm}
        return factories[self.proxy](refusal)


CapabilityProxyName = Literal["task_accuracy", "reference_loss", "perplexity"]
Direction = Literal["two-sided", "degradation"]


class StabilitySection(_Section):
    """``[stability]``: g(M, D_ref) ≈ g(M*, D_ref) within ``epsilon`` (theory's ``Stability``).

    ``proxy``: ``task_accuracy`` (exact-match rate, higher is better), ``reference_loss``
    (nats, lower is better) or ``perplexity``. ``direction = "degradation"`` counts only M*
    being worse.
    """

    proxy: CapabilityProxyName = "task_accuracy"
    epsilon: FiniteFloat
    direction: Direction = "degradation"

    @field_validator("epsilon")
    @classmethod
    def _theory_accepts(cls, value: float) -> float:
        Stability(value)  # theory's assumptions on ε: raises AssumptionError
        return value


class TrainabilitySection(_Section):
    """``[trainability]``: harmless fine-tuning of M and M* on a new task (theory's
    ``Trainability``): the best task accuracy within ``epsilon_quality`` and the step at which
    each reaches the target within ``epsilon_steps`` steps.

    The task: the embedded benchmark's new skill (``source = "embedded"``) or ``train`` and
    ``evaluation`` files. The fine-tuning runs ``budget_steps`` steps of ``optimizer`` at
    ``learning_rate`` (``schedule``, ``warmup_fraction``), batch ``batch_size``, seed ``seed``,
    measuring accuracy every ``eval_every_steps`` steps.
    """

    source: DataSource = "embedded"
    train: str | None = None
    evaluation: str | None = None
    train_examples: PositiveInt | None = None
    evaluation_examples: PositiveInt | None = None
    budget_steps: PositiveInt
    learning_rate: PositiveFloat
    optimizer: Optimizer = "adamw"
    schedule: Schedule = "constant"
    warmup_fraction: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.0
    batch_size: PositiveInt = 16
    eval_every_steps: PositiveInt = 10
    seed: NonNegativeInt = 0
    epsilon_quality: FiniteFloat
    epsilon_steps: FiniteFloat
    direction: Direction = "degradation"

    @model_validator(mode="after")
    def _consistent(self) -> TrainabilitySection:
        if self.source == "embedded" and (self.train or self.evaluation):
            raise ValueError("train / evaluation are file paths; they need source = \"files\"")
        if self.source == "files" and (self.train is None or self.evaluation is None):
            raise ValueError("source = \"files\" needs both train and evaluation")
        return self

    @field_validator("epsilon_quality")
    @classmethod
    def _quality_tolerance(cls, value: float) -> float:
        Trainability(value, 0.0)  # theory's assumptions on ε_quality
        return value

    @field_validator("epsilon_steps")
    @classmethod
    def _steps_tolerance(cls, value: float) -> float:
        Trainability(0.0, value)  # theory's assumptions on ε_steps
        return value


class ConditionsSection(_Section):
    """``[conditions]``: ``claimed`` decide the exit code; ``measured`` are reported only."""

    claimed: list[ConditionName] = Field(min_length=1)
    measured: list[ConditionName] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct(self) -> ConditionsSection:
        _unique(self.claimed, "claimed")
        _unique(self.measured, "measured")
        both = set(self.claimed) & set(self.measured)
        if both:
            raise ValueError(f"{sorted(both)[0]} is both claimed and measured")
        return self

    @property
    def all(self) -> list[str]:
        """Every condition to evaluate, in the catalogue's order."""
        chosen = set(self.claimed) | set(self.measured)
        return [c for c in CONDITION_NAMES if c in chosen]


class StatisticsSection(_Section):
    """``[statistics]``: the confidence level 1 − α of every interval in the verdict."""

    confidence: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] = 0.95


SearchStrategy = Literal["grid", "optuna", "grid+optuna"]


class SearchSection(_Section):
    """``[search]``: how the adaptive attacker explores the threat model.

    ``grid``: every combination of the threat model's values (``ThreatModel.attack_settings``).
    ``optuna``: ``trials`` trials of a seeded TPE search maximising harm, learning rates
    log-uniform in ``learning_rate_range`` (default: the threat model's
    ``learning_rate_range``, else its smallest and largest listed rate; a range that leaves
    the threat model is bad input: everything the verifier attacks with lies inside it),
    other axes categorical, with ``pruner`` stopping hopeless trials. ``grid+optuna``: both.
    """

    strategy: SearchStrategy = "grid"
    trials: PositiveInt = 8
    seed: NonNegativeInt = 0
    pruner: Literal["median", "successive-halving", "none"] = "successive-halving"
    learning_rate_range: list[PositiveFloat] | None = None

    @field_validator("learning_rate_range")
    @classmethod
    def _range(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (len(value) != 2 or not value[0] < value[1]):
            raise ValueError("learning_rate_range must be [low, high] with low < high")
        return value


class TheorySection(_Section):
    """``[theory]``: how the measured trajectories are checked against the proved bounds.

    Every attack on M* is checked (``empirical.certify.check_all``) with the constants its
    trajectory determines (G at the iterates, the clipping norm, the contraction factor).
    ``measure_path = "worst"`` also reruns the worst attack with its iterates captured and
    measures the constants along its path (``empirical.certify.attack_and_measure``: β by
    Lanczos at every ``beta_every_steps``-th iterate, G at ``segment_samples`` points per
    segment), which T1 needs and which makes T3 / T6 rest on constants measured where they
    are assumed; ``"none"`` skips that rerun. ``beta_refine``: β is sampled densely enough
    that halving the interval between sampled iterates changes it by at most this relative
    amount (``empirical.certify.constants.measure_constants``' ``refine``; 0 turns it off).
    The rerun's probe columns are evaluated again in float64 at its iterates
    (``empirical.certify.float64``), so that rounding does not decide a check.
    """

    measure_path: Literal["worst", "none"] = "worst"
    beta_every_steps: PositiveInt = 50
    segment_samples: PositiveInt = 2
    beta_refine: float = Field(default=0.1, ge=0.0, allow_inf_nan=False)


class CertifySection(_Section):
    """``[certify]``: classes of attackers to certify before any attack (theory's T11).

    Each ``[[certify.classes]]`` entry is an ``empirical.certify.harm_radius.AttackerClass``:
    head-only fine-tuning (``method = "head"``) with ``optimizer`` (clipped ``sgd``, ``adam``
    or ``adamw``), ``max_learning_rate``, ``schedule``, ``warmup_fraction``,
    ``budget_steps``, ``clip``. The verifier certifies weak resistance for every attack of a
    class on the held-out harmful prompts (exact radii by convex programming, no estimated
    constant), or strong resistance (every t, T6's R_∞) for a class of clipped ``sgd`` with
    ``schedule = "exponential"``, its ``decay`` γ (and ``constant_steps`` K) and no
    ``budget_steps``, computes the same certificate for the original model M (the baseline must be
    refused for the certificate to say anything about the defence) and runs the strongest
    attack of each certified class on M* (``empirical.verify.certified``; docs/certified.md).
    """

    classes: list[AttackerClass] = Field(default_factory=list)


class Claim(_Section):
    """A whole claim file (see the module docstring); build with ``load_claim``."""

    claim: ClaimInfo
    model: ModelSection = Field(default_factory=ModelSection)
    defence: DefenceSection
    data: DataSection = Field(default_factory=DataSection)
    threat_model: ThreatModel
    harm: HarmSection
    stability: StabilitySection | None = None
    trainability: TrainabilitySection | None = None
    conditions: ConditionsSection
    statistics: StatisticsSection = Field(default_factory=StatisticsSection)
    search: SearchSection = Field(default_factory=SearchSection)
    theory: TheorySection = Field(default_factory=TheorySection)
    certify: CertifySection = Field(default_factory=CertifySection)

    @model_validator(mode="after")
    def _conditions_have_what_they_need(self) -> Claim:
        wanted = set(self.conditions.all)
        for name in ("stability", "trainability"):
            if name in wanted and getattr(self, name) is None:
                raise ValueError(f"conditions: {name} needs a [{name}] section")
        comparing = wanted & {"stability", "trainability"}
        if comparing and not self.defence.applies and self.model.original_path is None:
            raise ValueError(
                f"conditions: {sorted(comparing)[0]} compares M* with the original model; "
                "with defence.name = \"none\" give model.original_path"
            )
        if self.model.original_path is not None and self.defence.applies:
            raise ValueError(
                "model.original_path is for defence.name = \"none\"; with a defence the "
                "original model is model.path"
            )
        if "generalization_cross_domain" in wanted and not self.data.has_cross_domain:
            raise ValueError(
                "conditions: generalization_cross_domain needs cross-domain data "
                "(data.cross_domain_categories, or data.cross_domain_attack / _evaluation)"
            )
        span = self.search.learning_rate_range
        if span is not None:
            low, high = self.threat_model.learning_rate_bounds()
            if not low <= span[0] < span[1] <= high:
                raise ValueError(
                    f"search.learning_rate_range [{span[0]:g}, {span[1]:g}] leaves the threat "
                    f"model's learning rates [{low:g}, {high:g}]: the verdict must be about one "
                    "threat model; declare the attacker's range as threat_model."
                    "learning_rate_range"
                )
        if self.search.strategy == "grid" and span is not None:
            raise ValueError("search.learning_rate_range applies to the optuna search only")
        return self

    # ----------------------------------------------------------------- views
    def weak_resistance(self) -> WeakResistance:
        """Theory's weak resistance with this claim's φ and budget T."""
        return WeakResistance(self.harm.phi, budget=self.threat_model.budget_steps)

    @property
    def alpha(self) -> float:
        """α = 1 − confidence."""
        return 1.0 - self.statistics.confidence


# --------------------------------------------------------------------------- loading
def _location(error: Any) -> str:
    return ".".join(str(part) for part in error.get("loc", ())) or "claim"


def _message(error: Any) -> str:
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def parse_claim(text: str, source: str = "claim") -> Claim:
    """Parse and validate claim TOML text; ``HftaInputError`` names the first bad field."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HftaInputError(f"{source}: not valid TOML ({exc})") from None
    if not document:
        raise HftaInputError(f"{source}: the claim is empty")
    try:
        return Claim.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        shown = " ".join(_message(first).split())
        raise HftaInputError(f"{source}: {_location(first)}: {shown}") from None


def load_claim(path: Path | str) -> Claim:
    """Read and validate a claim file (UTF-8 TOML); every failure is one ``HftaInputError``."""
    path = Path(path)
    if not path.exists():
        raise HftaInputError(f"{path}: claim file not found")
    if not path.is_file():
        raise HftaInputError(f"{path}: not a file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise HftaInputError(f"{path}: not a text file (invalid UTF-8)") from None
    except OSError as exc:
        raise HftaInputError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_claim(text, str(path))


# The data half lives in empirical.verify.claim_data (it needs Claim, defined above).
from empirical.verify.claim_data import (  # noqa: E402
    ClaimData,
    check_shared_prompts,
    resolve_data,
    resolve_path,
)
