r"""Checks of a measured trajectory against the catalogue's theorems (T1, T2, T3, T4, T6, T9).

A theorem of ``theory.theorems`` bounds how fast an attacker can lower a *fixed* loss L given
constants (β-smoothness, a gradient bound G, a clipping norm C, a contraction factor c, a PL
constant μ). An attack recorded with ``probe=True`` (``empirical.engine.attack``) measures exactly
such a loss, the probe loss L_P(θ_s) on a fixed batch, with ‖∇L_P(θ_s)‖, ⟨∇L_P(θ_s), Δ_s⟩ and
the update norms ‖Δ_s‖. The package, one module per theorem (named after it):

* ``smoothness_sandwich`` (T1): ``check_step_sandwich``, L_s + ⟨∇L_s, Δ_s⟩ − (β_s/2)‖Δ_s‖²
  ≤ L_{s+1} ≤ L_s + ⟨∇L_s, Δ_s⟩ + (β_s/2)‖Δ_s‖² on every step;
* ``clipped_sgd_progress`` (T2): ``check_sgd_progress``, L_t ≥ L_0 − Σ_{s<t}(G η_s C +
  (β/2) η_s² C²) on every step of an SGD attack;
* ``path_length_adam`` (T3): ``check_path_length`` (L_t ≥ L_0 − G Σ_{s<t}‖Δ_s‖, any
  optimizer), ``check_adam_steps`` (‖Δ_s‖ ≤ η_s a_{s+1} √d, + η_s λ R_s for AdamW) and
  ``check_adam_path`` (T3's certified envelope);
* ``pl_convergence`` (T4): ``check_pl_convergence``, L_t ≤ L* + (1 − ημ)^t (L_0 − L*) for
  gradient descent on the probe loss itself;
* ``contraction_tail`` (T6): ``check_contraction_tail``, from a step K where the updates
  contract by c, L_{K+n} ≥ L_K − G‖u_K‖(1 − cⁿ)/(1 − c) ≥ L_K − G‖u_K‖/(1 − c);
* ``gradient_steps_exact`` (T9): ``check_gradient_steps``, L_N ≥ L_0 − (N(ηG² + βη²G²/4) +
  βη²G²/4) for N gradient steps on the probe loss itself (the exact worst case);

the power of these checks and constants independent of the checked steps (issue 14):

* ``power``: ``power_table``, each check's detection rate against wrong constants (×0.5, ×0.8)
  and wrong statements on real trajectories (``DetectionRate``, ``PowerTable``);
* ``independent``: ``constants_before_attack`` (β, G on the ball of the budget's path-length
  bound, ``reachable_radius``), ``prefix_fit`` (fitted on a prefix, checked on the rest);

and what they share, once:

* ``records``: ``Constant``, ``PathConstants``, ``BoundCheck``;
* ``checks_base``: rounding allowances (``ROUNDING_ULPS``), the tally of slacks, trajectory
  access, the envelope comparison, planned checks;
* ``constants``: the constants measured along a path (``constants_from_trajectory``,
  ``measure_constants``, ``descent_constants``);
* ``capture``: ``attack_and_measure``, a real attack with its iterates captured through the
  attack loop's ``on_iterate`` callback;
* ``registry``: ``CHECKS`` (theorem name → its check module and planners), ``NO_CHECK``
  (theorem name → why none), ``check_all`` and ``certified_steps``.

Every check evaluates the bound with theory's own theorem objects and helpers (no formula is
typed here) and takes the theory function it evaluates as a keyword argument (default:
theory's), so a property test can inject a deliberately wrong bound and show that the same
check catches it (negative controls). What a violation means and the rounding allowances:
``empirical.certify.checks_base``.
"""

from __future__ import annotations

from empirical.certify.capture import IterateCapture, MeasuredAttack, attack_and_measure
from empirical.certify.checks_base import (
    MACHINE_EPSILON,
    ROUNDING_ULPS,
    ZERO_RATE_STAND_IN,
    PlannedCheck,
)
from empirical.certify.clipped_sgd_progress import check_sgd_progress
from empirical.certify.constants import (
    LANCZOS_TOLERANCE,
    constants_from_trajectory,
    descent_constants,
    measure_constants,
)
from empirical.certify.contraction_tail import check_contraction_tail
from empirical.certify.gradient_steps_exact import check_gradient_steps
from empirical.certify.independent import (
    BallConstants,
    PrefixFit,
    constants_before_attack,
    independent_power,
    prefix_fit,
    radius_for_config,
    reachable_radius,
)
from empirical.certify.path_length_adam import check_adam_path, check_adam_steps, check_path_length
from empirical.certify.pl_convergence import check_pl_convergence
from empirical.certify.power import DetectionRate, PowerTable, power_table
from empirical.certify.records import (
    BoundCheck,
    CheckStatus,
    Constant,
    PathConstants,
    given_constant,
)
from empirical.certify.registry import CHECKS, NO_CHECK, certified_steps, check_all
from empirical.certify.smoothness_sandwich import check_step_sandwich

__all__ = [
    "CHECKS",
    "LANCZOS_TOLERANCE",
    "MACHINE_EPSILON",
    "NO_CHECK",
    "ROUNDING_ULPS",
    "ZERO_RATE_STAND_IN",
    "BallConstants",
    "BoundCheck",
    "CheckStatus",
    "Constant",
    "DetectionRate",
    "IterateCapture",
    "MeasuredAttack",
    "PathConstants",
    "PlannedCheck",
    "PowerTable",
    "PrefixFit",
    "attack_and_measure",
    "certified_steps",
    "check_adam_path",
    "check_adam_steps",
    "check_all",
    "check_contraction_tail",
    "check_gradient_steps",
    "check_path_length",
    "check_pl_convergence",
    "check_sgd_progress",
    "check_step_sandwich",
    "constants_before_attack",
    "constants_from_trajectory",
    "descent_constants",
    "given_constant",
    "independent_power",
    "measure_constants",
    "power_table",
    "prefix_fit",
    "radius_for_config",
    "reachable_radius",
]
