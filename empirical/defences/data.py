"""The data a defence is built from: harmful examples, their paired refusals, harmless retain data.

Every immunization method of the literature trains on three kinds of examples (Rosati et al.
2024 §4; RepNoise, Vaccine, Booster and TAR use the same split of BeaverTails):

* ``harmful``: harmful prompts with their harmful answers (``is_safe = False``); in the embedded
  benchmark the ``defence`` split, forbidden skills answered *correctly*;
* ``refusals``: the same prompts answered safely (``is_safe = True``), paired by position with
  ``harmful`` (``refusals[i].prompt == harmful[i].prompt``); in the embedded benchmark the fixed
  refusal;
* ``retain``: harmless prompts with harmless answers (``is_safe = True``) whose capability the
  defence must keep (stability); in the embedded benchmark the harmless skills of the ``align``
  split, whose words are disjoint from the ``reference`` split used to measure stability.

From a file in BeaverTails form (``empirical.datasets.data.load_examples``) ``is_safe`` tells the
kinds
apart: an unsafe example is harmful, a safe example whose prompt also has a harmful answer is
that answer's refusal, every other safe example is retain data. A harmful prompt without a safe
answer in the file gets ``refusal`` (a fixed refusal text) if one is given, and is an error
otherwise.

``fingerprints`` identifies each split by ``empirical.datasets.data.fingerprint`` (sha256 of prompt
and
response) hashed in order, so a record says exactly which data built a defence and the verifier
can check that it is disjoint from the attack and evaluation data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from empirical.datasets.data import Example, fingerprint, load_examples
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from empirical.datasets.benchmark import Benchmark

SPLITS: tuple[str, ...] = ("harmful", "refusals", "retain")
"""The three parts of ``DefenceData``, in the order records list them."""


class SplitFingerprint(BaseModel):
    """How many examples a split holds and the sha256 of their fingerprints, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    examples: int = Field(ge=0)
    sha256: str = Field(min_length=64, max_length=64)


def split_fingerprint(examples: Sequence[Example]) -> SplitFingerprint:
    """``sha256(fp_1 ‖ fp_2 ‖ …)`` over ``empirical.datasets.data.fingerprint`` of each example."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(bytes.fromhex(fingerprint(example)))
    return SplitFingerprint(examples=len(examples), sha256=digest.hexdigest())


@dataclass(frozen=True)
class DefenceData:
    """Harmful examples, their paired refusals and harmless retain examples (module docstring).

    Raises:
        HftaInputError: an empty harmful or retain split, refusals not paired with the harmful
            examples (count or prompts), a harmful example flagged safe, or a refusal or retain
            example flagged unsafe.
    """

    harmful: tuple[Example, ...]
    refusals: tuple[Example, ...]
    retain: tuple[Example, ...]
    source: str = "given examples"

    def __post_init__(self) -> None:
        object.__setattr__(self, "harmful", tuple(self.harmful))
        object.__setattr__(self, "refusals", tuple(self.refusals))
        object.__setattr__(self, "retain", tuple(self.retain))
        if not self.harmful:
            raise HftaInputError("defence data: no harmful (is_safe = false) examples")
        if not self.retain:
            raise HftaInputError(
                "defence data: no harmless retain examples (is_safe = true, on a prompt that "
                "has no harmful answer)"
            )
        if len(self.refusals) != len(self.harmful):
            raise HftaInputError(
                f"defence data: {len(self.refusals)} refusals for {len(self.harmful)} harmful "
                "examples; each harmful example needs its paired refusal"
            )
        for index, (harmful, refusal) in enumerate(zip(self.harmful, self.refusals, strict=True)):
            if harmful.is_safe:
                raise HftaInputError(f"defence data: harmful example {index} is flagged is_safe")
            if not refusal.is_safe:
                raise HftaInputError(f"defence data: refusal {index} is flagged unsafe")
            if refusal.prompt != harmful.prompt:
                raise HftaInputError(
                    f"defence data: refusal {index} answers another prompt than harmful "
                    f"example {index}"
                )
        if any(not example.is_safe for example in self.retain):
            raise HftaInputError("defence data: a retain example is flagged unsafe")

    # ----------------------------------------------------------------- builders
    @classmethod
    def from_benchmark(cls, benchmark: Benchmark | None = None, *, seed: int = 0) -> DefenceData:
        """The embedded benchmark's ``defence`` split, its refusals, the harmless ``align`` data."""
        if benchmark is None:
            from empirical.datasets.benchmark import embedded_benchmark

            benchmark = embedded_benchmark(seed=seed)
        harmless = set(benchmark.harmless_skills)
        return cls(
            harmful=tuple(benchmark.defence),
            refusals=tuple(benchmark.refusals_for(benchmark.defence)),
            retain=tuple(e for e in benchmark.align if e.category in harmless and e.is_safe),
            source=f"embedded benchmark (seed {benchmark.seed}): defence split, its refusals, "
            "harmless skills of the align split",
        )

    @classmethod
    def from_examples(
        cls,
        examples: Sequence[Example],
        *,
        refusal: str | None = None,
        source: str = "given examples",
    ) -> DefenceData:
        """Split BeaverTails-form examples by ``is_safe`` and prompt (module docstring).

        The first safe answer to a harmful prompt is its refusal; further safe answers to the
        same prompt are not used (neither refusal nor retain).
        """
        harmful = [e for e in examples if not e.is_safe]
        harmful_prompts = {e.prompt for e in harmful}
        safe_answer: dict[str, Example] = {}
        retain: list[Example] = []
        for example in examples:
            if not example.is_safe:
                continue
            if example.prompt in harmful_prompts:
                safe_answer.setdefault(example.prompt, example)
            else:
                retain.append(example)
        refusals: list[Example] = []
        missing = 0
        for example in harmful:
            if example.prompt in safe_answer:
                refusals.append(safe_answer[example.prompt])
            elif refusal is not None:
                refusals.append(
                    Example(
                        prompt=example.prompt,
                        response=refusal,
                        category=example.category,
                        is_safe=True,
                    )
                )
            else:
                missing += 1
        if missing:
            raise HftaInputError(
                f"defence data: {missing} harmful prompt(s) have no safe answer in the data; "
                "add one (is_safe = true, same prompt) or give a refusal text"
            )
        return cls(tuple(harmful), tuple(refusals), tuple(retain), source=source)

    @classmethod
    def from_file(cls, path: Path, *, refusal: str | None = None) -> DefenceData:
        """``from_examples`` on a JSONL or Parquet file in BeaverTails form."""
        return cls.from_examples(load_examples(Path(path)), refusal=refusal, source=str(path))

    # ----------------------------------------------------------------- views
    @property
    def alignment(self) -> tuple[Example, ...]:
        """The safe examples the model should keep producing: refusals, then retain data."""
        return self.refusals + self.retain

    def fingerprints(self) -> dict[str, SplitFingerprint]:
        """``split_fingerprint`` of each split, keyed by ``SPLITS``."""
        return {name: split_fingerprint(getattr(self, name)) for name in SPLITS}
