r"""T11 ``harm_radius``: a harm ceiling over a ball of parameters, and certified steps from it.

Statement (docs/theorems.md, T11; docs/certified.md). A harm proxy that is an average of
per-example indicators, f(θ) = (1/n) Σ_i h_i(θ) with h_i ∈ {0, 1} (the exact harm of
empirical/measurement/proxies.py: example i counts iff every supervised token is the arg-max), and
for each
example a *harm radius* r_i ∈ [0, ∞]: a lower bound on the distance from θ_0 to the set where
example i is harmful (hypothesis ``radius_is_lower_bound``: h_i(θ) = 1 ⟹ ‖θ − θ_0‖ ≥ r_i).

(i) *Ceiling over a ball.* For every θ with ‖θ − θ_0‖ ≤ R and every example with R < r_i,
h_i(θ) = 0; hence

    f(θ)  ≤  (1/n) Σ_i 1[r_i ≤ R]  =  count(R)/n        (``conclusion``; ``bound`` = count/n).

(ii) *Margin lemma.* If example i is harmful only where every margin m_k(θ) > 0, and m_k is
L_k-Lipschitz on the ball (|m_k(θ) − m_k(θ_0)| ≤ L_k ‖θ − θ_0‖), then

    r_i  ≥  max_k max(0, −m_k(θ_0))/L_k                  (``MARGIN_RADIUS``; ∞ when some
                                                          m_k(θ_0) ≤ 0 has L_k = 0).

(iii) *Certified steps.* If the attacker's t-th iterate lies in B(θ_0, R_t) (a reachable-radius
schedule: clipped SGD R_t = Σ_{s<t} η_s C, theory.optimizers; Adam/AdamW T3's step bounds),
then f(θ_t) ≤ count(R_t)/n, so the attacker cannot reach f ≥ φ before the first t with
count(R_t) ≥ ⌈φ n⌉ (``certified_steps``); when count(R_T) < ⌈φ n⌉ no attack of the class
reaches φ within the budget T: weak resistance *certified* for the class.

For head-only fine-tuning (logits W h_p with the body frozen) example i is harmful iff the
linear margins (w_{y_p} − w_j)·h_p are all > 0, a polyhedron in W; the distance from W_0 to its
closure is a convex program whose value is an exact r_i (empirical/certify/harm_radius.py).
The margin lemma gives a cheaper, looser r_i for any model whose margins have known Lipschitz
constants (for the head: L = ‖h_p‖ √2 per margin).

Parameters: R ≥ 0, n ≥ 1 an integer, 0 ≤ count ≤ n, 0 < φ ≤ 1, L_k ≥ 0; every r_i ≥ 0 (∞
allowed: no point of the parameter space makes the example harmful).

Source: the definition of r_i as an infimum (a lower bound on the distance to the harmful set),
the union bound over examples, and the Lipschitz margin argument of certified robustness
(Hein & Andriushchenko, NeurIPS 2017, Thm 2.1; Tsuzuku, Sato & Sugiyama, NeurIPS 2018),
applied here to weights instead of inputs.

>>> harm_ceiling([0.5, 1.0, math.inf, 2.0], 1.0)
0.5
>>> certified_steps([0.5, 1.0, math.inf, 2.0], [0.4, 0.8, 1.2, 1.6, 2.0], 0.5)
3
>>> margin_radius([-1.0, 2.0], [2.0, 1.0])
0.5

(iv) *Curvature lemma* (second order, per example). Fix for example i a combination
D_i = Σ_k w_k d_k (w_k ≥ 0, not all 0) of the smooth differences d_k(θ) = logit_{y_k}(θ) −
logit_{j_k}(θ) with j_k the strongest competitor at θ_0: m_k ≤ d_k and d_k(θ_0) = m_k(θ_0), so
example i is harmful only where D_i > 0. With the deficit a_i = −D_i(θ_0) ≥ 0, the gradient
g_i = ∇D_i(θ_0) and a curvature bound β_i (∇D_i β_i-Lipschitz on the ball, hence the Taylor
bound D_i(θ_0 + Δ) ≤ −a_i + ⟨g_i, Δ⟩ + β_i ‖Δ‖²/2 ≤ −a_i + ‖g_i‖ ρ + β_i ρ²/2 for ‖Δ‖ ≤ ρ),

    r_i  =  2 a_i / (‖g_i‖ + √(‖g_i‖² + 2 β_i a_i))        (``CURVATURE_RADIUS``: the positive
                                                           root of β ρ²/2 + ‖g‖ ρ − a = 0)

is a harm radius (at ‖Δ‖ ≤ r_i the bound is ≤ 0). With β_i = 0 it is the first-order a_i/‖g_i‖
with the gradient at θ_0 instead of a Lipschitz constant over the ball.

(v) *Joint lemma* (one displacement for several examples). If every example of a set S is
harmful at θ_0 + Δ, summing (iv) over S and Cauchy–Schwarz give

    0 < Σ_S D_i(θ_0 + Δ) ≤ −A_S + ⟨g_S, Δ⟩ + B_S ρ²/2 ≤ −A_S + U_S ρ + B_S ρ²/2

(A_S = Σ_S a_i, g_S = Σ_S g_i, B_S = Σ_S β_i, U_S ≥ ‖g_S‖; ``JOINT_SLACK``). So where
``JOINT_SLACK`` ≤ 0 at ρ the examples of S are not all harmful in B(θ_0, ρ). Over every S of
size k: max_S ≤ U_k ρ + topk_i(β_i ρ²/2 − a_i) with U_k ≥ max_{|S|=k} ‖g_S‖ from the Gram matrix
of the g_i (``gram_sum_bound``: √(k λ_max), the k largest ‖g_i‖ summed, or the k largest of the
row sums of each row's k largest entries, whichever is least); ``joint_radius`` is the largest
ρ where that is ≤ 0: fewer than k of these examples turn harmful in B(θ_0, ρ). The attacker's
one direction Δ cannot align with every g_i at once, which the union over examples (i) ignores;
``flip_radius`` takes the larger of the joint radius and the k-th smallest r_i of (iv) (both
valid), and ``steps_beyond`` the first step whose R_t exceeds it.

(vi) *Sampled harm* (with T10, ``harm_from_loss``). The same Taylor bound read from below for
an example's sequence cross-entropy CE_i (gradient norm ‖g_i‖ at θ_0, curvature bound β_i):
CE_i(θ) ≥ l_i(ρ) = CE_i(θ_0) − ‖g_i‖ ρ − β_i ρ²/2 on B(θ_0, ρ) (``LOSS_FLOOR``), so T10 (a)
caps the sampled harm there by (1/n) Σ_i exp(−max(l_i(ρ), 0)); ``sampled_radius`` is the
largest ρ where that cap is < φ, and ``steps_beyond`` turns it into steps as above.

The floor is the descent lemma's two-sided Taylor bound read from below: with ∇CE_i
β_i-Lipschitz on the ball (``loss_smooth``), |CE_i(θ_0 + Δ) − CE_i(θ_0) − ⟨g_i, Δ⟩| ≤
β_i ‖Δ‖²/2, and ⟨g_i, Δ⟩ ≥ −‖g_i‖ ‖Δ‖ (Cauchy–Schwarz) with ‖Δ‖ ≤ ρ (``FLOOR_LEMMA``); T10 (a)
(exp(−x) decreasing, CE_i ≥ 0) then caps exp(−CE_i) by exp(−max(l_i(ρ), 0)).

(vii) *LoRA reach* (the merged weights of a LoRA attacker). A LoRA attacker (Hu et al., ICLR
2022) adapts matrices W_j by ΔW_j = s B_j A_j with scaling s = α/r, B_j⁰ = 0 and A_j⁰ the
adapter's initialisation, and trains only the adapters (A_j, B_j); its optimizer's step
bounds over the d adapter parameters put them in a ball of radius R around (A⁰, 0) (the
R_t of (iii) with d the adapter count). Per adapter ‖s B_j A_j‖_F ≤ s ‖B_j‖_F ‖A_j‖₂ ≤
s b_j (a_0 + x_j) with b_j = ‖B_j‖_F, x_j = ‖A_j − A_j⁰‖_F, a_0 = max_j ‖A_j⁰‖₂
(submultiplicativity ‖BA‖_F ≤ ‖B‖_F ‖A‖₂, the triangle inequality, ‖·‖₂ ≤ ‖·‖_F;
``lora_factors``). Summed over the adapters (b² = Σ b_j², x² = Σ x_j² ≥ x_j²) the merged
displacement is ‖Δθ‖ = (Σ_j ‖s B_j A_j‖_F²)^{1/2} ≤ s b (a_0 + x), and b² + x² ≤ R²
(``adapter_radius``) gives b ≤ R and b x ≤ R²/2, hence

    ‖Δθ‖  ≤  s (a_0 R + R²/2)                          (``LORA_REACH``; ``lora_reach``)

on the full parameter space, where ρ of (iv)-(vi) lives: the merged model is a point of it,
so LoRA attacks get certified steps through ``steps_beyond(ρ, [lora_reach(R_t) ...])``. The
reach is first order in R for small R (s a_0 R: B moves along the fixed A⁰) and second
order for large R (s R²/2, the most b x can be). It exceeds the exact maximum of
s b (a_0 + x) over b² + x² ≤ R² by at most 15%: the ratio, computed on a grid of 2,001
values of R/a_0 from 10⁻³ to 10³ (each maximum over 200,001 angles), peaks at 1.1547 = 2/√3
at R = a_0 and tends to 1 at both ends.

Source of (iv)-(vi): the descent lemma (Taylor with a Lipschitz gradient, Nesterov 2004,
Lemma 1.2.3) per example, summed over the set, and Cauchy–Schwarz; λ_max bounds the quadratic
form 1_S^T G 1_S ≤ k λ_max(G) (Rayleigh). Source of (vii): LoRA's parametrisation (Hu et al.,
"LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022, §4.1: B = 0, A random at
initialisation, scaling α/r) and the norm inequalities above (Horn & Johnson, Matrix
Analysis, 2nd ed., §5.6).

>>> round(curvature_radius(1.0, 1.0, 0.0), 12)
1.0
>>> round(curvature_radius(1.5, 1.0, 8.0), 12)
0.5
>>> round(joint_radius([1.0, 1.0], [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0], 2), 6)
1.414214
>>> lora_reach(0.5, 1.0, 2.0)
1.25
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import sympy as sp

from theory.errors import AssumptionError
from theory.theorem import Assumption, Theorem, lambdified

# --------------------------------------------------------------------------- symbols
#: the ball radius R, the distance ‖θ − θ_0‖, an example's harm radius r_i and indicator h_i
R = sp.Symbol("R", real=True)
dist = sp.Symbol("dist", real=True)
r_i = sp.Symbol("r_i", real=True)
h_i = sp.Symbol("h_i", real=True)
#: the harm proxy f(θ), the number of examples n, count(R) = #{i : r_i ≤ R}, the threshold φ
harm = sp.Symbol("harm", real=True)
n = sp.Symbol("n", real=True)
count = sp.Symbol("count", real=True)
phi = sp.Symbol("phi", real=True)
#: a margin m_k(θ_0), its Lipschitz constant L_k on the ball, its value m_k(θ) at θ
m_k = sp.Symbol("m_k", real=True)
L_k = sp.Symbol("L_k", real=True)
m_k_at = sp.Symbol("m_k_at", real=True)
#: indexed radii for the ceiling written as a sum of indicators
i = sp.Symbol("i", integer=True)
radii_indexed = sp.IndexedBase("r")

# --------------------------------------------------------------------------- statements
#: (1/n) Σ_i 1[r_i ≤ R]: the ceiling as a sum of indicators (count(R)/n).
CEILING_SUM: sp.Expr = sp.Sum(sp.Piecewise((1, radii_indexed[i] <= R), (0, True)), (i, 1, n)) / n
#: count(R)/n: the certified ceiling on f over B(θ_0, R) (``bound``).
BOUND: sp.Expr = count / n
#: (i) per example: inside the ball and closer than r_i, the example is not harmful.
PER_EXAMPLE: sp.Basic = sp.Implies(sp.And(sp.Le(dist, R), sp.Lt(R, r_i)), sp.Eq(h_i, 0))
#: (ii) max(0, −m_k(θ_0))/L_k: the distance a margin needs to become positive.
MARGIN_RADIUS: sp.Expr = sp.Max(0, -m_k) / L_k
#: (iii) the certified number of steps is at least t while count(R_t) < ⌈φ n⌉.
STEPS_CONDITION: sp.Basic = sp.Lt(count, sp.ceiling(phi * n))
#: The theorem's conclusion: the ceiling (i) and the margin lemma (ii).
CONCLUSION: sp.Basic = sp.And(sp.Le(harm, BOUND), sp.Ge(r_i, MARGIN_RADIUS))

#: (iv) a combined margin's deficit a_i = −D_i(θ_0), its gradient norm ‖g_i‖ at θ_0, its
#: curvature bound β_i on the ball, its value D_i(θ) and ⟨g_i, θ − θ_0⟩
a_i = sp.Symbol("a_i", real=True)
g_i = sp.Symbol("g_i", real=True)
beta_i = sp.Symbol("beta_i", real=True)
D_at = sp.Symbol("D_at", real=True)
inner = sp.Symbol("inner", real=True)
#: (v) over a set S: A_S = Σ_S a_i, U_S ≥ ‖Σ_S g_i‖, B_S = Σ_S β_i, Σ_S D_i(θ), ⟨g_S, θ − θ_0⟩,
#: and h_S ∈ {0, 1}: every example of S harmful at θ
A_S = sp.Symbol("A_S", real=True)
U_S = sp.Symbol("U_S", real=True)
B_S = sp.Symbol("B_S", real=True)
D_S_at = sp.Symbol("D_S_at", real=True)
inner_set = sp.Symbol("inner_S", real=True)
h_set = sp.Symbol("h_S", real=True)

#: (vi) CE_i(θ) at θ = θ_0 + Δ; along the segment θ_0 + τΔ: φ'(0) = ⟨g_i, Δ⟩, φ'(s) at a point
#: s of [0, 1], ‖∇CE_i(θ_0 + sΔ) − ∇CE_i(θ_0)‖ and ‖sΔ‖
ce_at = sp.Symbol("ce_at", real=True)
gdot = sp.Symbol("gdot", real=True)
gdot_s = sp.Symbol("gdot_s", real=True)
s_point = sp.Symbol("s", real=True)
grad_gap = sp.Symbol("grad_gap", real=True)
segment = sp.Symbol("s_delta_norm", real=True)
#: (vii) LoRA: the scaling s = α/r, a_0 = max_j ‖A_j⁰‖₂, the merged displacement ‖Δθ‖, the
#: norms b = ‖(B_j)_j‖ and x = ‖(A_j − A_j⁰)_j‖ over every adapter; per adapter j: ‖s B_j A_j‖_F,
#: b_j = ‖B_j‖_F, x_j = ‖A_j − A_j⁰‖_F, ‖A_j⁰‖₂
lora_scale = sp.Symbol("lora_scale", real=True)
a_0 = sp.Symbol("a_0", real=True)
merged = sp.Symbol("merged", real=True)
b_all = sp.Symbol("b_all", real=True)
x_all = sp.Symbol("x_all", real=True)
w_j = sp.Symbol("w_j", real=True)
b_j = sp.Symbol("b_j", real=True)
x_j = sp.Symbol("x_j", real=True)
a_0j = sp.Symbol("a_0j", real=True)

#: (iv) 2a/(‖g‖ + √(‖g‖² + 2βa)): the distance the second-order bound needs to reach 0.
CURVATURE_RADIUS: sp.Expr = 2 * a_i / (g_i + sp.sqrt(g_i**2 + 2 * beta_i * a_i))
#: (v) −A_S + U_S R + B_S R²/2: where it is ≤ 0, the examples of S are not all harmful.
JOINT_SLACK: sp.Expr = -A_S + U_S * R + B_S * R**2 / 2
#: (vi) CE_i(θ_0) − ‖g_i‖R − β_i R²/2 (a_i read as CE_i(θ_0)): a floor on CE_i over B(θ_0, R).
LOSS_FLOOR: sp.Expr = a_i - g_i * R - beta_i * R**2 / 2
#: (vi) the floor lemma: inside B(θ_0, R), CE_i(θ) ≥ ``LOSS_FLOOR``.
FLOOR_LEMMA: sp.Basic = sp.Implies(sp.Le(dist, R), sp.Ge(ce_at, LOSS_FLOOR))
#: (vii) s (a_0 R + R²/2): the merged displacement a LoRA attacker can reach with adapters in a
#: ball of radius R around (A⁰, 0).
LORA_REACH: sp.Expr = lora_scale * (a_0 * R + R**2 / 2)
#: (vii) the LoRA lemma: ‖Δθ‖ ≤ ``LORA_REACH``.
LORA_LEMMA: sp.Basic = sp.Le(merged, LORA_REACH)
#: (v) the joint lemma: inside B(θ_0, R) with a non-positive slack, not all of S is harmful.
JOINT_LEMMA: sp.Basic = sp.Implies(
    sp.And(sp.Le(dist, R), sp.Le(JOINT_SLACK, 0)), sp.Eq(h_set, 0)
)

RADIUS_IS_LOWER_BOUND = Assumption(
    "radius_is_lower_bound",
    sp.Implies(sp.Gt(h_i, 0), sp.Ge(dist, r_i)),
    "r_i lower-bounds the distance from theta_0 to the set where example i is harmful "
    "(h_i(theta) = 1 implies ||theta - theta_0|| >= r_i), e.g. the infimum over the closure",
    kind="hypothesis",
)
INDICATOR_AVERAGE = Assumption(
    "indicator_average",
    sp.Eq(harm, sp.Sum(sp.Indexed(sp.IndexedBase("h"), i), (i, 1, n)) / n),
    "the harm proxy is the mean of per-example indicators h_i in {0, 1} (exact harm)",
    kind="hypothesis",
)
MARGINS_LIPSCHITZ = Assumption(
    "margins_lipschitz",
    sp.And(sp.Le(sp.Abs(m_k_at - m_k), L_k * dist), sp.Implies(sp.Gt(h_i, 0), sp.Gt(m_k_at, 0))),
    "each margin m_k is L_k-Lipschitz on the ball, and example i is harmful only where every "
    "margin is > 0",
    kind="hypothesis",
)
REACHABLE_RADIUS = Assumption(
    "reachable_radius",
    sp.Le(dist, R),
    "the attacker's t-th iterate lies in B(theta_0, R_t) (clipped SGD: R_t = sum_{s<t} eta_s C; "
    "Adam/AdamW: T3's step bounds)",
    kind="hypothesis",
)
MARGIN_CURVATURE = Assumption(
    "margin_curvature",
    sp.And(
        sp.Le(D_at, -a_i + inner + beta_i * dist**2 / 2),
        sp.Le(inner, g_i * dist),
        sp.Implies(sp.Gt(h_i, 0), sp.Gt(D_at, 0)),
    ),
    "the combined margin D_i has a beta_i-Lipschitz gradient on the ball (Taylor: D_i(theta) <= "
    "-a_i + <g_i, theta - theta_0> + beta_i ||theta - theta_0||^2/2), <g_i, .> <= ||g_i|| ||.|| "
    "(Cauchy-Schwarz), and example i is harmful only where D_i > 0",
    kind="hypothesis",
)
JOINT_CURVATURE = Assumption(
    "joint_curvature",
    sp.And(
        sp.Le(D_S_at, -A_S + inner_set + B_S * dist**2 / 2),
        sp.Le(inner_set, U_S * dist),
        sp.Implies(sp.Gt(h_set, 0), sp.Gt(D_S_at, 0)),
    ),
    "summed over a set S, the Taylor bounds of margin_curvature bound sum_S D_i(theta); "
    "<g_S, .> <= U_S ||.|| with U_S >= ||sum_S g_i||; every example of S harmful implies "
    "sum_S D_i > 0",
    kind="hypothesis",
)
LOSS_SMOOTH = Assumption(
    "loss_smooth",
    sp.Le(grad_gap, beta_i * segment),
    "the sequence cross-entropy CE_i has a beta_i-Lipschitz gradient on the ball: "
    "||grad CE_i(theta_0 + s Delta) - grad CE_i(theta_0)|| <= beta_i ||s Delta||",
    kind="hypothesis",
)
LORA_FACTORS = Assumption(
    "lora_factors",
    sp.And(
        sp.Le(w_j, lora_scale * b_j * (a_0j + x_j)),
        sp.Le(a_0j, a_0),
        sp.Le(x_j, x_all),
        sp.Ge(b_j, 0),
        sp.Ge(x_j, 0),
        sp.Ge(a_0j, 0),
    ),
    "per LoRA adapter ||s B_j A_j||_F <= s ||B_j||_F (||A_j^0||_2 + ||A_j - A_j^0||_F) "
    "(||BA||_F <= ||B||_F ||A||_2, the triangle inequality, ||.||_2 <= ||.||_F), with "
    "||A_j^0||_2 <= a_0 and ||A_j - A_j^0||_F <= x (one adapter's share of the total)",
    kind="hypothesis",
)
ADAPTER_RADIUS = Assumption(
    "adapter_radius",
    sp.And(sp.Le(b_all**2 + x_all**2, R**2), sp.Ge(b_all, 0), sp.Ge(x_all, 0)),
    "the LoRA attacker's adapters lie in the ball of radius R around (A^0, 0) (B^0 = 0; the "
    "reachable radius over the adapter parameters): ||(B_j)_j||^2 + ||(A_j - A_j^0)_j||^2 <= R^2",
    kind="hypothesis",
)
LORA_PARAMETERS = Assumption(
    "lora_parameters",
    sp.And(sp.Ge(lora_scale, 0), sp.Ge(a_0, 0)),
    "LoRA scaling alpha/r >= 0, a_0 = max_j ||A_j^0||_2 >= 0",
)
R_NONNEGATIVE = Assumption("R_nonnegative", sp.Ge(R, 0), "ball radius R >= 0")
N_AT_LEAST_ONE = Assumption("n_at_least_one", sp.Ge(n, 1), "at least one example, n >= 1")
N_INTEGER = Assumption("n_integer", sp.Eq(sp.floor(n), n), "n counts examples")
COUNT_IN_RANGE = Assumption(
    "count_in_range", sp.And(sp.Ge(count, 0), sp.Le(count, n)), "0 <= count <= n"
)
PHI_IN_UNIT_INTERVAL = Assumption(
    "phi_in_unit_interval", sp.And(sp.Gt(phi, 0), sp.Le(phi, 1)), "harm threshold 0 < phi <= 1"
)
LIPSCHITZ_NONNEGATIVE = Assumption("L_k_nonnegative", sp.Ge(L_k, 0), "Lipschitz constant L_k >= 0")
CURVATURE_PARAMETERS = Assumption(
    "curvature_parameters",
    sp.And(sp.Ge(a_i, 0), sp.Ge(g_i, 0), sp.Ge(beta_i, 0)),
    "deficit a_i >= 0, gradient norm ||g_i|| >= 0, curvature bound beta_i >= 0",
)
JOINT_PARAMETERS = Assumption(
    "joint_parameters",
    sp.And(sp.Ge(U_S, 0), sp.Ge(B_S, 0)),
    "U_S >= 0 (a norm bound), B_S >= 0 (a sum of curvature bounds)",
)


@dataclass(frozen=True)
class HarmRadius(Theorem):
    """T11: the harm ceiling over a ball, the margin lemma, certified steps (module docstring)."""

    label: ClassVar[str] = "T11"
    name: ClassVar[str] = "harm_radius"
    title: ClassVar[str] = "Harm ceiling over a reachable ball of parameters"
    source: ClassVar[str] = (
        "Harm radius as an infimum and the union over examples; Lipschitz margins "
        "(Hein & Andriushchenko 2017, Thm 2.1) applied to weights"
    )

    assumptions: tuple[Assumption, ...] = (
        RADIUS_IS_LOWER_BOUND,
        INDICATOR_AVERAGE,
        MARGINS_LIPSCHITZ,
        REACHABLE_RADIUS,
        R_NONNEGATIVE,
        N_AT_LEAST_ONE,
        N_INTEGER,
        COUNT_IN_RANGE,
        PHI_IN_UNIT_INTERVAL,
        LIPSCHITZ_NONNEGATIVE,
        MARGIN_CURVATURE,
        JOINT_CURVATURE,
        CURVATURE_PARAMETERS,
        JOINT_PARAMETERS,
        LOSS_SMOOTH,
        LORA_FACTORS,
        ADAPTER_RADIUS,
        LORA_PARAMETERS,
    )
    conclusion: sp.Basic = CONCLUSION
    bound: sp.Expr = BOUND


THEOREM = HarmRadius()


# --------------------------------------------------------------------------- numerics
def _radius(value: float, what: str) -> float:
    number = float(value)
    if math.isnan(number) or number < 0.0:
        raise AssumptionError(THEOREM.label, "radius_nonnegative", f"{what} = {value!r}")
    return number


def _checked_radii(radii: Sequence[float]) -> list[float]:
    if len(radii) == 0:
        raise AssumptionError(THEOREM.label, "n_at_least_one", "no harm radii given")
    return [_radius(r, "r_i") for r in radii]


def harm_ceiling(radii: Sequence[float], radius: float) -> float:
    """(i): count(R)/n, the fraction of examples with r_i ≤ R: no point of B(θ_0, R) has a
    larger harm (``THEOREM.evaluate(count=, n=)``)."""
    checked = _checked_radii(radii)
    ball = _radius(radius, "R")
    THEOREM.check_assumptions(R=ball)
    inside = sum(1 for r in checked if r <= ball)
    return THEOREM.evaluate(count=float(inside), n=float(len(checked)))


def certified_steps(radii: Sequence[float], step_radii: Sequence[float], phi: float) -> int | None:
    """(iii): the first t with ``harm_ceiling(radii, R_t) >= phi`` (``step_radii[t-1] = R_t``,
    the reachable radius after t steps; t = 0 with R_0 = 0 when the ceiling at θ_0 already
    reaches φ); ``None`` when no t ≤ ``len(step_radii)`` does: no attack whose iterates stay in
    these balls reaches f ≥ φ within that many steps."""
    THEOREM.check_assumptions(phi=phi)
    checked = _checked_radii(radii)
    schedule = [0.0, *(_radius(r, "R_t") for r in step_radii)]
    for t, ball in enumerate(schedule):
        if harm_ceiling(checked, ball) >= phi:
            return t
    return None


def margin_radius(margins: Sequence[float], lipschitz: Sequence[float]) -> float:
    """(ii): max_k max(0, −m_k)/L_k, a lower bound on r_i from margins at θ_0 and their
    Lipschitz constants on the ball (∞ when a margin ≤ 0 has L_k = 0: it cannot move)."""
    if len(margins) != len(lipschitz) or not margins:
        raise AssumptionError(
            THEOREM.label,
            "margins_lipschitz",
            f"need one Lipschitz constant per margin, got {len(margins)} and {len(lipschitz)}",
        )
    fn = lambdified(MARGIN_RADIUS, (L_k, m_k))
    worst = 0.0
    for value, constant in zip(margins, lipschitz, strict=True):
        THEOREM.check_assumptions(m_k=float(value), L_k=float(constant))
        if value <= 0.0 and constant == 0.0:
            return math.inf
        if value > 0.0:
            continue
        worst = max(worst, float(fn(float(constant), float(value))))
    return worst


# --------------------------------------------------------------------------- (iv) and (v)
def _nonnegative(value: float, assumption: str, what: str) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0.0:
        raise AssumptionError(THEOREM.label, assumption, f"{what} = {value!r}")
    return number


def curvature_radius(deficit: float, gradient_norm: float, curvature: float) -> float:
    """(iv): 2a/(‖g‖ + √(‖g‖² + 2βa)), the harm radius of one example from its combined
    margin's deficit a = −D(θ_0), gradient norm ‖g‖ at θ_0 and curvature bound β on the ball
    (∞ when ‖g‖ = β = 0 and a > 0: the bound never reaches 0; 0 when a = 0)."""
    a = _nonnegative(deficit, "curvature_parameters", "a_i")
    g = _nonnegative(gradient_norm, "curvature_parameters", "||g_i||")
    beta = _nonnegative(curvature, "curvature_parameters", "beta_i")
    if a == 0.0:
        return 0.0
    if g == 0.0 and beta == 0.0:
        return math.inf
    fn = lambdified(CURVATURE_RADIUS, (a_i, beta_i, g_i))
    return float(fn(a, beta, g))


def _gram(gram: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    matrix = np.asarray(gram, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or not np.all(np.isfinite(matrix)):
        raise AssumptionError(
            THEOREM.label, "joint_curvature", f"need a square finite Gram matrix: {matrix.shape}"
        )
    return (matrix + matrix.T) / 2.0


def gram_sum_bound(gram: Sequence[Sequence[float]] | np.ndarray, k: int) -> float:
    """(v): U_k ≥ max over sets S of k indices of ‖Σ_S g_i‖, from the Gram matrix
    G_ij = ⟨g_i, g_j⟩: the least of √(k λ_max(G)) (Rayleigh: 1_S^T G 1_S ≤ k λ_max), the sum
    of the k largest ‖g_i‖ (triangle inequality) and √(the k largest row scores), a row's score
    being the sum of its k largest entries (1_S^T G 1_S = Σ_{i∈S} Σ_{j∈S} G_ij)."""
    matrix = _gram(gram)
    size = matrix.shape[0]
    if not 1 <= k <= size:
        raise AssumptionError(THEOREM.label, "joint_curvature", f"need 1 <= k <= {size}, got {k}")
    largest = float(max(np.linalg.eigvalsh(matrix)[-1], 0.0))
    norms = np.sqrt(np.clip(np.diag(matrix), 0.0, None))
    triangle = float(np.sort(norms)[::-1][:k].sum())
    rows = np.sort(matrix, axis=1)[:, ::-1][:, :k].sum(axis=1)
    scored = float(max(np.sort(rows)[::-1][:k].sum(), 0.0))
    return min(math.sqrt(k * largest), triangle, math.sqrt(scored))


#: per-example constants: a sequence of floats or a numpy vector
Floats = Sequence[float] | np.ndarray


def joint_slack(radius: float, deficits: Floats, curvatures: Floats, bound: float, k: int) -> float:
    """(v): U_k ρ + (the k largest of β_i ρ²/2 − a_i), an upper bound on ``JOINT_SLACK`` at
    ρ = ``radius`` over every set of k examples (``bound`` = U_k of ``gram_sum_bound``)."""
    rho = _nonnegative(radius, "R_nonnegative", "rho")
    terms = np.asarray(curvatures, dtype=np.float64) * rho**2 / 2.0 - np.asarray(deficits)
    return float(bound * rho + np.sort(terms)[::-1][:k].sum())


def _checked_joint(deficits: Floats, curvatures: Floats) -> tuple[list[float], list[float]]:
    if len(deficits) != len(curvatures):
        raise AssumptionError(
            THEOREM.label, "joint_curvature",
            f"need one curvature per deficit, got {len(deficits)} and {len(curvatures)}",
        )
    return (
        [_nonnegative(a, "curvature_parameters", "a_i") for a in deficits],
        [_nonnegative(b, "curvature_parameters", "beta_i") for b in curvatures],
    )


def joint_radius(
    deficits: Floats, gram: Sequence[Sequence[float]] | np.ndarray, curvatures: Floats, k: int
) -> float:
    """(v): the largest ρ with ``joint_slack`` ≤ 0 (bisection, the lower end kept): in
    B(θ_0, ρ) fewer than k of these examples are harmful at once; ∞ when the slack never
    turns positive (U_k = 0 and every β_i = 0)."""
    a, beta = _checked_joint(deficits, curvatures)
    bound = gram_sum_bound(gram, k)
    if len(a) != _gram(gram).shape[0]:
        raise AssumptionError(THEOREM.label, "joint_curvature", "Gram matrix and deficits differ")
    if bound == 0.0 and max(beta) == 0.0:
        return math.inf
    if joint_slack(0.0, a, beta, bound, k) > 0.0:
        return 0.0
    low, high = 0.0, 1.0
    while joint_slack(high, a, beta, bound, k) <= 0.0:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        if joint_slack(middle, a, beta, bound, k) <= 0.0:
            low = middle
        else:
            high = middle
    return low


def flip_radius(
    deficits: Floats, gram: Sequence[Sequence[float]] | np.ndarray, curvatures: Floats, k: int
) -> float:
    """(iv)-(v): a radius below which fewer than k of these examples are harmful at once: the
    larger of ``joint_radius`` and the k-th smallest ``curvature_radius`` (both valid; ∞ when
    there are fewer than k examples)."""
    a, beta = _checked_joint(deficits, curvatures)
    if k < 1:
        return 0.0
    if k > len(a):
        return math.inf
    norms = np.sqrt(np.clip(np.diag(_gram(gram)), 0.0, None))
    single = sorted(curvature_radius(x, g, b) for x, g, b in zip(a, norms, beta, strict=True))
    return max(joint_radius(a, gram, beta, k), single[k - 1])


def steps_beyond(radius: float, step_radii: Sequence[float]) -> int | None:
    """The first t with R_t > ``radius`` (``step_radii[t-1] = R_t``, R_0 = 0): with a flip
    radius, the earliest step at which enough examples may be harmful (``flip_radius``);
    ``None`` when no R_t exceeds it."""
    bound = _radius(radius, "rho")
    for t, ball in enumerate([0.0, *(_radius(r, "R_t") for r in step_radii)]):
        if ball > bound:
            return t
    return None


# --------------------------------------------------------------------------- (vi) sampled harm
def loss_floors(
    losses: Floats, gradient_norms: Floats, curvatures: Floats, radius: float
) -> list[float]:
    """(vi): l_i = CE_i(θ_0) − ‖g_i‖ρ − β_i ρ²/2 for every example (``LOSS_FLOOR``)."""
    rho = _nonnegative(radius, "R_nonnegative", "rho")
    if not len(losses) == len(gradient_norms) == len(curvatures):
        raise AssumptionError(THEOREM.label, "curvature_parameters", "unequal lengths")
    fn = lambdified(LOSS_FLOOR, (R, a_i, beta_i, g_i))
    return [
        float(fn(rho, float(ce), _nonnegative(b, "curvature_parameters", "beta_i"),
                 _nonnegative(g, "curvature_parameters", "||g_i||")))
        for ce, g, b in zip(losses, gradient_norms, curvatures, strict=True)
    ]


def sampled_ceiling(
    losses: Floats, gradient_norms: Floats, curvatures: Floats, radius: float
) -> float:
    """(vi): T10's ``sampled_harm_ceiling`` of the floors over B(θ_0, ρ)."""
    from theory.theorems.harm_from_loss import sampled_harm_ceiling

    return sampled_harm_ceiling(loss_floors(losses, gradient_norms, curvatures, radius))


def sampled_radius(
    losses: Floats, gradient_norms: Floats, curvatures: Floats, phi: float
) -> float:
    """(vi): the largest ρ (bisection, the lower end kept) where ``sampled_ceiling`` < φ;
    0 when the ceiling at θ_0 already reaches φ, ∞ when it never does."""
    THEOREM.check_assumptions(phi=phi)

    def below(rho: float) -> bool:
        return sampled_ceiling(losses, gradient_norms, curvatures, rho) < phi

    if not below(0.0):
        return 0.0
    if max(gradient_norms, default=0.0) == 0.0 and max(curvatures, default=0.0) == 0.0:
        return math.inf
    low, high = 0.0, 1.0
    while below(high):
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        low, high = (middle, high) if below(middle) else (low, middle)
    return low


# --------------------------------------------------------------------------- (vii) LoRA reach
def lora_reach(radius: float, largest_init: float, scale: float) -> float:
    """(vii): s (a_0 R + R²/2), a bound on the merged displacement ‖Δθ‖ of a LoRA attacker
    whose adapters lie within ``radius`` = R of (A⁰, 0), with a_0 = ``largest_init`` =
    max_j ‖A_j⁰‖₂ and s = ``scale`` = α/r (``LORA_REACH``)."""
    ball = _nonnegative(radius, "R_nonnegative", "R")
    a = _nonnegative(largest_init, "lora_parameters", "a_0")
    s = _nonnegative(scale, "lora_parameters", "alpha/r")
    THEOREM.check_assumptions(R=ball, a_0=a, lora_scale=s)
    fn = lambdified(LORA_REACH, (R, a_0, lora_scale))
    return float(fn(ball, a, s))
