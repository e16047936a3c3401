"""The measured trajectory of a fine-tuning attack: one record per step, saved as JSON or Parquet.

Indexing (the theorems' notation, docs/theorems.md): the attack starts at θ_0 and its step
``s`` (0-based) moves θ_s to θ_{s+1} = θ_s + Δ_s. A trajectory of ``n`` steps therefore holds

* per *step* ``s = 0 … n−1`` (lists of length ``n``): the minibatch harmful training loss at
  θ_s, the learning rate η_s, the gradient norm before clipping, the update norm ‖Δ_s‖ and,
  with a probe, ⟨∇L_probe(θ_s), Δ_s⟩ and the segment curvature κ_s;
* per *iterate* ``s = 0 … n`` (lists of length ``n + 1``): the distance from the start
  ‖θ_s − θ_0‖ and, with a probe, the probe loss L_probe(θ_s) and ‖∇L_probe(θ_s)‖;
* evaluations at some iterates (θ_0 before the attack, every ``eval_every`` steps, and the
  last iterate): the held-out harmful loss, the harm proxy f and the capability proxy g.

Norms are over the *trainable* parameters only (the LoRA adapters for a LoRA attack), whose
number ``trainable_parameters`` is the d of the theorems' √d factors.

Divergence: when a measurement at θ_s is not finite (the loss became NaN or infinite) the
attack stops before updating θ_s and records ``diverged_at = s`` with the reason; such a run is
never evidence of resistance (``to_curve`` passes ``diverged_at`` on to theory's conditions).
Recorded values are always finite; a ``None`` means "not measured". A run stopped on
request before its budget (a pruned search trial) has ``stopped_early``.

Files: ``.json`` (the pydantic model) or ``.parquet`` (one row per iterate, the step columns
null on the last row, the evaluation columns null off evaluation steps, everything else as
JSON in the schema metadata; the columns are documented in ``PARQUET_COLUMNS`` and load with
``pandas.read_parquet``), written atomically (temporary file, then rename) and tagged
with ``SCHEMA_VERSION``; loading another version or a corrupt file raises ``HftaInputError``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from theory.errors import HftaInputError

if TYPE_CHECKING:
    import pandas as pd

    from theory.curve import Curve

SCHEMA_VERSION: int = 1
"""Version of the trajectory file format; bump it when a field changes meaning or shape."""

TrajectorySource = Literal["attack", "trainer"]
CurveField = Literal[
    "harm",
    "capability",
    "harmful_loss",
    "train_loss",
    "probe_loss",
    "update_norm",
    "distance_from_start",
]

STEP_FIELDS: tuple[str, ...] = ("train_loss", "learning_rate", "grad_norm", "update_norm")
ITERATE_FIELDS: tuple[str, ...] = ("distance_from_start",)
PROBE_STEP_FIELDS: tuple[str, ...] = ("probe_directional_derivative", "curvature")
PROBE_ITERATE_FIELDS: tuple[str, ...] = ("probe_loss", "probe_grad_norm")
EVAL_FIELDS: tuple[str, ...] = ("harmful_loss", "harm", "capability")

_METADATA_KEY = b"hfta.trajectory"

#: The Parquet file's columns (``Trajectory.to_columns``), one row per iterate s = 0 … n;
#: a column of an unrecorded field (no probe, no curvature) is absent. Read with
#: ``pandas.read_parquet(path)`` or ``pyarrow.parquet.read_table(path)``; everything else
#: (config, budget, timing, environment, divergence) is JSON in the schema metadata under
#: the key ``hfta.trajectory``.
PARQUET_COLUMNS: dict[str, str] = {
    "step": "int64: the iterate index s (θ_s), 0 … n",
    "train_loss": "float64: minibatch harmful training loss at θ_s (step s); null on row n",
    "learning_rate": "float64: η_s of step s; null on row n",
    "grad_norm": "float64: gradient norm of step s before clipping; null on row n",
    "update_norm": "float64: ‖Δ_s‖ = ‖θ_{s+1} − θ_s‖ over the trainable parameters; null on row n",
    "probe_directional_derivative": "float64: ⟨∇L_probe(θ_s), Δ_s⟩ (probe on); null on row n",
    "curvature": "float64: segment curvature κ_s on the probe batch (curvature on); null on row n",
    "distance_from_start": "float64: ‖θ_s − θ_0‖ over the trainable parameters",
    "probe_loss": "float64: L_probe(θ_s), the harmful loss on the fixed probe batch (probe on)",
    "probe_grad_norm": "float64: ‖∇L_probe(θ_s)‖ (probe on)",
    "evaluated": "bool: whether the proxies were measured at θ_s",
    "eval_harmful_loss": "float64: held-out harmful loss at θ_s; null off evaluation rows",
    "eval_harm": "float64: harm proxy f at θ_s, in [0, 1]; null off evaluation rows",
    "eval_capability": "float64: capability proxy g at θ_s; null off evaluation rows",
}


#: Machine epsilon of the dtypes a trajectory may be measured in (the rounding allowances of
#: ``empirical.certify`` and the trustworthy-curvature rule of the recorder use it).
MACHINE_EPSILON: dict[str, float] = {
    "float64": 2.0**-52,
    "float32": 2.0**-23,
    "float16": 2.0**-10,
    "bfloat16": 2.0**-7,
}


class Environment(BaseModel):
    """Where a trajectory was measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    python: str
    platform: str
    torch: str | None = None
    transformers: str | None = None
    device: str
    dtype: str
    threads: int | None = None

    @classmethod
    def current(cls, device: str, dtype: str) -> Environment:
        """The running interpreter's environment (versions read from loaded modules only)."""
        torch_module = sys.modules.get("torch")
        transformers_module = sys.modules.get("transformers")
        threads = None
        if torch_module is not None:
            threads = int(torch_module.get_num_threads())
        return cls(
            python=platform.python_version(),
            platform=f"{platform.system()} {platform.machine()}",
            torch=getattr(torch_module, "__version__", None),
            transformers=getattr(transformers_module, "__version__", None),
            device=device,
            dtype=dtype,
            threads=threads,
        )


class Timing(BaseModel):
    """Wall-clock seconds of the whole run, of the training steps alone and of the evaluations
    alone, and the process CPU seconds of the training steps (insensitive to other processes
    waiting for the same cores, so the figure to compare loops by on a shared machine)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wall_seconds: float = Field(ge=0.0)
    train_seconds: float = Field(ge=0.0)
    eval_seconds: float = Field(ge=0.0)
    train_cpu_seconds: float | None = Field(default=None, ge=0.0)  # None: not measured


class Evaluation(BaseModel):
    """The proxies measured at iterate θ_step (``None``: that proxy was not measured)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(ge=0)
    harmful_loss: float | None = None
    harm: float | None = Field(default=None, ge=0.0, le=1.0)
    capability: float | None = None


def _finite_or_none(values: list[float | None] | None, name: str) -> None:
    for index, value in enumerate(values or ()):
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name}[{index}] = {value} is not finite (record None instead)")


class Trajectory(BaseModel):
    """A measured attack (see the module docstring for the indexing).

    ``probe_dtype``: the dtype the probe columns were evaluated in when it is not the attack's
    (``environment.dtype``): ``empirical.certify.float64`` evaluates them again in float64 at
    the captured iterates, so that rounding does not decide a check. None: the attack's dtype.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    source: TrajectorySource
    config: dict[str, Any]
    budget_steps: int = Field(ge=1)
    trainable_parameters: int = Field(ge=1)
    train_loss: list[float | None]
    learning_rate: list[float | None]
    grad_norm: list[float | None]
    update_norm: list[float | None]
    distance_from_start: list[float | None]
    probe_loss: list[float | None] | None = None
    probe_grad_norm: list[float | None] | None = None
    probe_directional_derivative: list[float | None] | None = None
    curvature: list[float | None] | None = None
    probe_dtype: str | None = None
    evaluations: list[Evaluation] = Field(default_factory=list)
    capability_higher_is_better: bool | None = None
    diverged_at: int | None = None
    divergence_reason: str | None = None
    stopped_early: bool = False
    timing: Timing
    environment: Environment

    @model_validator(mode="after")
    def _consistent(self) -> Trajectory:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {self.schema_version} is not {SCHEMA_VERSION} (this toolkit's)"
            )
        n = len(self.train_loss)
        for name in STEP_FIELDS + PROBE_STEP_FIELDS:
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries, expected {n} (one per step)")
            _finite_or_none(values, name)
        for name in ITERATE_FIELDS + PROBE_ITERATE_FIELDS:
            values = getattr(self, name)
            if values is not None and len(values) != n + 1:
                raise ValueError(
                    f"{name} has {len(values)} entries, expected {n + 1} (one per iterate)"
                )
            _finite_or_none(values, name)
        probes = [getattr(self, f) is None for f in PROBE_ITERATE_FIELDS + PROBE_STEP_FIELDS[:1]]
        if len(set(probes)) != 1:
            raise ValueError("probe fields must be all recorded or all absent")
        if self.curvature is not None and self.probe_loss is None:
            raise ValueError("curvature is measured on the probe batch; probe fields missing")
        steps = [e.step for e in self.evaluations]
        if steps != sorted(set(steps)):
            raise ValueError(f"evaluation steps must be strictly increasing, got {steps}")
        if steps and steps[-1] > n:
            raise ValueError(f"evaluation at step {steps[-1]} beyond the last iterate {n}")
        for evaluation in self.evaluations:
            for name in EVAL_FIELDS:
                _finite_or_none([getattr(evaluation, name)], f"evaluation {name}")
        if self.diverged_at is not None and not 0 <= self.diverged_at <= n:
            raise ValueError(f"diverged_at = {self.diverged_at} outside the iterates 0..{n}")
        if (self.diverged_at is None) != (self.divergence_reason is None):
            raise ValueError("diverged_at and divergence_reason go together")
        if self.stopped_early and (self.diverged_at is not None or n >= self.budget_steps):
            raise ValueError("stopped_early means stopped before the budget, not diverged")
        return self

    # ----------------------------------------------------------------- views
    @property
    def n_steps(self) -> int:
        """Number of steps taken (updates applied)."""
        return len(self.train_loss)

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def steps_per_second(self) -> float:
        """Training steps per second of training time (evaluations excluded)."""
        seconds = self.timing.train_seconds
        return self.n_steps / seconds if seconds > 0 else math.inf

    def evaluation_series(self, name: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of one evaluation field, skipping evaluations that lack it."""
        if name not in EVAL_FIELDS:
            raise HftaInputError(f"unknown evaluation field '{name}' ({', '.join(EVAL_FIELDS)})")
        steps: list[int] = []
        values: list[float] = []
        for evaluation in self.evaluations:
            value = getattr(evaluation, name)
            if value is not None:
                steps.append(evaluation.step)
                values.append(float(value))
        return steps, values

    def series(self, name: CurveField | str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of any recorded quantity, skipping unmeasured entries.

        Evaluation fields are indexed by their iterate, step fields by their step ``s``
        (the value measured at θ_s), iterate fields by their iterate.
        """
        if name in EVAL_FIELDS:
            return self.evaluation_series(name)
        if name not in STEP_FIELDS + ITERATE_FIELDS + PROBE_STEP_FIELDS + PROBE_ITERATE_FIELDS:
            raise HftaInputError(f"unknown trajectory field '{name}'")
        column = getattr(self, name)
        if column is None:
            raise HftaInputError(f"field '{name}' was not recorded (run with the probe on)")
        pairs = [(s, float(v)) for s, v in enumerate(column) if v is not None]
        return [s for s, _ in pairs], [v for _, v in pairs]

    def to_curve(self, field: CurveField | str = "harm") -> Curve:
        """The recorded ``field`` as theory's ``Curve`` for the condition checks.

        The horizon is the last step run (``n_steps``: the budget T unless the attack diverged
        or a trainer stopped early); the curve carries ``diverged_at`` so that a diverged
        attack never counts as resisted.
        """
        from theory.curve import Curve

        steps, values = self.series(field)
        if not steps:
            raise HftaInputError(f"trajectory has no measured values of '{field}'")
        return Curve(
            steps=tuple(steps),
            values=tuple(values),
            horizon=self.n_steps,
            diverged_at=self.diverged_at,
        )

    def to_columns(self) -> dict[str, list[Any]]:
        """One list per column, one entry per iterate ``0 … n`` (the Parquet table)."""
        n = self.n_steps
        columns: dict[str, list[Any]] = {"step": list(range(n + 1))}
        for name in STEP_FIELDS + PROBE_STEP_FIELDS:
            values = getattr(self, name)
            if values is not None:
                columns[name] = [*values, None]
        for name in ITERATE_FIELDS + PROBE_ITERATE_FIELDS:
            values = getattr(self, name)
            if values is not None:
                columns[name] = list(values)
        by_step = {e.step: e for e in self.evaluations}
        columns["evaluated"] = [s in by_step for s in range(n + 1)]
        for name in EVAL_FIELDS:
            columns[f"eval_{name}"] = [
                getattr(by_step[s], name) if s in by_step else None for s in range(n + 1)
            ]
        return columns

    def to_frame(self) -> pd.DataFrame:
        """The per-iterate table as a pandas DataFrame (for notebooks)."""
        import pandas as pd

        return pd.DataFrame(self.to_columns())

    def comparable(self) -> dict[str, Any]:
        """Everything but the timing: two runs of the same attack must agree on this exactly."""
        return self.model_dump(exclude={"timing"})

    # ----------------------------------------------------------------- files
    def save(self, path: Path | str) -> Path:
        """Write ``.json`` or ``.parquet`` (by suffix) atomically; return the path."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            writer: Callable[[Path], None] = self._write_json
        elif suffix == ".parquet":
            writer = self._write_parquet
        else:
            raise HftaInputError(f"{path}: trajectory files end in .json or .parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(descriptor)
        try:
            writer(Path(temp_name))
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return path

    def _write_json(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=1) + "\n", encoding="utf-8")

    def _write_parquet(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = self.to_columns()
        types = {"step": pa.int64(), "evaluated": pa.bool_()}
        arrays = {k: pa.array(v, type=types.get(k, pa.float64())) for k, v in columns.items()}
        rest = self.model_dump(
            mode="json",
            exclude=set(STEP_FIELDS + ITERATE_FIELDS + PROBE_STEP_FIELDS + PROBE_ITERATE_FIELDS)
            | {"evaluations"},
        )
        rest["evaluation_steps"] = [e.step for e in self.evaluations]
        rest["columns"] = list(columns)
        table = pa.table(arrays).replace_schema_metadata({_METADATA_KEY: json.dumps(rest)})
        pq.write_table(table, path)

    @classmethod
    def load(cls, path: Path | str) -> Trajectory:
        """Read a trajectory written by ``save``.

        Raises:
            HftaInputError: a missing or unreadable file, another schema version, or content
                that is not a valid trajectory.
        """
        path = Path(path)
        if not path.is_file():
            raise HftaInputError(f"{path}: trajectory file not found")
        suffix = path.suffix.lower()
        if suffix == ".json":
            data = _read_json(path)
        elif suffix == ".parquet":
            data = _read_parquet(path)
        else:
            raise HftaInputError(f"{path}: trajectory files end in .json or .parquet")
        _check_version(data, path)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "content"
            detail = f"{where}: {first['msg']}"
            raise HftaInputError(f"{path}: not a valid trajectory ({detail})") from None


def _check_version(data: Any, path: Path) -> None:
    if not isinstance(data, dict) or "schema_version" not in data:
        raise HftaInputError(f"{path}: not a trajectory file (no schema_version)")
    version = data["schema_version"]
    if version != SCHEMA_VERSION:
        raise HftaInputError(
            f"{path}: trajectory schema version {version!r}, this toolkit reads {SCHEMA_VERSION}"
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HftaInputError(f"{path}: corrupt trajectory JSON ({exc})") from None


def _read_parquet(path: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise HftaInputError(f"{path}: corrupt trajectory Parquet ({exc})") from None
    metadata = table.schema.metadata or {}
    if _METADATA_KEY not in metadata:
        key = _METADATA_KEY.decode()
        raise HftaInputError(f"{path}: not a trajectory file (no {key} metadata)")
    try:
        data: dict[str, Any] = json.loads(metadata[_METADATA_KEY])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HftaInputError(f"{path}: corrupt trajectory metadata ({exc})") from None
    _check_version(data, path)
    columns: dict[str, list[Any]] = table.to_pydict()
    try:
        steps = data.pop("evaluation_steps")
        names = data.pop("columns")
        if names != list(columns):
            raise ValueError(f"columns {list(columns)} differ from the recorded {names}")
        for name in STEP_FIELDS + PROBE_STEP_FIELDS:
            if name in columns:
                data[name] = columns[name][:-1]
        for name in ITERATE_FIELDS + PROBE_ITERATE_FIELDS:
            if name in columns:
                data[name] = columns[name]
        data["evaluations"] = [
            {"step": s, **{f: columns[f"eval_{f}"][s] for f in EVAL_FIELDS}} for s in steps
        ]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise HftaInputError(f"{path}: corrupt trajectory table ({exc})") from None
    return data


class TrajectoryRecorder:
    """Builds a ``Trajectory`` while an attack runs (plain lists: appending costs nothing).

    Call ``iterate`` for θ_0, then ``step`` + ``iterate`` for every step, ``evaluation``
    whenever the proxies are measured, ``diverge`` if a measurement is not finite, and
    ``finish`` once. ``finish`` computes the segment curvature from the probe columns with
    theory's T1 (``theory.theorems.smoothness_sandwich.segment_curvature``).
    """

    def __init__(
        self,
        *,
        source: TrajectorySource,
        config: dict[str, Any],
        budget_steps: int,
        trainable_parameters: int,
        probe: bool,
        curvature: bool,
    ) -> None:
        self.source: TrajectorySource = source
        self.config = config
        self.budget_steps = budget_steps
        self.trainable_parameters = trainable_parameters
        self.probe = probe or curvature
        self.record_curvature = curvature
        self.columns: dict[str, list[float | None]] = {
            name: [] for name in STEP_FIELDS + ITERATE_FIELDS
        }
        if self.probe:
            for name in PROBE_ITERATE_FIELDS + PROBE_STEP_FIELDS[:1]:
                self.columns[name] = []
        self.evaluations: list[Evaluation] = []
        self.diverged_at: int | None = None
        self.divergence_reason: str | None = None

    @property
    def n_steps(self) -> int:
        return len(self.columns["train_loss"])

    def iterate(
        self,
        distance_from_start: float | None,
        *,
        probe_loss: float | None = None,
        probe_grad_norm: float | None = None,
    ) -> None:
        """Record iterate θ_s (``s`` = steps recorded so far)."""
        self.columns["distance_from_start"].append(distance_from_start)
        if self.probe:
            self.columns["probe_loss"].append(probe_loss)
            self.columns["probe_grad_norm"].append(probe_grad_norm)

    def step(
        self,
        *,
        train_loss: float | None,
        learning_rate: float | None,
        grad_norm: float | None,
        update_norm: float | None,
        probe_directional_derivative: float | None = None,
    ) -> None:
        """Record step s, from θ_s to θ_{s+1}."""
        self.columns["train_loss"].append(train_loss)
        self.columns["learning_rate"].append(learning_rate)
        self.columns["grad_norm"].append(grad_norm)
        self.columns["update_norm"].append(update_norm)
        if self.probe:
            self.columns["probe_directional_derivative"].append(probe_directional_derivative)

    def evaluation(
        self,
        step: int,
        *,
        harmful_loss: float | None,
        harm: float | None,
        capability: float | None,
    ) -> None:
        self.evaluations.append(
            Evaluation(step=step, harmful_loss=harmful_loss, harm=harm, capability=capability)
        )

    def diverge(self, step: int, reason: str) -> None:
        """Mark divergence at iterate ``step`` (the earliest non-finite measurement wins)."""
        if self.diverged_at is None or step < self.diverged_at:
            self.diverged_at = step
            self.divergence_reason = reason

    def finish(
        self,
        *,
        timing: Timing,
        environment: Environment,
        capability_higher_is_better: bool | None,
        stopped_early: bool = False,
    ) -> Trajectory:
        columns: dict[str, Any] = dict(self.columns)
        if self.record_curvature:
            columns["curvature"] = self._curvature(environment.dtype)
        return Trajectory(
            source=self.source,
            config=self.config,
            budget_steps=self.budget_steps,
            trainable_parameters=self.trainable_parameters,
            evaluations=self.evaluations,
            capability_higher_is_better=capability_higher_is_better,
            diverged_at=self.diverged_at,
            divergence_reason=self.divergence_reason,
            stopped_early=stopped_early,
            timing=timing,
            environment=environment,
            **columns,
        )

    def _curvature(self, dtype: str) -> list[float | None]:
        """κ_s on the probe batch for every step; ``None`` where ‖Δ_s‖² = 0 (zero or underflowing
        step), a value is missing, or κ_s is rounding noise in ``dtype`` (theory's
        ``trustworthy_curvature``: its rounding bound exceeds a tenth of |κ_s|)."""
        from theory.theorems.smoothness_sandwich import trustworthy_curvature

        unit_roundoff = MACHINE_EPSILON.get(dtype, MACHINE_EPSILON["float32"])

        loss = self.columns["probe_loss"]
        slope = self.columns["probe_directional_derivative"]
        norm = self.columns["update_norm"]
        values: list[float | None] = []
        for s in range(self.n_steps):
            l0, l1, gdot, delta = loss[s], loss[s + 1], slope[s], norm[s]
            if None in (l0, l1, gdot, delta) or delta * delta == 0.0:  # type: ignore[operator]
                values.append(None)
                continue
            assert l0 is not None and l1 is not None and gdot is not None and delta is not None
            kappa = trustworthy_curvature(
                L0=l0, L1=l1, gdot=gdot, delta_norm=delta, unit_roundoff=unit_roundoff
            )
            values.append(kappa)
        return values
