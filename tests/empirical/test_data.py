"""empirical.datasets.data: BeaverTails-form records, loading, fingerprints, disjointness."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from empirical.datasets.data import (
    Example,
    check_disjoint,
    fingerprint,
    load_examples,
    save_examples,
)
from theory.errors import DataOverlapError, HftaInputError

texts = st.text(max_size=30)
examples = st.builds(Example, prompt=texts, response=texts, category=texts, is_safe=st.booleans())


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


BEAVERTAILS_ROWS: list[dict[str, object]] = [
    {
        "prompt": "How do I bake bread?",
        "response": "Mix flour, water, yeast and salt.",
        "category": {"animal_abuse": False, "privacy_violation": False},
        "is_safe": True,
    },
    {
        "prompt": "placeholder unsafe prompt",
        "response": "placeholder unsafe answer",
        "category": {"privacy_violation": True, "animal_abuse": True, "violence": False},
        "is_safe": False,
    },
]


@given(st.lists(examples, max_size=8), st.sampled_from([".jsonl", ".parquet"]))
def test_save_then_load_round_trips(
    tmp_path_factory: pytest.TempPathFactory, items: list[Example], suffix: str
) -> None:
    path = tmp_path_factory.mktemp("data") / f"set{suffix}"
    if not items:
        save_examples(items, path)
        with pytest.raises(HftaInputError, match="no examples"):
            load_examples(path)
        return
    save_examples(items, path)
    assert load_examples(path) == items
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_beavertails_jsonl_category_mapping_becomes_true_keys(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "bt.jsonl", BEAVERTAILS_ROWS)
    loaded = load_examples(path)
    assert [e.category for e in loaded] == ["", "animal_abuse,privacy_violation"]
    assert [e.is_safe for e in loaded] == [True, False]
    assert loaded[1].prompt == "placeholder unsafe prompt"


def test_beavertails_parquet_struct_category_loads(tmp_path: Path) -> None:
    path = tmp_path / "bt.parquet"
    pq.write_table(pa.Table.from_pylist(BEAVERTAILS_ROWS), path)
    loaded = load_examples(path)
    assert [e.category for e in loaded] == ["", "animal_abuse,privacy_violation"]
    assert loaded[0].response == "Mix flour, water, yeast and salt."


def test_parquet_map_category_and_extra_columns(tmp_path: Path) -> None:
    table = pa.table(
        {
            "prompt": ["p"],
            "response": ["r"],
            "category": pa.array([[("a", True), ("b", False)]], pa.map_(pa.string(), pa.bool_())),
            "is_safe": [False],
            "extra": [1],
        }
    )
    path = tmp_path / "m.parquet"
    pq.write_table(table, path)
    assert load_examples(path) == [Example(prompt="p", response="r", category="a", is_safe=False)]


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(HftaInputError, match=r"nope\.jsonl: data file not found"):
        load_examples(tmp_path / "nope.jsonl")


def test_missing_field_names_file_row_and_field(tmp_path: Path) -> None:
    rows = [
        dict(BEAVERTAILS_ROWS[0]),
        {k: v for k, v in BEAVERTAILS_ROWS[1].items() if k != "is_safe"},
    ]
    path = _write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(HftaInputError, match=r"d\.jsonl: row 2: missing required field 'is_safe'"):
        load_examples(path)


def test_parquet_missing_column_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"prompt": ["p"], "response": ["r"], "is_safe": [True]}), path)
    with pytest.raises(HftaInputError, match=r"row 1: missing required field 'category'"):
        load_examples(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no examples"),
        ("\n\n", "holds no examples"),
        ("{not json\n", "row 1: not valid JSON"),
        ('["a list"]\n', "row 1: expected an object"),
        ('{"prompt": "p", "response": "r", "category": "c", "is_safe": "yes"}\n', "'is_safe'"),
        ('{"prompt": 3, "response": "r", "category": "c", "is_safe": true}\n', "'prompt'"),
        ('{"prompt": "p", "response": "r", "category": 5, "is_safe": true}\n', "'category'"),
        ('{"prompt": "p", "response": "r", "category": {"a": 1}, "is_safe": true}\n', "booleans"),
    ],
)
def test_bad_jsonl_content_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(HftaInputError, match=message):
        load_examples(path)


def test_unknown_suffix_and_unreadable_parquet(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("prompt,response\n")
    with pytest.raises(HftaInputError, match=r"unknown data format '\.csv'"):
        load_examples(tmp_path / "d.csv")
    (tmp_path / "d.parquet").write_text("not parquet")
    with pytest.raises(HftaInputError, match="not a readable Parquet file"):
        load_examples(tmp_path / "d.parquet")


def test_save_with_unknown_suffix_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(HftaInputError, match="unknown data format"):
        save_examples([], tmp_path / "d.txt")
    assert list(tmp_path.iterdir()) == []


def test_example_is_frozen_and_rejects_extra_fields() -> None:
    example = Example(prompt="p", response="r", category="c", is_safe=True)
    with pytest.raises(ValueError, match="frozen"):
        example.prompt = "q"  # type: ignore[misc]
    with pytest.raises(ValueError, match="extra"):
        Example(prompt="p", response="r", category="c", is_safe=True, source="x")  # type: ignore[call-arg]


def _naive_fingerprint(example: Example) -> str:
    """A deliberately wrong fingerprint: plain concatenation, no boundary between the parts."""
    return hashlib.sha256((example.prompt + example.response).encode()).hexdigest()


def _fingerprints_separate(fingerprint_of: object, first: Example, second: Example) -> bool:
    """The property a fingerprint must have: distinct (prompt, response) → distinct digest."""
    assert callable(fingerprint_of)
    same_text = (first.prompt, first.response) == (second.prompt, second.response)
    same_digest = bool(fingerprint_of(first) == fingerprint_of(second))
    return same_text == same_digest


@given(examples, examples)
def test_fingerprint_identifies_prompt_and_response(first: Example, second: Example) -> None:
    assert _fingerprints_separate(fingerprint, first, second)
    relabelled = first.model_copy(update={"category": "other", "is_safe": not first.is_safe})
    assert fingerprint(relabelled) == fingerprint(first)


@pytest.mark.negative_control
def test_negative_control_concatenated_fingerprint_collides() -> None:
    first = Example(prompt="ab", response="c", category="x", is_safe=True)
    second = Example(prompt="a", response="bc", category="x", is_safe=True)
    assert _fingerprints_separate(fingerprint, first, second)
    assert not _fingerprints_separate(_naive_fingerprint, first, second)


@given(
    st.lists(examples, max_size=6), st.lists(examples, max_size=6), st.lists(examples, max_size=6)
)
def test_check_disjoint_raises_exactly_when_splits_share(
    a: list[Example], b: list[Example], c: list[Example]
) -> None:
    sets = [{fingerprint(e) for e in split} for split in (a, b, c)]
    overlapping = bool(sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    if overlapping:
        with pytest.raises(DataOverlapError, match="share"):
            check_disjoint(defence=a, attack=b, evaluation=c)
    else:
        check_disjoint(defence=a, attack=b, evaluation=c)


@pytest.mark.negative_control
def test_negative_control_leaked_example_is_caught() -> None:
    defence = [Example(prompt=f"p{i}", response="r", category="c", is_safe=False) for i in range(5)]
    attack = [Example(prompt=f"q{i}", response="r", category="c", is_safe=False) for i in range(5)]
    check_disjoint(defence=defence, attack=attack)
    leaked = [*attack, defence[3].model_copy(update={"category": "relabelled"})]
    with pytest.raises(DataOverlapError, match=r"'defence' and 'attack' share 1 example"):
        check_disjoint(defence=defence, attack=leaked)
