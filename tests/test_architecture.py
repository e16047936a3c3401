"""The layering rule: empirical → theory ← proofs, and theory never imports torch."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest


def _modules_after_import(package: str) -> set[str]:
    code = f"import sys, {package}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(out.stdout.split())


def test_theory_imports_no_torch_and_no_empirical() -> None:
    loaded = _modules_after_import("theory")
    assert not {"torch", "transformers", "empirical"} & loaded


def test_theory_catalogue_imports_no_torch() -> None:
    code = "import sys, theory; theory.catalogue(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_proofs_do_not_import_empirical_or_torch() -> None:
    loaded = _modules_after_import("proofs")
    assert not {"torch", "transformers", "empirical"} & loaded


# ---------------------------------------------------------------------- empirical.certify
CERTIFY = Path(__file__).resolve().parents[1] / "empirical" / "certify"
EMPIRICAL = CERTIFY.parent
#: The issue's ceiling on a module of empirical/certify (docs: issue 12, "Done when").
MAX_LINES = 600


def _oversized(paths: list[Path], limit: int) -> list[str]:
    return [f"{p.name}: {n} lines" for p in paths if (n := len(p.read_text().splitlines())) > limit]


def _wiring_literals(source: str, names: set[str]) -> list[str]:
    """String constants (docstrings excluded) that name a theorem: a label ("T1") or a
    catalogue name ("smoothness_sandwich"). The check modules take both from theory's objects."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and (re.fullmatch(r"T\d+", node.value) or node.value.split(":")[0] in names)
    ]


def _global_hooks(source: str) -> bool:
    return re.search(r"register_optimizer_step_(pre|post)_hook", source) is not None


def test_certify_modules_stay_small() -> None:
    assert _oversized(sorted(CERTIFY.glob("*.py")), MAX_LINES) == []


def test_verify_modules_stay_small() -> None:
    assert _oversized(sorted((EMPIRICAL / "verify").glob("*.py")), MAX_LINES) == []


def test_certify_wires_no_theorem_by_string_literal() -> None:
    import theory

    names = {t.name for t in theory.catalogue()}
    found = {p.name: _wiring_literals(p.read_text(), names) for p in sorted(CERTIFY.glob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}


def test_empirical_uses_no_global_optimizer_hooks() -> None:
    """Iterates are handed over by the attack loop's ``on_iterate`` callback."""
    assert [p.name for p in sorted(EMPIRICAL.rglob("*.py")) if _global_hooks(p.read_text())] == []


def test_the_architecture_checks_can_fail(tmp_path: Path) -> None:
    """Negative controls: a long module, a label wired by a literal, a global hook."""
    long = tmp_path / "long.py"
    long.write_text("x = 1\n" * (MAX_LINES + 1))
    assert _oversized([long], MAX_LINES) == [f"long.py: {MAX_LINES + 1} lines"]
    wired = (
        'def plan():\n    """T1 in a docstring is fine."""\n'
        '    add("T1", "smoothness_sandwich:x")\n'
    )
    assert _wiring_literals(wired, {"smoothness_sandwich"}) == ["T1", "smoothness_sandwich:x"]
    assert _global_hooks("from torch.optim.optimizer import register_optimizer_step_pre_hook")


def _solves_bound_itself(source: str) -> bool:
    """Whether a module solves its own ``bound = tau`` (instead of the Theorem base)."""
    return "sp.solve(sp.Eq(self.bound, sym.tau)" in source


def test_the_steps_solver_lives_once_in_the_theorem_base() -> None:
    """T2, T3, T4 and T9 take ``steps_solution`` from ``theory.theorem.Theorem``; no theorem
    module solves its own bound again."""
    theorems = Path(__file__).resolve().parents[1] / "theory" / "theorems"
    copies = [p.name for p in theorems.glob("*.py") if _solves_bound_itself(p.read_text())]
    assert copies == []
    assert _solves_bound_itself((theorems.parent / "theorem.py").read_text())


@pytest.mark.negative_control
def test_a_copied_solver_is_detected() -> None:
    assert _solves_bound_itself("roots = sp.solve(sp.Eq(self.bound, sym.tau), sym.t)")


# ---------------------------------------------------------------------- reading a verdict
#: What ``empirical.verify.document`` still imports torch through (modules of other owners):
#: ``empirical.engine.attack`` (``AttackConfig``, a field type of the document), ``empirical.
#: defences.record`` (transformers' ``PreTrainedModel`` at module level) and
#: ``empirical.verify.outcome`` (``RunRole``; it imports ``empirical.engine.attack``).
@pytest.mark.parametrize("module", [
    "empirical.verify.evidence",
    "empirical.verify.document",
    "empirical.engine.attack_config",
    "empirical.verify.store",
])
def test_reading_a_verdict_needs_no_torch(module: str) -> None:
    """The typed verdict document (``verdict.json``), an attack's configuration and the cache
    of attacks are read without torch or transformers."""
    assert not {"torch", "transformers"} & _modules_after_import(module)


@pytest.mark.negative_control
def test_the_torch_import_check_can_fail() -> None:
    assert "torch" in _modules_after_import("empirical.engine.attack")


def test_attacks_take_their_inputs_as_one_bundle() -> None:
    """``attack``, ``run_attack`` and ``attack_and_measure`` share one keyword signature for
    what an attack is given (``AttackInputs``, as ``**inputs``), written once."""
    import inspect

    from empirical.certify.capture import attack_and_measure
    from empirical.engine.attack import AttackInputs, attack, run_attack

    fields = set(AttackInputs.__optional_keys__)
    assert fields == {
        "model", "tokenizer", "data", "evaluation", "reference", "harm_proxy", "capability_proxy"
    }
    for function in (attack, run_attack, attack_and_measure):
        parameters = inspect.signature(function).parameters
        assert not fields & set(parameters), function.__name__
        assert parameters["inputs"].kind is inspect.Parameter.VAR_KEYWORD, function.__name__
