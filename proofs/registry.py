"""Pair every theorem of theory's catalogue with its proof module ``proofs.theorems.<name>``.

A proof module exposes ``proof() -> proofs.obligation.Proof``. A catalogued theorem whose
theory module or proof module cannot be imported still gets a row: a failed obligation saying
what is missing, so a run never silently skips a theorem.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from proofs.obligation import Budget, Obligation, Outcome, Proof, Status
from theory.theorem import Theorem
from theory.theorems import CATALOGUE_MODULES

#: a registry returns the proofs of the theorems whose label or name is in its argument (all
#: when empty): ``collect`` by default; tests pass their own
Registry = Callable[[Sequence[str]], list[Proof]]


class UnknownTheoremError(ValueError):
    """A requested theorem key matches no catalogued theorem."""


class _Missing(Theorem):
    """Stand-in for a catalogued theorem whose theory module failed to import."""

    label = "?"
    name = "?"
    title = "missing theory module"
    source = "-"


def _failure(name: str, why: str) -> Obligation:
    def discharge(budget: Budget) -> Outcome:
        return Outcome(Status.FAILED, why)

    return Obligation(name, why, "z3", discharge)


def _missing_theory(module: str, error: Exception) -> Proof:
    theorem = type(f"Missing_{module}", (_Missing,), {"name": module})()
    why = f"theory.theorems.{module} does not import: {type(error).__name__}: {error}"
    return Proof(theorem, (_failure("theory module", why),))


def proof_for(module: str) -> Proof:
    """The proof of the catalogued theorem ``module`` (a failing stand-in if unavailable)."""
    try:
        theorem = importlib.import_module(f"theory.theorems.{module}").THEOREM
    except Exception as exc:
        return _missing_theory(module, exc)
    try:
        proof_module = importlib.import_module(f"proofs.theorems.{module}")
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == f"proofs.theorems.{module}":
            why = f"no proof module proofs/theorems/{module}.py"
        else:
            why = f"proofs.theorems.{module} does not import: {type(exc).__name__}: {exc}"
        return Proof(theorem, (_failure("proof module", why),))
    try:
        proof: Proof = proof_module.proof()
    except Exception as exc:  # a broken proof module fails its theorem, not the whole run
        why = f"proofs.theorems.{module}.proof() raised {type(exc).__name__}: {exc}"
        return Proof(theorem, (_failure("proof module", why),))
    return proof


def collect(only: Sequence[str] = ()) -> list[Proof]:
    """One proof per catalogued theorem (those whose label or name is in ``only``; all when
    empty), in catalogue order. Only the selected proofs are built."""
    keys = {module: {module} | _label(module) for module in CATALOGUE_MODULES}
    known = set().union(*keys.values())
    unknown = sorted(set(only) - known)
    if unknown:
        raise UnknownTheoremError(
            f"unknown theorem {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    chosen = [m for m in CATALOGUE_MODULES if not only or keys[m] & set(only)]
    return [proof_for(module) for module in chosen]


def _label(module: str) -> set[str]:
    try:
        return {importlib.import_module(f"theory.theorems.{module}").THEOREM.label}
    except Exception:  # reported as a failed row by proof_for
        return set()
