"""Loss landscapes over flat parameter vectors: losses, gradients and Hessian-vector products.

A ``LossLandscape`` is the function θ ↦ L(θ) of a fixed batch, where θ ∈ ℝᵈ is the flat
vector of the *selected* parameters of a model (all of them, or only the trainable ones, e.g.
the LoRA adapters; the others stay frozen at their current values). Everything the estimators
need is built from three oracles on it:

* ``loss(θ)``: L(θ) (one forward pass);
* ``gradient(θ)``: (L(θ), ∇L(θ)) (one forward + one backward pass, "one gradient");
* ``hessian_at(θ).matvec(v)``: the Hessian-vector product H(θ) v = ∇²L(θ) v, exact up to
  floating point (no finite differences), by one of three methods:

  - ``"reuse_graph"`` (default): build ∇L(θ) once with ``create_graph=True`` and answer every
    product by one more backward pass through that graph: Hv = ∇_θ ⟨∇L(θ), v⟩ (Pearlmutter,
    "Fast exact multiplication by the Hessian", Neural Computation 1994). Cheapest when many
    products are taken at the same point (power iteration, Lanczos);
  - ``"double_backward"``: the same identity with a fresh graph for each product;
  - ``"forward_over_reverse"``: ``torch.func.jvp`` of ``torch.func.grad`` through
    ``torch.func.functional_call``: Hv = d/dε ∇L(θ + εv) at ε = 0.

  ``benchmarks/estimators_bench.py`` measures the three. On a 2-layer × 64 GPT-2 (108k
  parameters, CPU, one thread, a shared and noisy machine) one product cost 0.65–1.3
  gradients with a reused graph, 1.3–2.2 with a fresh double backward and 3–5 by
  forward-over-reverse, hence the default (the first product on a reused graph pays for
  the graph: about 1.5–1.9).

Second derivatives through attention need ``attn_implementation="eager"``: PyTorch has no
double backward for the fused CPU attention kernel behind "sdpa", so ``model_landscape``
refuses such models with one clear error instead of failing deep inside autograd.

A ``CostCounter`` shared by a landscape and its Hessian operators counts the oracle calls, so
every estimate can report how many losses, gradients and products it consumed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp

from theory.errors import HftaInputError

HvpMethod = Literal["reuse_graph", "double_backward", "forward_over_reverse"]
HVP_METHODS: tuple[HvpMethod, ...] = ("reuse_graph", "double_backward", "forward_over_reverse")

#: L as a function of a dict of named parameter tensors (the selected parameters only).
ParameterLoss = Callable[[Mapping[str, Tensor]], Tensor]


@dataclass
class CostCounter:
    """How many oracle calls an estimate consumed.

    ``graphs`` counts gradients built with ``create_graph=True`` for reuse (each as costly as
    about one gradient); ``hvps`` counts Hessian-vector products of any method.
    """

    losses: int = 0
    gradients: int = 0
    hvps: int = 0
    graphs: int = 0

    def snapshot(self) -> CostCounter:
        return CostCounter(self.losses, self.gradients, self.hvps, self.graphs)

    def since(self, earlier: CostCounter) -> CostCounter:
        """The calls made after ``earlier`` was taken (a ``snapshot``)."""
        return CostCounter(
            self.losses - earlier.losses,
            self.gradients - earlier.gradients,
            self.hvps - earlier.hvps,
            self.graphs - earlier.graphs,
        )


@dataclass
class LossLandscape:
    """θ ↦ L(θ) for a flat vector θ of named parameters (see the module docstring).

    Attributes:
        function: L as a function of a dict {name: tensor} holding exactly ``names``.
        reference: the reference point θ₀ as {name: tensor}; fixes names, shapes, dtype.
        counter: the shared ``CostCounter``.
    """

    function: ParameterLoss
    reference: Mapping[str, Tensor]
    counter: CostCounter = field(default_factory=CostCounter)

    def __post_init__(self) -> None:
        if not self.reference:
            raise HftaInputError("a loss landscape needs at least one parameter to vary")
        self.names: tuple[str, ...] = tuple(self.reference)
        self.shapes: tuple[torch.Size, ...] = tuple(t.shape for t in self.reference.values())
        self.sizes: tuple[int, ...] = tuple(t.numel() for t in self.reference.values())
        first = next(iter(self.reference.values()))
        self.dtype: torch.dtype = first.dtype
        self.device: torch.device = first.device
        self._origin = self.flatten(self.reference)

    # ------------------------------------------------------------------ vectors
    @property
    def dimension(self) -> int:
        """d, the number of coordinates of θ."""
        return sum(self.sizes)

    @property
    def origin(self) -> Tensor:
        """θ₀, the reference point as a flat vector (a copy)."""
        return self._origin.clone()

    def flatten(self, tensors: Mapping[str, Tensor]) -> Tensor:
        """Concatenate ``tensors[name]`` for the landscape's names into one flat vector."""
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise HftaInputError(f"parameter point lacks {len(missing)} names, e.g. {missing[0]}")
        return torch.cat([tensors[n].detach().reshape(-1).to(self.dtype) for n in self.names])

    def unflatten(self, vector: Tensor) -> dict[str, Tensor]:
        """Split a flat vector back into {name: tensor} with the reference shapes."""
        self._check_vector(vector, "vector")
        pieces = torch.split(vector, list(self.sizes))
        return {n: p.reshape(s) for n, p, s in zip(self.names, pieces, self.shapes, strict=True)}

    def _check_vector(self, vector: Tensor, what: str) -> None:
        if vector.ndim != 1 or vector.numel() != self.dimension:
            raise HftaInputError(
                f"{what} must be a flat vector of {self.dimension} coordinates, "
                f"got shape {tuple(vector.shape)}"
            )
        if not bool(torch.isfinite(vector).all()):
            raise HftaInputError(f"{what} has non-finite coordinates")

    def _point(self, theta: Tensor | None) -> Tensor:
        if theta is None:
            return self._origin
        self._check_vector(theta, "parameter point")
        return theta.detach().to(dtype=self.dtype, device=self.device)

    # ------------------------------------------------------------------ oracles
    def loss(self, theta: Tensor | None = None) -> float:
        """L(θ) (θ₀ when ``theta`` is None)."""
        with torch.no_grad():
            value = self.function(self.unflatten(self._point(theta)))
        self.counter.losses += 1
        return _finite(value, "loss")

    def gradient(self, theta: Tensor | None = None) -> tuple[float, Tensor]:
        """(L(θ), ∇L(θ)) with the gradient as a flat vector."""
        point = self._point(theta).clone().requires_grad_(True)
        with torch.enable_grad():
            value = self.function(self.unflatten(point))
            (gradient,) = torch.autograd.grad(value, point)
        self.counter.gradients += 1
        return _finite(value, "loss"), _finite_vector(gradient, "gradient")

    def hessian_at(
        self, theta: Tensor | None = None, method: HvpMethod = "reuse_graph"
    ) -> HessianOperator:
        """The Hessian ∇²L(θ) as a matrix-free operator (see ``HessianOperator``)."""
        if method not in HVP_METHODS:
            raise HftaInputError(f"unknown HVP method {method!r}; choose one of {HVP_METHODS}")
        return HessianOperator(self, self._point(theta).clone(), method)


class HessianOperator:
    """v ↦ ∇²L(θ) v at one fixed point θ of a ``LossLandscape``.

    With ``method="reuse_graph"`` the first product builds the gradient graph
    (``counter.graphs += 1``) and every later one is a single backward pass through it.
    """

    def __init__(self, landscape: LossLandscape, theta: Tensor, method: HvpMethod) -> None:
        self.landscape = landscape
        self.theta = theta
        self.method: HvpMethod = method
        self._graph: tuple[Tensor, Tensor] | None = None  # (leaf θ, ∇L(θ) with graph)

    @property
    def dimension(self) -> int:
        return self.landscape.dimension

    def matvec(self, vector: Tensor) -> Tensor:
        """H v for a flat vector v (same dtype as the parameters)."""
        self.landscape._check_vector(vector, "HVP direction")
        v = vector.detach().to(dtype=self.landscape.dtype, device=self.landscape.device)
        if self.method == "reuse_graph":
            product = self._reuse_graph(v)
        elif self.method == "double_backward":
            product = self._double_backward(v)
        else:
            product = self._forward_over_reverse(v)
        self.landscape.counter.hvps += 1
        return _finite_vector(product, "Hessian-vector product")

    def quadratic_form(self, vector: Tensor) -> float:
        """vᵀ H v."""
        landscape = self.landscape
        return float(torch.dot(vector.to(landscape.device, landscape.dtype), self.matvec(vector)))

    def _reuse_graph(self, v: Tensor) -> Tensor:
        if self._graph is None:
            leaf = self.theta.clone().requires_grad_(True)
            with torch.enable_grad():
                value = self.landscape.function(self.landscape.unflatten(leaf))
                (gradient,) = torch.autograd.grad(value, leaf, create_graph=True)
            self._graph = (leaf, gradient)
            self.landscape.counter.graphs += 1
        leaf, gradient = self._graph
        with torch.enable_grad():
            (product,) = torch.autograd.grad(
                gradient, leaf, grad_outputs=v, retain_graph=True, allow_unused=True
            )
        return torch.zeros_like(v) if product is None else product.detach()

    def _double_backward(self, v: Tensor) -> Tensor:
        leaf = self.theta.clone().requires_grad_(True)
        with torch.enable_grad():
            value = self.landscape.function(self.landscape.unflatten(leaf))
            (gradient,) = torch.autograd.grad(value, leaf, create_graph=True)
            (product,) = torch.autograd.grad(gradient, leaf, grad_outputs=v, allow_unused=True)
        return torch.zeros_like(v) if product is None else product.detach()

    def _forward_over_reverse(self, v: Tensor) -> Tensor:
        landscape = self.landscape

        def flat_loss(theta: Tensor) -> Tensor:
            return landscape.function(landscape.unflatten(theta))

        outputs = jvp(grad(flat_loss), (self.theta,), (v,))
        product: Tensor = outputs[1]
        return product.detach()

    def release(self) -> None:
        """Drop the stored gradient graph (frees its memory)."""
        self._graph = None


# ---------------------------------------------------------------------- models
def selected_parameters(model: nn.Module, *, trainable_only: bool = True) -> dict[str, Tensor]:
    """{name: detached copy} of the model's parameters (only ``requires_grad`` ones if asked).

    With LoRA (peft) only the adapter weights require gradients, so ``trainable_only=True``
    restricts every estimate to the coordinates the attacker actually moves.
    """
    chosen = {
        name: p.detach().clone()
        for name, p in model.named_parameters()
        if p.requires_grad or not trainable_only
    }
    if not chosen:
        raise HftaInputError("the model has no trainable parameters to estimate constants over")
    return chosen


def check_second_order_ready(model: nn.Module) -> None:
    """Refuse models whose attention kernel has no second derivative (see module docstring)."""
    config = getattr(model, "config", None)
    implementation = getattr(config, "_attn_implementation", None)
    if implementation not in (None, "eager"):
        raise HftaInputError(
            f"Hessian estimates need attn_implementation='eager' (model uses {implementation!r}); "
            "load the model with attn_implementation='eager'"
        )


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Run with dropout off (a deterministic loss), restoring the previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def causal_lm_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """The model's own mean token cross-entropy on ``batch`` (labels −100 are ignored).

    transformers computes it from float32 logits even for a float64 model; pass a custom
    ``loss`` to ``model_landscape`` for float64 second derivatives.
    """
    output = model(**batch)
    loss = getattr(output, "loss", None)
    if not isinstance(loss, Tensor):
        raise HftaInputError("the batch must contain 'labels' so that the model returns a loss")
    return loss


def model_landscape(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    *,
    trainable_only: bool = True,
    loss: Callable[[nn.Module, Mapping[str, Tensor]], Tensor] = causal_lm_loss,
    names: Sequence[str] | None = None,
) -> LossLandscape:
    """The landscape θ ↦ loss(model with θ, batch) around the model's current parameters.

    ``names`` restricts θ to those parameters (default: all trainable ones, or all if
    ``trainable_only=False``). The model is called through ``torch.func.functional_call``,
    so its own parameters are never modified; dropout is off during every evaluation.
    """
    check_second_order_ready(model)
    reference = selected_parameters(model, trainable_only=trainable_only)
    if names is not None:
        unknown = [n for n in names if n not in reference]
        if unknown:
            raise HftaInputError(f"unknown or frozen parameter name {unknown[0]!r}")
        reference = {n: reference[n] for n in names}
    bound = _BoundLoss(model, loss)
    frozen_batch = dict(batch)

    def function(parameters: Mapping[str, Tensor]) -> Tensor:
        prefixed = {f"model.{name}": tensor for name, tensor in parameters.items()}
        with evaluation_mode(model):
            result: Tensor = functional_call(bound, prefixed, args=(), kwargs=frozen_batch)
        return result

    return LossLandscape(function, reference)


class _BoundLoss(nn.Module):
    """``loss(model, batch)`` as a module, so ``functional_call`` swaps the model's parameters
    for the whole loss computation (a custom loss may read more than the model's output)."""

    def __init__(
        self, model: nn.Module, loss: Callable[[nn.Module, Mapping[str, Tensor]], Tensor]
    ) -> None:
        super().__init__()
        self.model = model
        self._loss = loss

    def forward(self, **inputs: Tensor) -> Tensor:
        return self._loss(self.model, inputs)


def set_flat_parameters(model: nn.Module, landscape: LossLandscape, theta: Tensor) -> None:
    """Copy the flat point θ into the model's parameters in place (for callers that need it)."""
    values = landscape.unflatten(theta)
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in values.items():
            named[name].copy_(value)


# ---------------------------------------------------------------------- helpers
def _finite(value: Tensor, what: str) -> float:
    number = float(value.detach())
    if number != number or number in (float("inf"), float("-inf")):
        raise HftaInputError(f"{what} is not finite ({number})")
    return number


def _finite_vector(vector: Tensor, what: str) -> Tensor:
    if not bool(torch.isfinite(vector).all()):
        raise HftaInputError(f"{what} has non-finite coordinates")
    return vector
