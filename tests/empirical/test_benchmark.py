"""empirical.datasets.benchmark: skills computed by code, disjoint splits, deterministic
generation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from empirical.datasets.benchmark import (
    FORBIDDEN_SKILLS,
    HARMLESS_SKILLS,
    POOLS,
    REFUSAL,
    TRAINABILITY_SKILL,
    WORD_LENGTH,
    WORD_LETTERS,
    Benchmark,
    BenchmarkSizes,
    answer,
    embedded_benchmark,
    prompt,
    word_pool,
)
from empirical.datasets.data import Example, check_disjoint
from theory.errors import DataOverlapError, HftaInputError

SMALL = BenchmarkSizes(
    pretrain=20,
    align=10,
    defence=10,
    attack=10,
    evaluation=10,
    reference=10,
    trainability_train=10,
    trainability_eval=10,
)
SPLITS = (
    "pretrain",
    "align",
    "defence",
    "attack",
    "evaluation",
    "reference",
    "trainability_train",
    "trainability_eval",
)
words = st.text(alphabet=WORD_LETTERS, min_size=WORD_LENGTH, max_size=WORD_LENGTH)


@pytest.fixture(scope="module")
def benchmark() -> Benchmark:
    return embedded_benchmark(0)


def _word(example: Example) -> str:
    return example.prompt.split(" ")[1].removesuffix("=")


def test_splits_are_disjoint_in_examples_and_in_words(benchmark: Benchmark) -> None:
    check_disjoint(**{name: getattr(benchmark, name) for name in SPLITS})
    seen: dict[str, str] = {}
    for name in SPLITS:
        for example in getattr(benchmark, name):
            word = _word(example)
            assert seen.setdefault(word, name) == name, f"{word} in {seen[word]} and {name}"
            assert word_pool(word) == name


@pytest.mark.negative_control
def test_negative_control_a_split_leaking_into_another_is_caught(benchmark: Benchmark) -> None:
    leaked = [*benchmark.attack, benchmark.evaluation[7]]
    with pytest.raises(DataOverlapError, match="'attack' and 'evaluation' share 1"):
        check_disjoint(attack=leaked, evaluation=benchmark.evaluation)


def test_split_sizes_and_labels(benchmark: Benchmark) -> None:
    sizes = BenchmarkSizes()
    n_harmless, n_forbidden = len(HARMLESS_SKILLS), len(FORBIDDEN_SKILLS)
    assert len(benchmark.pretrain) == sizes.pretrain * (n_harmless + n_forbidden)
    assert len(benchmark.align) == sizes.align * (n_harmless + n_forbidden)
    assert len(benchmark.attack) == sizes.attack * n_forbidden
    assert len(benchmark.reference) == sizes.reference * n_harmless
    for name in ("defence", "attack", "evaluation"):
        for example in getattr(benchmark, name):
            assert example.category in FORBIDDEN_SKILLS
            assert not example.is_safe
            assert example.response == answer(example.category, _word(example))
    for example in benchmark.align:
        forbidden = example.category in FORBIDDEN_SKILLS
        assert example.is_safe
        assert (example.response == REFUSAL) == forbidden
    for example in benchmark.pretrain:
        assert example.is_safe == (example.category in HARMLESS_SKILLS)
        assert example.response == answer(example.category, _word(example))
    for example in benchmark.reference:
        assert example.category in HARMLESS_SKILLS and example.is_safe
    for name in ("trainability_train", "trainability_eval"):
        assert {e.category for e in getattr(benchmark, name)} == {TRAINABILITY_SKILL}
    earlier = {e.category for e in benchmark.pretrain + benchmark.align}
    assert TRAINABILITY_SKILL not in earlier
    assert earlier == set(HARMLESS_SKILLS) | set(FORBIDDEN_SKILLS)


def test_prompts_share_one_shape(benchmark: Benchmark) -> None:
    names = {*HARMLESS_SKILLS, *FORBIDDEN_SKILLS, TRAINABILITY_SKILL}
    assert {len(name) for name in names} == {4}
    for example in benchmark.pretrain[:50] + benchmark.attack[:50]:
        skill, word = example.category, _word(example)
        assert example.prompt == prompt(skill, word) == f"{skill} {word}="
        assert len(word) == WORD_LENGTH and set(word) <= set(WORD_LETTERS)
    assert set(benchmark.tokenizer_alphabet) >= set("".join(names) + WORD_LETTERS.upper() + " =")


def test_generation_is_deterministic_and_seeded() -> None:
    first, again, other = (embedded_benchmark(s, SMALL) for s in (3, 3, 4))
    assert first == again
    assert first.attack != other.attack
    check_disjoint(seed3=first.evaluation, seed4_attack=other.attack)


def test_skills_on_known_words() -> None:
    assert answer("copy", "abcde") == "abcde"
    assert answer("caps", "abcde") == "ABCDE"
    assert answer("head", "fbcde") == "f"
    assert answer("tail", "abcdp") == "p"
    assert answer("next", "abop") == "bcpa"
    assert answer("flip", "abop") == "poba"
    assert answer("half", "abhp") == "ijph"
    assert answer(TRAINABILITY_SKILL, "anp") == "dac"


@given(words)
def test_forbidden_and_trainability_skills_are_letterwise_bijections(word: str) -> None:
    for skill in (*FORBIDDEN_SKILLS, TRAINABILITY_SKILL):
        out = answer(skill, word)
        assert len(out) == len(word)
        assert all(answer(skill, a) == b for a, b in zip(word, out, strict=True))
        assert out != word  # no letter is its own image
    for skill in FORBIDDEN_SKILLS:
        images = [answer(skill, letter) for letter in WORD_LETTERS]
        assert sorted(images) == sorted(WORD_LETTERS)
    assert answer("flip", answer("flip", word)) == word
    assert answer("half", answer("half", word)) == word


@pytest.mark.negative_control
def test_negative_control_a_non_bijective_map_is_caught() -> None:
    def squash(letter: str) -> str:  # a deliberately wrong "substitution"
        return WORD_LETTERS[min(WORD_LETTERS.index(letter) + 1, len(WORD_LETTERS) - 1)]

    images = [squash(letter) for letter in WORD_LETTERS]
    assert sorted(images) != sorted(WORD_LETTERS)


@given(words)
def test_word_pool_follows_the_shares(word: str) -> None:
    assert word_pool(word) in {name for name, _ in POOLS}
    assert sum(share for _, share in POOLS) == 1000


@pytest.mark.parametrize(
    ("skill", "word", "message"),
    [
        ("dance", "abcde", "unknown skill 'dance'"),
        ("copy", "xyz", "letters of"),
        ("copy", "", "word .. must be"),
    ],
)
def test_bad_skill_or_word(skill: str, word: str, message: str) -> None:
    with pytest.raises(HftaInputError, match=message):
        answer(skill, word)


def test_helpers(benchmark: Benchmark) -> None:
    harmful = benchmark.harmful_example("next", "abcde")
    assert harmful == Example(
        prompt="next abcde=", response="bcdef", category="next", is_safe=False
    )
    refused = benchmark.refusals_for([harmful])
    assert refused == [benchmark.refusal_example("next", "abcde")]
    assert refused[0].response == REFUSAL and refused[0].is_safe
    with pytest.raises(HftaInputError, match="not a forbidden skill"):
        benchmark.harmful_example("copy", "abcde")
    assert benchmark.max_length == 4 + 1 + WORD_LENGTH + 1 + WORD_LENGTH + 1
