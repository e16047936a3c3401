r"""T7 ``stability_displacement``: stability of a capability loss under a displacement.

Statement (docs/theorems.md, T7). Hypotheses: the capability loss g is β_g-smooth and
‖∇g(θ)‖ ≤ G_g at the original parameters θ. Then for every displacement δ (for instance
θ_immunized − θ_original)

    |g(θ + δ) − g(θ)| ≤ G_g‖δ‖ + (β_g/2)‖δ‖²       (``conclusion``; ``bound`` is the right side),

from T1 (|g(θ+δ) − g(θ) − ⟨∇g(θ), δ⟩| ≤ (β_g/2)‖δ‖²) and Cauchy–Schwarz
(|⟨∇g(θ), δ⟩| ≤ G_g‖δ‖): ``bound`` is T1's ``UPPER_BOUND − L0`` with ⟨∇g, δ⟩ → G_g‖δ‖ and
β → β_g, derived by substitution.

Certified radius for stability with tolerance ε > 0: ``bound`` increases in ‖δ‖, so every
‖δ‖ ≤ r(ε) keeps |g(θ+δ) − g(θ)| ≤ ε, where r(ε) is the non-negative root of
``bound = ε`` (``sympy.solve``):

    r(ε) = (√(G_g² + 2β_g ε) − G_g)/β_g = 2ε/(G_g + √(G_g² + 2β_g ε))

(the second form, from ``sympy.radsimp``, is the one evaluated: it has no cancellation and
gives ε/G_g at β_g = 0 and √(2ε/β_g) at G_g = 0; r = ∞ when G_g = β_g = 0).

Parameters: G_g ≥ 0, β_g ≥ 0, ‖δ‖ ≥ 0, ε > 0.

Source: the descent lemma (Nesterov, Introductory Lectures on Convex Optimization, 2004,
Lemma 1.2.3) applied to the capability proxy.

>>> THEOREM.evaluate(G_g=1.0, beta_g=2.0, delta_norm=0.5)
0.75
>>> certified_radius(eps=0.75, G_g=1.0, beta_g=2.0)
0.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import sympy as sp

from theory import symbols as sym
from theory.errors import AssumptionError
from theory.theorem import Assumption, Theorem, lambdified
from theory.theorems import smoothness_sandwich as sandwich

#: G_g‖δ‖ + (β_g/2)‖δ‖²: the certified bound on |g(θ+δ) − g(θ)|.
BOUND: sp.Expr = sp.expand(
    (sandwich.UPPER_BOUND - sym.L0).subs({sym.gdot: sym.G_g * sym.delta_norm, sym.beta: sym.beta_g})
)

#: The theorem's conclusion.
CONCLUSION: sp.Basic = sp.Le(sp.Abs(sym.g1 - sym.g0), BOUND)

BETA_G_SMOOTH = Assumption(
    "beta_g_smooth",
    sandwich.BETA_SMOOTH.statement.subs(sym.beta, sym.beta_g),
    "the capability loss g is beta_g-smooth: ||grad g(x) - grad g(y)|| <= beta_g ||x - y||",
    kind="hypothesis",
)
GRADIENT_AT_ORIGIN = Assumption(
    "gradient_at_origin",
    sp.Le(sym.grad_norm, sym.G_g),
    "||grad g(theta)|| <= G_g at the original parameters theta",
    kind="hypothesis",
)
G_G_NONNEGATIVE = Assumption("G_g_nonnegative", sp.Ge(sym.G_g, 0), "G_g >= 0")
BETA_G_NONNEGATIVE = Assumption("beta_g_nonnegative", sp.Ge(sym.beta_g, 0), "beta_g >= 0")
DELTA_NORM_NONNEGATIVE = Assumption(
    "delta_norm_nonnegative", sp.Ge(sym.delta_norm, 0), "||delta|| >= 0 (a norm)"
)
EPS_POSITIVE = Assumption("eps_positive", sp.Gt(sym.eps, 0), "stability tolerance eps > 0")


@dataclass(frozen=True)
class StabilityDisplacement(Theorem):
    """T7: stability under a parameter displacement (see the module docstring)."""

    label: ClassVar[str] = "T7"
    name: ClassVar[str] = "stability_displacement"
    title: ClassVar[str] = "Stability under a parameter displacement"
    source: ClassVar[str] = (
        "Descent lemma (Nesterov, Introductory Lectures on Convex Optimization, 2004, "
        "Lemma 1.2.3) applied to the capability proxy"
    )

    assumptions: tuple[Assumption, ...] = (
        BETA_G_SMOOTH,
        GRADIENT_AT_ORIGIN,
        G_G_NONNEGATIVE,
        BETA_G_NONNEGATIVE,
        DELTA_NORM_NONNEGATIVE,
        EPS_POSITIVE,
    )
    conclusion: sp.Basic = CONCLUSION
    bound: sp.Expr = BOUND

    @cached_property
    def radius_root(self) -> sp.Expr:
        """The non-negative root in ‖δ‖ of ``bound = eps`` (for β_g > 0), by ``sympy.solve``."""
        roots = sp.solve(sp.Eq(self.bound, sym.eps), sym.delta_norm)
        probe = {sym.G_g: 1, sym.beta_g: 1, sym.eps: 1}
        nonnegative = [r for r in roots if r.subs(probe) >= 0]
        if len(nonnegative) != 1:  # pragma: no cover - a quadratic with roots of both signs
            raise RuntimeError(f"T7: expected one non-negative root, got {roots}")
        return nonnegative[0]

    @cached_property
    def radius(self) -> sp.Expr:
        """r(ε) = 2ε/(G_g + √(G_g² + 2β_g ε)): ``radius_root`` rationalised (``radsimp``)."""
        return 1 / sp.radsimp(1 / self.radius_root)


THEOREM = StabilityDisplacement()


def certified_radius(*, eps: float, G_g: float, beta_g: float) -> float:
    """r(ε): every displacement with ‖δ‖ ≤ r(ε) keeps |g(θ+δ) − g(θ)| ≤ ε (``math.inf`` when
    G_g = β_g = 0)."""
    THEOREM.check_assumptions(eps=eps, G_g=G_g, beta_g=beta_g)
    if G_g == 0 and beta_g == 0:
        return math.inf
    expr = THEOREM.radius
    args = tuple(sorted(expr.free_symbols, key=lambda s: s.name))
    values = {"eps": eps, "G_g": G_g, "beta_g": beta_g}
    result = float(lambdified(expr, args)(*(values[a.name] for a in args)))
    if not math.isfinite(result):  # pragma: no cover - guarded above
        raise AssumptionError(THEOREM.label, "finite_bound", f"radius evaluates to {result}")
    return result
