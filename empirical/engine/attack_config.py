"""What defines one attack (``AttackConfig``, ``LoraSettings``), importable without torch.

``empirical.engine.attack`` runs the attack a configuration describes; this module holds only the
configuration, so that reading a verdict, a trajectory's recorded configuration or a cache
key needs no torch (a test keeps it so). The attacker's axes are theory's Literal types
(``theory.framework``: ``Optimizer``, ``Schedule``, ``Method``); ``HarmProxyName`` names the
harm proxies an attack can measure (``empirical.measurement.proxies``: ``exact_harm``,
``sampled_harm``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from theory.errors import HftaInputError
from theory.framework import Method, Optimizer, Schedule

__all__ = [
    "AttackConfig",
    "DeviceName",
    "DtypeName",
    "HarmProxyName",
    "LoraSettings",
    "MethodName",
    "OptimizerName",
    "PositiveFloat",
    "ScheduleName",
    "UnitFraction",
    "checked_device",
]

OptimizerName = Optimizer  # defined once, in theory.framework
MethodName = Method
DeviceName = Literal["cpu", "cuda"]
DtypeName = Literal["float32", "bfloat16"]


def checked_device(name: str) -> DeviceName:
    """A device to train and evaluate on: ``"cpu"``, or ``"cuda"`` where torch sees a CUDA
    device (torch is imported only then); ``HftaInputError`` (one line) otherwise, before
    anything is loaded."""
    if name == "cpu":
        return "cpu"
    if name != "cuda":
        raise HftaInputError(f"device must be cpu or cuda, not {name!r}")
    import torch

    if not torch.cuda.is_available():
        raise HftaInputError("device 'cuda' requested but no CUDA device is available")
    return "cuda"

#: theory.framework's schedules and the exponential decay η γˢ (``empirical.engine.schedules``)
ScheduleName = Literal[Schedule, "exponential"]
#: The harm proxies an attack can measure f with (``empirical.measurement.proxies``).
HarmProxyName = Literal["exact_harm", "sampled_harm"]

PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
UnitFraction = Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)]


class LoraSettings(BaseModel):
    """LoRA (Hu et al., ICLR 2022): W + (α/r)·B A with rank ``r``, only A and B trained.

    ``target_modules`` are module names of the model (GPT-2: ``c_attn``, ``c_proj``,
    ``c_fc``), or ``("auto",)`` (the default): the architecture's usual targets
    (``empirical.engine.lora.resolve_target_modules``: peft's per-model defaults; GPT-2 ``c_attn``
    and ``c_proj``; every linear layer but the head when peft has none); ``dropout`` applies
    to the adapter's input.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: UnitFraction = 0.0
    target_modules: tuple[str, ...] = Field(default=("auto",), min_length=1)


class AttackConfig(BaseModel):
    """Everything that defines one attack; invalid values raise pydantic's ``ValidationError``.

    Data: ``None`` = the embedded benchmark's split (``attack``, ``evaluation``, ``reference``
    drawn with ``benchmark_seed``); a path = a JSONL/Parquet file in BeaverTails form.
    ``poison_ratio`` (optional): the fraction of harmful examples in the attack set; the
    harmful examples (``is_safe = False``) are all kept and ``n_h (1 − r) / r`` harmless ones
    are added (the data's own ``is_safe`` examples, else the embedded benchmark's harmless
    pre-training examples). ``None`` uses the data as given.

    Optimizer: ``sgd`` (``momentum``, ``weight_decay`` as L2), ``adam`` (``betas``, ``eps``,
    ``weight_decay`` as L2) or ``adamw`` (decoupled ``weight_decay``), torch's implementations;
    the rate follows ``schedule`` with ``⌈warmup_fraction · budget_steps⌉`` warmup steps
    (``decay``: γ of the ``exponential`` schedule η γˢ, in (0, 1), given with it only);
    gradients are clipped to ``max_grad_norm`` (``None``: no clipping). One step accumulates
    ``grad_accumulation`` minibatches of ``batch_size`` examples.

    Method: ``full`` trains every parameter, ``lora`` adapters only (``lora``), ``head`` the
    output head only (``untie_head``: an untied copy of the head, the body and the embeddings
    frozen; the attacker class of T11's head-only certificate, empirical/certify/harm_radius.py).

    ``probe`` records the probe-batch quantities every step (``probe_size`` examples drawn
    once, with seed ``seed + 1``); ``record_curvature`` adds the segment curvature (and turns
    the probe on: the curvature is measured on the probe batch). The curvature is a difference
    quotient of float32 losses, 2(L_{s+1} − L_s − ⟨∇L_s, Δ_s⟩)/‖Δ_s‖²: its rounding error is
    about 4·10⁻⁷·|L|/‖Δ_s‖², so the recorder keeps it only where it is not rounding noise
    (theory's ``trustworthy_curvature``).

    ``harm_proxy``: the harm proxy f the evaluations measure (``exact_harm``: the fraction of
    harmful answers reproduced exactly; ``sampled_harm``: the mean probability of sampling
    them, theory's T10), unless the caller passes a proxy object.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Path | None = None
    data: Path | None = None
    evaluation_data: Path | None = None
    reference_data: Path | None = None
    benchmark_seed: int = Field(default=0, ge=0)
    poison_ratio: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    method: MethodName = "full"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    optimizer: OptimizerName = "adamw"
    betas: tuple[UnitFraction, UnitFraction] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    weight_decay: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    momentum: UnitFraction = 0.0
    learning_rate: PositiveFloat = 3e-4
    schedule: ScheduleName = "cosine"
    decay: float | None = Field(default=None, gt=0.0, lt=1.0, allow_inf_nan=False)
    warmup_fraction: UnitFraction = 0.1
    max_grad_norm: PositiveFloat | None = 1.0
    batch_size: int = Field(default=16, ge=1)
    grad_accumulation: int = Field(default=1, ge=1)
    budget_steps: int = Field(default=200, ge=1)
    eval_every: int = Field(default=20, ge=1)
    seed: int = Field(default=0, ge=0)
    device: DeviceName = "cpu"
    dtype: DtypeName = "float32"
    max_length: int | None = Field(default=None, ge=2)
    probe: bool = False
    probe_size: int = Field(default=32, ge=1)
    record_curvature: bool = False
    harm_proxy: HarmProxyName = "exact_harm"

    @model_validator(mode="after")
    def _optimizer_options(self) -> AttackConfig:
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"momentum applies to sgd only, not {self.optimizer}")
        if self.method != "lora" and self.lora != LoraSettings():
            raise ValueError(f"lora settings given but method is {self.method!r}")
        if (self.schedule == "exponential") != (self.decay is not None):
            raise ValueError("decay is given with, and only with, schedule 'exponential'")
        return self

    @model_serializer(mode="wrap")
    def _without_unused_decay(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave ``decay`` out when unused, so that configurations (and their cache keys and
        recorded provenance) read as they did before the exponential schedule."""
        data: dict[str, Any] = handler(self)
        if self.decay is None:
            data.pop("decay", None)
        return data

    @property
    def probing(self) -> bool:
        """Whether the probe-batch quantities are recorded (curvature needs them)."""
        return self.probe or self.record_curvature
