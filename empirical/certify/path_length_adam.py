r"""The checks of T3 ``path_length_adam`` on every step of a measured attack.

T3 (``theory.theorems.path_length_adam``; docs/theorems.md, T3): if ‖∇L‖ ≤ G on every
segment [θ_s, θ_{s+1}], then (mean-value theorem and Cauchy–Schwarz)

    L_t ≥ L_0 − G Σ_{s<t} ‖Δ_s‖                       (path length, any optimizer),

and for Adam every step has ‖Δ_s‖ ≤ η_s a_{s+1} √d (AdamW: ‖Δ_s‖ ≤ η_s (a_{s+1} √d + λ R_s)),
whatever the gradients, so L_t ≥ L_0 − G Σ_{s<t} (step bound_s) is certified before the
attack runs. Three checks:

* ``check_path_length`` (check name ``path_length_adam:path_length``): the path-length
  conclusion with the measured update norms, any optimizer;
* ``check_adam_steps`` (``path_length_adam:adam_step``): the Adam lemma on every step;
* ``check_adam_path`` (``path_length_adam``): the certified envelope, and measured ≥ certified
  steps to a threshold τ.

``plan_path_length`` and ``plan_adam`` are T3's contributions to ``check_all``.

Sources: Kingma & Ba, "Adam", ICLR 2015, §2.1; Loshchilov & Hutter, "Decoupled Weight Decay
Regularization", ICLR 2019.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from empirical.certify.checks_base import (
    LOSS_TOLERANCE_TEXT,
    Envelope,
    PlannedCheck,
    Tally,
    as_constant,
    compare_minimum_steps,
    config_value,
    default_threshold,
    envelope_tally,
    epsilon,
    measured_prefix,
    missing,
    no_probe,
    optimizer_of,
    parameter_rounding,
    planned,
    probe_losses,
    rates_of,
)
from empirical.certify.records import (
    BoundCheck,
    Constant,
    PathConstants,
    given_constant,
    not_applicable,
)
from empirical.measurement.trajectory import Trajectory
from theory.theorems import path_length_adam as t3
from theory.theorems.path_length_adam import THEOREM

__all__ = [
    "ADAM_STEP",
    "PATH_LENGTH",
    "THEOREM",
    "check_adam_path",
    "check_adam_steps",
    "check_path_length",
    "plan_adam",
    "plan_path_length",
]

#: Suffixes of the check names of T3's path-length conclusion and of its Adam step lemma.
PATH_LENGTH = ":path_length"
ADAM_STEP = ":adam_step"


def check_path_length(
    trajectory: Trajectory,
    G: float | Constant,
    *,
    path_envelope: Envelope | None = None,
) -> BoundCheck:
    """T3's path-length conclusion with the measured update norms, any optimizer:
    L_t ≥ L_0 − G Σ_{s<t} ‖Δ_s‖ (``path_envelope`` defaults to theory's; keywords
    ``L0, G, step_norms``). ``G`` bounds ‖∇L_P‖ on the segments."""
    label, name = THEOREM.label, THEOREM.name
    inequality = "L_t >= L_0 - G sum_{s<t} ||D_s|| (measured update norms)"
    losses = probe_losses(trajectory)
    if losses is None:
        return no_probe(label, name, inequality)
    steps = measured_prefix(trajectory)
    if steps == 0 or losses[0] is None:
        return not_applicable(label, name, inequality, "no measured step")
    g_constant = as_constant("G", G)
    norms = np.asarray(trajectory.update_norm[:steps], dtype=np.float64)
    values = (path_envelope or t3.path_envelope)(
        L0=float(losses[0]), G=g_constant.value, step_norms=norms
    )
    tally = envelope_tally(trajectory, values, losses[: steps + 1])
    return tally.result(
        label,
        name + PATH_LENGTH,
        inequality,
        tolerance=LOSS_TOLERANCE_TEXT,
        constants={"G": g_constant},
    )


def _adam_inputs(
    trajectory: Trajectory, theta0_norm: float | None
) -> tuple[dict[str, Any], str | None]:
    """Keyword inputs of theory's Adam step bounds, or the reason they cannot be formed."""
    optimizer = optimizer_of(trajectory)
    if optimizer not in ("adam", "adamw"):
        return {}, "T3's step bound is for Adam and AdamW attacks"
    rates = rates_of(trajectory)
    if rates is None:
        return {}, "learning rates missing"
    beta1, beta2 = (float(b) for b in config_value(trajectory, "betas", (0.9, 0.999)))
    decay = float(config_value(trajectory, "weight_decay", 0.0) or 0.0)
    # Adam's L2 decay is folded into the gradient, which the bound does not depend on.
    lam = decay if optimizer == "adamw" else 0.0
    if lam > 0.0 and theta0_norm is None:
        return {}, "AdamW's bound needs ||theta_0|| (measure the constants with the model)"
    inputs: dict[str, Any] = {
        "learning_rates": rates,
        "beta1": beta1,
        "beta2": beta2,
        "d": trajectory.trainable_parameters,
        "lam": lam,
    }
    if lam > 0.0:
        inputs["theta0_norm"] = float(theta0_norm)  # type: ignore[arg-type]
    return inputs, None


def check_adam_steps(
    trajectory: Trajectory,
    *,
    theta0_norm: float | Constant | None = None,
    step_bounds: Envelope | None = None,
) -> BoundCheck:
    """T3's Adam lemma on every step: ‖Δ_s‖ ≤ η_s a_{s+1} √d (Adam) or η_s(a_{s+1}√d + λR_s)
    (AdamW). ``step_bounds`` defaults to ``path_length_adam.step_norm_bounds`` (keywords
    ``learning_rates, beta1, beta2, d, lam[, theta0_norm]``). The allowance is the rounding
    of the new parameters, ε‖θ_{s+1}‖, plus 4ε of the bound (needs ‖θ_0‖)."""
    label, name = THEOREM.label, THEOREM.name
    inequality = "||D_s|| <= eta_s (a_{s+1} sqrt(d) + lam R_s)"
    norm0 = None if theta0_norm is None else as_constant("theta0_norm", theta0_norm).value
    inputs, reason = _adam_inputs(trajectory, norm0)
    if reason is not None:
        return not_applicable(label, name + ADAM_STEP, inequality, reason)
    rounding = parameter_rounding(trajectory, norm0)
    if rounding is None:
        return not_applicable(
            label, name + ADAM_STEP, inequality, "needs ||theta_0|| for the rounding allowance"
        )
    bounds = (step_bounds or t3.step_norm_bounds)(**inputs)
    tally = Tally()
    eps = epsilon(trajectory)
    ratios: list[float] = []
    for s, measured in enumerate(trajectory.update_norm):
        if measured is None:
            break
        bound = float(bounds[s])
        tally.add(s, bound - measured, float(rounding[s]) + 4.0 * eps * bound)
        if bound > 0:
            ratios.append(measured / bound)
    constants = {"d": given_constant("d", trajectory.trainable_parameters, "trainable coordinates")}
    if norm0 is not None:
        constants["theta0_norm"] = as_constant("theta0_norm", theta0_norm)  # type: ignore[arg-type]
    return tally.result(
        label,
        name + ADAM_STEP,
        inequality,
        tolerance="eps * ||theta_{s+1}|| (parameter rounding) + 4 eps * bound",
        constants=constants,
        details={"max_step_over_bound": max(ratios) if ratios else None},
    )


def check_adam_path(
    trajectory: Trajectory,
    G: float | Constant,
    *,
    theta0_norm: float | Constant | None = None,
    threshold: float | None = None,
    envelope: Envelope | None = None,
) -> BoundCheck:
    """T3's certified envelope on every step of an Adam/AdamW attack:
    L_t ≥ L_0 − G Σ_{s<t} (step bound_s), and measured ≥ certified steps to τ.

    ``envelope`` defaults to ``path_length_adam.envelope`` (keywords ``L0, G,
    learning_rates, beta1, beta2, d, lam[, theta0_norm]``); ``G`` bounds ‖∇L_P‖ on the
    segments; τ defaults to the lowest probe loss reached.
    """
    label, name = THEOREM.label, THEOREM.name
    inequality = "L_t >= L_0 - G sum_{s<t} eta_s (a_{s+1} sqrt(d) + lam R_s)"
    losses = probe_losses(trajectory)
    if losses is None:
        return no_probe(label, name, inequality)
    norm0 = None if theta0_norm is None else as_constant("theta0_norm", theta0_norm).value
    inputs, reason = _adam_inputs(trajectory, norm0)
    if reason is not None:
        return not_applicable(label, name, inequality, reason)
    steps = measured_prefix(trajectory)
    if steps == 0 or losses[0] is None:
        return not_applicable(label, name, inequality, "no measured step")
    inputs["learning_rates"] = inputs["learning_rates"][:steps]
    g_constant = as_constant("G", G)
    values = (envelope or t3.envelope)(L0=float(losses[0]), G=g_constant.value, **inputs)
    rounding = parameter_rounding(trajectory, norm0)
    extra = None
    if rounding is not None:
        extra = np.concatenate(([0.0], np.cumsum(g_constant.value * rounding[:steps])))
    tally = envelope_tally(trajectory, values, losses[: steps + 1], extra)
    tau = default_threshold(losses[: steps + 1]) if threshold is None else float(threshold)
    steps_fields = compare_minimum_steps(tally, values, losses[: steps + 1], tau)
    constants = {"G": g_constant, "d": given_constant("d", trajectory.trainable_parameters)}
    return tally.result(
        label,
        name,
        inequality,
        tolerance=LOSS_TOLERANCE_TEXT
        + ("" if rounding is None else "; + G * eps * sum ||theta_{s+1}|| (parameter rounding)"),
        constants=constants,
        **steps_fields,
    )


def plan_path_length(
    trajectory: Trajectory, constants: PathConstants, threshold: float | None
) -> list[PlannedCheck]:
    """T3's path-length bound with G on the segments, any optimizer (no threshold)."""
    g_path = constants.G_path
    if g_path is None:
        return [missing(THEOREM, "G on the segments", PATH_LENGTH)]
    return [planned(THEOREM, lambda: check_path_length(trajectory, g_path), PATH_LENGTH)]


def plan_adam(
    trajectory: Trajectory, constants: PathConstants, threshold: float | None
) -> list[PlannedCheck]:
    """For an Adam/AdamW attack: the step lemma, and the certified envelope with G on the
    segments (both with ‖θ_0‖ when measured); nothing for other optimizers."""
    if optimizer_of(trajectory) not in ("adam", "adamw"):
        return []
    norm0, g_path = constants.theta0_norm, constants.G_path
    checks = [planned(THEOREM, lambda: check_adam_steps(trajectory, theta0_norm=norm0), ADAM_STEP)]
    if g_path is None:
        checks.append(missing(THEOREM, "G on the segments"))
    else:
        checks.append(
            planned(
                THEOREM,
                lambda: check_adam_path(trajectory, g_path, theta0_norm=norm0, threshold=threshold),
            )
        )
    return checks
