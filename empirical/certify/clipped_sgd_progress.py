r"""The check of T2 ``clipped_sgd_progress`` on every step of a measured SGD attack.

T2 (``theory.theorems.clipped_sgd_progress``; docs/theorems.md, T2): if the probe loss L is
β-smooth, ‖∇L(θ_s)‖ ≤ G at every iterate and every step has ‖Δ_s‖ ≤ η_s C (clipping at C, or
C bounding the minibatch gradients), then

    L_t ≥ L_0 − Σ_{s<t} (G η_s C + (β/2) η_s² C²)

(with heavy-ball or Nesterov momentum through ``theory.optimizers``), so no t before the
first one where this envelope reaches τ has L_t ≤ τ. ``check_sgd_progress`` evaluates theory's
``envelope`` on the recorded schedule and compares it with every measured probe loss, and the
certified minimum steps to τ with the measured ones. ``plan`` is T2's contribution to
``check_all`` (SGD attacks only).

Source: the descent-lemma argument (Nesterov, Introductory Lectures on Convex Optimization,
2004, §1.2.3) applied to the attacker.
"""

from __future__ import annotations

import numpy as np

from empirical.certify.checks_base import (
    LOSS_TOLERANCE_TEXT,
    Envelope,
    PlannedCheck,
    as_constant,
    compare_minimum_steps,
    config_value,
    default_threshold,
    envelope_tally,
    measured_prefix,
    missing,
    no_probe,
    optimizer_of,
    parameter_rounding,
    planned,
    probe_losses,
    rates_of,
)
from empirical.certify.constants import clip_constant
from empirical.certify.records import BoundCheck, Constant, PathConstants, not_applicable
from empirical.measurement.trajectory import Trajectory
from theory.theorems.clipped_sgd_progress import THEOREM
from theory.theorems.clipped_sgd_progress import envelope as theory_envelope

__all__ = ["THEOREM", "check_sgd_progress", "plan"]


def check_sgd_progress(
    trajectory: Trajectory,
    G: float | Constant,
    beta: float | Constant,
    C: float | Constant | None = None,
    *,
    threshold: float | None = None,
    theta0_norm: float | None = None,
    envelope: Envelope | None = None,
) -> BoundCheck:
    """T2 on every step of an SGD attack: L_t ≥ envelope_t, and measured ≥ certified steps.

    ``G`` bounds ‖∇L_P‖ at the iterates, ``beta`` the smoothness on the segments, ``C`` the
    norm of the (clipped) minibatch gradients (default ``clip_constant``). ``envelope``
    defaults to ``theory.theorems.clipped_sgd_progress.envelope`` (keywords ``L0, G, C, beta,
    learning_rates, momentum``). ``threshold`` τ defaults to the lowest probe loss reached.
    With ``theta0_norm`` the allowance includes G times the rounding of the parameters.
    """
    label, name = THEOREM.label, THEOREM.name
    inequality = "L_t >= L_0 - sum_{s<t} (G eta_s C + (beta/2) eta_s^2 C^2)"
    losses = probe_losses(trajectory)
    if losses is None:
        return no_probe(label, name, inequality)
    if optimizer_of(trajectory) != "sgd":
        return not_applicable(label, name, inequality, "T2 is for SGD attacks")
    if float(config_value(trajectory, "weight_decay", 0.0) or 0.0) != 0.0:
        return not_applicable(
            label, name, inequality, "SGD's weight decay is added after clipping: C bounds no step"
        )
    clip = clip_constant(trajectory) if C is None else as_constant("C", C)
    rates = rates_of(trajectory)
    if clip is None or rates is None:
        return not_applicable(label, name, inequality, "no gradient norms or learning rates")
    g_constant, b_constant = as_constant("G", G), as_constant("beta", beta)
    steps = measured_prefix(trajectory)
    if steps == 0 or losses[0] is None:
        return not_applicable(label, name, inequality, "no measured step")
    values = (envelope or theory_envelope)(
        L0=float(losses[0]),
        G=g_constant.value,
        C=clip.value,
        beta=b_constant.value,
        learning_rates=rates[:steps],
        momentum=float(config_value(trajectory, "momentum", 0.0) or 0.0),
    )
    rounding = parameter_rounding(trajectory, theta0_norm)
    extra = None
    if rounding is not None:
        extra = np.concatenate(([0.0], np.cumsum(g_constant.value * rounding[:steps])))
    tally = envelope_tally(trajectory, values, losses[: steps + 1], extra)
    tau = default_threshold(losses[: steps + 1]) if threshold is None else float(threshold)
    steps_fields = compare_minimum_steps(tally, values, losses[: steps + 1], tau)
    return tally.result(
        label,
        name,
        inequality,
        tolerance=LOSS_TOLERANCE_TEXT
        + ("" if rounding is None else "; + G * eps * sum ||theta_{s+1}|| (parameter rounding)"),
        constants={"G": g_constant, "beta": b_constant, "C": clip},
        **steps_fields,
    )


def plan(
    trajectory: Trajectory, constants: PathConstants, threshold: float | None
) -> list[PlannedCheck]:
    """T2 for an SGD attack, with G at the iterates, the path β, C and ‖θ_0‖ (for the
    parameter-rounding allowance); nothing for other optimizers."""
    if optimizer_of(trajectory) != "sgd":
        return []
    g_iterates, beta = constants.G_iterates, constants.beta
    if g_iterates is None or beta is None:
        return [missing(THEOREM, "G at the iterates and beta")]
    norm0 = constants.theta0_norm
    return [
        planned(
            THEOREM,
            lambda: check_sgd_progress(
                trajectory,
                g_iterates,
                beta,
                constants.C,
                threshold=threshold,
                theta0_norm=None if norm0 is None else norm0.value,
            ),
        )
    ]
