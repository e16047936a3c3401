"""The induction schema, stated once: every inductive theorem is proved through it.

Schema (axiom ``induction`` in proofs/axioms.py): for a property P of a natural counter n and
a state (loss values, partial sums, powers q^n, ...) that evolves step by step,

    base:  given ∧ base_given                 ⇒ P(0, state_0)
    step:  given ∧ n ≥ 0 ∧ P(n, state_n) ∧ transition(n)  ⇒ P(n+1, state_{n+1})
    ------------------------------------------------------------------------
    P(n, state_n) for every natural n.

``given`` holds at every n (parameter assumptions); ``transition`` links the state at n to
the state at n+1 (a per-step lemma proved separately, a recursion such as
``S_{n+1} = S_n + term_n`` or ``q^{n+1} = q · q^n``). Both obligations are discharged by z3
with n a real number ≥ 0, which proves the step for every natural n in particular.

The invariant is a function of the state, so the same function builds P(0), P(n) and
P(n+1): the step cannot silently prove something other than the successor of what it
assumes. Proof modules build P from theory's sympy statement (substituting the state into
``THEOREM.conclusion``), so the induction proves theory's formula itself.

``ClosedFormInduction`` is the same schema for P(n): ``state_n = closed_form(n)`` under a
recurrence ``state_{n+1} = recurrence(state_n)``, discharged by sympy (scalars or matrices):
base ``closed_form(0) = initial``, step ``recurrence(closed_form(n)) = closed_form(n+1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import sympy as sp
import z3

from proofs.obligation import Budget, Kind, Obligation, Outcome
from proofs.solver import Fact, premise_names, prove, prove_expression_identity

State = Mapping[str, z3.ArithRef]
Invariant = Callable[[State], Fact]


@dataclass(frozen=True)
class Induction:
    """A lemma ∀n. P(n) proved by the schema above.

    ``current`` and ``successor`` give the state variables at n and n+1 (names → z3 terms);
    ``initial`` the state at 0. The counter itself is ``state[counter]`` (added here: 0, n,
    n+1).
    """

    lemma: str
    statement: str
    invariant: Invariant
    initial: State
    current: State
    successor: State
    given: Sequence[Fact] = ()
    base_given: Sequence[Fact] = ()
    transition: Sequence[Fact] = ()
    uses: tuple[str, ...] = ()
    counter: str = "n"
    base_uses: tuple[str, ...] = field(default=())

    def _states(self) -> tuple[State, State, State]:
        n = z3.Real(self.counter)
        return (
            {**self.initial, self.counter: z3.RealVal(0)},
            {**self.current, self.counter: n},
            {**self.successor, self.counter: n + 1},
        )

    def base(self, kind: Kind = "obligation") -> Obligation:
        """The base case P(0) as an obligation (or a control)."""
        zero, _, _ = self._states()

        hypotheses = [*self.given, *self.base_given]

        def discharge(budget: Budget) -> Outcome:
            return prove(self.invariant(zero), hypotheses, budget)

        def attempt_without(dropped: frozenset[str], budget: Budget) -> Outcome:
            return prove(self.invariant(zero), hypotheses, budget, dropped)

        return Obligation(
            f"{self.lemma}: base case",
            f"P(0) for P(n): {self.statement}",
            "z3",
            discharge,
            kind,
            ("induction", *self.base_uses),
            premise_names(hypotheses),
            attempt_without,
        )

    def step(self, kind: Kind = "obligation") -> Obligation:
        """The inductive step P(n) ⇒ P(n+1) as an obligation (or a control)."""
        _, now, after = self._states()
        n = now[self.counter]

        hypotheses = [*self.given, n >= 0, self.invariant(now), *self.transition]

        def discharge(budget: Budget) -> Outcome:
            return prove(self.invariant(after), hypotheses, budget)

        def attempt_without(dropped: frozenset[str], budget: Budget) -> Outcome:
            return prove(self.invariant(after), hypotheses, budget, dropped)

        return Obligation(
            f"{self.lemma}: inductive step",
            f"P(n) ⇒ P(n+1) for P(n): {self.statement}",
            "z3",
            discharge,
            kind,
            ("induction", *self.uses),
            premise_names(hypotheses),
            attempt_without,
        )

    def obligations(self) -> tuple[Obligation, Obligation]:
        """Base case and inductive step: together they prove ∀n. P(n)."""
        return self.base(), self.step()


@dataclass(frozen=True)
class ClosedFormInduction:
    """The schema for a recurrence with a claimed closed form, discharged by sympy.

    P(n) is ``state_n = closed_form(n)``. Base: ``closed_form(0) = initial``. Step: applying
    the recurrence to a state equal to ``closed_form(n)`` gives ``closed_form(n + 1)``. Works
    for scalar and matrix expressions (sympy's matrix algebra: ``A · A^n = A^(n+1)``).
    """

    lemma: str
    statement: str
    closed_form: Callable[[sp.Expr], sp.Expr]
    initial: sp.Expr
    recurrence: Callable[[sp.Expr], sp.Expr]
    counter: sp.Symbol
    uses: tuple[str, ...] = ()

    def base(self, kind: Kind = "obligation") -> Obligation:
        lhs, rhs = self.closed_form(sp.Integer(0)), self.initial

        def discharge(budget: Budget) -> Outcome:
            return prove_expression_identity(lhs, rhs)

        return Obligation(
            f"{self.lemma}: base case",
            f"P(0) for P(n): {self.statement}",
            "sympy",
            discharge,
            kind,
            ("induction",),
        )

    def step(self, kind: Kind = "obligation") -> Obligation:
        n = self.counter
        lhs, rhs = self.recurrence(self.closed_form(n)), self.closed_form(n + 1)

        def discharge(budget: Budget) -> Outcome:
            return prove_expression_identity(lhs, rhs)

        return Obligation(
            f"{self.lemma}: inductive step",
            f"P(n) ⇒ P(n+1) for P(n): {self.statement}",
            "sympy",
            discharge,
            kind,
            ("induction", *self.uses),
        )

    def obligations(self) -> tuple[Obligation, Obligation]:
        return self.base(), self.step()
