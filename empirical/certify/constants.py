r"""The constants the theorems assume, measured along one trajectory (or given).

* β (T1, T2, T4): Lanczos (``empirical.measurement.estimators.smoothness_of``, both ends of the
  Hessian
  spectrum of the probe loss) at the iterates, each estimate multiplied by 1 + the Lanczos
  tolerance; ``beta`` is their maximum, ``beta_segments[s]`` the larger estimate at the
  sampled points bracketing segment s. A lower estimate of the smoothness of the region the
  path visits (Ritz values lie inside the spectrum).
* G at the iterates (T2's hypothesis is about the iterates only): the largest recorded
  probe-gradient norm; G on the segments (T3, T6): ``gradient_bound_along_path`` at points
  sampled along every segment, a lower estimate of the supremum (at the iterates themselves
  the attack's recorded norms, when they are the landscape's bit for bit:
  ``recorded_gradient_norms``).
* C (T2): the clipping norm, or the largest recorded minibatch-gradient norm if smaller.
* c and K (T6): where the update norms contract from some step K on, the largest ratio
  ‖u_{s+1}‖/‖u_s‖ after K (``empirical.measurement.estimators.contraction``).
* ‖θ_0‖: the norm of the captured start point (AdamW's bound; rounding allowances).

``constants_from_trajectory`` needs only the recorded trajectory; ``measure_constants`` needs
the probe loss as a ``LossLandscape`` and the iterates θ_0 … θ_T (``empirical.certify.capture``
captures them from a real attack); ``descent_constants`` does the same for a loss given as a
function of one flat vector (the problems of ``empirical.testing``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from empirical.certify.checks_base import ZERO_RATE_STAND_IN, config_value, measured_prefix
from empirical.certify.records import Constant, PathConstants
from empirical.measurement.trajectory import Trajectory
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from torch import Tensor

    from empirical.measurement.hvp import LossLandscape

__all__ = [
    "LANCZOS_TOLERANCE",
    "clip_constant",
    "constants_from_trajectory",
    "descent_constants",
    "measure_constants",
    "recorded_gradient_norms",
]

#: Default relative tolerance of the Lanczos estimates of β.
LANCZOS_TOLERANCE = 1e-2
#: ``refine``: the sampling of β is dense enough when this many halvings of the interval in
#: a row changed β by at most the tolerance (one stable halving can be luck).
REFINE_STABLE_HALVINGS = 2


def clip_constant(trajectory: Trajectory) -> Constant | None:
    """C: the clipping norm, or the largest recorded minibatch-gradient norm if smaller."""
    norms = [g for g in trajectory.grad_norm if g is not None]
    clip = config_value(trajectory, "max_grad_norm")
    largest = max(norms) if norms else None
    if clip is None and largest is None:
        return None
    if clip is not None and (largest is None or clip <= largest):
        return Constant(name="C", value=float(clip), method="clipping norm max_grad_norm")
    assert largest is not None
    return Constant(
        name="C",
        # every gradient was 0 (a start at a stationary point): any C > 0 bounds them
        value=max(float(largest), ZERO_RATE_STAND_IN),
        method="largest recorded minibatch-gradient norm (before clipping)",
        points=len(norms),
        note="exact for the recorded steps: every step's gradient had at most this norm",
    )


def _contraction_start(norms: Sequence[float]) -> int | None:
    """The smallest K ≤ n − 2 from which every ratio ‖u_{s+1}‖/‖u_s‖ is < 1 (None if none)."""
    start: int | None = None
    for s in range(len(norms) - 2, -1, -1):
        if norms[s] > 0.0 and norms[s + 1] < norms[s]:
            start = s
        else:
            break
    return start


def constants_from_trajectory(
    trajectory: Trajectory, *, contraction_start: int | None = None
) -> PathConstants:
    """The constants the trajectory alone determines: G at the iterates (the largest probe
    gradient norm), C (``clip_constant``) and, where the update norms contract from some K
    on (or from ``contraction_start``), T6's c
    (``empirical.measurement.estimators.contraction``)."""
    from empirical.measurement.estimators import contraction

    g_iterates = None
    if trajectory.probe_grad_norm is not None:
        norms = [g for g in trajectory.probe_grad_norm if g is not None]
        if norms:
            g_iterates = Constant(
                name="G",
                value=max(norms),
                method="largest probe-gradient norm at the iterates",
                points=len(norms),
                note="exact at the iterates (T2's hypothesis), up to float rounding",
            )
    updates = [float(u) for u in trajectory.update_norm if u is not None]
    start = contraction_start if contraction_start is not None else _contraction_start(updates)
    c_constant = None
    if start is not None and start <= len(updates) - 2:
        estimate = contraction(updates, start)
        if estimate.value < 1.0:
            c_constant = Constant(
                name="c",
                value=estimate.value,
                method=estimate.method,
                points=estimate.points,
                note="measured over the recorded steps only; T6 assumes it for every later step",
                provenance=estimate.model_dump(mode="json"),
            )
        else:
            start = None
    else:
        start = None
    return PathConstants(
        G_iterates=g_iterates,
        C=clip_constant(trajectory),
        contraction_start=start if c_constant is not None else None,
        c=c_constant,
    )


def measure_constants(
    trajectory: Trajectory,
    landscape: LossLandscape,
    iterates: Sequence[Tensor],
    *,
    beta_every: int = 1,
    segment_samples: int = 4,
    lanczos_tolerance: float = LANCZOS_TOLERANCE,
    contraction_start: int | None = None,
    seed: int = 0,
    refine: float | None = None,
) -> PathConstants:
    """All constants along the measured path of ``trajectory``.

    ``landscape`` must be the probe loss θ ↦ L_P(θ) (checked: its loss at θ_0 and θ_T must
    match the recorded probe losses), ``iterates`` the points θ_0 … θ_T as flat vectors.
    β: Lanczos (``empirical.measurement.estimators.smoothness_of``, both ends of the spectrum) at
    every
    ``beta_every``-th iterate and the last, each multiplied by 1 + ``lanczos_tolerance``;
    ``beta`` is their maximum, ``beta_segments[s]`` the largest estimate at the sampled points
    bracketing segment s. G on the segments: ``gradient_bound_along_path`` with
    ``segment_samples`` points per segment. ‖θ_0‖ from ``iterates[0]``.

    ``refine`` (a relative tolerance, e.g. 0.1): sample β densely enough that a denser
    sampling does not change it by more: the interval between sampled iterates is halved
    (the midpoints added) until ``REFINE_STABLE_HALVINGS`` halvings in a row grew β by at
    most ``refine`` relative, or every iterate is sampled; the record lists each interval
    and its β.
    """
    import torch

    from empirical.measurement.estimators import gradient_bound_along_path, smoothness_of

    if len(iterates) != trajectory.n_steps + 1:
        raise HftaInputError(
            f"{len(iterates)} iterates for a trajectory of {trajectory.n_steps} steps"
        )
    if isinstance(beta_every, bool) or not isinstance(beta_every, int) or beta_every < 1:
        raise HftaInputError(f"beta_every must be a positive integer, got {beta_every!r}")
    _check_landscape(trajectory, landscape, iterates)
    base = constants_from_trajectory(trajectory, contraction_start=contraction_start)
    steps = measured_prefix(trajectory)
    last = steps  # the last iterate with a finite probe loss at both ends of its segment
    if refine is not None and not refine > 0:
        raise HftaInputError(f"refine must be a positive relative tolerance, got {refine!r}")
    estimates: dict[int, float] = {}
    records: list[dict[str, Any]] = []

    def sample(indices: set[int]) -> float:
        for index in sorted(indices - set(estimates)):
            point = iterates[index].to(landscape.dtype)
            estimate = smoothness_of(landscape, point, tolerance=lanczos_tolerance, seed=seed)
            estimates[index] = estimate.beta * (1.0 + lanczos_tolerance)
            records.append(
                {
                    "iterate": index,
                    "lambda_max": estimate.lambda_max,
                    "lambda_min": estimate.lambda_min,
                    "converged": estimate.converged,
                    "hvps": estimate.hvps,
                    "seconds": estimate.seconds,
                    "method": estimate.method,
                }
            )
        return max(estimates.values())

    interval = beta_every
    beta_value = sample({*range(0, last + 1, interval), last})
    refinement = [{"interval": interval, "beta": beta_value}]
    stable = 0  # consecutive halvings that changed beta by at most ``refine``
    while refine is not None and interval > 1 and stable < REFINE_STABLE_HALVINGS:
        interval = max(interval // 2, 1)
        denser = sample({*range(0, last + 1, interval), last})
        refinement.append({"interval": interval, "beta": denser})
        stable = stable + 1 if denser <= beta_value * (1.0 + refine) else 0
        beta_value = denser
    sampled = sorted(estimates)
    density = ""
    if refine is not None:
        density = (
            f"; interval halved down to {interval} until {REFINE_STABLE_HALVINGS} halvings in "
            f"a row changed beta by <= {refine:g}"
        )
    beta = Constant(
        name="beta",
        value=beta_value,
        method=f"Lanczos (both spectrum ends) at {len(sampled)} iterates, max |lambda|, "
        f"times 1 + {lanczos_tolerance:g}{density}",
        points=len(sampled),
        note="local: a lower estimate of the smoothness of the region the path visits",
        provenance={
            "estimates": records,
            "all_converged": all(r["converged"] for r in records),
            "refinement": refinement,
        },
    )
    segments: list[float | None] = []
    for s in range(trajectory.n_steps):
        if s >= steps:
            segments.append(None)
            continue
        before = max(i for i in sampled if i <= s)
        after = min(i for i in sampled if i >= s + 1)
        segments.append(max(estimates[before], estimates[after]))
    path = [iterates[i].to(landscape.dtype) for i in range(last + 1)]
    known = recorded_gradient_norms(trajectory, landscape, path)
    gradient = gradient_bound_along_path(landscape, path, segment_samples, known=known)
    g_path = Constant(
        name="G",
        value=gradient.value,
        method=gradient.method,
        points=gradient.points,
        note="a lower estimate of sup ||grad L_P|| on the segments",
        provenance={"seconds": gradient.seconds, "argmax_point": gradient.details["argmax_point"]},
    )
    theta0 = Constant(
        name="theta0_norm",
        value=float(torch.linalg.vector_norm(iterates[0].double())),
        method="norm of the captured start point",
    )
    return base.model_copy(
        update={"beta": beta, "beta_segments": segments, "G_path": g_path, "theta0_norm": theta0}
    )


def recorded_gradient_norms(
    trajectory: Trajectory, landscape: LossLandscape, path: Sequence[Tensor]
) -> dict[int, float]:
    """The trajectory's recorded probe-gradient norms at the iterates of ``path``, by index,
    when they are the landscape's own: its ‖∇L_P‖ at the first and the last iterate must equal
    the recorded ones bit for bit (the attack loop and the landscape compute the same float32
    gradient of the same probe batch; measured equal at all 76 iterates of the demo's worst
    attack), else none (every gradient is then computed). Saves G on the segments one gradient
    per iterate: with 2 samples per segment, half of them."""
    import torch

    norms = trajectory.probe_grad_norm
    if norms is None or len(norms) < len(path):
        return {}
    for index in sorted({0, len(path) - 1}):
        recorded = norms[index]
        measured = float(torch.linalg.vector_norm(landscape.gradient(path[index])[1]))
        if recorded is None or measured != recorded:
            return {}
    return {s: float(g) for s, g in enumerate(norms[: len(path)]) if g is not None}


def _check_landscape(
    trajectory: Trajectory, landscape: LossLandscape, iterates: Sequence[Tensor]
) -> None:
    """The landscape must be the trajectory's probe loss on the captured iterates."""
    losses = trajectory.probe_loss
    if losses is None:
        raise HftaInputError("the trajectory has no probe loss (attack with probe=True)")
    if landscape.dimension != trajectory.trainable_parameters:
        raise HftaInputError(
            f"the landscape has {landscape.dimension} coordinates, the trajectory "
            f"{trajectory.trainable_parameters} trainable parameters"
        )
    for index in (0, measured_prefix(trajectory)):
        recorded = losses[index]
        if recorded is None:
            continue
        value = landscape.loss(iterates[index].to(landscape.dtype))
        if not math.isclose(value, recorded, rel_tol=1e-5, abs_tol=1e-7):
            raise HftaInputError(
                f"the landscape's loss {value!r} at iterate {index} differs from the recorded "
                f"probe loss {recorded!r}: not the probe loss of this trajectory"
            )


def descent_constants(
    trajectory: Trajectory,
    loss: Callable[[Tensor], Tensor],
    iterates: Sequence[Tensor],
    **options: Any,
) -> PathConstants:
    """``measure_constants`` for a loss given as a function of one flat float64 vector (the
    problems of ``empirical.testing``)."""
    from empirical.measurement.hvp import LossLandscape

    reference = {"theta": iterates[-1].detach().clone()}

    def function(parameters: Any) -> Tensor:
        return loss(parameters["theta"])

    landscape = LossLandscape(function, reference)
    return measure_constants(trajectory, landscape, iterates, **options)
