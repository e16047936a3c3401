"""The data a claim names, loaded and checked (``resolve_data``).

``resolve_data`` loads the files (or the embedded benchmark's splits) that a claim's
``[data]`` and ``[trainability]`` sections name and checks what the conditions need before
anything runs: every split non-empty; defence, attack and evaluation data disjoint
(``empirical.datasets.data.check_disjoint``); in-domain attack categories inside the defence's,
cross-domain ones disjoint from them (``theory.conditions.Generalization``); and no prompt both
trained on and measured (``check_shared_prompts``), unless the claim allows it. Split from
``empirical.verify.claim``, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from empirical.datasets.data import Example, check_disjoint, fingerprint, load_examples
from empirical.verify.claim import Claim
from theory.conditions import Generalization, WeakResistance
from theory.curve import Curve
from theory.errors import DataOverlapError, HftaInputError

__all__ = [
    "ClaimData",
    "Origins",
    "check_shared_prompts",
    "resolve_data",
    "resolve_path",
]


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
        """The fingerprints of a split (``empirical.datasets.data.fingerprint``)."""
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
        from empirical.engine.attack import _embedded_benchmark

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
        from empirical.engine.attack import _embedded_benchmark

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
