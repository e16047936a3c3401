r"""A real attack with its iterates captured, and the constants measured along its path.

``attack_and_measure(config, ...)`` runs ``empirical.engine.attack.attack`` with an ``on_iterate``
callback (``IterateCapture``) that keeps θ_0 … θ_T, the trainable parameters as the flat
float32 vectors the attack loop measures its update norms on; checks them against the
recorded update norms (‖θ_{s+1} − θ_s‖ equal to ``update_norm[s]`` to a relative 10⁻⁵);
rebuilds the probe batch (``measure_constants`` checks it against the recorded probe losses);
and measures the constants along the path (``empirical.certify.constants``). With
``float64=True`` the probe columns are evaluated again in float64 at the captured iterates
(``empirical.certify.float64``: ``MeasuredAttack.checked``), so that rounding does not decide
a check. ``MeasuredAttack.check_all`` then runs every check that applies on ``checked``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Unpack

from empirical.certify.constants import LANCZOS_TOLERANCE, measure_constants
from empirical.certify.records import BoundCheck, PathConstants
from empirical.certify.registry import check_all
from empirical.measurement.trajectory import Trajectory
from theory.errors import HftaInputError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn
    from transformers import PreTrainedTokenizerBase

    from empirical.datasets.data import Example
    from empirical.engine.attack import AttackConfig, AttackInputs
    from empirical.measurement.hvp import LossLandscape

__all__ = ["IterateCapture", "MeasuredAttack", "attack_and_measure"]


@dataclass
class MeasuredAttack:
    """An attack run with its iterates captured and its constants measured.

    ``trajectory`` is the run as recorded; ``checked`` the trajectory the checks read: the
    same, or with its probe columns evaluated again in float64 (``attack_and_measure``'s
    ``float64``).
    """

    trajectory: Trajectory
    constants: PathConstants
    model: nn.Module
    iterates: list[Tensor]
    landscape: LossLandscape
    checked: Trajectory

    def check_all(self, *, threshold: float | None = None) -> list[BoundCheck]:
        """``empirical.certify.check_all`` on ``checked`` with its measured constants."""
        return check_all(self.checked, self.constants, threshold=threshold)


class IterateCapture:
    """The iterates θ_0, θ_1, … an attack loop hands to its ``on_iterate`` callback.

    Pass the instance as ``on_iterate``: the loop calls it with (s, θ_s) for the start point
    and after every step, θ_s the flat vector of the attack's trainable parameters (a fresh
    tensor the loop does not modify), so the captured vectors are exactly the ones its update
    norms are measured on (``iterates`` checks that they are).
    """

    def __init__(self) -> None:
        self.points: list[Tensor] = []

    def __call__(self, step: int, theta: Tensor) -> None:
        if step != len(self.points):
            raise HftaInputError(f"iterate {step} handed over after {len(self.points)} iterates")
        self.points.append(theta)

    def iterates(self, trajectory: Trajectory) -> list[Tensor]:
        """θ_0 … θ_T for the T recorded steps of ``trajectory``, each step's norm checked
        against the recorded ‖Δ_s‖.

        Raises:
            HftaInputError: fewer than T + 1 iterates, or a step whose norm differs from the
                recorded one (not this trajectory's iterates).
        """
        points = self.points
        n = trajectory.n_steps
        if len(points) < n + 1:
            raise HftaInputError(f"captured {len(points)} iterates for {n} steps")
        points = points[: n + 1]
        for s in range(n):
            recorded = trajectory.update_norm[s]
            if recorded is None:
                continue
            measured = float((points[s + 1] - points[s]).norm())
            if not math.isclose(measured, recorded, rel_tol=1e-5, abs_tol=1e-12):
                raise HftaInputError(
                    f"captured step {s} has norm {measured!r}, the attack recorded {recorded!r}"
                )
        return points


def _probe_batch(
    config: AttackConfig,
    tokenizer: PreTrainedTokenizerBase,
    model: nn.Module,
    data: Sequence[Example] | None,
    evaluation: Sequence[Example] | None,
    reference: Sequence[Example] | None,
) -> dict[str, torch.Tensor]:
    """The attack's probe batch: ``probe_size`` examples of the attack set chosen with seed
    ``seed + 1`` from the encoded set (as ``empirical.engine.attack`` draws it;
    ``measure_constants``
    verifies the result against the recorded probe loss)."""
    import torch

    from empirical.engine.attack import encode_on, resolve_data, select_probe
    from empirical.measurement.proxies import context_length

    splits = resolve_data(config, data=data, evaluation=evaluation, reference=reference)
    max_length = config.max_length or context_length(model)
    train = encode_on(tokenizer, splits.attack, max_length, torch.device(config.device))
    return select_probe(train, config)


def attack_and_measure(
    config: AttackConfig,
    *,
    beta_every: int = 1,
    segment_samples: int = 4,
    lanczos_tolerance: float = LANCZOS_TOLERANCE,
    contraction_start: int | None = None,
    float64: bool = False,
    refine: float | None = None,
    advance: Callable[[int, int], None] | None = None,
    **inputs: Unpack[AttackInputs],
) -> MeasuredAttack:
    """Run ``empirical.engine.attack.attack`` with its iterates captured (``IterateCapture``),
    then ``measure_constants`` on the probe loss along the path (``inputs`` as for ``attack``:
    ``AttackInputs``; ``config.probe`` or ``config.record_curvature`` must be on);
    ``float64``: evaluate the
    probe columns again in float64 for the checks (``MeasuredAttack.checked``); ``refine``:
    sample β densely until stable (``measure_constants``); ``advance(done, total)``: progress
    (``empirical.progress``) over the T + 1 iterates of the attack, then one unit for the
    constants and one for the float64 columns."""
    from empirical.engine.attack import attack
    from empirical.measurement.hvp import model_landscape

    if not config.probing:
        raise HftaInputError("bound checks need the probe: set probe=True in the attack config")
    model, tokenizer = inputs.get("model"), inputs.get("tokenizer")
    if (model is None) != (tokenizer is None):
        raise HftaInputError("give both model and tokenizer, or neither")
    if model is None or tokenizer is None:
        from empirical.engine.attack import DTYPES
        from empirical.models.model import load_model

        model, tokenizer = load_model(
            config.model, device=config.device, dtype=DTYPES[config.dtype]
        )
    capture = IterateCapture()
    total = config.budget_steps + 2 + int(float64)

    def on_iterate(step: int, theta: Tensor) -> None:
        capture(step, theta)
        if advance is not None:
            advance(step + 1, total)

    given: AttackInputs = {**inputs, "model": model, "tokenizer": tokenizer}
    outcome = attack(config, on_iterate=on_iterate, **given)
    trajectory = outcome.trajectory
    iterates = capture.iterates(trajectory)
    batch = _probe_batch(
        config,
        tokenizer,
        outcome.model,
        inputs.get("data"),
        inputs.get("evaluation"),
        inputs.get("reference"),
    )
    landscape = model_landscape(outcome.model, batch, trainable_only=True)
    constants = measure_constants(
        trajectory,
        landscape,
        iterates,
        beta_every=beta_every,
        segment_samples=segment_samples,
        lanczos_tolerance=lanczos_tolerance,
        contraction_start=contraction_start,
        refine=refine,
    )
    if advance is not None:
        advance(config.budget_steps + 2, total)
    checked = trajectory
    if float64:
        from empirical.certify.float64 import in_float64

        checked = in_float64(trajectory, outcome.model, batch, iterates)
        if advance is not None:
            advance(total, total)
    return MeasuredAttack(
        trajectory=trajectory,
        constants=constants,
        model=outcome.model,
        iterates=iterates,
        landscape=landscape,
        checked=checked,
    )
