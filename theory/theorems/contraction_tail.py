r"""T6 ``contraction_tail``: a contraction tail gives an every-step (strong-resistance) floor.

Statement (docs/theorems.md, T6). Updates u_s = θ_{s+1} − θ_s. Hypotheses: from step K on the
update norms contract, ‖u_{s+1}‖ ≤ c‖u_s‖ for every s ≥ K with 0 ≤ c < 1, and ‖∇L‖ ≤ G on the
region the remaining path visits. Then ‖u_{K+i}‖ ≤ cⁱ‖u_K‖ and, for every n ≥ 0,

    Σ_{s=K}^{K+n−1} ‖u_s‖ ≤ ‖u_K‖ (1 − cⁿ)/(1 − c) ≤ ‖u_K‖/(1 − c)     (``PATH_CONCLUSION``),

so by the path-length bound (T3)

    L_{K+n} ≥ L_K − G‖u_K‖(1 − cⁿ)/(1 − c) ≥ L_K − G‖u_K‖/(1 − c)  for every n ≥ 0.

``conclusion`` is the conjunction of both inequalities; ``bound`` is the every-step floor
L_K − G‖u_K‖/(1 − c) (``HORIZON_BOUND`` with cⁿ → 0); ``HORIZON_BOUND`` is the n-step form.
If the floor is above τ the attacker never reaches τ: strong resistance, local and
conditional on the constants (c, G measured along the attack). Otherwise
``steps_to_threshold`` still certifies a minimum number of steps after K, solved from
``HORIZON_BOUND = τ`` by sympy.

Parameters: 0 ≤ c < 1, ‖u_K‖ ≥ 0, G ≥ 0, integer n ≥ 0.

Source: CLAMP (CVPR 2026) as summarised in docs/science.md §2 (not checked against the paper);
the geometric series.

>>> THEOREM.evaluate(L_K=2.0, G=1.0, u_K=0.1, c=0.5)
1.8
>>> tail_bound(L_K=2.0, G=1.0, u_K=0.1, c=0.5, threshold=1.5).certifies_every_step
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import sympy as sp

from theory import symbols as sym
from theory.theorem import (
    FAST_SOLVE,
    Assumption,
    StepsKind,
    Theorem,
    first_step_at_or_below,
    lambdified,
)

#: ‖u_K‖ (1 − cⁿ)/(1 − c): bound on the path length of the n steps after K.
HORIZON_PATH: sp.Expr = sym.u_K * (1 - sym.c**sym.n) / (1 - sym.c)
#: ‖u_K‖/(1 − c): bound on the whole remaining path (cⁿ → 0 for 0 ≤ c < 1).
TAIL_PATH: sp.Expr = HORIZON_PATH.subs(sym.c**sym.n, 0)
#: L_K − G‖u_K‖(1 − cⁿ)/(1 − c): the certified lower bound on L_{K+n}.
HORIZON_BOUND: sp.Expr = sym.L_K - sym.G * HORIZON_PATH
#: L_K − G‖u_K‖/(1 − c): the certified floor of L_{K+n} for every n.
BOUND: sp.Expr = sym.L_K - sym.G * TAIL_PATH
#: The theorem's conclusion.
CONCLUSION: sp.Basic = sp.And(sp.Ge(sym.L_Kn, HORIZON_BOUND), sp.Ge(sym.L_Kn, BOUND))
#: Σ_{s=K}^{K+n−1} ‖u_s‖ ≤ ‖u_K‖(1 − cⁿ)/(1 − c) ≤ ‖u_K‖/(1 − c).
PATH_CONCLUSION: sp.Basic = sp.And(
    sp.Le(sym.path_length, HORIZON_PATH), sp.Le(HORIZON_PATH, TAIL_PATH)
)

CONTRACTION = Assumption(
    "contraction",
    sp.Le(sym.u_next, sym.c * sym.u_s),
    "||u_{s+1}|| <= c ||u_s|| for every step s >= K",
    kind="hypothesis",
)
GRADIENT_BOUNDED_ON_PATH = Assumption(
    "gradient_bounded_on_path",
    sp.Le(sym.grad_norm, sym.G),
    "||grad L|| <= G on the region the remaining path visits",
    kind="hypothesis",
)
C_NONNEGATIVE = Assumption("c_nonnegative", sp.Ge(sym.c, 0), "contraction factor c >= 0")
C_BELOW_ONE = Assumption("c_below_one", sp.Lt(sym.c, 1), "contraction factor c < 1")
U_K_NONNEGATIVE = Assumption("u_K_nonnegative", sp.Ge(sym.u_K, 0), "||u_K|| >= 0 (a norm)")
G_NONNEGATIVE = sym.G_NONNEGATIVE
N_NONNEGATIVE = Assumption("n_nonnegative", sp.Ge(sym.n, 0), "n >= 0 steps after K")
N_INTEGER = Assumption("n_integer", sym.is_integer(sym.n), "n counts steps")


@dataclass(frozen=True)
class TailBound:
    """The every-step certificate of T6 for one set of constants.

    ``floor`` = L_K − G‖u_K‖/(1 − c) (no iterate after K goes below it);
    ``path_length_bound`` = ‖u_K‖/(1 − c); ``certifies_every_step`` = floor > threshold
    (strong resistance from step K on); ``margin`` = floor − threshold.
    """

    floor: float
    path_length_bound: float
    threshold: float
    certifies_every_step: bool
    margin: float


@dataclass(frozen=True)
class ContractionTail(Theorem):
    """T6: contraction tail, an every-step floor on the loss (see the module docstring)."""

    label: ClassVar[str] = "T6"
    name: ClassVar[str] = "contraction_tail"
    title: ClassVar[str] = "Contraction tail: an every-t (strong-resistance) certificate"
    source: ClassVar[str] = "CLAMP (CVPR 2026) as summarised in docs/science.md; geometric series"
    steps_kind: ClassVar[StepsKind | None] = "minimum"

    assumptions: tuple[Assumption, ...] = (
        CONTRACTION,
        GRADIENT_BOUNDED_ON_PATH,
        C_NONNEGATIVE,
        C_BELOW_ONE,
        U_K_NONNEGATIVE,
        G_NONNEGATIVE,
        N_NONNEGATIVE,
        N_INTEGER,
    )
    conclusion: sp.Basic = CONCLUSION
    bound: sp.Expr = BOUND

    @cached_property
    def steps_solution(self) -> sp.Expr:
        """The real n with ``HORIZON_BOUND = tau`` (for 0 < c < 1), by ``sympy.solve``."""
        roots = sp.solve(sp.Eq(HORIZON_BOUND, sym.tau), sym.n, **FAST_SOLVE)
        if len(roots) != 1:  # pragma: no cover - log is one-to-one
            raise RuntimeError(f"T6: expected one root in n, got {roots}")
        return roots[0]

    def horizon(self, **values: float) -> float:
        """L_K − G‖u_K‖(1 − cⁿ)/(1 − c), the lower bound on L_{K+n} (``HORIZON_BOUND``)."""
        return self.evaluate_expression(HORIZON_BOUND, **values)

    def steps_to_threshold(self, threshold: float, **values: float) -> float:
        """Certified minimum number n of steps *after K* for the loss to reach ``threshold``.

        Inputs by name: ``L_K, u_K, c, G``. ``math.inf`` when the floor is above the threshold
        (strong resistance); 0 when ``threshold >= L_K``.
        """
        inputs = self.require_inputs(values, ("L_K", "u_K", "c", "G"))
        self.check_assumptions(tau=threshold, **inputs)
        if threshold >= inputs["L_K"]:
            return 0.0
        if self.evaluate(**inputs) > threshold:
            return math.inf
        if inputs["c"] == 0:
            estimate = 1.0
        else:
            solution = self.steps_solution
            args = tuple(sorted(solution.free_symbols, key=lambda s: s.name))
            all_values = {**inputs, "tau": threshold}
            try:
                estimate = float(lambdified(solution, args)(*(all_values[a.name] for a in args)))
            except ValueError:  # log(0) when the floor equals the threshold exactly
                estimate = math.inf
        if estimate == math.inf:
            return math.inf
        return first_step_at_or_below(lambda n: self.horizon(n=n, **inputs), threshold, estimate)


THEOREM = ContractionTail()


def tail_bound(*, L_K: float, u_K: float, c: float, G: float, threshold: float) -> TailBound:
    """The every-step floor of T6 and whether it certifies strong resistance at ``threshold``."""
    THEOREM.check_assumptions(L_K=L_K, u_K=u_K, c=c, G=G, tau=threshold)
    floor = THEOREM.evaluate(L_K=L_K, u_K=u_K, c=c, G=G)
    path = THEOREM.evaluate_expression(TAIL_PATH, u_K=u_K, c=c)
    return TailBound(
        floor=floor,
        path_length_bound=path,
        threshold=float(threshold),
        certifies_every_step=floor > threshold,
        margin=floor - float(threshold),
    )
