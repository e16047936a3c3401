"""What applying a defence produced: the immunized model and a machine-readable record of how.

``DefenceRecord`` (pydantic, saved as JSON) holds everything needed to reproduce and audit one
immunization: the defence's name and source, every hyperparameter, what the defence changes,
fingerprints of the data it was built from (``empirical.defences.data``), the training curve
(per step: the total objective and each named component, the learning rate, the gradient norm
before clipping), divergence if any, defence-specific measurements (e.g. the relative
immunization ratio of the condition-number defence), optional scores of the model before and
after (``empirical.defences.evaluation``), wall time and environment.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from empirical.defences.data import SplitFingerprint
from empirical.measurement.trajectory import Environment
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

RECORD_SCHEMA_VERSION: int = 1


class StepRecord(BaseModel):
    """One defence step: the objective and its named components at the iterate before the step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(ge=0)
    learning_rate: float = Field(gt=0.0)
    total: float
    components: dict[str, float]
    grad_norm: float = Field(ge=0.0, description="‖gradient‖ before clipping")

    @field_validator("total", "grad_norm")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"{value} is not finite")
        return value


class ModelScores(BaseModel):
    """Harm and capability of a model on held-out data (``empirical.defences.evaluation``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    harmful_loss: float = Field(description="mean token cross-entropy of the harmful answers")
    harm: float = Field(ge=0.0, le=1.0, description="exact harm (teacher forcing)")
    reference_loss: float = Field(description="mean token cross-entropy of harmless answers")
    harmless_accuracy: float = Field(ge=0.0, le=1.0, description="exact-match, harmless data")


class DefenceRecord(BaseModel):
    """How a model was immunized (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = RECORD_SCHEMA_VERSION
    defence: str
    source: str
    immunized: str = Field(description="what the defence changes in the model")
    hyperparameters: dict[str, Any]
    model: str | None = Field(default=None, description="the model it was applied to")
    data_source: str
    data: dict[str, SplitFingerprint]
    trainable_parameters: int = Field(ge=0)
    curve: list[StepRecord]
    diverged_at: int | None = None
    divergence_reason: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    scores_before: ModelScores | None = None
    scores_after: ModelScores | None = None
    wall_seconds: float = Field(ge=0.0)
    environment: Environment

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != RECORD_SCHEMA_VERSION:
            raise ValueError(f"schema_version {value} is not {RECORD_SCHEMA_VERSION}")
        return value

    def component_series(self, name: str) -> list[float]:
        """One component (or ``"total"``) over the steps."""
        if name == "total":
            return [s.total for s in self.curve]
        if not self.curve or name not in self.curve[0].components:
            known = sorted(self.curve[0].components) if self.curve else []
            raise HftaInputError(f"no component '{name}' in the curve (known: {known})")
        return [s.components[name] for s in self.curve]

    def save(self, path: Path | str) -> Path:
        """Write the record as JSON, atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(self.model_dump_json(indent=1) + "\n")
            umask = os.umask(0)
            os.umask(umask)
            Path(temp_name).chmod(0o666 & ~umask)
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: Path | str) -> DefenceRecord:
        """Read a record written by ``save``; ``HftaInputError`` if it is not one."""
        path = Path(path)
        if not path.is_file():
            raise HftaInputError(f"{path}: defence record not found")
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise HftaInputError(
                f"{path}: not a defence record ({exc.errors()[0]['msg']})"
            ) from None


@dataclass
class DefenceResult:
    """The immunized model (a copy; the caller's model is untouched) and its record."""

    model: PreTrainedModel
    record: DefenceRecord
