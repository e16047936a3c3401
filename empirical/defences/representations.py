"""Hidden representations of a causal LM: reading them, and perturbing them inside the forward.

* ``hidden_states``: transformers' ``output_hidden_states`` (index 0 the embeddings, index l the
  output of decoder layer l, the last one after the final layer norm for GPT-2), restricted to
  the positions that predict a supervised token (the answer; ``labels[:, 1:] ≠ −100``), as
  ``(tokens, d)`` matrices. RepNoise (Rosati et al., NeurIPS 2024) pushes these toward noise on
  harmful answers; the condition-number defence regularises the Gram matrix of the last one.
* ``decoder_layers``: the model's list of decoder blocks (GPT-2 ``transformer.h``, Llama-style
  ``model.layers``, GPT-NeoX ``gpt_neox.layers``, or the one ``ModuleList`` with as many blocks
  as ``config.num_hidden_layers``).
* ``LayerOutputs``: forward hooks on the decoder blocks that record their outputs (so a loss can
  be differentiated with respect to them) or add a fixed perturbation to them (Vaccine's
  perturbed forward pass, Huang et al., NeurIPS 2024).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from empirical.defences.losses import shifted_targets
from theory.errors import HftaInputError

_LAYER_PATHS: tuple[str, ...] = (
    "transformer.h",
    "model.layers",
    "model.decoder.layers",
    "gpt_neox.layers",
    "transformer.layers",
)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of ``model``, in order (see the module docstring)."""
    for path in _LAYER_PATHS:
        module: Any = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return module
    config = getattr(model, "config", None)
    count = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    candidates = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == count]
    if len(candidates) == 1:
        return candidates[0]
    raise HftaInputError(
        f"cannot find the decoder layers of {type(model).__name__} (looked for "
        f"{', '.join(_LAYER_PATHS)})"
    )


def answer_positions(labels: Tensor) -> Tensor:
    """``(n, L)`` bool: positions whose next token is supervised (they produce the answer)."""
    _, mask = shifted_targets(labels)
    positions = torch.zeros_like(labels, dtype=torch.bool)
    positions[:, :-1] = mask
    return positions


def hidden_states(
    model: nn.Module, batch: Mapping[str, Tensor], layers: Sequence[int] | None = None
) -> list[Tensor]:
    """The hidden states of ``layers`` (``None``: every decoder layer's output, 1 … n_layer;
    negative indices count from the last, −1 being the input of the LM head) at the
    answer-producing positions, each ``(tokens, d)``, with the graph kept for gradients.

    Raises:
        HftaInputError: a layer index outside ``0 … n_layer``.
    """
    output = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        output_hidden_states=True,
    )
    states: tuple[Tensor, ...] = output.hidden_states
    chosen = list(range(1, len(states))) if layers is None else list(layers)
    for layer in chosen:
        if not -len(states) <= layer < len(states):
            raise HftaInputError(
                f"hidden layer {layer} out of range: the model has layers 0 … {len(states) - 1}"
            )
    positions = answer_positions(batch["labels"])
    return [states[layer][positions] for layer in chosen]


def _output_tensor(output: Any) -> Tensor:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, tuple) and output and isinstance(output[0], Tensor):
        return output[0]
    raise HftaInputError(f"decoder layer returned {type(output).__name__}, not a tensor")


def _replace_output(output: Any, tensor: Tensor) -> Any:
    if isinstance(output, Tensor):
        return tensor
    return (tensor, *output[1:])


class LayerOutputs:
    """Record or perturb the outputs h_l of the decoder blocks during a forward pass.

    ``with outputs.recording(): loss = ...`` keeps each block's output tensor (in order) in
    ``outputs.recorded``; ``with outputs.perturbed(eps): ...`` adds ``eps[l]`` (same shape as
    h_l) to block l's output.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = decoder_layers(model)
        self.recorded: list[Tensor] = []

    @contextmanager
    def recording(self) -> Iterator[list[Tensor]]:
        self.recorded = []

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            self.recorded.append(_output_tensor(output))

        handles = [layer.register_forward_hook(hook) for layer in self.layers]
        try:
            yield self.recorded
        finally:
            _remove(handles)

    @contextmanager
    def perturbed(self, perturbations: Sequence[Tensor]) -> Iterator[None]:
        if len(perturbations) != len(self.layers):
            raise HftaInputError(
                f"{len(perturbations)} perturbations for {len(self.layers)} decoder layers"
            )

        def hook_for(perturbation: Tensor) -> Any:
            def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
                return _replace_output(output, _output_tensor(output) + perturbation)

            return hook

        handles = [
            layer.register_forward_hook(hook_for(p))
            for layer, p in zip(self.layers, perturbations, strict=True)
        ]
        try:
            yield
        finally:
            _remove(handles)


def _remove(handles: list[RemovableHandle]) -> None:
    for handle in handles:
        handle.remove()
