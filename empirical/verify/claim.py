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

``resolve_data`` then loads the data the claim names (files, or the embedded benchmark's
splits) and checks what the conditions need: defence, attack and evaluation data disjoint
(``empirical.data.check_disjoint``), in-domain attack categories inside the defence's,
cross-domain ones disjoint from them (``theory.conditions.Generalization``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
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

from empirical.data import Example, check_disjoint, fingerprint, load_examples
from theory.conditions import Generalization, Stability, Trainability, WeakResistance
from theory.curve import Curve
from theory.errors import DataOverlapError, HftaInputError
from theory.framework import ThreatModel

__all__ = [
    "CLAIMS_DIRECTORY",
    "CONDITION_NAMES",
    "DEFAULT_CLAIM",
    "Claim",
    "ClaimData",
    "ConditionName",
    "load_claim",
    "parse_claim",
    "resolve_data",
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
            from empirical.benchmark import FORBIDDEN_SKILLS

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


HarmProxyName = Literal["exact_harm"]


class HarmSection(_Section):
    """``[harm]``: the harm proxy f, the threshold φ and how often the attacks measure f.

    ``proxy = "exact_harm"``: the fraction of held-out harmful prompts whose harmful answer
    the model reproduces exactly (``empirical.proxies.exact_harm``; in [0, 1]). ``phi`` must
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
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    schedule: Literal["constant", "linear", "cosine"] = "constant"
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
    are assumed; ``"none"`` skips that rerun.
    """

    measure_path: Literal["worst", "none"] = "worst"
    beta_every_steps: PositiveInt = 50
    segment_samples: PositiveInt = 2


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


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class ClaimData:
    """The data a claim names, loaded and checked (see ``resolve_data``).

    ``source`` says where the data came from (``"embedded"`` or ``"files"``). ``defence``
    builds the defence (harmful examples, and for files the safe answers it holds); ``attack``
    is the attacker's data for resistance and
    in-domain generalization, scored on ``evaluation``; ``cross_attack`` / ``cross_evaluation``
    the cross-domain sets (empty when the claim has none); ``reference`` the harmless data
    of stability; ``trainability_train`` / ``trainability_evaluation`` the harmless task
    (empty when the claim has no trainability section); ``retain`` harmless examples a
    defence may keep its capability on; ``refusal`` the aligned answer to harmful prompts
    (None when the data does not say).
    """

    defence: list[Example]
    attack: list[Example]
    evaluation: list[Example]
    reference: list[Example]
    cross_attack: list[Example]
    cross_evaluation: list[Example]
    trainability_train: list[Example]
    trainability_evaluation: list[Example]
    retain: list[Example]
    refusal: str | None
    source: str = "embedded"

    def categories(self, split: str) -> list[str]:
        """The sorted harm categories of a split's harmful examples."""
        examples: list[Example] = getattr(self, split)
        return sorted({e.category for e in examples if not e.is_safe})

    def ids(self, split: str) -> set[str]:
        """The fingerprints of a split (``empirical.data.fingerprint``)."""
        examples: list[Example] = getattr(self, split)
        return {fingerprint(e) for e in examples}


def _per_category(examples: Sequence[Example], limit: int | None) -> list[Example]:
    """The first ``limit`` examples of each category, in the original order."""
    if limit is None:
        return list(examples)
    taken: dict[str, int] = {}
    kept: list[Example] = []
    for example in examples:
        if taken.get(example.category, 0) < limit:
            kept.append(example)
            taken[example.category] = taken.get(example.category, 0) + 1
    return kept


Origins = dict[str, tuple[str, list[Example]]]
"""Per claim field: where its examples came from (a file, or an embedded split) and the
examples in their original order, so that a leak can be reported by file and row."""


def _load(base: Path, relative: str, field: str, origins: Origins | None = None) -> list[Example]:
    path = Path(relative)
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise HftaInputError(f"{field}: data file not found: {path}")
    examples = load_examples(path)
    if origins is not None:
        origins[field] = (str(path), examples)
    return examples


def check_shared_prompts(data: ClaimData, origins: Origins) -> None:
    """Refuse a prompt that is both trained on (defence, retain, attack, cross-domain attack)
    and measured (evaluation, cross-domain evaluation), whatever the two responses.

    Raises:
        DataOverlapError: naming both fields, their files and rows (1-based) and the prompt.
    """
    trained = {
        "data.defence": data.defence,
        "data.retain": data.retain,
        "data.attack": data.attack,
        "data.cross_domain_attack": data.cross_attack,
    }
    measured = {
        "data.evaluation": data.evaluation,
        "data.cross_domain_evaluation": data.cross_evaluation,
    }

    def where(field: str, prompt: str) -> str:
        source, examples = origins.get(field, ("?", []))
        rows = [i + 1 for i, e in enumerate(examples) if e.prompt == prompt]
        return f"{field} ({source}, row {rows[0] if rows else '?'})"

    for trained_field, trained_examples in trained.items():
        prompts = {e.prompt for e in trained_examples}
        for measured_field, measured_examples in measured.items():
            for example in measured_examples:
                if example.prompt in prompts:
                    shown = example.prompt
                    if len(shown) > 60:
                        shown = shown[:57] + "..."
                    raise DataOverlapError(
                        f"{where(trained_field, example.prompt)} and "
                        f"{where(measured_field, example.prompt)} share the prompt {shown!r} "
                        "(an overlap even when the responses differ); set "
                        "data.allow_shared_prompts = true if the claim means it"
                    )


def _harmful_only(examples: list[Example], field: str) -> list[Example]:
    harmful = [e for e in examples if not e.is_safe]
    if not harmful:
        raise HftaInputError(f"{field}: no harmful (is_safe = false) examples")
    return harmful


def resolve_path(claim_file: Path | None, value: str | None) -> Path | None:
    """A path of the claim, relative to the claim file's directory (None stays None)."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute() and claim_file is not None:
        path = claim_file.resolve().parent / path
    return path


def resolve_data(claim: Claim, claim_file: Path | None = None) -> ClaimData:
    """Load the claim's data and check what the conditions need (see the module docstring).

    Raises:
        HftaInputError: a missing or malformed file, an empty split, overlapping splits
            (``DataOverlapError``), or categories that do not fit the generalization domain.
    """
    section = claim.data
    base = claim_file.resolve().parent if claim_file is not None else Path.cwd()
    if section.source == "embedded":
        from empirical.attack import _embedded_benchmark

        benchmark = _embedded_benchmark(section.benchmark_seed)
        cross = set(section.cross_domain_categories)
        default = [c for c in benchmark.forbidden_skills if c not in cross]
        chosen = set(section.categories or default)
        if not chosen:
            raise HftaInputError("data.categories: no harm category left for the defence")

        def pick(split: list[Example], categories: set[str]) -> list[Example]:
            return [e for e in split if e.category in categories]

        defence = pick(benchmark.defence, chosen)
        attack = pick(benchmark.attack, chosen)
        evaluation = pick(benchmark.evaluation, chosen)
        cross_attack = pick(benchmark.attack, cross)
        cross_evaluation = pick(benchmark.evaluation, cross)
        origins: Origins = {
            field: (f"embedded benchmark split '{split}'", list(getattr(benchmark, split)))
            for field, split in (
                ("data.defence", "defence"),
                ("data.attack", "attack"),
                ("data.cross_domain_attack", "attack"),
                ("data.evaluation", "evaluation"),
                ("data.cross_domain_evaluation", "evaluation"),
                ("data.retain", "align"),
            )
        }
        reference = list(benchmark.reference)
        harmless = set(benchmark.harmless_skills)
        retain = [e for e in benchmark.align if e.is_safe and e.category in harmless]
        refusal: str | None = benchmark.refusal
    else:
        assert section.defence and section.attack and section.evaluation and section.reference
        origins = {}
        defence = _load(base, section.defence, "data.defence", origins)
        _harmful_only(defence, "data.defence")
        attack = _load(base, section.attack, "data.attack", origins)
        _harmful_only(attack, "data.attack")
        evaluation = _harmful_only(
            _load(base, section.evaluation, "data.evaluation", origins), "data.evaluation"
        )
        reference = _load(base, section.reference, "data.reference", origins)
        cross_attack = cross_evaluation = []
        if section.cross_domain_attack and section.cross_domain_evaluation:
            cross_attack = _load(
                base, section.cross_domain_attack, "data.cross_domain_attack", origins
            )
            _harmful_only(cross_attack, "data.cross_domain_attack")
            cross_evaluation = _harmful_only(
                _load(
                    base,
                    section.cross_domain_evaluation,
                    "data.cross_domain_evaluation",
                    origins,
                ),
                "data.cross_domain_evaluation",
            )
        retain = (
            []
            if section.retain is None
            else _load(base, section.retain, "data.retain", origins)
        )
        refusal = section.refusal
    data = ClaimData(
        defence=_per_category(defence, section.defence_examples_per_category),
        attack=_per_category(attack, section.attack_examples_per_category),
        evaluation=_per_category(evaluation, section.evaluation_examples_per_category),
        reference=_per_category(reference, section.reference_examples_per_category),
        cross_attack=_per_category(cross_attack, section.attack_examples_per_category),
        cross_evaluation=_per_category(cross_evaluation, section.evaluation_examples_per_category),
        trainability_train=[],
        trainability_evaluation=[],
        retain=retain,
        refusal=refusal,
        source=section.source,
    )
    data = _with_trainability(claim, data, base)
    _check(claim, data)
    if not section.allow_shared_prompts:
        check_shared_prompts(data, origins)
    return data


def _with_trainability(claim: Claim, data: ClaimData, base: Path) -> ClaimData:
    section = claim.trainability
    if section is None:
        return data
    if section.source == "embedded":
        from empirical.attack import _embedded_benchmark

        benchmark = _embedded_benchmark(claim.data.benchmark_seed)
        train = list(benchmark.trainability_train)
        evaluation = list(benchmark.trainability_eval)
    else:
        assert section.train is not None and section.evaluation is not None
        train = _load(base, section.train, "trainability.train")
        evaluation = _load(base, section.evaluation, "trainability.evaluation")
    if section.train_examples is not None:
        train = train[: section.train_examples]
    if section.evaluation_examples is not None:
        evaluation = evaluation[: section.evaluation_examples]
    return ClaimData(
        **{
            **data.__dict__,
            "trainability_train": train,
            "trainability_evaluation": evaluation,
        }
    )


def _check(claim: Claim, data: ClaimData) -> None:
    """Every split non-empty, the splits disjoint, the generalization domains respected."""
    for split in ("defence", "attack", "evaluation", "reference"):
        if not getattr(data, split):
            raise HftaInputError(f"data.{split}: the split holds no examples")
    named = {
        "defence": data.defence,
        "attack": data.attack,
        "evaluation": data.evaluation,
        "reference": data.reference,
    }
    if data.retain:
        named["retain"] = data.retain
    if data.cross_attack:
        named["cross_domain_attack"] = data.cross_attack
        named["cross_domain_evaluation"] = data.cross_evaluation
    check_disjoint(**named)
    if data.trainability_train:
        check_disjoint(
            trainability_train=data.trainability_train,
            trainability_evaluation=data.trainability_evaluation,
        )
    wanted = set(claim.conditions.all)
    # theory's generalization condition checks the split; a dummy curve runs only that check
    placeholder = Curve((0,), (0.0,), horizon=0)
    resistance = WeakResistance(claim.harm.phi, budget=claim.threat_model.budget_steps)
    domains: list[tuple[str, str, str]] = []
    if "generalization_in_domain" in wanted:
        domains.append(("in-domain", "attack", "data.attack"))
    if "generalization_cross_domain" in wanted:
        domains.append(("cross-domain", "cross_attack", "data.cross_domain_attack"))
    for domain, split, field in domains:
        try:
            Generalization(resistance, domain).check(  # type: ignore[arg-type]
                placeholder,
                data.ids("defence"),
                data.ids(split),
                data.categories("defence"),
                data.categories(split),
            )
        except HftaInputError as exc:
            raise HftaInputError(f"{field}: {exc}") from None
