r"""Predictions for LoRA attackers: the adapters' reach mapped to the merged weights (T11 (vii)).

A LoRA attacker (Hu et al., ICLR 2022; ``empirical.engine.attack`` through peft) adapts
matrices W_j by ΔW_j = s B_j A_j, s = α/r, with B_j⁰ = 0 and A_j⁰ drawn by peft's
initialisation under the attack's seed, and trains only (A_j, B_j). Its optimizer's step
bounds over the d adapter parameters (theory's path-length bound, ``step_radii`` of
``empirical.verify.predict`` with d = the adapter count and ‖θ_0‖ = ‖(A⁰, B⁰)‖ for AdamW's
decay) put the adapters in a ball of radius R_t around (A⁰, 0) after t steps. Theory's
``lora_reach`` (T11 (vii), proved in proofs/theorems/harm_radius.py) maps it to the full
parameter space of the merged model:

    ‖θ_t − θ_0‖  ≤  s (a_0 R_t + R_t²/2),      a_0 = max_j ‖A_j⁰‖₂,

and the merged model is a point of the full space, so the flip radius ρ of T11 (iv)-(v) (or
the sampled radius of (vi)) estimated on M* for full fine-tuning applies unchanged: the
certified minimum is the first t with s (a_0 R_t + R_t²/2) > ρ.

``lora_start`` measures a_0, s, d and ‖(A⁰, B⁰)‖ before the attack: it loads the model and
applies the adapters exactly as the attack does (``empirical.engine.attack``: the same seeded
block, the same loading and ``get_peft_model`` call), so A⁰ is the attack's own; no training.
It is cached in the work directory (``theory/lora-<key>.json``, the key over the model's
files, the LoRA settings, the seed, the device and the dtype), so a cached rerun imports no
torch. ``merged_displacement`` measures ‖θ_t − θ_0‖ of the merged model from two adapter
vectors (the trainable parameters in the order the attack flattens them, as its
``on_iterate`` hook gives them): what the bound speaks about. A LoRA run's trajectory records
``distance_from_start`` over its trainable parameters, i.e. the adapters' distance (the
quantity R_t bounds), not the merged model's.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from empirical.engine.attack_config import AttackConfig
from empirical.verify.evidence import Record
from empirical.verify.workspace import Workspace, directory_digest, write_json
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = [
    "LORA_ASSUMPTIONS",
    "LORA_BASIS",
    "LoraStart",
    "lora_record",
    "lora_start",
    "measure_lora_start",
    "merged_displacement",
    "merged_radii",
]

#: Bump when the LoRA start entries change meaning.
_CACHE_VERSION = 1

LORA_BASIS = (
    "T11 (harm_radius) (vii) with (iv)-(vi): the adapters of a LoRA attacker stay within R_t "
    "of (A^0, 0) (theory's path-length bound over the adapter parameters, T3 for Adam/AdamW), "
    "so the merged weights stay within s (a_0 R_t + R_t^2/2) of theta_0 (s = alpha/r, a_0 = "
    "max_j ||A_j^0||_2 of the attack's own initialisation); f(theta_t) < phi while that "
    "merged reach is <= rho, the flip radius of full fine-tuning (the merged model is a point "
    "of the full parameter space)"
)
LORA_ASSUMPTIONS = [
    "the attack trains only LoRA adapters (A_j, B_j) initialised as measured before the attack "
    "(B_j^0 = 0, A_j^0 from the attack's seed), merged as W_j + (alpha/r) B_j A_j",
    "the adapters follow the planned optimizer and schedule, so after t steps they lie in the "
    "ball of radius R_t (over the adapter parameters) around their initialisation",
]


class LoraStart(Record):
    """A LoRA attack's adapters at initialisation, before any training: the constants of T11
    (vii)."""

    adapters: int
    parameters: int
    norm: float
    largest_init: float
    b_norm: float
    scale: float
    seed: int
    seconds: float
    cached: bool = False


def _layers(model: nn.Module) -> list[tuple[nn.Parameter, nn.Parameter, float]]:
    """(A_j, B_j, s_j) of every LoRA layer of a peft model (adapter ``default``)."""
    found = []
    for module in model.modules():
        a, b, scaling = (getattr(module, x, None) for x in ("lora_A", "lora_B", "scaling"))
        if a is None or b is None or not isinstance(scaling, dict):
            continue
        for name in a:
            found.append((a[name].weight, b[name].weight, float(scaling[name])))
    return found


def measure_lora_start(config: AttackConfig) -> LoraStart:
    """The adapters of ``config``'s LoRA attack as initialised (module docstring): the model
    loaded and the adapters applied inside the attack's seeded block, nothing trained."""
    import torch

    from empirical.engine import attack as engine

    if config.method != "lora":
        raise HftaInputError(f"not a LoRA attack: method {config.method!r}")
    started = time.process_time()
    device = engine.torch_device(config.device)
    with engine.deterministic(config.seed, device):
        model, _ = engine._model_and_tokenizer(config, None, None, device)
        model = engine._apply_lora(model, config.lora)
    layers = _layers(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not layers:
        raise HftaInputError("LoRA: the attacked model has no adapter")
    with torch.no_grad():
        largest = max(float(torch.linalg.matrix_norm(a.double(), ord=2)) for a, _, _ in layers)
        b_norm = math.sqrt(sum(float(b.double().square().sum()) for _, b, _ in layers))
        norm = math.sqrt(sum(float(p.double().square().sum()) for p in trainable))
    scales = {s for _, _, s in layers}
    if len(scales) != 1:
        raise HftaInputError(f"LoRA: adapters with different scalings {sorted(scales)}")
    return LoraStart(
        adapters=len(layers),
        parameters=sum(p.numel() for p in trainable),
        norm=norm,
        largest_init=largest,
        b_norm=b_norm,
        scale=scales.pop(),
        seed=config.seed,
        seconds=time.process_time() - started,
    )


def lora_start(config: AttackConfig, workspace: Workspace | None = None) -> LoraStart:
    """``measure_lora_start``, read back from ``workspace.theory/lora-<key>.json`` when a
    previous run measured it (module docstring)."""
    material = json.dumps(
        {
            "model": directory_digest(config.model),
            "lora": config.lora.model_dump(mode="json"),
            "seed": config.seed,
            "device": config.device,
            "dtype": config.dtype,
            "version": _CACHE_VERSION,
        },
        sort_keys=True,
    )
    key = hashlib.sha256(material.encode()).hexdigest()[:24]
    cache = None if workspace is None else workspace.theory / f"lora-{key}.json"
    if cache is not None and cache.is_file():
        found = LoraStart.model_validate_json(cache.read_text(encoding="utf-8"))
        return found.model_copy(update={"cached": True})
    start = measure_lora_start(config)
    if cache is not None:
        write_json(cache, start.model_dump(mode="json"))
    return start


def lora_record(prediction: BaseModel, start: LoraStart) -> dict[str, Any]:
    """The fields of a LoRA attack's ``Prediction`` (``empirical.verify.predict``) that differ
    from full fine-tuning's: the basis (vii) with the start's constants, and the full
    fine-tuning assumption replaced by ``LORA_ASSUMPTIONS``."""
    kept = [a for a in getattr(prediction, "assumptions", []) if "full fine-tuning" not in a]
    constants = (
        f"; measured before the attack: {start.adapters} adapters, d = {start.parameters} "
        f"adapter parameters, ||(A^0, B^0)|| = {start.norm:.4g}, a_0 = "
        f"{start.largest_init:.4g}, s = {start.scale:g}"
    )
    return {"basis": LORA_BASIS + constants, "assumptions": [*LORA_ASSUMPTIONS, *kept]}


def merged_radii(adapter_radii: Sequence[float], start: LoraStart) -> list[float]:
    """s (a_0 R_t + R_t²/2) for every adapter radius R_t: theory's ``lora_reach``, the
    merged model's reachable radius (module docstring). B⁰ ≠ 0 is refused: the bound
    assumes adapters that start at the base weights."""
    from theory.theorems.harm_radius import lora_reach

    if start.b_norm != 0.0:
        raise HftaInputError(
            f"LoRA adapters with B != 0 at initialisation (||B^0|| = {start.b_norm:.3g}): "
            "T11 (vii) assumes B^0 = 0"
        )
    return [lora_reach(r, start.largest_init, start.scale) for r in adapter_radii]


def merged_displacement(model: nn.Module, start: Tensor, current: Tensor) -> float:
    """‖θ − θ_0‖ of the merged model, sqrt(Σ_j ‖s_j (B_j A_j − B_j⁰ A_j⁰)‖_F²), from the flat
    adapter vectors ``start`` and ``current`` (the trainable parameters of the peft ``model``
    in its parameter order, as the attack's ``on_iterate`` hook gives them)."""
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    offsets: dict[int, tuple[int, torch.Size]] = {}
    position = 0
    for p in trainable:
        offsets[id(p)] = (position, p.shape)
        position += p.numel()
    if start.numel() != position or current.numel() != position:
        raise HftaInputError(f"adapter vectors of {start.numel()} and {current.numel()} "
                             f"values for {position} trainable parameters")

    def block(flat: Tensor, p: nn.Parameter) -> Tensor:
        offset, shape = offsets[id(p)]
        return flat[offset : offset + p.numel()].double().view(shape)

    total = 0.0
    for a, b, scale in _layers(model):
        moved = block(current, b) @ block(current, a) - block(start, b) @ block(start, a)
        total += float((scale * moved).square().sum())
    return math.sqrt(total)
