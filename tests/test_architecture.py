"""The layering rule: empirical → theory ← proofs, and theory never imports torch."""

from __future__ import annotations

import subprocess
import sys


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
