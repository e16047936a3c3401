"""Figures of measured attacks (matplotlib, Agg backend, no pyplot state).

``figure_two`` draws the picture of Rosati et al. (2024), Figure 2: the harmful training loss
against the attack step for the original and the immunized model, one line per trajectory,
with the acceptable threshold (φ for the harm proxy, τ for a loss) as a horizontal line, the
step each curve first crosses it marked with a star (in the legend, with its step),
divergence marked, and optionally a *certified envelope*: a band of bounds from theory (e.g.
T2's lower bound on L_t, computed by the caller with ``theory``) that the measured curve must
stay inside, its edges drawn as dash-dotted lines (gids ``envelope:lower``/``envelope:upper``).

``attack_figure`` is the one-attack summary ``hfta attack`` writes: harmful loss (minibatch
and held-out) on top, harm proxy with φ below.

Figures are ``matplotlib.figure.Figure`` objects on an Agg canvas, so they can be inspected
(tests read back the plotted data) and are saved atomically by ``save_figure``.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from empirical.measurement.trajectory import EVAL_FIELDS, Trajectory
from theory.errors import HftaInputError

QUANTITY_LABELS: dict[str, str] = {
    "train_loss": "harmful training loss (minibatch)",
    "harmful_loss": "held-out harmful loss",
    "probe_loss": "harmful loss on the probe batch",
    "harm": "harm proxy f",
    "capability": "capability proxy g",
}


@dataclass(frozen=True)
class Envelope:
    """A certified band: ``lower[i] ≤ quantity(steps[i]) ≤ upper[i]`` (either side optional)."""

    steps: Sequence[int]
    lower: Sequence[float] | None = None
    upper: Sequence[float] | None = None
    label: str = "certified envelope"

    def __post_init__(self) -> None:
        if self.lower is None and self.upper is None:
            raise HftaInputError("envelope: give a lower or an upper bound")
        for side, values in (("lower", self.lower), ("upper", self.upper)):
            if values is not None and len(values) != len(self.steps):
                raise HftaInputError(
                    f"envelope: {len(self.steps)} steps but {len(values)} {side} values"
                )
        if not self.steps:
            raise HftaInputError("envelope: no steps")


def _crossing(trajectory: Trajectory, quantity: str, threshold: float, rising: bool) -> int | None:
    """The first evaluated step past the threshold, as theory decides it.

    Harm: the first violation of weak resistance f ≤ φ within the budget
    (``theory.conditions.WeakResistance``); a loss: the first step with L ≤ τ. Evaluations at
    or after a divergence never count (``theory.curve.Curve.evidence``).
    """
    curve = trajectory.to_curve(quantity)
    if rising:
        from theory.conditions import WeakResistance

        verdict = WeakResistance(threshold, budget=trajectory.budget_steps).check(curve)
        return verdict.first_violation_step
    return curve.first_step(lambda value: value <= threshold)


def _draw(
    axes: Axes,
    curves: Mapping[str, Trajectory],
    quantity: str,
    threshold: float | None,
    envelope: Envelope | None,
) -> None:
    """One panel: every trajectory's ``quantity``, the threshold, crossings, divergence."""
    if envelope is not None:
        lower = envelope.lower
        upper = envelope.upper
        bottom = list(lower) if lower is not None else [-math.inf] * len(envelope.steps)
        top = list(upper) if upper is not None else [math.inf] * len(envelope.steps)
        finite = [v for v in (*bottom, *top) if math.isfinite(v)]
        low, high = min(finite), max(finite)
        axes.fill_between(
            list(envelope.steps),
            [v if math.isfinite(v) else low for v in bottom],
            [v if math.isfinite(v) else high for v in top],
            alpha=0.12,
            color="tab:green",
            linewidth=0,
            gid="envelope",
        )
        # the band's edges as lines (the legend entry), visible where the band is clipped
        labelled = False
        for side, values in (("lower", lower), ("upper", upper)):
            if values is not None:
                axes.plot(
                    list(envelope.steps),
                    list(values),
                    color="tab:green",
                    linestyle="-.",
                    linewidth=1.2,
                    label="_nolegend_" if labelled else envelope.label,
                    gid=f"envelope:{side}",
                )
                labelled = True
    # A harm-like proxy crosses φ going up; a loss crosses τ going down.
    rising = quantity in ("harm",)
    for name, trajectory in curves.items():
        steps, values = trajectory.series(quantity)
        marker = "o" if quantity in EVAL_FIELDS else None
        (line,) = axes.plot(steps, values, marker=marker, markersize=3, label=name, gid=name)
        if threshold is not None and values:
            crossed = _crossing(trajectory, quantity, threshold, rising)
            if crossed is not None:
                what = "first f > φ" if rising else "reaches τ"
                axes.plot(
                    [crossed],
                    [values[steps.index(crossed)]],
                    marker="*",
                    markersize=12,
                    color=line.get_color(),
                    linestyle="none",
                    label=f"{name}: {what} (step {crossed})",
                    gid=f"{name}:crossing",
                )
        if trajectory.diverged_at is not None:
            axes.axvline(
                trajectory.diverged_at,
                color=line.get_color(),
                linestyle=":",
                label=f"{name} diverged (step {trajectory.diverged_at})",
                gid=f"{name}:diverged",
            )
    if threshold is not None:
        symbol = "φ" if rising else "τ"
        axes.axhline(
            threshold, color="tab:red", linestyle="--", label=f"{symbol} = {threshold:g}",
            gid="threshold",
        )
    axes.set_xlabel("attack step")
    axes.set_ylabel(QUANTITY_LABELS.get(quantity, quantity))
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")


def figure_two(
    curves: Mapping[str, Trajectory],
    *,
    quantity: str = "train_loss",
    threshold: float | None = None,
    envelope: Envelope | None = None,
    title: str | None = None,
) -> Figure:
    """Harmful loss (or any recorded ``quantity``) vs step, one line per named trajectory.

    Example: ``figure_two({"original": a, "immunized": b}, threshold=0.5)``.

    Raises:
        HftaInputError: no trajectories, or a quantity some trajectory did not record.
    """
    if not curves:
        raise HftaInputError("figure_two: no trajectories to plot")
    figure = Figure(figsize=(7.0, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    _draw(axes, curves, quantity, threshold, envelope)
    axes.set_title(title or "Harmful fine-tuning attack")
    return figure


def attack_figure(
    trajectory: Trajectory,
    *,
    threshold: float = 0.5,
    envelope: Envelope | None = None,
    name: str = "attack",
) -> Figure:
    """Two panels for one attack: the harmful losses (with ``envelope``), the harm proxy vs φ."""
    figure = Figure(figsize=(7.0, 6.5), layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    _draw(top, {f"{name} (minibatch)": trajectory}, "train_loss", None, envelope)
    steps, values = trajectory.series("harmful_loss")
    if steps:
        top.plot(steps, values, marker="o", markersize=3, label=f"{name} (held out)",
                 gid="held-out")
        top.legend(fontsize="small")
    top.set_ylabel("harmful loss")
    top.set_xlabel("")
    if trajectory.series("harm")[0]:
        _draw(bottom, {name: trajectory}, "harm", threshold, None)
        bottom.set_ylim(-0.05, 1.05)
    else:
        bottom.text(0.5, 0.5, "no harm proxy measured", ha="center", transform=bottom.transAxes)
    steps, values = trajectory.series("capability")
    if steps:
        twin = bottom.twinx()
        twin.plot(steps, values, color="tab:gray", linestyle="--", marker="s", markersize=3,
                  gid="capability")
        better = {True: "higher is better", False: "lower is better", None: ""}
        label = QUANTITY_LABELS["capability"]
        hint = better[trajectory.capability_higher_is_better]
        twin.set_ylabel(f"{label} ({hint})" if hint else label, color="tab:gray")
    figure.suptitle(
        f"{trajectory.config.get('optimizer', trajectory.source)} attack, "
        f"{trajectory.n_steps} steps"
        + (f", diverged at {trajectory.diverged_at}" if trajectory.diverged else "")
    )
    return figure


def save_figure(figure: Figure, path: Path | str, *, dpi: int = 120) -> Path:
    """Write ``figure`` (format from the suffix, e.g. ``.png``) atomically; return the path."""
    path = Path(path)
    if not path.suffix:
        raise HftaInputError(f"{path}: give the figure file a suffix such as .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent
    )
    os.close(descriptor)
    try:
        figure.savefig(temp_name, dpi=dpi)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path
