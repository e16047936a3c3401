"""Which modules of a model a LoRA attack adapts: given explicitly, or inferred.

LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) replaces a
weight W by W + (α/r)·B A with only A and B trained, in the layers named by
``target_modules`` (peft matches a name against the last component of each module's path).
The names differ between architectures (GPT-2: ``c_attn``; Llama: ``q_proj``, ``v_proj``;
GPT-NeoX: ``query_key_value``), so a configuration written for one model fails on another.

``resolve_target_modules(model, requested)``:

* ``requested`` names modules (``("q_proj", "v_proj")``): kept as given, after checking the
  model has at least one module of each name (an unknown name is bad input that lists the
  model's linear layers to choose from);
* ``requested`` is ``AUTO`` (``("auto",)``) or ``None``: inferred from the architecture, as
  peft does for its supported models: ``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``
  keyed by ``model.config.model_type`` (peft's per-model defaults, the attention projections
  of the LoRA paper), except where ``KEPT_DEFAULTS`` names the toolkit's own choice (GPT-2:
  ``c_attn`` and ``c_proj``, the targets every GPT-2 verdict so far was measured with, where
  peft adapts ``c_attn`` alone). An architecture with no default gets every linear layer
  (``nn.Linear`` or transformers' ``Conv1D``) except the output head, as peft's
  ``"all-linear"`` option does.

``target_modules_for_type(model_type)`` gives that default for an architecture name without
loading a model (``None`` when there is none).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from theory.errors import HftaInputError

__all__ = [
    "AUTO",
    "KEPT_DEFAULTS",
    "linear_module_names",
    "model_type_of",
    "resolve_target_modules",
    "target_modules_for_type",
]

AUTO: tuple[str, ...] = ("auto",)
"""``LoraSettings.target_modules`` value meaning "infer from the model's architecture"."""


KEPT_DEFAULTS: dict[str, tuple[str, ...]] = {"gpt2": ("c_attn", "c_proj")}
"""Architectures whose inferred targets are the toolkit's historical ones, not peft's."""


def target_modules_for_type(model_type: str) -> tuple[str, ...] | None:
    """The default LoRA targets for a transformers ``model_type``: ``KEPT_DEFAULTS``, else
    peft's per-model default (None: neither has one)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    if model_type in KEPT_DEFAULTS:
        return KEPT_DEFAULTS[model_type]
    names = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
    return None if not names else tuple(str(n) for n in names)


def model_type_of(model_dir: Path | str) -> str | None:
    """The ``model_type`` in a local Hugging Face model folder's ``config.json`` (None when
    the folder has no readable config)."""
    path = Path(model_dir) / "config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _output_head(model: nn.Module) -> nn.Module | None:
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    return head if isinstance(head, nn.Module) else None


def linear_module_names(model: nn.Module) -> tuple[str, ...]:
    """The distinct last path components of the model's linear layers (``nn.Linear`` and
    transformers' ``Conv1D``), the output head excluded, sorted."""
    from transformers.pytorch_utils import Conv1D

    head = _output_head(model)
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if name and isinstance(module, (nn.Linear, Conv1D)) and module is not head
    }
    return tuple(sorted(names))


def _present(model: nn.Module) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}


def resolve_target_modules(
    model: nn.Module, requested: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The module names a LoRA attack on ``model`` adapts (module docstring).

    Raises:
        HftaInputError: a requested name the model does not have, or a model with no linear
            layer to adapt.
    """
    present = _present(model)
    if requested is not None and tuple(requested) != AUTO:
        missing = sorted(set(requested) - present)
        if missing:
            raise HftaInputError(
                f"LoRA target modules {missing} not found in the model; its linear layers are "
                f"{list(linear_module_names(model))} (or set lora.target_modules = ['auto'])"
            )
        return tuple(requested)
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    inferred = target_modules_for_type(model_type) if isinstance(model_type, str) else None
    if inferred is not None and set(inferred) <= present:
        return inferred
    linear = linear_module_names(model)
    if not linear:
        raise HftaInputError("LoRA: the model has no linear layer to adapt")
    return linear
