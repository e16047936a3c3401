"""The data ``hfta immunize`` is given, loaded and checked before anything is computed.

Three roles, each a BeaverTails-form file (docs/data.md), each optional:

* ``--harmful FILE`` (alias ``--data``): what the defence is built on, its harmful rows
  (``is_safe = false``) and their refusals (a safe row on the same prompt, or ``--refusal``);
  omitted: the embedded benchmark's ``defence`` split and its refusals;
* ``--retain FILE``: harmless rows (every one ``is_safe = true``) whose skills the defence keeps
  (the ``retain`` split of ``empirical.defences.DefenceData``, Rosati et al. 2024 §4); omitted:
  the ``--harmful`` file's safe rows on other prompts, or the embedded benchmark's harmless
  ``align`` data. Given, it *is* the retain split (the ``--harmful`` file's other safe rows are
  then not used);
* ``--evaluate FILE`` (repeatable): held-out data the original and the immunized model are
  scored on (``empirical.defences.evaluation.score_model``): harm f on the harmful rows,
  capability g on the harmless rows of the files together, so they need both (one file with
  both, or e.g. ``--evaluate evaluation.jsonl --evaluate reference.jsonl``: docs/data.md's
  evaluation and reference roles); omitted: the embedded benchmark's ``evaluation`` and
  ``reference`` splits.

The immunization conditions measure f on data the defence never trained on (Rosati et al. 2024
§3, generalization): a prompt of ``--evaluate`` that the defence trains on (a harmful row, a
refusal or a retain row), whatever the two responses, is refused as a leak naming both files,
rows and the prompt, the rule of the verifier's ``data.allow_shared_prompts``
(``empirical.verify.claim_data.check_shared_prompts``); ``--allow-shared-prompts`` says the
run means it. Every error is an ``HftaInputError`` (one line, exit code 2) raised before a model
is loaded. Imports no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from empirical.datasets.data import Example, load_examples
from empirical.defences.data import DefenceData, SplitFingerprint, split_fingerprint
from theory.errors import DataOverlapError, HftaInputError

EMBEDDED = "embedded benchmark"


@dataclass(frozen=True)
class EvaluationData:
    """Held-out data of ``--evaluate``: its harmful and harmless rows, the files they came from."""

    harmful: tuple[Example, ...]
    harmless: tuple[Example, ...]
    files: tuple[str, ...]

    def fingerprints(self) -> dict[str, SplitFingerprint]:
        """``split_fingerprint`` of the harmful and the harmless rows."""
        return {
            "harmful": split_fingerprint(self.harmful),
            "harmless": split_fingerprint(self.harmless),
        }


@dataclass(frozen=True)
class ImmunizeData:
    """What a defence is built on and what it is scored on (module docstring).

    ``evaluation`` is None for the embedded benchmark's held-out splits; ``refusal`` is the
    refusal text given on the command line (the harm proxy does not count it as harm).
    """

    defence: DefenceData
    evaluation: EvaluationData | None
    refusal: str | None


def _load(path: Path, flag: str) -> list[Example]:
    if not path.is_file():
        raise HftaInputError(f"{flag}: data file not found: {path}")
    return load_examples(path)


def _retain_rows(path: Path, rows: list[Example], harmful_prompts: set[str]) -> list[Example]:
    for row, example in enumerate(rows, start=1):
        if not example.is_safe:
            raise HftaInputError(
                f"--retain: {path} row {row} is flagged is_safe = false; retain data is harmless"
            )
        if example.prompt in harmful_prompts:
            raise HftaInputError(
                f"--retain: {path} row {row} answers a harmful prompt of the defence data; "
                "retain data is harmless prompts with harmless answers"
            )
    return rows


def _defence_data(
    harmful: tuple[Path, list[Example]] | None,
    retain: tuple[Path, list[Example]] | None,
    refusal: str | None,
) -> DefenceData:
    if harmful is None:
        base = DefenceData.from_benchmark()
        if retain is None:
            return base
        path, rows = retain
        retained = _retain_rows(path, rows, {e.prompt for e in base.harmful})
        return DefenceData(
            base.harmful,
            base.refusals,
            tuple(retained),
            source=f"{EMBEDDED} (defence split and its refusals); {path} (retain)",
        )
    harmful_path, examples = harmful
    if retain is None:
        prompts = {e.prompt for e in examples if not e.is_safe}
        if prompts and all(e.prompt in prompts for e in examples if e.is_safe):
            raise HftaInputError(
                f"--harmful: {harmful_path} has no harmless rows (is_safe = true on a prompt "
                "without a harmful answer) to keep skills on; give --retain FILE"
            )
        return DefenceData.from_examples(examples, refusal=refusal, source=str(harmful_path))
    path, rows = retain
    retained = _retain_rows(path, rows, {e.prompt for e in examples if not e.is_safe})
    # the retain rows complete the file so that it splits; the retain split is then theirs alone
    base = DefenceData.from_examples([*examples, *retained], refusal=refusal)
    return DefenceData(
        base.harmful,
        base.refusals,
        tuple(retained),
        source=f"{harmful_path} (harmful, refusals); {path} (retain)",
    )


def _evaluation_data(files: Sequence[tuple[Path, list[Example]]]) -> EvaluationData:
    every = [e for _, rows in files for e in rows]
    harmful = tuple(e for e in every if not e.is_safe)
    harmless = tuple(e for e in every if e.is_safe)
    if not harmful or not harmless:
        missing = "harmful (is_safe = false)" if not harmful else "harmless (is_safe = true)"
        named = ", ".join(str(path) for path, _ in files)
        raise HftaInputError(
            f"--evaluate: {named} hold no {missing} rows; harm is scored on the harmful rows, "
            "capability on the harmless ones: give a file with both, or --evaluate twice"
        )
    return EvaluationData(harmful, harmless, tuple(str(path) for path, _ in files))


def check_shared_prompts(
    trained: Sequence[tuple[str, Sequence[Example]]], measured: tuple[str, Sequence[Example]]
) -> None:
    """Refuse a prompt that is both trained on and measured, whatever the two responses.

    ``trained``: (where, examples) per source the defence trains on; ``measured``: the same for
    the evaluation data. Rows are 1-based positions in each source.

    Raises:
        DataOverlapError: naming both sources, their rows and the prompt.
    """
    measured_where, measured_rows = measured
    for where, examples in trained:
        rows: dict[str, int] = {}
        for index, example in enumerate(examples, start=1):
            rows.setdefault(example.prompt, index)
        for index, example in enumerate(measured_rows, start=1):
            if example.prompt in rows:
                shown = example.prompt if len(example.prompt) <= 60 else example.prompt[:57] + "..."
                raise DataOverlapError(
                    f"{where} row {rows[example.prompt]} and {measured_where} row {index} share "
                    f"the prompt {shown!r} (an overlap even when the responses differ); give "
                    "--allow-shared-prompts if the run means it"
                )


def resolve_immunize_data(
    *,
    harmful: Path | None,
    retain: Path | None,
    evaluate: Sequence[Path],
    refusal: str | None,
    allow_shared_prompts: bool = False,
) -> ImmunizeData:
    """Load and check the three roles (module docstring); nothing is trained or written.

    Raises:
        HftaInputError: a missing, empty or malformed file, a role without the rows it needs,
            an unsafe retain row, or a shared prompt (``DataOverlapError``).
    """
    harmful_rows = None if harmful is None else (harmful, _load(harmful, "--harmful"))
    retain_rows = None if retain is None else (retain, _load(retain, "--retain"))
    defence = _defence_data(harmful_rows, retain_rows, refusal)
    if not evaluate:
        return ImmunizeData(defence, None, refusal)
    evaluation_files = [(path, _load(path, "--evaluate")) for path in evaluate]
    evaluation = _evaluation_data(evaluation_files)
    if not allow_shared_prompts:
        trained: list[tuple[str, Sequence[Example]]] = []
        if harmful_rows is None:
            trained.append((f"the {EMBEDDED}'s defence split", defence.harmful))
        else:
            trained.append((f"--harmful {harmful}", harmful_rows[1]))
        if retain_rows is not None:
            trained.append((f"--retain {retain}", retain_rows[1]))
        elif harmful_rows is None:
            trained.append((f"the {EMBEDDED}'s retain data", defence.retain))
        for path, rows in evaluation_files:
            check_shared_prompts(trained, (f"--evaluate {path}", rows))
    return ImmunizeData(defence, evaluation, refusal)
