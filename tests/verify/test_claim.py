"""Claim files: strict validation naming the bad field, and the data a claim resolves to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empirical.datasets.data import Example, fingerprint, save_examples
from empirical.verify.claim import (
    CLAIMS_DIRECTORY,
    DEFAULT_CLAIM,
    load_claim,
    parse_claim,
    resolve_data,
)
from theory.errors import DataOverlapError, HftaInputError

MINIMAL = """
[claim]
name = "minimal"

[defence]
name = "none"

[threat_model]
budget_steps = 20
learning_rates = [1e-3]
seeds = [0]

[harm]
phi = 0.5

[conditions]
claimed = ["weak_resistance"]
"""


def _rejected(text: str, *fields: str) -> str:
    with pytest.raises(HftaInputError) as caught:
        parse_claim(text, "claim.toml")
    message = str(caught.value)
    assert "\n" not in message
    for field in fields:
        assert field in message, message
    return message


# --------------------------------------------------------------------------- bundled claims
def test_every_bundled_claim_parses() -> None:
    paths = sorted(CLAIMS_DIRECTORY.glob("*.toml"))
    assert DEFAULT_CLAIM in paths
    assert len(paths) >= 4
    for path in paths:
        claim = load_claim(path)
        assert claim.conditions.claimed


def test_bundled_embedded_claims_resolve_to_disjoint_data() -> None:
    for path in sorted(CLAIMS_DIRECTORY.glob("*.toml")):
        claim = load_claim(path)
        if claim.data.source != "embedded":
            continue
        data = resolve_data(claim, path)
        assert data.ids("defence").isdisjoint(data.ids("attack"))
        assert data.ids("attack").isdisjoint(data.ids("evaluation"))
        assert all(not e.is_safe for e in data.evaluation)


def test_demo_claims_what_the_demonstration_measured() -> None:
    claim = load_claim(DEFAULT_CLAIM)
    assert claim.defence.name == "adversarial-loss"
    assert "trainability" in claim.conditions.measured
    assert "trainability" not in claim.conditions.claimed
    assert {"weak_resistance", "stability"} <= set(claim.conditions.claimed)


def test_minimal_claim_defaults() -> None:
    claim = parse_claim(MINIMAL)
    assert claim.data.source == "embedded"
    assert claim.statistics.confidence == 0.95
    assert claim.search.strategy == "grid"
    assert claim.weak_resistance().budget == 20
    assert claim.alpha == pytest.approx(0.05)


# --------------------------------------------------------------------------- bad input
def test_unknown_key_is_rejected_by_name() -> None:
    _rejected(MINIMAL.replace("phi = 0.5", "phi = 0.5\nthreshold = 0.4"), "harm.threshold")


def test_unknown_section_is_rejected() -> None:
    _rejected(MINIMAL + "\n[extras]\nx = 1\n", "extras")


def test_wrong_type_is_rejected() -> None:
    _rejected(MINIMAL.replace("budget_steps = 20", 'budget_steps = "20"'), "budget_steps")


def test_float_budget_is_rejected() -> None:
    _rejected(MINIMAL.replace("budget_steps = 20", "budget_steps = 20.0"), "budget_steps")


def test_negative_budget_is_rejected() -> None:
    _rejected(MINIMAL.replace("budget_steps = 20", "budget_steps = -5"), "budget_steps")


def test_nan_is_rejected() -> None:
    _rejected(MINIMAL.replace("phi = 0.5", "phi = nan"), "harm.phi")
    _rejected(MINIMAL.replace("[1e-3]", "[nan]"), "learning_rates")


@pytest.mark.parametrize("phi", ["1.5", "-0.1", "inf"])
def test_phi_outside_the_proxy_range_is_rejected(phi: str) -> None:
    _rejected(MINIMAL.replace("phi = 0.5", f"phi = {phi}"), "harm.phi")


def test_phi_range_comes_from_theory() -> None:
    message = _rejected(MINIMAL.replace("phi = 0.5", "phi = 1.5"), "harm.phi")
    assert "threshold_in_proxy_range" in message


def test_duplicate_learning_rates_are_rejected() -> None:
    _rejected(MINIMAL.replace("[1e-3]", "[1e-3, 1e-3]"), "learning_rates")


def test_missing_section_is_rejected() -> None:
    _rejected(MINIMAL.replace("[harm]\nphi = 0.5", ""), "harm")


def test_empty_and_non_toml_claims_are_rejected() -> None:
    _rejected("", "empty")
    _rejected("this is not = = toml", "not valid TOML")


def test_garbage_bytes_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "garbage.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(HftaInputError, match="not a text file"):
        load_claim(path)


def test_missing_claim_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(HftaInputError, match="not found"):
        load_claim(tmp_path / "absent.toml")


def test_unknown_condition_is_rejected() -> None:
    _rejected(MINIMAL.replace('["weak_resistance"]', '["resistance"]'), "conditions.claimed")


def test_claimed_and_measured_must_differ() -> None:
    text = MINIMAL.replace(
        'claimed = ["weak_resistance"]',
        'claimed = ["weak_resistance"]\nmeasured = ["weak_resistance"]',
    )
    _rejected(text, "both claimed and measured")


def test_stability_needs_its_section_and_an_original_model() -> None:
    claimed = MINIMAL.replace('["weak_resistance"]', '["weak_resistance", "stability"]')
    _rejected(claimed, "[stability]")
    with_section = claimed + "\n[stability]\nepsilon = 0.05\n"
    _rejected(with_section, "original_path")


def test_negative_stability_tolerance_is_rejected_by_theory() -> None:
    text = MINIMAL.replace('["weak_resistance"]', '["weak_resistance", "stability"]')
    text = text.replace('name = "none"', 'name = "adversarial-loss"')
    _rejected(text + "\n[stability]\nepsilon = -0.1\n", "stability", "tolerance_nonnegative")


def test_overlapping_categories_are_rejected() -> None:
    text = MINIMAL.replace(
        "[threat_model]",
        '[data]\ncategories = ["next"]\ncross_domain_categories = ["next"]\n\n[threat_model]',
    )
    _rejected(text, "cross_domain_categories", "overlap")


def test_unknown_category_is_rejected() -> None:
    text = MINIMAL.replace("[threat_model]", '[data]\ncategories = ["poison"]\n\n[threat_model]')
    _rejected(text, "data", "poison")


def test_cross_domain_generalization_needs_cross_domain_data() -> None:
    text = MINIMAL.replace('["weak_resistance"]', '["generalization_cross_domain"]')
    _rejected(text, "cross-domain data")


def test_a_search_that_leaves_the_threat_model_is_bad_input() -> None:
    """One threat model: the search may not attack with rates the claim does not state."""
    text = MINIMAL + '\n[search]\nstrategy = "optuna"\nlearning_rate_range = [1e-5, 1e-4]\n'
    _rejected(text, "search.learning_rate_range", "leaves the threat model")
    wider = MINIMAL + '\n[search]\nstrategy = "optuna"\nlearning_rate_range = [1e-3, 3e-3]\n'
    _rejected(wider, "leaves the threat model", "threat_model.learning_rate_range")


def test_the_threat_model_declares_the_search_range() -> None:
    """A range declared in [threat_model] is the attacker's; the search explores it and the
    listed rates must lie inside it."""
    declared = MINIMAL.replace(
        "learning_rates = [1e-3]", "learning_rates = [1e-3]\nlearning_rate_range = [1e-4, 3e-3]"
    )
    claim = parse_claim(declared + '\n[search]\nstrategy = "optuna"\n')
    assert claim.threat_model.learning_rate_bounds() == (1e-4, 3e-3)
    assert claim.threat_model.contains_learning_rate(2.37e-3)
    assert not claim.threat_model.contains_learning_rate(4e-3)
    inside = declared + '\n[search]\nstrategy = "optuna"\nlearning_rate_range = [2e-4, 1e-3]\n'
    assert parse_claim(inside).search.learning_rate_range == [2e-4, 1e-3]
    outside = MINIMAL.replace(
        "learning_rates = [1e-3]", "learning_rates = [1e-3]\nlearning_rate_range = [1e-5, 1e-4]"
    )
    _rejected(outside, "learning_rate_range", "outside")


def test_files_source_needs_its_paths() -> None:
    text = MINIMAL.replace("[threat_model]", '[data]\nsource = "files"\n\n[threat_model]')
    _rejected(text, "defence", "files")


# --------------------------------------------------------------------------- data
def test_embedded_categories_split_in_and_cross_domain() -> None:
    text = MINIMAL.replace(
        "[threat_model]",
        '[data]\ncategories = ["next", "flip"]\ncross_domain_categories = ["half"]\n'
        "evaluation_examples_per_category = 7\n\n[threat_model]",
    )
    data = resolve_data(parse_claim(text))
    assert data.categories("defence") == ["flip", "next"]
    assert data.categories("attack") == ["flip", "next"]
    assert data.categories("cross_attack") == ["half"]
    assert len(data.evaluation) == 14
    assert len(data.cross_evaluation) == 7
    assert data.refusal == "sorry"
    assert all(e.is_safe for e in data.retain)


def _examples(category: str, count: int, *, safe: bool = False, prefix: str = "") -> list[Example]:
    return [
        Example(
            prompt=f"{prefix}{category} {i}=",
            response="sorry" if safe else f"{category}{i}",
            category=category,
            is_safe=safe,
        )
        for i in range(count)
    ]


def _files_claim(tmp_path: Path, splits: dict[str, list[Example]], extra: str = "") -> Path:
    lines = ['[data]', 'source = "files"', 'refusal = "sorry"']
    for name, examples in splits.items():
        save_examples(examples, tmp_path / f"{name}.jsonl")
        lines.append(f'{name} = "{name}.jsonl"')
    text = MINIMAL.replace("[threat_model]", "\n".join(lines) + "\n" + extra + "\n[threat_model]")
    path = tmp_path / "claim.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_files_resolve_relative_to_the_claim(tmp_path: Path) -> None:
    path = _files_claim(
        tmp_path,
        {
            "defence": _examples("a", 4, prefix="d "),
            "attack": _examples("a", 5, prefix="x "),
            "evaluation": [
                *_examples("a", 3, prefix="e "),
                *_examples("a", 2, safe=True, prefix="s "),
            ],
            "reference": _examples("ok", 3, safe=True, prefix="r "),
        },
    )
    data = resolve_data(load_claim(path), path)
    assert len(data.attack) == 5
    assert len(data.evaluation) == 3  # only harmful prompts measure f
    assert data.source == "files"
    assert {fingerprint(e) for e in data.defence} == data.ids("defence")


def test_overlapping_files_are_rejected(tmp_path: Path) -> None:
    shared = _examples("a", 4, prefix="d ")
    path = _files_claim(
        tmp_path,
        {
            "defence": shared,
            "attack": shared[:2] + _examples("a", 3, prefix="x "),
            "evaluation": _examples("a", 3, prefix="e "),
            "reference": _examples("ok", 3, safe=True, prefix="r "),
        },
    )
    with pytest.raises(DataOverlapError, match="'defence' and 'attack'"):
        resolve_data(load_claim(path), path)


def test_missing_data_file_names_the_field(tmp_path: Path) -> None:
    path = _files_claim(
        tmp_path,
        {
            "defence": _examples("a", 4, prefix="d "),
            "attack": _examples("a", 5, prefix="x "),
            "evaluation": _examples("a", 3, prefix="e "),
            "reference": _examples("ok", 3, safe=True, prefix="r "),
        },
    )
    (tmp_path / "attack.jsonl").unlink()
    with pytest.raises(HftaInputError, match=r"data\.attack: data file not found"):
        resolve_data(load_claim(path), path)


def test_in_domain_attack_outside_the_defence_categories_is_rejected(tmp_path: Path) -> None:
    path = _files_claim(
        tmp_path,
        {
            "defence": _examples("a", 4, prefix="d "),
            "attack": _examples("b", 5, prefix="x "),
            "evaluation": _examples("b", 3, prefix="e "),
            "reference": _examples("ok", 3, safe=True, prefix="r "),
        },
    )
    text = path.read_text().replace('["weak_resistance"]', '["generalization_in_domain"]')
    path.write_text(text)
    with pytest.raises(HftaInputError, match=r"data\.attack.*not among the defence"):
        resolve_data(load_claim(path), path)


def test_cross_domain_files_must_use_other_categories(tmp_path: Path) -> None:
    path = _files_claim(
        tmp_path,
        {
            "defence": _examples("a", 4, prefix="d "),
            "attack": _examples("a", 5, prefix="x "),
            "evaluation": _examples("a", 3, prefix="e "),
            "reference": _examples("ok", 3, safe=True, prefix="r "),
            "cross_domain_attack": _examples("a", 3, prefix="c "),
            "cross_domain_evaluation": _examples("a", 3, prefix="ce "),
        },
    )
    text = path.read_text().replace('["weak_resistance"]', '["generalization_cross_domain"]')
    path.write_text(text)
    with pytest.raises(HftaInputError, match=r"cross_domain_attack.*used by both"):
        resolve_data(load_claim(path), path)


def test_claim_round_trips_through_json() -> None:
    claim = load_claim(DEFAULT_CLAIM)
    again = json.loads(json.dumps(claim.model_dump(mode="json")))
    assert again["threat_model"]["budget_steps"] == claim.threat_model.budget_steps
