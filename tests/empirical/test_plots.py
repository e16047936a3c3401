"""Figures: the plotted data is the recorded data, thresholds and crossings are where theory
puts them, and files are written whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.lines import Line2D

from empirical.measurement.trajectory import Environment, Timing, Trajectory
from empirical.plots import Envelope, attack_figure, figure_two, save_figure
from theory.errors import HftaInputError

ENVIRONMENT = Environment(python="3.11", platform="test", device="cpu", dtype="float32")
TIMING = Timing(wall_seconds=1.0, train_seconds=0.5, eval_seconds=0.25, train_cpu_seconds=0.5)


def _trajectory(losses: list[float], harms: dict[int, float], **extra: Any) -> Trajectory:
    n = len(losses)
    return Trajectory(
        source="attack",
        config={"optimizer": "adamw"},
        budget_steps=n,
        trainable_parameters=4,
        train_loss=losses,
        learning_rate=[1e-3] * n,
        grad_norm=[1.0] * n,
        update_norm=[0.01] * n,
        distance_from_start=[0.01 * s for s in range(n + 1)],
        evaluations=[{"step": s, "harm": h, "harmful_loss": 2.0 - h} for s, h in harms.items()],
        timing=TIMING,
        environment=ENVIRONMENT,
        **extra,
    )


ORIGINAL = _trajectory([2.0, 1.5, 1.0, 0.6, 0.3, 0.2], {0: 0.0, 2: 0.3, 4: 0.8, 6: 0.9})
IMMUNIZED = _trajectory([2.0, 1.9, 1.85, 1.8, 1.8, 1.79], {0: 0.0, 2: 0.0, 4: 0.1, 6: 0.1})


def _line(figure: Any, gid: str, axes_index: int = 0) -> Line2D:
    axes = figure.axes[axes_index]
    found = [line for line in axes.get_lines() if line.get_gid() == gid]
    assert len(found) == 1, [line.get_gid() for line in axes.get_lines()]
    return found[0]


def test_figure_two_plots_the_recorded_losses() -> None:
    figure = figure_two({"original": ORIGINAL, "immunized": IMMUNIZED}, threshold=0.5)
    for name, trajectory in (("original", ORIGINAL), ("immunized", IMMUNIZED)):
        line = _line(figure, name)
        np.testing.assert_array_equal(line.get_xdata(), range(6))
        np.testing.assert_array_equal(line.get_ydata(), trajectory.train_loss)
    threshold = _line(figure, "threshold")
    assert set(threshold.get_ydata()) == {0.5}
    # the original first reaches loss <= 0.5 at step 4; the immunized never does
    crossing = _line(figure, "original:crossing")
    assert list(crossing.get_xdata()) == [4]
    gids = [line.get_gid() for line in figure.axes[0].get_lines()]
    assert "immunized:crossing" not in gids


def test_harm_crossing_is_the_first_weak_resistance_violation() -> None:
    figure = figure_two({"original": ORIGINAL, "immunized": IMMUNIZED}, quantity="harm",
                        threshold=0.5)
    assert list(_line(figure, "original:crossing").get_xdata()) == [4]
    np.testing.assert_array_equal(_line(figure, "immunized").get_xdata(), [0, 2, 4, 6])


def test_divergence_is_marked_and_evaluations_after_it_are_not_crossings() -> None:
    diverged = _trajectory([2.0, 1.5, 1.0], {0: 0.0, 2: 0.9}, diverged_at=2,
                           divergence_reason="loss is nan")
    figure = figure_two({"attack": diverged}, quantity="harm", threshold=0.5)
    assert list(_line(figure, "attack:diverged").get_xdata()) == [2, 2]
    gids = [line.get_gid() for line in figure.axes[0].get_lines()]
    assert "attack:crossing" not in gids


def test_envelope_band_is_drawn_from_the_given_bounds() -> None:
    lower = [2.0 - 0.3 * s for s in range(6)]
    figure = figure_two({"immunized": IMMUNIZED},
                        envelope=Envelope(steps=range(6), lower=lower, label="T2 bound"))
    bands = [c for c in figure.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1 and bands[0].get_gid() == "envelope"
    vertices = bands[0].get_paths()[0].vertices
    assert vertices[:, 1].min() == pytest.approx(min(lower))


def test_envelope_and_curves_are_checked() -> None:
    with pytest.raises(HftaInputError, match="lower values"):
        Envelope(steps=[0, 1], lower=[1.0])
    with pytest.raises(HftaInputError, match="lower or an upper"):
        Envelope(steps=[0, 1])
    with pytest.raises(HftaInputError, match="no trajectories"):
        figure_two({})
    with pytest.raises(HftaInputError, match="not recorded"):
        figure_two({"a": ORIGINAL}, quantity="probe_loss")


def test_attack_figure_has_loss_and_harm_panels(tmp_path: Path) -> None:
    figure = attack_figure(ORIGINAL, threshold=0.5)
    assert len(figure.axes) == 2  # no capability measured: no twin axis
    with_capability = _trajectory([2.0, 1.0], {0: 0.0, 2: 0.9})
    with_capability = with_capability.model_copy(update={"evaluations": [
        e.model_copy(update={"capability": 0.9 - 0.1 * e.step}) for e in with_capability.evaluations
    ]})
    twin = attack_figure(with_capability)
    np.testing.assert_allclose(_line(twin, "capability", 2).get_ydata(), [0.9, 0.7])
    np.testing.assert_array_equal(_line(figure, "held-out", 0).get_xdata(), [0, 2, 4, 6])
    assert list(_line(figure, "attack:crossing", 1).get_xdata()) == [4]
    path = save_figure(figure, tmp_path / "figure.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert (width, height) == (840, 780)  # 7 x 6.5 inches at 120 dpi
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_save_figure_needs_a_suffix_and_cleans_up(tmp_path: Path) -> None:
    figure = figure_two({"a": ORIGINAL})
    with pytest.raises(HftaInputError, match="suffix"):
        save_figure(figure, tmp_path / "figure")
    with pytest.raises(ValueError):
        save_figure(figure, tmp_path / "figure.unknownformat")
    assert list(tmp_path.iterdir()) == []


def test_the_break_step_star_is_in_the_legend() -> None:
    figure = figure_two({"original": ORIGINAL, "immunized": IMMUNIZED}, quantity="harm",
                        threshold=0.5)
    texts = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "original: first f > φ (step 4)" in texts
    # negative control: the run that never crossed has no star entry
    assert not any(t.startswith("immunized:") for t in texts)


def test_a_one_sided_envelope_is_labelled_on_its_edge_line() -> None:
    lower = [2.0 - 0.3 * s for s in range(6)]
    figure = figure_two({"immunized": IMMUNIZED},
                        envelope=Envelope(steps=range(6), lower=lower, label="T2 bound"))
    edge = _line(figure, "envelope:lower")
    np.testing.assert_allclose(edge.get_ydata(), lower)
    texts = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert texts.count("T2 bound") == 1
