r"""The probe quantities of a captured attack evaluated again in float64 (issue 14, item 6).

An attack runs in float32; its recorded probe loss L_s, gradient norm ‖∇L_s‖ and directional
derivative ⟨∇L_s, Δ_s⟩ carry float32 rounding, and near a minimum (L ≈ 0.002) a float32
causal-LM loss was measured to differ from a float64 evaluation of the same model at the same
point by up to 63 ulp: more than any fixed allowance, so rounding, not the theorem, decided
some of T1's per-step comparisons.

``in_float64(trajectory, model, batch, iterates)`` removes that: it evaluates the probe loss
and its gradient in float64 *at the captured float32 iterates themselves* (a float64 copy of
the model; each θ_s is exactly representable in float64), forms Δ_s = θ_{s+1} − θ_s in
float64 (exact: the difference of two float32 vectors), and returns a copy of the trajectory
whose probe columns are those float64 values, marked ``probe_dtype = "float64"``. The checks
then allow 8 ulp of *float64* (``checks_base.loss_tolerance`` reads ``probe_dtype``), while
the step-norm allowances keep the parameters' float32 ε (the iterates are float32).

The segment curvature κ_s = 2(L_{s+1} − L_s − ⟨∇L_s, Δ_s⟩)/‖Δ_s‖² is recomputed from the
float64 columns and kept only where it is not rounding noise (theory's
``trustworthy_curvature``: its rounding bound is at most a tenth of |κ_s|).

The loss is the model's mean token cross-entropy computed here from float64 logits
(``float64_causal_lm_loss``; transformers' own loss upcasts logits to float32), on the very
probe batch the attack recorded (checked: at θ_0 the float64 loss must agree with the
recorded float32 one to a relative 10⁻⁵).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from empirical.measurement.trajectory import MACHINE_EPSILON, Trajectory
from theory.errors import HftaInputError
from theory.theorems.smoothness_sandwich import trustworthy_curvature

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = ["float64_causal_lm_loss", "in_float64"]

#: The recorded float32 probe loss and the float64 one at θ_0 must agree to this (relative).
AGREEMENT = 1e-5


def float64_causal_lm_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """Mean next-token cross-entropy over the tokens whose label is not −100, from the
    model's logits in their own dtype (float64 for a float64 model): the definition
    transformers' causal-LM loss uses (labels shifted by one), without its float32 upcast."""
    import torch.nn.functional as functional

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits
    labels = batch["labels"]
    shifted = logits[..., :-1, :].reshape(-1, logits.shape[-1])
    targets = labels[..., 1:].reshape(-1)
    return functional.cross_entropy(shifted, targets, ignore_index=-100, reduction="mean")


def in_float64(
    trajectory: Trajectory,
    model: nn.Module,
    batch: Mapping[str, Tensor],
    iterates: Sequence[Tensor],
) -> Trajectory:
    """``trajectory`` with its probe columns evaluated again in float64 (module docstring).

    ``model``: the attacked model (any dtype; a float64 copy is made, the model is not
    modified); ``batch``: the attack's probe batch; ``iterates``: θ_0 … θ_T as captured
    (``IterateCapture``), the flat trainable parameters.

    Raises:
        HftaInputError: no probe on the trajectory, the iterates do not match its steps, or
            the batch is not its probe batch (the losses at θ_0 disagree).
    """
    import torch

    from empirical.measurement.hvp import model_landscape

    if trajectory.probe_loss is None:
        raise HftaInputError("the trajectory has no probe columns (attack with probe=True)")
    n = trajectory.n_steps
    if len(iterates) != n + 1:
        raise HftaInputError(f"{len(iterates)} iterates for a trajectory of {n} steps")
    double = copy.deepcopy(model).to(torch.float64)
    landscape = model_landscape(double, batch, trainable_only=True, loss=float64_causal_lm_loss)
    points = [theta.detach().to(torch.float64) for theta in iterates]
    losses: list[float | None] = []
    gradients: list[Tensor | None] = []
    for theta in points:
        try:
            value, gradient = landscape.gradient(theta)
        except HftaInputError:  # a non-finite loss or gradient (a diverged iterate)
            losses.append(None)
            gradients.append(None)
            continue
        losses.append(value)
        gradients.append(gradient)
    recorded = trajectory.probe_loss[0]
    start = losses[0]
    if (
        recorded is not None
        and start is not None
        and not math.isclose(start, recorded, rel_tol=AGREEMENT, abs_tol=1e-7)
    ):
        raise HftaInputError(
            f"the float64 probe loss {start!r} at theta_0 differs from the recorded "
            f"{recorded!r}: not this trajectory's probe batch"
        )
    slopes: list[float | None] = []
    curvature: list[float | None] = []
    eps = MACHINE_EPSILON["float64"]
    for s in range(n):
        at_s, l0, l1 = gradients[s], losses[s], losses[s + 1]
        if at_s is None or l0 is None or l1 is None:
            slopes.append(None)
            curvature.append(None)
            continue
        delta = points[s + 1] - points[s]
        gdot = float(torch.dot(at_s, delta))
        slopes.append(gdot)
        norm = float(torch.linalg.vector_norm(delta))
        if norm * norm == 0.0:
            curvature.append(None)
            continue
        curvature.append(
            trustworthy_curvature(L0=l0, L1=l1, gdot=gdot, delta_norm=norm, unit_roundoff=eps)
        )
    norms = [None if g is None else float(torch.linalg.vector_norm(g)) for g in gradients]
    return trajectory.model_copy(
        update={
            "probe_loss": losses,
            "probe_grad_norm": norms,
            "probe_directional_derivative": slopes,
            "curvature": curvature if trajectory.curvature is not None else None,
            "probe_dtype": "float64",
        }
    )
