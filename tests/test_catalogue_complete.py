"""Every catalogued theorem has its proof, its check (or a reason for none) and its property test.

For each theorem of ``theory.catalogue()`` (keyed by ``Theorem.name``):

* a proof module ``proofs/theorems/<name>.py``;
* a check module ``empirical/certify/<name>.py`` registered in ``empirical.certify.CHECKS``
  under the theorem's name with the catalogue's own theorem object, or an entry in
  ``empirical.certify.NO_CHECK`` saying why there is none (not both);
* a property test ``tests/properties/test_<name>.py`` that names the theorem.

Theorem → proof → property test → check is then one hop each, by file name. Negative
controls: a fake theorem with none of its files, a check registered under another theorem's
object, a theorem both checked and excused, and an empty reason are all reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import theory
from empirical.certify import CHECKS, NO_CHECK
from empirical.certify.registry import TheoremChecks
from theory.theorem import Theorem

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class _Named:
    """Stands in for a theorem in the negative controls (only ``label`` and ``name`` read)."""

    label: str
    name: str


def missing_pieces(
    theorem: Theorem | _Named,
    *,
    root: Path = ROOT,
    checks: Mapping[str, TheoremChecks] = CHECKS,
    no_check: Mapping[str, str] = NO_CHECK,
) -> list[str]:
    """What ``theorem`` lacks, one line each (empty: complete)."""
    name, problems = theorem.name, []
    if not (root / "proofs" / "theorems" / f"{name}.py").is_file():
        problems.append(f"{theorem.label} {name}: no proof module proofs/theorems/{name}.py")
    entry, reason = checks.get(name), no_check.get(name)
    if entry is not None and reason is not None:
        problems.append(f"{theorem.label} {name}: both a check and a NO_CHECK reason")
    if entry is not None:
        if not (root / "empirical" / "certify" / f"{name}.py").is_file():
            problems.append(f"{theorem.label} {name}: no check module empirical/certify/{name}.py")
        if entry.module != f"empirical.certify.{name}":
            problems.append(f"{theorem.label} {name}: registered check lives in {entry.module}")
        if entry.theorem is not theorem:
            problems.append(f"{theorem.label} {name}: registered under another theorem object")
        if not entry.planners:
            problems.append(f"{theorem.label} {name}: registered without a planner")
    elif reason is None:
        problems.append(f"{theorem.label} {name}: no check and no NO_CHECK reason")
    elif not reason.strip():
        problems.append(f"{theorem.label} {name}: an empty NO_CHECK reason")
    test = root / "tests" / "properties" / f"test_{name}.py"
    if not test.is_file():
        problems.append(f"{theorem.label} {name}: no property test tests/properties/test_{name}.py")
    elif name not in test.read_text(encoding="utf-8"):
        problems.append(f"{theorem.label} {name}: the property test does not name the theorem")
    return problems


@pytest.mark.parametrize("theorem", theory.catalogue(), ids=lambda t: f"{t.label}-{t.name}")
def test_every_catalogued_theorem_has_proof_check_and_property_test(theorem: Theorem) -> None:
    assert missing_pieces(theorem) == []


def test_the_registry_names_only_catalogued_theorems() -> None:
    names = {t.name for t in theory.catalogue()}
    assert set(CHECKS) <= names
    assert set(NO_CHECK) <= names


def test_a_check_module_is_named_after_its_theorem() -> None:
    """Every module in empirical/certify that is not shared code checks a catalogued theorem."""
    shared = {
        "__init__", "records", "checks_base", "constants", "capture", "registry", "power",
        "independent", "float64", "margins", "directional", "weak_checks",
        "margin_curvature", "attacker_class",
    }
    modules = {p.stem for p in (ROOT / "empirical" / "certify").glob("*.py")} - shared
    assert modules == set(CHECKS)


# ---------------------------------------------------------------------- negative controls
def test_a_fake_theorem_without_files_is_reported() -> None:
    problems = missing_pieces(_Named("T99", "imaginary_bound"))
    assert len(problems) == 3
    assert any("proofs/theorems/imaginary_bound.py" in p for p in problems)
    assert any("no check and no NO_CHECK reason" in p for p in problems)
    assert any("tests/properties/test_imaginary_bound.py" in p for p in problems)


def test_a_check_registered_under_another_theorem_is_reported() -> None:
    first, second = theory.catalogue()[:2]
    wrong: dict[str, Any] = {
        **CHECKS,
        first.name: TheoremChecks(second, CHECKS[second.name].module, CHECKS[second.name].planners),
    }
    problems = missing_pieces(first, checks=wrong)
    assert any("registered check lives in" in p for p in problems)
    assert any("another theorem object" in p for p in problems)


def test_a_theorem_both_checked_and_excused_or_with_an_empty_reason_is_reported() -> None:
    checked = next(t for t in theory.catalogue() if t.name in CHECKS)
    excused = next(t for t in theory.catalogue() if t.name in NO_CHECK)
    both = missing_pieces(checked, no_check={**NO_CHECK, checked.name: "a reason"})
    assert any("both a check and a NO_CHECK reason" in p for p in both)
    empty = missing_pieces(excused, no_check={**NO_CHECK, excused.name: "  "})
    assert any("empty NO_CHECK reason" in p for p in empty)


def test_a_property_test_that_does_not_name_its_theorem_is_reported(tmp_path: Path) -> None:
    theorem = theory.catalogue()[0]
    for folder, filename in (
        ("proofs/theorems", f"{theorem.name}.py"),
        ("empirical/certify", f"{theorem.name}.py"),
        ("tests/properties", f"test_{theorem.name}.py"),
    ):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / filename).write_text('"""Something else."""\n', encoding="utf-8")
    problems = missing_pieces(theorem, root=tmp_path)
    assert problems == [
        f"{theorem.label} {theorem.name}: the property test does not name the theorem"
    ]
