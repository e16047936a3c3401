r"""T1 ``smoothness_sandwich``: the one-step smoothness sandwich.

Statement (docs/theorems.md, T1). If L is β-smooth, ‖∇L(x) − ∇L(y)‖ ≤ β‖x − y‖, then for
every θ and step Δ

    L(θ) + ⟨∇L(θ), Δ⟩ − (β/2)‖Δ‖²  ≤  L(θ + Δ)  ≤  L(θ) + ⟨∇L(θ), Δ⟩ + (β/2)‖Δ‖².

In the catalogue's symbols: ``L0 + gdot − beta*delta_norm**2/2 <= L1 <= L0 + gdot +
beta*delta_norm**2/2``. Equivalently the curvature along the segment,

    κ = 2 (L(θ+Δ) − L(θ) − ⟨∇L(θ), Δ⟩) / ‖Δ‖²,

satisfies |κ| ≤ β. Proof sketch: with φ(s) = L(θ + sΔ), φ(1) − φ(0) − φ'(0) = ∫₀¹ (φ'(s) −
φ'(0)) ds and |φ'(s) − φ'(0)| = |⟨∇L(θ+sΔ) − ∇L(θ), Δ⟩| ≤ β s ‖Δ‖² (Cauchy–Schwarz), whose
integral is β‖Δ‖²/2.

``bound`` is the lower side (what an attacker's step can at most gain: the certified
quantity of T2); ``UPPER_BOUND`` is the upper side (used by T4 and T7).

Source: Nesterov, Introductory Lectures on Convex Optimization (2004), Lemma 1.2.3.

>>> THEOREM.evaluate(L0=1.0, gdot=-0.5, beta=2.0, delta_norm=0.5)
0.25
>>> segment_curvature(L0=1.0, L1=0.75, gdot=-0.5, delta_norm=0.5)
2.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import sympy as sp

from theory import symbols as sym
from theory.errors import AssumptionError
from theory.theorem import Assumption, Theorem, lambdified

#: L(θ) + ⟨∇L(θ), Δ⟩ − (β/2)‖Δ‖²: the certified lower bound on L(θ + Δ).
LOWER_BOUND: sp.Expr = sym.L0 + sym.gdot - sym.beta * sym.delta_norm**2 / 2
#: L(θ) + ⟨∇L(θ), Δ⟩ + (β/2)‖Δ‖²: the certified upper bound on L(θ + Δ).
UPPER_BOUND: sp.Expr = sym.L0 + sym.gdot + sym.beta * sym.delta_norm**2 / 2
#: The theorem's conclusion.
CONCLUSION: sp.Basic = sp.And(sp.Ge(sym.L1, LOWER_BOUND), sp.Le(sym.L1, UPPER_BOUND))
#: κ = 2 (L(θ+Δ) − L(θ) − ⟨∇L(θ),Δ⟩)/‖Δ‖², the curvature of L along the segment.
CURVATURE: sp.Expr = 2 * (sym.L1 - sym.L0 - sym.gdot) / sym.delta_norm**2

#: Hypothesis: L is β-smooth. Read ``x, y`` as points of ℝ^d, ``grad_x, grad_y`` as the
#: gradients there and ``Abs`` as the Euclidean norm (literally: the one-dimensional case).
BETA_SMOOTH = Assumption(
    "beta_smooth",
    sp.Le(sp.Abs(sym.grad_x - sym.grad_y), sym.beta * sp.Abs(sym.x - sym.y)),
    "L is beta-smooth: ||grad L(x) - grad L(y)|| <= beta ||x - y|| for all x, y",
    kind="hypothesis",
)
#: Hypothesis (the form the proof uses, implied by BETA_SMOOTH and Cauchy–Schwarz): the
#: directional derivative φ'(s) = ⟨∇L(θ + sΔ), Δ⟩ moves by at most β s ‖Δ‖² over [0, s].
DIRECTIONAL_LIPSCHITZ = Assumption(
    "directional_derivative_lipschitz",
    sp.Implies(
        sp.And(sym.s >= 0, sym.s <= 1),
        sp.Le(sp.Abs(sym.gdot_s - sym.gdot), sym.beta * sym.s * sym.delta_norm**2),
    ),
    "for s in [0, 1]: |<grad L(theta + s Delta), Delta> - <grad L(theta), Delta>|"
    " <= beta s ||Delta||^2 (beta-smoothness along the segment; L1 - L0 = integral of gdot_s)",
    kind="hypothesis",
)
BETA_NONNEGATIVE = Assumption("beta_nonnegative", sp.Ge(sym.beta, 0), "beta >= 0")
DELTA_NORM_NONNEGATIVE = Assumption(
    "delta_norm_nonnegative", sp.Ge(sym.delta_norm, 0), "||Delta|| >= 0 (a norm)"
)


@dataclass(frozen=True)
class SmoothnessSandwich(Theorem):
    """T1: one-step smoothness sandwich (see the module docstring)."""

    label: ClassVar[str] = "T1"
    name: ClassVar[str] = "smoothness_sandwich"
    title: ClassVar[str] = "One-step smoothness sandwich"
    source: ClassVar[str] = (
        "Nesterov, Introductory Lectures on Convex Optimization (2004), Lemma 1.2.3"
    )

    assumptions: tuple[Assumption, ...] = (
        BETA_SMOOTH,
        DIRECTIONAL_LIPSCHITZ,
        BETA_NONNEGATIVE,
        DELTA_NORM_NONNEGATIVE,
    )
    conclusion: sp.Basic = CONCLUSION
    bound: sp.Expr = LOWER_BOUND

    def upper(self, **values: float) -> float:
        """The numeric upper side ``L0 + gdot + beta*delta_norm**2/2`` (``UPPER_BOUND``)."""
        return self.evaluate_expression(UPPER_BOUND, **values)


THEOREM = SmoothnessSandwich()


def segment_curvature(*, L0: float, L1: float, gdot: float, delta_norm: float) -> float:
    """κ = 2 (L1 − L0 − gdot)/delta_norm², the curvature of L along the step (``CURVATURE``).

    T1 says |κ| ≤ β for a β-smooth L, so a measured |κ| is a lower estimate of β along the
    attack, and a measured |κ| > β refutes a claimed β. Raises ``AssumptionError``
    (``delta_norm_positive``) for ``delta_norm <= 0`` and (``<name>_finite``) for NaN/inf.
    """
    values = {"L0": L0, "L1": L1, "gdot": gdot, "delta_norm": delta_norm}
    for key, value in values.items():
        if not math.isfinite(value):
            raise AssumptionError(THEOREM.label, f"{key}_finite", f"{key} = {value}")
    if not delta_norm > 0:
        raise AssumptionError(
            THEOREM.label, "delta_norm_positive", f"curvature needs ||Delta|| > 0, got {delta_norm}"
        )
    if not delta_norm * delta_norm > 0:
        detail = f"||Delta||^2 underflows to 0 at ||Delta|| = {delta_norm:g}"
        raise AssumptionError(THEOREM.label, "delta_norm_squared_positive", detail)
    args = (sym.L0, sym.L1, sym.gdot, sym.delta_norm)
    return float(lambdified(CURVATURE, args)(L0, L1, gdot, delta_norm))


#: Units of roundoff allowed per loss-sized value in a curvature's numerator
#: (``curvature_rounding_bound``).
CURVATURE_ROUNDING_ULPS = 8.0
#: A measured curvature is kept only when its rounding bound is at most this fraction of it.
CURVATURE_NOISE_FRACTION = 0.1


def curvature_rounding_bound(
    *, L0: float, L1: float, gdot: float, delta_norm: float, unit_roundoff: float
) -> float:
    """How far rounding can move a measured κ = 2 (L1 − L0 − gdot)/‖Δ‖² (``CURVATURE``).

    Each of L0, L1, gdot carries an error of at most k u |v| (k = ``CURVATURE_ROUNDING_ULPS``
    units of the unit roundoff u of the dtype they were evaluated in), so the numerator's
    error is at most k u (|L0| + |L1| + |gdot|) and κ's at most

        ρ = 2 k u (|L0| + |L1| + |gdot|) / ‖Δ‖².

    ρ grows as 1/‖Δ‖²: a tiny step's curvature is rounding noise (at L ≈ 0.1 in float32 and
    ‖Δ‖ = 10⁻³, ρ ≈ 2·10⁻¹; at ‖Δ‖ = 10⁻⁵, ρ ≈ 2·10³).
    """
    if not delta_norm > 0:
        raise AssumptionError(
            THEOREM.label, "delta_norm_positive", f"curvature needs ||Delta|| > 0, got {delta_norm}"
        )
    size = abs(L0) + abs(L1) + abs(gdot)
    return 2.0 * CURVATURE_ROUNDING_ULPS * unit_roundoff * size / (delta_norm * delta_norm)


def trustworthy_curvature(
    *, L0: float, L1: float, gdot: float, delta_norm: float, unit_roundoff: float
) -> float | None:
    """κ (``segment_curvature``) when its rounding bound ρ (``curvature_rounding_bound``) is
    at most ``CURVATURE_NOISE_FRACTION`` |κ|, else None: the value is rounding noise.

    >>> trustworthy_curvature(L0=1.0, L1=0.75, gdot=-0.5, delta_norm=0.5, unit_roundoff=2**-23)
    2.0
    >>> trustworthy_curvature(L0=1.0, L1=1.0, gdot=-1e-9, delta_norm=1e-4, unit_roundoff=2**-23)
    """
    kappa = segment_curvature(L0=L0, L1=L1, gdot=gdot, delta_norm=delta_norm)
    if not math.isfinite(kappa):
        return None
    rho = curvature_rounding_bound(
        L0=L0, L1=L1, gdot=gdot, delta_norm=delta_norm, unit_roundoff=unit_roundoff
    )
    return kappa if rho <= CURVATURE_NOISE_FRACTION * abs(kappa) else None
