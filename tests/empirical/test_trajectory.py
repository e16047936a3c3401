"""The trajectory record: validation, JSON and Parquet round trips, schema versions, curves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from empirical.measurement.trajectory import (
    SCHEMA_VERSION,
    Environment,
    Evaluation,
    Timing,
    Trajectory,
    TrajectoryRecorder,
)
from theory.conditions import WeakResistance
from theory.errors import AssumptionError, HftaInputError
from theory.theorems.smoothness_sandwich import (
    curvature_rounding_bound,
    segment_curvature,
    trustworthy_curvature,
)
from theory.verdict import Status

ENVIRONMENT = Environment(python="3.11", platform="test", device="cpu", dtype="float32")
TIMING = Timing(wall_seconds=1.0, train_seconds=0.5, eval_seconds=0.25, train_cpu_seconds=0.5)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
maybe = st.one_of(st.none(), finite)


@st.composite
def trajectories(draw: st.DrawFn) -> Trajectory:
    """Random valid trajectories: any length, holes (None), probe on or off, divergence."""
    n = draw(st.integers(0, 12))
    probe = draw(st.booleans())
    columns: dict[str, Any] = {
        name: draw(st.lists(maybe, min_size=n, max_size=n))
        for name in ("train_loss", "learning_rate", "grad_norm", "update_norm")
    }
    columns["distance_from_start"] = draw(st.lists(maybe, min_size=n + 1, max_size=n + 1))
    if probe:
        for name in ("probe_loss", "probe_grad_norm"):
            columns[name] = draw(st.lists(maybe, min_size=n + 1, max_size=n + 1))
        for name in ("probe_directional_derivative", "curvature"):
            columns[name] = draw(st.lists(maybe, min_size=n, max_size=n))
    steps = sorted(draw(st.sets(st.integers(0, n), max_size=n + 1)))
    evaluations = [
        Evaluation(
            step=s,
            harmful_loss=draw(maybe),
            harm=draw(st.one_of(st.none(), st.floats(0.0, 1.0))),
            capability=draw(maybe),
        )
        for s in steps
    ]
    diverged = draw(st.one_of(st.none(), st.integers(0, n)))
    return Trajectory(
        source=draw(st.sampled_from(["attack", "trainer"])),
        config={"optimizer": "adamw", "nested": {"seed": draw(st.integers(0, 9))}},
        budget_steps=max(n, 1),
        trainable_parameters=draw(st.integers(1, 10**9)),
        evaluations=evaluations,
        capability_higher_is_better=draw(st.one_of(st.none(), st.booleans())),
        diverged_at=diverged,
        divergence_reason=None if diverged is None else "loss is nan",
        timing=TIMING,
        environment=ENVIRONMENT,
        **columns,
    )


def _small(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "source": "attack",
        "config": {},
        "budget_steps": 2,
        "trainable_parameters": 10,
        "train_loss": [2.0, 1.5],
        "learning_rate": [0.1, 0.1],
        "grad_norm": [1.0, 0.5],
        "update_norm": [0.1, 0.05],
        "distance_from_start": [0.0, 0.1, 0.12],
        "evaluations": [{"step": 0, "harm": 0.0}, {"step": 2, "harm": 0.75}],
        "timing": TIMING,
        "environment": ENVIRONMENT,
    }
    base.update(changes)
    return base


# ---------------------------------------------------------------------- round trips
@given(trajectories())
def test_json_and_parquet_round_trips_are_exact(
    tmp_path_factory: pytest.TempPathFactory, trajectory: Trajectory
) -> None:
    directory = tmp_path_factory.mktemp("round")
    for suffix in (".json", ".parquet"):
        path = trajectory.save(directory / f"t{suffix}")
        assert Trajectory.load(path) == trajectory
    assert sorted(p.name for p in directory.iterdir()) == ["t.json", "t.parquet"]


def _lossy_parquet_round_trip(trajectory: Trajectory, path: Path) -> Trajectory:
    """A deliberately wrong writer: the float columns stored as float32."""
    import pyarrow as pa

    trajectory.save(path)
    table = pq.read_table(path)
    metadata = table.schema.metadata
    columns = {
        name: table[name].cast(pa.float32()) if table[name].type == pa.float64() else table[name]
        for name in table.column_names
    }
    pq.write_table(pa.table(columns).replace_schema_metadata(metadata), path)
    return Trajectory.load(path)


@pytest.mark.negative_control
def test_round_trip_check_catches_a_lossy_writer(tmp_path: Path) -> None:
    trajectory = Trajectory(**_small(train_loss=[2.0, 1.0 / 3.0]))
    assert _lossy_parquet_round_trip(trajectory, tmp_path / "t.parquet") != trajectory


def test_parquet_holds_one_row_per_iterate(tmp_path: Path) -> None:
    trajectory = Trajectory(**_small())
    table = pq.read_table(trajectory.save(tmp_path / "t.parquet"))
    assert table.num_rows == 3
    assert table["step"].to_pylist() == [0, 1, 2]
    assert table["train_loss"].to_pylist() == [2.0, 1.5, None]
    assert table["evaluated"].to_pylist() == [True, False, True]
    assert table["eval_harm"].to_pylist() == [0.0, None, 0.75]
    assert trajectory.to_frame().shape[0] == 3


# ---------------------------------------------------------------------- bad files
@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_other_schema_version_is_refused(tmp_path: Path, suffix: str) -> None:
    path = Trajectory(**_small()).save(tmp_path / f"t{suffix}")
    if suffix == ".json":
        data = json.loads(path.read_text())
        data["schema_version"] = SCHEMA_VERSION + 1
        path.write_text(json.dumps(data))
    else:
        table = pq.read_table(path)
        key = b"hfta.trajectory"
        meta = json.loads(table.schema.metadata[key])
        meta["schema_version"] = SCHEMA_VERSION + 1
        pq.write_table(table.replace_schema_metadata({key: json.dumps(meta)}), path)
    with pytest.raises(HftaInputError, match="schema version"):
        Trajectory.load(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("t.json", b"{not json"),
        ("t.json", b'{"schema_version": 1, "source": "attack"}'),
        ("t.json", b"[1, 2]"),
        ("t.parquet", b"PAR1 garbage"),
        ("t.txt", b"{}"),
    ],
)
def test_corrupt_files_are_refused(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(HftaInputError):
        Trajectory.load(path)


def test_missing_file_and_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(HftaInputError, match="not found"):
        Trajectory.load(tmp_path / "absent.json")
    with pytest.raises(HftaInputError, match=r"\.json or \.parquet"):
        Trajectory(**_small()).save(tmp_path / "t.csv")


def test_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trajectory = Trajectory(**_small())
    path = trajectory.save(tmp_path / "t.json")
    before = path.read_bytes()

    def broken(self: Trajectory, target: Path) -> None:
        target.write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(Trajectory, "_write_json", broken)
    with pytest.raises(OSError, match="disk full"):
        trajectory.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "changes",
    [
        {"train_loss": [2.0]},  # one step fewer than the other step columns
        {"distance_from_start": [0.0, 0.1]},  # iterate column one short
        {"train_loss": [2.0, math.nan]},  # NaN is never recorded
        {"update_norm": [0.1, math.inf]},
        {"evaluations": [{"step": 2}, {"step": 0}]},  # not increasing
        {"evaluations": [{"step": 3}]},  # beyond the last iterate
        {"evaluations": [{"step": 0, "harm": 1.5}]},  # harm outside [0, 1]
        {"diverged_at": 1},  # without a reason
        {"diverged_at": 5, "divergence_reason": "nan"},  # beyond the last iterate
        {"probe_loss": [1.0, 1.0, 1.0]},  # probe fields half present
        {"stopped_early": True},  # yet the run reached its budget
        {"schema_version": SCHEMA_VERSION + 1},
        {"extra": 1},
    ],
)
def test_inconsistent_trajectories_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Trajectory(**_small(**changes))


# ---------------------------------------------------------------------- curves
def test_to_curve_carries_horizon_and_divergence() -> None:
    trajectory = Trajectory(**_small(diverged_at=2, divergence_reason="loss is nan"))
    curve = trajectory.to_curve("harm")
    assert curve.steps == (0, 2) and curve.values == (0.0, 0.75)
    assert curve.horizon == 2 and curve.diverged_at == 2
    verdict = WeakResistance(0.5, budget=2).check(curve)
    assert verdict.status is Status.INCONCLUSIVE  # the 0.75 is after divergence: no evidence
    clean = Trajectory(**_small()).to_curve("harm")
    assert WeakResistance(0.5, budget=2).check(clean).first_violation_step == 2
    losses = Trajectory(**_small()).to_curve("train_loss")
    assert losses.steps == (0, 1) and losses.values == (2.0, 1.5)


def test_unknown_or_unrecorded_fields_are_refused() -> None:
    trajectory = Trajectory(**_small())
    with pytest.raises(HftaInputError, match="unknown"):
        trajectory.to_curve("accuracy")
    with pytest.raises(HftaInputError, match="not recorded"):
        trajectory.to_curve("probe_loss")
    with pytest.raises(HftaInputError, match="no measured values"):
        Trajectory(**_small(evaluations=[])).to_curve("harm")


# ---------------------------------------------------------------------- the recorder
def _record(losses: list[float], slopes: list[float], norms: list[float]) -> Trajectory:
    recorder = TrajectoryRecorder(
        source="attack", config={}, budget_steps=len(norms), trainable_parameters=3,
        probe=False, curvature=True,
    )
    recorder.iterate(0.0, probe_loss=losses[0], probe_grad_norm=1.0)
    for s, norm in enumerate(norms):
        recorder.step(train_loss=1.0, learning_rate=0.1, grad_norm=1.0, update_norm=norm,
                      probe_directional_derivative=slopes[s])
        recorder.iterate(0.0, probe_loss=losses[s + 1], probe_grad_norm=1.0)
    return recorder.finish(timing=TIMING, environment=ENVIRONMENT,
                           capability_higher_is_better=None)


@given(
    st.lists(st.tuples(finite, finite, st.floats(1e-3, 1e3)), min_size=1, max_size=8),
    finite,
)
def test_recorder_curvature_is_theory_t1(
    steps: list[tuple[float, float, float]], l0: float
) -> None:
    losses = [l0, *(s[0] for s in steps)]
    slopes = [s[1] for s in steps]
    norms = [s[2] for s in steps]
    trajectory = _record(losses, slopes, norms)
    assert trajectory.curvature is not None and trajectory.probe_loss == losses
    for s, kappa in enumerate(trajectory.curvature):
        # the recorder keeps theory's κ where it is not float32 rounding noise, None elsewhere
        values = {"L0": losses[s], "L1": losses[s + 1], "gdot": slopes[s], "delta_norm": norms[s]}
        assert kappa == trustworthy_curvature(**values, unit_roundoff=2.0**-23)
        if kappa is None:
            assert curvature_rounding_bound(**values, unit_roundoff=2.0**-23) > 0.1 * abs(
                segment_curvature(**values)
            )
            continue
        assert kappa == segment_curvature(**values)
        # T1 on the quadratic model: L1 = L0 + gdot + (κ/2)‖Δ‖² reproduces L1
        rebuilt = losses[s] + slopes[s] + 0.5 * kappa * norms[s] ** 2
        assert rebuilt == pytest.approx(losses[s + 1], rel=1e-9, abs=1e-6 * (1 + abs(l0)))


@pytest.mark.negative_control
def test_curvature_reconstruction_catches_a_missing_factor_two() -> None:
    """κ' = (L1 − L0 − gdot)/‖Δ‖² (no factor 2) fails the same reconstruction."""
    losses, slopes, norms = [2.0, 1.0], [-0.5], [0.5]
    wrong = (losses[1] - losses[0] - slopes[0]) / norms[0] ** 2
    rebuilt = losses[0] + slopes[0] + 0.5 * wrong * norms[0] ** 2
    assert rebuilt != pytest.approx(losses[1], rel=1e-9)


def test_recorder_leaves_zero_steps_without_curvature() -> None:
    trajectory = _record([1.0, 1.0, 0.5], [0.0, -0.4], [0.0, 0.2])
    assert trajectory.curvature is not None
    assert trajectory.curvature[0] is None and trajectory.curvature[1] is not None


def test_recorder_keeps_the_earliest_divergence() -> None:
    recorder = TrajectoryRecorder(source="trainer", config={}, budget_steps=3,
                                  trainable_parameters=1, probe=False, curvature=False)
    recorder.iterate(0.0)
    recorder.step(train_loss=None, learning_rate=None, grad_norm=None, update_norm=None)
    recorder.iterate(None)
    recorder.diverge(1, "parameters not finite")
    recorder.diverge(0, "loss not finite")
    recorder.diverge(1, "later")
    trajectory = recorder.finish(timing=TIMING, environment=ENVIRONMENT,
                                 capability_higher_is_better=None)
    assert trajectory.diverged_at == 0 and trajectory.divergence_reason == "loss not finite"


def test_segment_curvature_rejects_a_zero_step() -> None:
    with pytest.raises(AssumptionError):
        segment_curvature(L0=1.0, L1=1.0, gdot=0.0, delta_norm=0.0)


def test_parquet_columns_are_documented_and_load_with_pandas(tmp_path: Path) -> None:
    import pandas as pd

    from empirical.measurement.trajectory import PARQUET_COLUMNS

    trajectory = Trajectory(**_small())
    frame = pd.read_parquet(trajectory.save(tmp_path / "t.parquet"))
    assert set(frame.columns) <= set(PARQUET_COLUMNS)
    assert list(frame["step"]) == list(range(trajectory.n_steps + 1))
    assert frame["train_loss"].iloc[:-1].tolist() == trajectory.train_loss
    harm = frame.loc[frame["evaluated"], "eval_harm"].tolist()
    assert harm == [e.harm for e in trajectory.evaluations]
    # every documented column is one the writer can produce (probe and curvature included)
    produced = set(trajectory.to_columns()) | {
        "probe_directional_derivative", "curvature", "probe_loss", "probe_grad_norm"
    }
    assert set(PARQUET_COLUMNS) == produced
