"""Safety data in BeaverTails form: one record per (prompt, response) pair.

BeaverTails (Ji et al., "BeaverTails: Towards Improved Safety Alignment of LLM via a
Human-Preference Dataset", NeurIPS 2023 Datasets & Benchmarks) stores each pair with the
fields ``prompt``, ``response``, ``category`` and ``is_safe``. Its ``category`` is a mapping
from each of 14 harm categories to a flag; this module keeps one string per example, so a
mapping is reduced to the names of its true keys, sorted and joined with ``","``
(an all-false mapping, the form of a safe pair, becomes ``""``; a null flag, which is how a
Parquet struct column stores a key the row lacks, counts as false).

The immunization framework's generalization condition needs the data that builds a defence,
the attacker's data and the evaluation data to be *disjoint* (Rosati et al. 2024, §3):
``fingerprint`` identifies an example by its prompt and response, and ``check_disjoint``
raises ``DataOverlapError`` when two named splits share a fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from theory.errors import DataOverlapError, HftaInputError

REQUIRED_FIELDS: tuple[str, ...] = ("prompt", "response", "category", "is_safe")
"""The BeaverTails fields every record must carry."""

JSONL_SUFFIXES: frozenset[str] = frozenset({".jsonl", ".json"})
PARQUET_SUFFIXES: frozenset[str] = frozenset({".parquet", ".pq"})


class Example(BaseModel):
    """One prompt/response pair in BeaverTails form.

    Attributes:
        prompt: the user's request.
        response: the model's answer (for a harmful example: the harmful answer itself).
        category: the harm category (for the embedded benchmark: the skill's name).
        is_safe: ``True`` when the response is safe to give (a refusal or a harmless answer).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    prompt: str
    response: str
    category: str
    is_safe: bool


def fingerprint(example: Example) -> str:
    """The sha256 hex digest of the prompt and the response (length-prefixed, so unambiguous).

    Two examples with the same prompt and response share a fingerprint whatever their
    category or safety label: an overlap between splits is an overlap of text.
    """
    digest = hashlib.sha256()
    for part in (example.prompt, example.response):
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def check_disjoint(**splits: Sequence[Example]) -> None:
    """Raise ``DataOverlapError`` if any two of the named splits share an example.

    Example: ``check_disjoint(defence=b.defence, attack=b.attack, evaluation=b.evaluation)``.
    The error names the first overlapping pair of splits (in argument order) and how many
    distinct fingerprints they share.
    """
    prints = {name: {fingerprint(e) for e in examples} for name, examples in splits.items()}
    names = list(prints)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = prints[first] & prints[second]
            if shared:
                raise DataOverlapError(
                    f"splits '{first}' and '{second}' share {len(shared)} example(s); "
                    "defence, attack and evaluation data must be disjoint"
                )


def _category_text(value: Any, where: str) -> str:
    """A BeaverTails category (string, or mapping of category to flag) as one string."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        # A Parquet struct column holds every key of every row; a key a row lacks reads as null.
        flags = {k: v for k, v in value.items() if v is not None}
        if not all(isinstance(k, str) and isinstance(v, bool) for k, v in flags.items()):
            raise HftaInputError(f"{where}: field 'category' must map category names to booleans")
        return ",".join(sorted(k for k, v in flags.items() if v))
    raise HftaInputError(
        f"{where}: field 'category' must be a string or a mapping, got {type(value).__name__}"
    )


def _example_from_record(record: Any, where: str) -> Example:
    if not isinstance(record, Mapping):
        raise HftaInputError(f"{where}: expected an object, got {type(record).__name__}")
    for field in REQUIRED_FIELDS:
        if field not in record or record[field] is None:
            raise HftaInputError(f"{where}: missing required field '{field}'")
    for field in ("prompt", "response"):
        if not isinstance(record[field], str):
            raise HftaInputError(f"{where}: field '{field}' must be a string")
    if not isinstance(record["is_safe"], bool):
        raise HftaInputError(f"{where}: field 'is_safe' must be a boolean")
    return Example(
        prompt=record["prompt"],
        response=record["response"],
        category=_category_text(record["category"], where),
        is_safe=record["is_safe"],
    )


def _records_jsonl(path: Path) -> list[tuple[str, Any]]:
    records: list[tuple[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}: row {number}"
            try:
                records.append((where, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise HftaInputError(f"{where}: not valid JSON ({exc.msg})") from None
    return records


def _records_parquet(path: Path) -> list[tuple[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise HftaInputError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [f for f in REQUIRED_FIELDS if f not in table.column_names]
    if missing and table.num_rows > 0:
        raise HftaInputError(f"{path}: row 1: missing required field '{missing[0]}'")
    rows: list[dict[str, Any]] = table.to_pylist()
    records: list[tuple[str, Any]] = []
    for number, row in enumerate(rows, start=1):
        category = row.get("category")
        # pyarrow reads a struct column as a dict and a map column as a list of pairs.
        if isinstance(category, list) and all(
            isinstance(p, tuple) and len(p) == 2 for p in category
        ):
            row["category"] = dict(category)
        records.append((f"{path}: row {number}", row))
    return records


def load_examples(path: Path) -> list[Example]:
    """Read a JSONL (``.jsonl``/``.json``, one object per line) or Parquet data set.

    Each record needs ``prompt`` and ``response`` (strings), ``category`` (a string, or a
    BeaverTails mapping category → bool, reduced to its true keys sorted and joined with
    ``","``) and ``is_safe`` (a boolean); other fields are ignored.

    Raises:
        HftaInputError: the file is missing or empty, has an unknown suffix, or a row lacks a
            required field or has a wrongly typed one (the message names file, row and field).
    """
    path = Path(path)
    if not path.is_file():
        raise HftaInputError(f"{path}: data file not found")
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        records = _records_jsonl(path)
    elif suffix in PARQUET_SUFFIXES:
        records = _records_parquet(path)
    else:
        raise HftaInputError(
            f"{path}: unknown data format '{suffix}' (expected .jsonl, .json or .parquet)"
        )
    if not records:
        raise HftaInputError(f"{path}: data file holds no examples")
    return [_example_from_record(record, where) for where, record in records]


def save_examples(examples: Sequence[Example], path: Path) -> None:
    """Write examples as JSONL or Parquet (by suffix), atomically: temp file, then rename."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in JSONL_SUFFIXES | PARQUET_SUFFIXES:
        raise HftaInputError(
            f"{path}: unknown data format '{suffix}' (expected .jsonl, .json or .parquet)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if suffix in JSONL_SUFFIXES:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                for example in examples:
                    handle.write(json.dumps(example.model_dump(), ensure_ascii=False) + "\n")
        else:
            os.close(descriptor)
            import pyarrow as pa
            import pyarrow.parquet as pq

            columns = {f: [getattr(e, f) for e in examples] for f in REQUIRED_FIELDS}
            schema = pa.schema(
                [
                    ("prompt", pa.string()),
                    ("response", pa.string()),
                    ("category", pa.string()),
                    ("is_safe", pa.bool_()),
                ]
            )
            pq.write_table(pa.table(columns, schema=schema), temp_name)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
