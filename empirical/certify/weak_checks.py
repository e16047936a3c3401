r"""Why a check is weak: the largest factor at which it still detects, and the reason.

A check whose detection of its constants ×0.5 is below 90% is *weak* in the verdict
(``empirical.verify.theory.WEAK_BELOW``). ``detection_threshold`` measures
this per run: the largest factor f* at which the check with all its constants × f still
reports a violation (bisection; it detects ×0.5 iff f* ≥ 0.5), and ``weak_reasons`` puts it,
with ``WEAK_REASONS``, in the verdict's note on each weak check.

T3's path-length and envelope checks on the demo (``claims/demo.toml``; 4 AdamW attacks, 75
steps): detection 0/4 at ×0.5 and ×0.8, and not by a bug. G is the only constant either check
scales (the envelope's step bounds η_s a_k √d are the step lemma's, perturbed by its own rows),
and both are evaluated at every t, not only at the break threshold. At the first moving step
the envelope is tight in the step (‖Δ‖ = 0.81 η √d: Adam's first step is nearly sign-like) but
not in the loss: L_0 − L_1 ≈ cos(−∇L_0, Δ_0) ‖∇L_0‖ ‖Δ_0‖ with cos = 0.34–0.37, and G, the
largest gradient norm on the whole path, is 4.5–4.8 × ‖∇L(θ_0)‖ (the gradient norm rises from
10.7 to ~50 mid-run and falls back), so the first step realises ~7% of its bound. Over the run
the realised fraction max_t (L_0 − L_t)/(G Σ_{s<t} ‖Δ_s‖) peaks at 0.35–0.40 (with the
envelope's Σ η_s a_k √d in place of Σ ‖Δ_s‖: 0.24–0.26), below 0.5; with the gradient norm at
each iterate in place of the one G it would be 0.59–0.61 (measured on the verdict's
trajectories of one cold ``hfta verify claims/demo.toml``). One G for a path whose gradient norm
varies 5× cannot be tight; T3's statement is still true and its check sound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from empirical.certify.power import (
    CHECK_SPECS,
    CheckSpec,
    Perturbation,
    PowerSubject,
    run_check,
)

__all__ = ["WEAK_REASONS", "detection_threshold", "weak_reasons"]


#: Why each check can be weak by construction (the module docstring has the measurements).
WEAK_REASONS: dict[str, str] = {
    "T1 smoothness_sandwich": "beta bounds the curvature in every direction (the largest "
    "|eigenvalue| of the Hessian), the check compares the curvature along each step (a "
    "Rayleigh quotient), far below it; the directional beta fitted on the prefix or on the "
    "other runs of the class can be tight",
    "T3 path_length_adam:path_length": "one G, the largest gradient norm on the whole path, "
    "charged to every step as if the step were aligned with the gradient: a run whose "
    "gradient norm varies along the path, or whose steps are not the gradient's direction "
    "(Adam), realises a fraction of it",
    "T3 path_length_adam": "the path-length bound on Adam's worst-case step norms "
    "eta_s a_k sqrt(d): the same one G as the path-length check, on steps the run may not take",
    "T2 clipped_sgd_progress": "a cumulative worst case: every step at the largest gradient, "
    "aligned with it",
    "T9 gradient_steps_exact": "a cumulative worst case attained by a one-dimensional function",
}


def detection_threshold(
    spec: CheckSpec, subject: PowerSubject, *, low: float = 1e-3, iterations: int = 12
) -> float | None:
    """f* = the largest factor in [``low``, 1] at which ``spec``'s check with all its
    constants × f reports a violation on ``subject`` (bisection in log f; a smaller f only
    tightens the check): it detects ×0.5 iff f* ≥ 0.5. ``low`` when it detects nothing down
    to ``low``; None when it does not apply."""

    def detects(f: float) -> bool | None:
        scales = dict.fromkeys(spec.constants, f)
        result = run_check(spec, subject, Perturbation(name="f", kind="constants", scales=scales))
        return None if result is None else result.violations > 0

    at_low = detects(low)
    if at_low is None:
        return None
    if not at_low:
        return low
    if detects(1.0):
        return 1.0
    lo, hi = math.log(low), 0.0
    for _ in range(iterations):
        mid = (lo + hi) / 2.0
        if detects(math.exp(mid)):
            lo = mid
        else:
            hi = mid
    return math.exp(lo)


def weak_reasons(
    subjects: Sequence[PowerSubject],
    checks: Sequence[str],
    specs: Sequence[CheckSpec] = CHECK_SPECS,
) -> dict[str, str]:
    """For each named check of ``specs``: why it is weak (``WEAK_REASONS``) and, measured on
    ``subjects``, the largest factor at which it still detects (``detection_threshold``)."""
    found: dict[str, str] = {}
    for spec in specs:
        if spec.check not in checks:
            continue
        thresholds = [
            f for f in (detection_threshold(spec, subject) for subject in subjects) if f is not None
        ]
        measured = ""
        if thresholds:
            measured = (
                f"; measured: it detects its constants x f only for f <= {max(thresholds):.3g} "
                f"(largest over {len(thresholds)} runs; median {float(np.median(thresholds)):.3g})"
            )
        found[spec.check] = WEAK_REASONS.get(spec.check, "a loose bound on these runs") + measured
    return found
