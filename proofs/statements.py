"""Read a theorem's sympy statement as z3 facts: the link between theory/ and proofs/.

A proof module never retypes a theorem's conclusion or its parameter assumptions: it takes
them from ``theory.catalogue()`` through these helpers, and builds its negative controls by
mutating the same expressions (``mutate``), so a change in theory changes what is proved and
what must be refuted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import sympy as sp
import z3

from proofs.axioms import GRADIENT_BOUND
from proofs.obligation import Obligation
from proofs.solver import z3_obligation
from proofs.translate import Translation, formula, real, symbol_assumptions
from theory.theorem import Theorem


def parameter_facts(
    theorem: Theorem, *, without: Iterable[str] = (), only: Iterable[str] | None = None
) -> list[Translation]:
    """The theorem's parameter assumptions as z3 facts (minus ``without``; or just ``only``)."""
    skip = set(without)
    keep = None if only is None else set(only)
    chosen = [
        a
        for a in theorem.assumptions
        if a.kind == "parameter" and a.name not in skip and (keep is None or a.name in keep)
    ]
    missing = (keep or set()) - {a.name for a in chosen}
    if missing:
        raise KeyError(f"{theorem.label} has no parameter assumption {sorted(missing)}")
    return [labelled(formula(a.statement), a.name, audited=False) for a in chosen]


def assumption_fact(theorem: Theorem, name: str) -> Translation:
    """One named assumption (parameter or hypothesis) as a z3 fact, labelled by its name."""
    for a in theorem.assumptions:
        if a.name == name:
            return labelled(formula(a.statement), name, audited=a.kind == "hypothesis")
    raise KeyError(f"{theorem.label} has no assumption '{name}'")


def labelled(fact: Translation, label: str, *, audited: bool = True) -> Translation:
    """``fact`` marked as the premise ``label`` (dropped by the necessity audit when
    ``audited``; parameter assumptions are not)."""
    fact.label = label
    fact.audited = audited
    return fact


def sign_facts(*exprs: sp.Basic) -> list[z3.BoolRef]:
    """Sign assumptions carried by the sympy symbols of ``exprs`` (``positive=True`` ...)."""
    facts: list[z3.BoolRef] = []
    for expr in exprs:
        facts.extend(symbol_assumptions(expr))
    return facts


def mutate(expr: sp.Basic, replacements: Mapping[sp.Basic, sp.Basic]) -> sp.Basic:
    """``expr`` with simultaneous replacements: how negative controls perturb a statement."""
    return expr.xreplace(dict(replacements))


def var(symbol: sp.Symbol | str) -> z3.ArithRef:
    """The z3 variable a sympy symbol (or a name) translates to."""
    return real(symbol if isinstance(symbol, str) else symbol.name)


def opaque_logs(expr: sp.Basic, prefix: str = "log") -> tuple[sp.Basic, dict[sp.Symbol, sp.Expr]]:
    """``expr`` with every ``log(x)`` replaced by a fresh real symbol, and the map symbol → x.

    z3 has no logarithm: the proofs state what they use about each ``log(x)`` as instances
    of the axioms ``exp_monotone`` and ``log_sign``.
    """
    logs = sorted(expr.atoms(sp.log), key=sp.default_sort_key)
    mapping = {log: sp.Symbol(f"{prefix}_{i}", real=True) for i, log in enumerate(logs)}
    return expr.xreplace(mapping), {symbol: log.args[0] for log, symbol in mapping.items()}


def hypothesis_is_axiom(
    theorem: Theorem,
    hypothesis: str,
    axiom: str,
    instance: z3.BoolRef,
    *,
    domain: Sequence[z3.BoolRef] = (),
) -> Obligation:
    """The obligation "theory's ``hypothesis`` says exactly what axiom ``axiom`` says".

    Proves both directions between the theory statement and the axiom ``instance`` (under
    ``domain``, e.g. norms ≥ 0), so an axiom a proof cites is the hypothesis theory states.
    """
    stated = assumption_fact(theorem, hypothesis)
    both_ways = z3.And(
        z3.Implies(z3.And(stated.value, *stated.definitions), instance),
        z3.Implies(z3.And(instance, *stated.definitions), stated.value),
    )
    return z3_obligation(
        f"theory's {hypothesis} hypothesis is the axiom {axiom}",
        f"{hypothesis} <=> axiom {axiom}",
        both_ways,
        list(domain),
        uses=(axiom,),
    )


def gradient_bound_is_axiom(
    theorem: Theorem, hypothesis: str, norm: sp.Symbol, bound: sp.Symbol
) -> Obligation:
    """``hypothesis_is_axiom`` for a gradient-norm bound ``norm <= bound`` (axiom
    ``gradient_bound``), the norm being ≥ 0."""
    return hypothesis_is_axiom(
        theorem,
        hypothesis,
        GRADIENT_BOUND.name,
        GRADIENT_BOUND(var(norm), var(bound)),
        domain=[var(norm) >= 0],
    )
