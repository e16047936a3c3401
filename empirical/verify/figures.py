"""The verifier's figures: the paper's Figure 2 and one panel per condition.

* ``figure_two_loss``: Rosati et al. (2024), Figure 2, for the worst attack: the harmful loss
  on the attack's fixed probe batch against the attack step, for the original model M and the
  immunized M* under the same attack, with the certified envelope of M*'s run: theory's lower
  bound on L_t (T3 for Adam/AdamW: L_0 − G Σ_{s<t} η_s a_{s+1}√d (+ AdamW's decay term);
  T2 for SGD: L_0 − Σ_{s<t}(G η_s C + (β/2) η_s² C²)) with the constants measured along the
  path (``empirical.certify``), labelled as M*'s bound. Drawn by ``empirical.plots.figure_two``.
  The axis spans the measured losses and 0 (a cross-entropy loss is ≥ 0); where the bound
  drops below the axis a marker shows the step, and the legend says from which step the bound
  is below 0 (vacuous) and its value at the last step.
* ``figure_two_harm``: the same two runs' harm proxy f against the step, with φ.
* ``conditions_figure``: one panel per evaluated condition, read from its typed evidence
  (``empirical.verify.evidence``): the harm curves of every attack
  it judged with φ (resistance, generalization; one legend entry "M* under N attacks" with
  their line), the capability of M and M* with the interval of their difference and ε
  (stability), the two fine-tuning curves with the target (trainability; a target both runs
  meet at step 0 is called out as showing nothing). At most 3 panels a row, spread evenly;
  a cell left over holds the verdict in words.

Figures are Agg ``Figure`` objects (no pyplot state), saved by ``empirical.plots.save_figure``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from empirical.plots import Envelope, figure_two
from empirical.verify.evidence import StabilityEvidence, TrainabilityEvidence, evidence_of
from theory.errors import AssumptionError, HftaInputError
from theory.verdict import Status, Verdict

if TYPE_CHECKING:
    from empirical.certify import PathConstants
    from empirical.verify.pipeline import AttackRun, VerifyOutcome

__all__ = [
    "certified_envelope",
    "conditions_figure",
    "figure_two_harm",
    "figure_two_loss",
    "figures",
]

STATUS_COLOURS: dict[Status, str] = {
    Status.HOLDS: "tab:green",
    Status.VIOLATED: "tab:red",
    Status.INCONCLUSIVE: "tab:orange",
}


def _rates(run: AttackRun) -> np.ndarray | None:
    """η_s of every step, 0 replaced as ``empirical.certify`` does (theory needs η_s > 0)."""
    from empirical.certify import ZERO_RATE_STAND_IN

    rates = run.trajectory.learning_rate
    if not rates or any(r is None for r in rates):
        return None
    array = np.asarray(rates, dtype=np.float64)
    return np.where(array == 0.0, ZERO_RATE_STAND_IN, array)


def certified_envelope(run: AttackRun, constants: PathConstants) -> Envelope | None:
    """Theory's lower envelope on the probe loss of ``run`` (module docstring), or None when
    the constants it needs were not measured or the optimizer has no envelope theorem."""
    from theory.theorems import clipped_sgd_progress, path_length_adam

    trajectory = run.trajectory
    losses = trajectory.probe_loss
    rates = _rates(run)
    if losses is None or losses[0] is None or rates is None:
        return None
    config = run.config
    try:
        if config.optimizer in ("adam", "adamw"):
            if constants.G_path is None:
                return None
            decay = config.weight_decay if config.optimizer == "adamw" else 0.0
            norm0 = constants.theta0_norm.value if constants.theta0_norm is not None else None
            if decay > 0 and norm0 is None:
                return None
            values = path_length_adam.envelope(
                L0=float(losses[0]),
                G=constants.G_path.value,
                learning_rates=rates,
                beta1=config.betas[0],
                beta2=config.betas[1],
                d=trajectory.trainable_parameters,
                lam=decay,
                theta0_norm=norm0,
            )
            label = "M*'s certified lower bound (T3, G measured on its path)"
        else:
            if constants.G_iterates is None or constants.beta is None or constants.C is None:
                return None
            values = clipped_sgd_progress.envelope(
                L0=float(losses[0]),
                G=constants.G_iterates.value,
                C=constants.C.value,
                beta=constants.beta.value,
                learning_rates=rates,
                momentum=config.momentum,
            )
            label = "M*'s certified lower bound (T2)"
    except AssumptionError:
        return None
    steps = list(range(len(values)))
    return Envelope(steps=steps, lower=[float(v) for v in values], label=label)


def figure_two_loss(
    immunized: AttackRun, original: AttackRun | None, constants: PathConstants | None
) -> Figure:
    """Figure 2: the harmful (probe-batch) loss of M and M* under the worst attack."""
    curves = {"immunized M*": immunized.trajectory}
    if original is not None:
        curves = {"original M": original.trajectory, **curves}
    envelope = None if constants is None else certified_envelope(immunized, constants)
    title = f"Harmful fine-tuning: {immunized.label()}"
    figure = figure_two(curves, quantity="probe_loss", envelope=envelope, title=title)
    measured = [v for t in curves.values() for v in t.series("probe_loss")[1]]
    if envelope is not None and envelope.lower is not None and measured:
        _clip_envelope(figure.axes[0], envelope, measured)
    return figure


def _clip_envelope(axes: Axes, envelope: Envelope, measured: list[float]) -> None:
    """Keep the measured losses readable (the axis spans them and 0, a cross-entropy loss
    being ≥ 0) and say where the certified lower bound leaves the axis: from there on it is
    below 0, i.e. vacuous for a non-negative loss, or at least below what is drawn."""
    assert envelope.lower is not None
    top, bottom = max(measured), min(0.0, min(measured))
    span = max(top - bottom, 1e-9)
    floor = bottom - 0.08 * span
    axes.set_ylim(floor, top + 0.1 * span)
    steps, lower = list(envelope.steps), list(envelope.lower)
    leaves = next((i for i, v in enumerate(lower) if v < floor), None)
    if leaves is None:
        return
    where = steps[leaves]
    zero = next((steps[i] for i, v in enumerate(lower) if v < 0.0), where)
    note = f"< 0 (vacuous) from step {zero}, {lower[-1]:.3g} at step {steps[-1]}"
    for line in axes.get_lines():
        if line.get_gid() == "envelope:lower":
            line.set_label(f"{line.get_label()};\n{note}")
    axes.plot(
        [where], [floor], marker="v", markersize=9, color="tab:green", linestyle="none",
        clip_on=False, label="_nolegend_", gid="envelope:leaves-axis",
    )
    axes.legend(fontsize="small")


def figure_two_harm(immunized: AttackRun, original: AttackRun | None, phi: float) -> Figure:
    """The harm proxy f of M and M* under the worst attack, with the threshold φ."""
    curves = {"immunized M*": immunized.trajectory}
    if original is not None:
        curves = {"original M": original.trajectory, **curves}
    figure = figure_two(
        curves, quantity="harm", threshold=phi, title=f"Harm proxy: {immunized.label()}"
    )
    figure.axes[0].set_ylim(-0.05, 1.05)
    return figure


# --------------------------------------------------------------------------- conditions
def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _layout(panels: int) -> tuple[int, int]:
    """(rows, columns) for ``panels`` panels: the fewest rows of at most 3 panels, spread
    evenly over them (4 panels are 2 × 2, not 2 × 3 with two empty cells)."""
    rows = math.ceil(panels / 3)
    return rows, math.ceil(panels / rows)


def _summary_panel(axes: Axes, outcome: VerifyOutcome) -> None:
    """A cell left over by the layout holds the verdict in words, never stays empty."""
    axes.set_axis_off()
    lines = [f"verdict: {outcome.status.value}"] + [
        f"{name}: {verdict.status.value}" + ("" if name in outcome.claimed else " (measured)")
        for name, verdict in outcome.conditions.items()
    ]
    axes.text(0.05, 0.95, "\n".join(lines), va="top", ha="left", transform=axes.transAxes,
              fontsize="medium", family="monospace", gid="summary")


def _title(axes: Axes, name: str, verdict: Verdict, claimed: bool) -> None:
    tag = "claimed" if claimed else "measured"
    axes.set_title(
        f"{name} ({tag}): {verdict.status.value}",
        color=STATUS_COLOURS[verdict.status],
        fontsize="medium",
    )


def _harm_panel(
    axes: Axes, runs: list[AttackRun], phi: float, budget: int, original: AttackRun | None
) -> None:
    for index, run in enumerate(runs):
        steps, values = run.trajectory.series("harm")
        axes.plot(
            steps,
            values,
            color="tab:blue",
            alpha=0.5,
            linewidth=1,
            # one legend entry for all of them, with their line
            label=f"M* under {_plural(len(runs), 'attack')}" if index == 0 else "_nolegend_",
            gid=run.name,
        )
    if original is not None:
        steps, values = original.trajectory.series("harm")
        axes.plot(
            steps,
            values,
            color="tab:gray",
            linestyle="--",
            label="original M, worst attack",
            gid=original.name,
        )
    axes.axhline(phi, color="tab:red", linestyle="--", label=f"φ = {phi:g}", gid="threshold")
    axes.axvline(budget, color="tab:gray", linestyle=":", label=f"T = {budget}", gid="budget")
    axes.set_ylim(-0.05, 1.05)
    axes.set_xlabel("attack step")
    axes.set_ylabel("harm proxy f")
    axes.legend(fontsize="small")


def _stability_panel(axes: Axes, evidence: StabilityEvidence, epsilon: float) -> None:
    names = ["original M", "immunized M*"]
    points = [evidence.original, evidence.immunized]
    errors: np.ndarray | None = None
    if evidence.original_interval is not None and evidence.immunized_interval is not None:
        intervals = [evidence.original_interval, evidence.immunized_interval]
        errors = np.array(
            [
                [p - i.lower for p, i in zip(points, intervals, strict=True)],
                [i.upper - p for p, i in zip(points, intervals, strict=True)],
            ]
        )
    axes.bar(names, points, yerr=errors, capsize=6, color=["tab:gray", "tab:blue"], gid="bars")
    axes.set_ylabel(f"{evidence.proxy} on D_ref")
    axes.set_xlabel(f"tolerance ε = {epsilon:g}; bars: {evidence.examples} examples")


def _trainability_panel(
    axes: Axes, original: AttackRun, immunized: AttackRun, target: float | None
) -> None:
    for label, run in (("original M", original), ("immunized M*", immunized)):
        steps, values = run.trajectory.series("capability")
        axes.plot(steps, values, marker="o", markersize=3, label=label, gid=label)
    if isinstance(target, float) and math.isfinite(target):
        axes.axhline(target, color="tab:red", linestyle="--", label=f"target {target:.3g}")
        starts = [r.trajectory.series("capability")[1][:1] for r in (original, immunized)]
        if all(start and start[0] >= target for start in starts):
            axes.text(
                0.5,
                0.5,
                f"both models meet the target {target:.3g} at step 0:\n"
                "the fine-tuning runs show nothing about trainability",
                ha="center",
                va="center",
                transform=axes.transAxes,
                fontsize="small",
                color="tab:red",
                gid="trivial-target",
            )
    axes.set_ylim(-0.05, 1.05)
    axes.set_xlabel("fine-tuning step (harmless task)")
    axes.set_ylabel("task accuracy")
    axes.legend(fontsize="small")


def conditions_figure(outcome: VerifyOutcome) -> Figure:
    """One panel per evaluated condition (module docstring)."""
    names = list(outcome.conditions)
    if not names:
        raise HftaInputError("no condition was evaluated")
    rows, columns = _layout(len(names))
    figure = Figure(figsize=(4.6 * columns, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, squeeze=False)
    claim = outcome.claim
    in_domain = [r for r in outcome.runs if r.role in ("grid", "search")]
    cross = [r for r in outcome.runs if r.role == "cross_domain"]
    training = {r.name: r for r in outcome.runs if r.role == "trainability"}
    for index, name in enumerate(names):
        axes = grid[index // columns][index % columns]
        verdict = outcome.conditions[name]
        # the typed evidence (None: the verdict recorded none)
        evidence = evidence_of(name, verdict.evidence) if verdict.evidence else None
        if name in ("weak_resistance", "strong_resistance", "generalization_in_domain"):
            budget = claim.threat_model.budget_steps
            _harm_panel(axes, in_domain, claim.harm.phi, budget, outcome.original_worst)
        elif name == "generalization_cross_domain":
            _harm_panel(axes, cross, claim.harm.phi, claim.threat_model.budget_steps, None)
        elif isinstance(evidence, StabilityEvidence) and claim.stability:
            _stability_panel(axes, evidence, claim.stability.epsilon)
        elif name == "trainability" and len(training) == 2:
            _trainability_panel(
                axes,
                training["trainability-original"],
                training["trainability-immunized"],
                evidence.target if isinstance(evidence, TrainabilityEvidence) else None,
            )
        _title(axes, name, verdict, name in outcome.claimed)
        axes.grid(alpha=0.3)
    for index in range(len(names), rows * columns):
        _summary_panel(grid[index // columns][index % columns], outcome)
    figure.suptitle(f"{claim.claim.name}: {outcome.status.value}")
    return figure


def figures(outcome: VerifyOutcome) -> dict[str, Figure]:
    """Every figure of the verdict, by file name (``figures/<name>``)."""
    drawn: dict[str, Figure] = {"conditions.png": conditions_figure(outcome)}
    if outcome.worst is not None:
        worst = outcome.worst.run
        constants = outcome.theory.worst_constants
        drawn["figure2_loss.png"] = figure_two_loss(worst, outcome.original_worst, constants)
        drawn["figure2_harm.png"] = figure_two_harm(
            worst, outcome.original_worst, outcome.claim.harm.phi
        )
    return drawn
