"""The sympy symbols of theorems T1–T4, T6, T7, named as in docs/theorems.md.

Every symbol is ``real=True`` and nothing more: sign and range conditions (``beta >= 0``,
``0 <= c < 1``, ``t`` an integer) are stated as *parameter assumptions* of each theorem and
checked on numbers, so sympy never simplifies them away and proofs/ sees them as explicit
hypotheses.

Notation (attack on the harmful loss L, parameters θ_s, update Δ_s = θ_{s+1} − θ_s):

========== ==================================================================================
symbol     meaning
========== ==================================================================================
L0, L1     L(θ) and L(θ + Δ) (T1); L0 is also the loss before the attack, L_0 (T2–T4)
L_t        the loss after t attack steps
gdot       ⟨∇L(θ), Δ⟩, the directional derivative along the step
beta       smoothness constant β of L (‖∇L(x) − ∇L(y)‖ ≤ β‖x − y‖)
delta_norm ‖Δ‖ (T1), ‖δ‖ (T7)
eta        learning rate η
C          clipping norm (bound on the norm of the clipped stochastic gradient)
G          bound on ‖∇L‖ (at the iterates, T2; along the path, T3, T6)
t          number of attack steps (an integer)
tau        loss threshold τ the attacker wants to reach
mu         Polyak–Łojasiewicz constant μ
L_star     L* = inf L
beta1/2    Adam's β1, β2
adam_eps   Adam's ε (the denominator constant; docs/theorems.md writes ε for it in T3)
d          number of trainable coordinates
lam        AdamW's decoupled weight decay λ
k          Adam's step counter (1, 2, ...)
theta0_norm ‖θ_0‖, the start of the AdamW norm recursion R_0
R_s        the bound R_s on ‖θ_s‖ of the AdamW norm recursion
momentum   SGD's momentum coefficient (PyTorch convention, no dampening)
c          contraction factor (T6)
u_K        ‖u_K‖, the update norm at the step K where contraction starts (T6)
L_K, L_Kn  L(θ_K) and L(θ_{K+n}) (T6); n the number of steps after K
g0, g1     capability loss g(θ) and g(θ + δ) (T7)
G_g        ‖∇g(θ)‖ at the original parameters (T7)
beta_g     smoothness constant of g (T7)
eps        stability tolerance ε (T7)
========== ==================================================================================

Auxiliary symbols for hypotheses (stated on norms and inner products, the way proofs/ reads
them): ``x, y`` two points, ``grad_x, grad_y`` the gradients there, ``grad_norm`` a gradient
norm, ``path_length`` Σ‖Δ_s‖, ``s`` a position on the segment or a step index, ``gdot_s`` the
directional derivative ⟨∇L(θ + sΔ), Δ⟩, ``u_s, u_next`` consecutive update norms,
``m_hat, v_hat`` Adam's bias-corrected moments of one coordinate, ``L_s, L_next`` the loss at
consecutive iterates.
"""

from __future__ import annotations

import sympy as sp


def _real(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


# T1 -------------------------------------------------------------------------------------------
L0 = _real("L0")
L1 = _real("L1")
gdot = _real("gdot")
beta = _real("beta")
delta_norm = _real("delta_norm")

# T2, T3, T4 -----------------------------------------------------------------------------------
L_t = _real("L_t")
eta = _real("eta")
C = _real("C")
G = _real("G")
t = _real("t")
tau = _real("tau")
mu = _real("mu")
L_star = _real("L_star")
beta1 = _real("beta1")
beta2 = _real("beta2")
adam_eps = _real("adam_eps")
d = _real("d")
lam = _real("lam")
k = _real("k")
theta0_norm = _real("theta0_norm")
R_s = _real("R_s")
momentum = _real("momentum")

# T6 -------------------------------------------------------------------------------------------
c = _real("c")
u_K = _real("u_K")  # noqa: N816 - the catalogue's name
L_K = _real("L_K")
L_Kn = _real("L_Kn")
n = _real("n")

# T7 -------------------------------------------------------------------------------------------
g0 = _real("g0")
g1 = _real("g1")
G_g = _real("G_g")
beta_g = _real("beta_g")
eps = _real("eps")

# hypotheses -----------------------------------------------------------------------------------
x = _real("x")
y = _real("y")
grad_x = _real("grad_x")
grad_y = _real("grad_y")
grad_norm = _real("grad_norm")
path_length = _real("path_length")
s = _real("s")
gdot_s = _real("gdot_s")
u_s = _real("u_s")
u_next = _real("u_next")
m_hat = _real("m_hat")
v_hat = _real("v_hat")
L_s = _real("L_s")
L_next = _real("L_next")


def is_integer(symbol: sp.Symbol) -> sp.Basic:
    """The parameter assumption "``symbol`` is an integer", as ``Eq(floor(symbol), symbol)``.

    Symbols carry no ``integer=True`` (see the module docstring); this relation is checked on
    numbers like every other parameter assumption. Built unevaluated: for a symbol that is
    only ``real`` sympy cannot decide it and returns the same relation, after asking the
    assumptions system about ``floor`` (its three uses took about 0.03 s of CPU time, an eighth
    of importing the catalogue).
    """
    return sp.Eq(sp.floor(symbol), symbol, evaluate=False)


# Parameter assumptions shared by several theorems (stated once; each theorem lists them).
from theory.theorem import Assumption  # noqa: E402  (after the symbols it relates)

G_NONNEGATIVE = Assumption("G_nonnegative", sp.Ge(G, 0), "gradient bound G >= 0")
T_NONNEGATIVE = Assumption("t_nonnegative", sp.Ge(t, 0), "t >= 0 steps")
T_INTEGER = Assumption("t_integer", is_integer(t), "t counts steps")
