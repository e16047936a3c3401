r"""The directional smoothness of an attack, fitted where the checked steps are not (issue 14,
items 1 and 3; docs/science.md §4).

``directional_fit``: the *directional* smoothness along the attack's own update directions,
β_dir = max |κ_s| over the trustworthy segment curvatures κ_s = 2(L_{s+1} − L_s −
⟨∇L_s, Δ_s⟩)/‖Δ_s‖² of a source (theory's ``trustworthy_curvature``): the first ``split``
steps of the run (checked on the rest), or another run of the same attack class (a different
seed, so also another probe batch of the same data; checked on every step). T1 applied to the
restriction of L to the line of each checked step, φ_s(u) = L(θ_s + u Δ_s/‖Δ_s‖), is still T1
(a function of one variable whose |φ_s''| ≤ β_dir on the segment satisfies the sandwich with
β_dir), so the check with β_dir tests the hypothesis "the checked steps are no more curved
along their own directions than the source's steps were". A Lanczos β bounds the curvature
in *every* direction and is far above the curvature along the steps of these attacks
(measured on the demo's worst attack: max |κ_s| ≈ 90 against the path's β ≈ 1160; T1 with
the per-segment Lanczos β_s detects β_s × f only for f ≤ 0.19), so T1 with a global β cannot
detect β ×0.5; β_dir can be tight. Its margin ``DIRECTIONAL_MARGIN`` (1) was fixed before
any run was checked with it. Measured (``benchmarks/power_bench.py``, 26 attacks with a
seed + 1 run each; the demo's 4 attacks, two seeds per class): β_dir of the other run
detects ×0.5 on 20/21 and 4/4 runs, and does not describe the run at ×1 on 7/21 and 2/4
(the other seed's steps were less curved); β_dir of the prefix detects ×0.5 on only 7/20 and
1/4 (×1: 1/20, 0/4), because the curvature along these runs' steps falls as they train (on
the demo from 60–120 in the first tenth to 1–4 at the end), so the first half's maximum
overshoots the second half.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from empirical.certify.checks_base import loss_epsilon, measured_prefix
from empirical.certify.records import Constant
from empirical.measurement.trajectory import Trajectory
from theory.errors import AssumptionError, HftaInputError
from theory.theorems.smoothness_sandwich import (
    CURVATURE_NOISE_FRACTION,
    curvature_rounding_bound,
    trustworthy_curvature,
)

__all__ = [
    "DIRECTIONAL_MARGIN",
    "DirectionalFit",
    "curvature_roundings",
    "directional_fit",
    "segment_curvatures",
]


#: The safety margin on a fitted directional smoothness: β_dir = margin × max |κ_s| of the
#: source. Fixed at 1 (no margin) before any run was checked with it: the check then tests
#: exactly "no checked step is more curved along its direction than the source's steps".
DIRECTIONAL_MARGIN = 1.0


def curvature_roundings(trajectory: Trajectory) -> list[float | None]:
    """ρ_s, theory's ``curvature_rounding_bound`` of every measured step's κ_s in the probe's
    dtype (None where a value is missing or the step does not move)."""
    losses, slopes = trajectory.probe_loss, trajectory.probe_directional_derivative
    values: list[float | None] = [None] * trajectory.n_steps
    if losses is None or slopes is None:
        return values
    eps = loss_epsilon(trajectory)
    for s in range(measured_prefix(trajectory)):
        l0, l1, gdot, norm = losses[s], losses[s + 1], slopes[s], trajectory.update_norm[s]
        if l0 is None or l1 is None or gdot is None or norm is None or not norm * norm > 0.0:
            continue
        values[s] = curvature_rounding_bound(
            L0=l0, L1=l1, gdot=gdot, delta_norm=norm, unit_roundoff=eps
        )
    return values


def segment_curvatures(trajectory: Trajectory) -> list[float | None]:
    """κ_s for every measured step of ``trajectory`` where it is not rounding noise: theory's
    ``trustworthy_curvature`` on the probe columns in the probe's own dtype (``loss_epsilon``;
    float64 columns of ``empirical.certify.float64`` keep more steps than float32 ones), None
    elsewhere (no move, a missing value, or noise). Computed from the columns rather than read
    from ``Trajectory.curvature``, which a run records only with ``record_curvature``."""
    losses, slopes = trajectory.probe_loss, trajectory.probe_directional_derivative
    if losses is None or slopes is None:
        return [None] * trajectory.n_steps
    eps = loss_epsilon(trajectory)
    values: list[float | None] = [None] * trajectory.n_steps
    for s in range(measured_prefix(trajectory)):
        l0, l1, gdot, norm = losses[s], losses[s + 1], slopes[s], trajectory.update_norm[s]
        if l0 is None or l1 is None or gdot is None or norm is None or not norm * norm > 0.0:
            continue
        try:
            values[s] = trustworthy_curvature(
                L0=l0, L1=l1, gdot=gdot, delta_norm=norm, unit_roundoff=eps
            )
        except AssumptionError:  # a non-finite value: not a curvature
            continue
    return values


class DirectionalFit(BaseModel):
    """β_dir fitted on a source's segment curvatures, to check T1 on a target's steps.

    ``source``: "prefix" (steps 0 … first−1 of the checked run) or the names of other runs of
    the same attack class; ``first``: the first checked step (0 for other runs);
    ``beta_rest``: per-step β for ``check_step_sandwich`` (None on the steps not checked:
    before ``first``, and where the step's curvature rounding bound exceeds a tenth of β_dir);
    ``curvatures``: how many trustworthy |κ_s| the maximum was taken over; ``checked``: how
    many steps ``beta_rest`` checks.
    """

    model_config = ConfigDict(frozen=True)

    source: str
    first: int
    beta: Constant
    margin: float
    beta_rest: list[float | None]
    curvatures: int
    checked: int
    confidence: str


def directional_fit(
    source: Trajectory | Sequence[Trajectory],
    target: Trajectory,
    *,
    split: int | None = None,
    source_name: str = "prefix",
    margin: float = DIRECTIONAL_MARGIN,
) -> DirectionalFit | None:
    """β_dir = ``margin`` × max |κ_s| over the trustworthy curvatures (``segment_curvatures``)
    of ``source``'s steps 0 … split−1 (``split`` given: the source is the target's own prefix,
    checked from ``split`` on) or of all the steps of one or more other runs (every step of
    ``target`` is checked). A target step is checked only where rounding cannot move its
    curvature by more than a tenth of β_dir (ρ_s ≤ ``CURVATURE_NOISE_FRACTION`` β_dir,
    ``curvature_roundings``; fixed by the unperturbed β_dir, so a perturbed β checks the same
    steps): a violation is then a curvature, not rounding. None when the source has no
    trustworthy curvature or no step of the target can be checked.

    Raises:
        HftaInputError: a margin below 1, or a split outside [1, steps of the target).
    """
    if not margin >= 1.0:
        raise HftaInputError(f"a safety margin must be >= 1, got {margin}")
    sources = [source] if isinstance(source, Trajectory) else list(source)
    kappas = [k for run in sources for k in segment_curvatures(run)]
    first = 0
    if split is not None:
        steps = measured_prefix(target)
        if not 1 <= split < steps:
            raise HftaInputError(f"split {split} must be in [1, {steps})")
        if len(sources) != 1 or sources[0] is not target:
            raise HftaInputError("a split fits the checked run's own prefix: pass it as source")
        kappas, first = kappas[:split], split
    known = [abs(k) for k in kappas if k is not None]
    if not known:
        return None
    where = f"steps 0..{split - 1} of the checked run" if split else f"every step of {source_name}"
    beta = Constant(
        name="beta",
        value=margin * max(known),
        method=f"{margin:g} x max |kappa_s| over {len(known)} trustworthy segment curvatures "
        f"({where}): the directional smoothness along the attack's update directions",
        points=len(known),
        note="fitted on data the checked steps did not produce; T1 on the restriction of L "
        "to each checked step's line",
        provenance={"source": source_name, "abs_curvatures": known, "margin": margin},
    )
    roundings = curvature_roundings(target)
    ceiling = CURVATURE_NOISE_FRACTION * beta.value
    rest: list[float | None] = [
        beta.value if s >= first and (r := roundings[s]) is not None and r <= ceiling else None
        for s in range(target.n_steps)
    ]
    checked = sum(b is not None for b in rest)
    if not checked:
        return None
    return DirectionalFit(
        source=source_name,
        first=first,
        beta=beta,
        margin=margin,
        beta_rest=rest,
        curvatures=len(known),
        checked=checked,
        confidence="a description of the source's steps: a checked step more curved along its "
        "own direction than every source step refutes it (no probabilistic guarantee; "
        "'these constants do not describe this run')",
    )
