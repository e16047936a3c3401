"""Every catalogued theorem has a proof module, with obligations and negative controls, and
every assumption a proof rests on is a named axiom, a theory hypothesis, or a proved lemma."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

from proofs import registry, runner
from proofs.axioms import AXIOMS
from proofs.obligation import Proof, Status
from theory.theorem import Theorem
from theory.theorems import CATALOGUE_MODULES


def catalogue() -> list[Theorem]:
    """theory.catalogue(), read module by module (under pytest, ``tests/theory`` can shadow
    the top-level ``theory`` package, so its ``catalogue`` function is not used here)."""
    return [
        importlib.import_module(f"theory.theorems.{module}").THEOREM for module in CATALOGUE_MODULES
    ]


@pytest.fixture(scope="module")
def proofs() -> list[Proof]:
    return registry.collect()


def test_every_catalogued_theorem_has_a_proof_module() -> None:
    names = [t.name for t in catalogue()]
    assert names == list(CATALOGUE_MODULES)
    for name in names:
        module = importlib.import_module(f"proofs.theorems.{name}")
        assert callable(module.proof), name


def test_each_proof_is_about_its_theorem_and_has_controls(proofs: list[Proof]) -> None:
    assert [p.theorem.name for p in proofs] == list(CATALOGUE_MODULES)
    for proof in proofs:
        kinds = {o.kind for o in proof.obligations}
        assert kinds == {"obligation", "control"}, proof.theorem.name
        assert proof.theorem in catalogue()


def test_every_assumption_used_is_an_axiom_a_hypothesis_or_a_lemma(proofs: list[Proof]) -> None:
    labels = {f"{t.label} {t.name}" for t in catalogue()}
    for proof in proofs:
        lemmas = [o.name for o in proof.obligations if o.kind == "obligation"]
        hypotheses = {a.name for a in proof.theorem.hypotheses}
        for obligation in proof.obligations:
            for used in obligation.uses:
                known = (
                    used in AXIOMS
                    or used in hypotheses
                    or any(used.startswith(c) for c in labels)
                    or any(name.startswith(used) for name in lemmas)
                )
                assert known, f"{proof.theorem.label} {obligation.name}: unknown basis {used!r}"


def test_every_axiom_is_used_by_some_proof(proofs: list[Proof]) -> None:
    used = {u for p in proofs for o in p.obligations for u in o.uses}
    assert set(AXIOMS) - used == set()


class _Unproved(Theorem):
    label = "T99"
    name = "unproved_theorem"
    title = "a catalogued theorem nobody proved"
    source = "test"


@pytest.mark.negative_control
def test_a_catalogued_theorem_without_a_proof_module_fails_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("theory.theorems.unproved_theorem")
    module.THEOREM = _Unproved()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "theory.theorems.unproved_theorem", module)
    monkeypatch.setattr(registry, "CATALOGUE_MODULES", ("unproved_theorem",))
    rows, text, code = runner.execute(runner.Options())
    assert code == 1
    assert rows[0].status is Status.FAILED
    assert "no proof module proofs/theorems/unproved_theorem.py" in rows[0].detail
    assert "FAILURE" in text


def test_proofs_import_no_torch() -> None:
    code = (
        "import sys; from proofs import registry; registry.collect(['T1', 'T8']); "
        "print(sorted({'torch', 'transformers', 'empirical'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
