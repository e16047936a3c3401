"""Condition-number immunization of a linear feature extractor, as the paper ran it and as we do.

Zheng, Bai, Bullins, Yeh, "Model Immunization from a Condition Number Perspective" (ICML 2025)
immunize a linear feature map ``f(x) = θᵀx (+ b)``, ``θ ∈ R^{D×D}``, by minimising (their
Eq. (11) with the weights of Alg. 1)

    L_P(ω, θ) + λ_P R_well(H_P(θ)) + λ_H R_ill(H_H(θ)),    H(θ) = θᵀKθ,  K = XᵀX   (Eq. (9)),

where the regularisers' gradients with respect to θ are preconditioned by the inverse input
covariance (Alg. 1, line 6: ``θ ← θ − η∇_θL − ηλ_P K_P⁻¹∇_θR_well − ηλ_H K_H⁻¹∇_θR_ill``; their
code does it with a "dummy layer" whose backward pass solves ``(XᵀX + ρI) G = ∇``).

``LinearImmunizationConfig`` exposes every choice; ``configure("paper" | "project", **changes)``
starts from one of two presets:

``"paper"``: what the public code (github.com/amberyzheng/model-immunization-cond-num, commit
dc536a8: ``models/model.py``, ``models/linear.py``, ``utils/loss.py``, ``configs/*.yaml``) runs
for its linear experiments, read by us: Adam (lr 5e-3, ``house_price.yaml``; the paper's §5
says η = 0.005 for both experiments, 100 epochs for house prices and 30 for MNIST), shuffled
mini-batches of 64 paired across the two tasks (``drop_last``), ``nn.Linear`` with a bias and
PyTorch's default random initialisation (the identity initialisation is commented out), a
head ``ω ~ N(0, I)``, the task loss ``‖y − Fω‖²/n`` (no ½), the regularisers on the
*unnormalised* mini-batch Gram matrices ``S = FᵀF`` with ``λ_P = 100`` (``lambda_r1``) and
``λ_H = 10⁷`` (``lambda_r2``; MNIST: 1 and 5·10⁷), R_ill's ``1/2k`` with k = the input
dimension D and σ_min the smallest eigenvalue of ``S + 10⁻⁶I`` above 10⁻⁶, and the
preconditioner ``(X_bᵀX_b + ρI)⁻¹`` of the *mini-batch* inputs with ρ_P = 1 (hard-coded) and
ρ_H = ``lambda_reg`` = 1 (MNIST: 10⁻⁷). Our reading of their backward pass: it multiplies the
weight gradient ``∇_W`` (W = θᵀ, shape out × in) on the left, which is ``∇_θ (XᵀX + ρI)⁻¹``, a
multiplication on θ's *output* side (``preconditioner="output"``), where Alg. 1 writes
``K⁻¹∇_θ`` (``"input"``). The bias gradient is not preconditioned.

``"project"``: this project's earlier variant, the algorithm as Alg. 1 writes it: full-batch
gradient descent (rate 3·10⁻³, 1,500 steps) from ``θ = I`` and ``ω`` = the least-squares
solution, no bias, the task loss ``(1/2n)‖y − Fω‖²`` (theory's least squares), Gram matrices
divided by n (``K = XᵀX/n``; this is why its weights are 1 and 1 where the code's are 100 and
10⁷, see docs/condition_number.md), the preconditioner ``(K + 10⁻³I)⁻¹`` on θ's input side, and
R_ill as Eq. (12) writes it (k = rank, the smallest nonzero singular value, relative rank
tolerance).

Weights on a common scale. With a batch of B rows, ``S_sum = B·S_mean``, so ``R_well`` scales
by B² and ``R_ill`` by 1/B²: ``λ_P`` on ``S_sum`` equals ``λ_P·B²`` on ``S_mean`` and ``λ_H`` on
``S_sum`` equals ``λ_H/B²`` on ``S_mean``; the code's task loss is twice the half-MSE. The
preset keeps the code's numbers with the code's scale (``gram="sum"``, ``task_loss="mse"``).

Everything runs in float64 torch on the CPU and imports neither transformers nor peft.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor

from empirical.linear.regularisers import ill_conditioning, well_conditioning
from empirical.linear.tasks import LinearTaskPair
from theory.errors import HftaInputError
from theory.quadratic import FloatArray, IllDivisor, KappaRule, least_squares_quadratic

Variant = Literal["paper", "project"]
Progress = Callable[[int, int], None]
"""``progress(steps_done, total_steps)``, called after every optimizer step."""


class LinearImmunizationConfig(BaseModel):
    """Every choice of the linear immunization (module docstring); defaults: the paper preset."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: Variant = Field(
        default="paper", description="which preset the other fields started from"
    )
    optimizer: Literal["adam", "sgd"] = Field(
        default="adam",
        description="the paper's code: Adam (models/model.py, linear branch); 'sgd' is plain "
        "(stochastic) gradient descent, Alg. 1 as written",
    )
    learning_rate: float = Field(
        default=5e-3,
        gt=0.0,
        description="paper §5: η = 0.005; code configs: 5e-3 (house prices), 1e-3 (MNIST)",
    )
    epochs: int = Field(
        default=100,
        ge=1,
        description="passes over the paired data (paper §5: 100 for house prices, 30 for "
        "MNIST; house_price.yaml says 10)",
    )
    batch_size: int | None = Field(
        default=64,
        ge=1,
        description="rows of each task per step (the code: 64, shuffled, drop_last; steps per "
        "epoch = min(n_P, n_H) // batch_size); None = the full data every step",
    )
    bias: bool = Field(default=True, description="feature map θᵀx + b (the code: nn.Linear)")
    init: Literal["random", "identity"] = Field(
        default="random",
        description="θ start: PyTorch's nn.Linear default U(±1/√D) for θ and b (the code), or "
        "θ = I, b = 0",
    )
    head_init: Literal["random", "least-squares"] = Field(
        default="random",
        description="ω start: N(0, I) (the code: torch.randn) or the least-squares solution on "
        "the raw inputs",
    )
    task_loss: Literal["mse", "half-mse"] = Field(
        default="mse",
        description="pre-training loss: ‖y − Fω‖²/n (the code) or (1/2n)‖y − Fω‖² (theory)",
    )
    gram: Literal["sum", "mean"] = Field(
        default="sum",
        description="S = FᵀF over the batch (the code) or FᵀF/B; also the scale of the K in the "
        "preconditioner (XᵀX or XᵀX/B)",
    )
    well_weight: float = Field(
        default=100.0,
        ge=0.0,
        description="λ_P on R_well(S_P) (code: lambda_r1 = 100 for house prices, 1 for MNIST, on "
        "gram='sum'; on gram='mean' the same term is λ_P·B²)",
    )
    ill_weight: float = Field(
        default=1e7,
        ge=0.0,
        description="λ_H on R_ill(S_H) (code: lambda_r2 = 1e7 for house prices, 5e7 for MNIST, "
        "on gram='sum'; on gram='mean' the same term is λ_H/B²)",
    )
    pretraining_ridge: float = Field(
        default=1.0,
        gt=0.0,
        description="ρ_P in (K_P + ρ_P I)⁻¹ (the code: 1, hard-coded)",
    )
    harmful_ridge: float = Field(
        default=1.0,
        gt=0.0,
        description="ρ_H in (K_H + ρ_H I)⁻¹ (the code: lambda_reg = 1 for house prices, 1e-7 "
        "for MNIST)",
    )
    preconditioner: Literal["output", "input", "none"] = Field(
        default="output",
        description="where (K + ρI)⁻¹ multiplies ∇_θ of the regularisers: 'output' ∇_θ P (our "
        "reading of the code's backward pass), 'input' P ∇_θ (Alg. 1, line 6), 'none'",
    )
    ill_divisor: IllDivisor = Field(
        default="dimension",
        description="k in R_ill's 1/2k: 'dimension' D (the code) or 'rank' (Eq. (12))",
    )
    kappa_rule: KappaRule = Field(
        default="paper",
        description="which σ count as nonzero in R_ill: 'paper' (eigenvalues of S + 1e-6 I "
        "above 1e-6, the code) or 'pinv' (relative tolerance)",
    )
    seed: int = Field(default=0, ge=0, description="seeds initialisation and batch order")


PRESETS: dict[Variant, dict[str, Any]] = {
    "paper": {},
    "project": {
        "optimizer": "sgd",
        "learning_rate": 3e-3,
        "epochs": 1500,
        "batch_size": None,
        "bias": False,
        "init": "identity",
        "head_init": "least-squares",
        "task_loss": "half-mse",
        "gram": "mean",
        "well_weight": 1.0,
        "ill_weight": 1.0,
        "pretraining_ridge": 1e-3,
        "harmful_ridge": 1e-3,
        "preconditioner": "input",
        "ill_divisor": "rank",
        "kappa_rule": "pinv",
    },
}


def configure(variant: str = "paper", **changes: Any) -> LinearImmunizationConfig:
    """The preset ``variant`` with ``changes`` applied. Unknown variants or fields and
    out-of-range values are ``HftaInputError`` (one line)."""
    if variant not in PRESETS:
        raise HftaInputError(f"unknown variant {variant!r} (known: {', '.join(PRESETS)})")
    fields = LinearImmunizationConfig.model_fields
    for key in changes:
        if key not in fields or key == "variant":
            raise HftaInputError(
                f"unknown hyperparameter '{key}' for condition-number "
                f"(known: {', '.join(k for k in fields if k != 'variant')})"
            )
    values = {**PRESETS[variant], **changes, "variant": variant}  # type: ignore[index]
    try:
        return LinearImmunizationConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "config"
        raise HftaInputError(f"{where}: {first.get('msg', 'invalid value')}") from None


class LinearStep(BaseModel):
    """One optimizer step: the objective and its three terms before the step is applied."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int
    total: float
    task_loss: float
    R_well: float
    R_ill: float


@dataclass(frozen=True)
class LinearImmunization:
    """What training produced: ``θ`` (D, D), ``b`` (D,) (zeros without a bias), the head ``ω``
    (D,), the per-step curve, the step at which the objective or a gradient stopped being
    finite (the parameters are then the last finite iterate) and the wall time."""

    extractor: FloatArray
    bias: FloatArray
    head: FloatArray
    config: LinearImmunizationConfig
    curve: list[LinearStep] = field(default_factory=list)
    diverged_at: int | None = None
    wall_seconds: float = 0.0

    def features(self, inputs: FloatArray) -> FloatArray:
        """``F = Xθ + 1bᵀ``, the immunized features of inputs X (n, D)."""
        return np.asarray(inputs @ self.extractor + self.bias[None, :])


def steps_per_epoch(pair: LinearTaskPair, batch_size: int | None) -> int:
    """Optimizer steps in one epoch: 1 for full batches, else ``min(n_P, n_H) // batch_size``."""
    if batch_size is None:
        return 1
    smaller = min(pair.pretraining_features.shape[0], pair.harmful_features.shape[0])
    if batch_size > smaller:
        raise HftaInputError(
            f"batch_size {batch_size} is larger than the smaller task ({smaller} rows)"
        )
    return int(smaller // batch_size)


def immunize_linear(
    pair: LinearTaskPair,
    config: LinearImmunizationConfig | None = None,
    progress: Progress | None = None,
) -> LinearImmunization:
    """Train ``(θ, b, ω)`` on ``pair`` under ``config`` (module docstring)."""
    config = config or configure("paper")
    started = time.perf_counter()
    per_epoch = steps_per_epoch(pair, config.batch_size)
    total_steps = per_epoch * config.epochs
    generator = torch.Generator().manual_seed(config.seed)
    order = np.random.default_rng(config.seed)
    dimension = pair.dimension
    x_p = torch.as_tensor(pair.pretraining_features, dtype=torch.float64)
    y_p = torch.as_tensor(pair.pretraining_targets, dtype=torch.float64)
    x_h = torch.as_tensor(pair.harmful_features, dtype=torch.float64)
    theta, bias, head = _initial(pair, config, generator)
    parameters = [theta, head] + ([bias] if config.bias else [])
    optimizer: torch.optim.Optimizer
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    else:
        optimizer = torch.optim.SGD(parameters, lr=config.learning_rate)
    identity = torch.eye(dimension, dtype=torch.float64)
    curve: list[LinearStep] = []
    diverged_at: int | None = None
    step = 0
    for _ in range(config.epochs):
        for rows_p, rows_h in _batches(pair, config.batch_size, per_epoch, order):
            batch_p, batch_h = x_p[rows_p], x_h[rows_h]
            features_p = batch_p @ theta + (bias if config.bias else 0.0)
            features_h = batch_h @ theta + (bias if config.bias else 0.0)
            residual = features_p @ head - y_p[rows_p]
            task = (residual @ residual) / residual.shape[0]
            if config.task_loss == "half-mse":
                task = task / 2
            scale = 1.0 if config.gram == "sum" else 1.0 / batch_p.shape[0]
            gram_p = features_p.T @ features_p * scale
            gram_h = (
                features_h.T
                @ features_h
                * (1.0 if config.gram == "sum" else 1.0 / batch_h.shape[0])
            )
            if not bool(torch.isfinite(gram_p).all() and torch.isfinite(gram_h).all()):
                diverged_at = step
                break
            try:
                well = well_conditioning(gram_p)
                ill = ill_conditioning(gram_h, config.kappa_rule, config.ill_divisor)
            except RuntimeError as error:  # torch.linalg.LinAlgError: SVD did not converge
                if "linalg" not in str(error):
                    raise
                diverged_at = step
                break
            total = task + config.well_weight * well + config.ill_weight * ill
            values = [float(v.detach()) for v in (total, task, well, ill)]
            trainable = [theta, bias] if config.bias else [theta]
            task_grads = torch.autograd.grad(task, [*trainable, head], retain_graph=True)
            well_grads = torch.autograd.grad(well, trainable, retain_graph=True)
            ill_grads = torch.autograd.grad(ill, trainable)
            grads = _combine(
                config,
                task_grads,
                well_grads,
                ill_grads,
                _preconditioner(batch_p, config.pretraining_ridge, scale, identity),
                _preconditioner(
                    batch_h,
                    config.harmful_ridge,
                    1.0 if config.gram == "sum" else 1.0 / batch_h.shape[0],
                    identity,
                ),
            )
            finite = all(math.isfinite(v) for v in values) and all(
                bool(torch.isfinite(g).all()) for g in grads
            )
            if not finite:
                diverged_at = step
                break
            curve.append(
                LinearStep(
                    step=step,
                    total=values[0],
                    task_loss=values[1],
                    R_well=values[2],
                    R_ill=values[3],
                )
            )
            optimizer.zero_grad()
            for parameter, gradient in zip([*trainable, head], grads, strict=True):
                parameter.grad = gradient
            optimizer.step()
            step += 1
            if progress is not None:
                progress(step, total_steps)
        if diverged_at is not None:
            break
    return LinearImmunization(
        extractor=theta.detach().numpy().copy(),
        bias=bias.detach().numpy().copy() if config.bias else np.zeros(dimension),
        head=head.detach().numpy().copy(),
        config=config,
        curve=curve,
        diverged_at=diverged_at,
        wall_seconds=time.perf_counter() - started,
    )


def _initial(
    pair: LinearTaskPair, config: LinearImmunizationConfig, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    dimension = pair.dimension
    if config.init == "identity":
        theta = torch.eye(dimension, dtype=torch.float64)
        bias = torch.zeros(dimension, dtype=torch.float64)
    else:
        bound = 1.0 / math.sqrt(dimension)  # nn.Linear's default: kaiming_uniform(a=√5)
        theta = (
            torch.rand((dimension, dimension), generator=generator, dtype=torch.float64) * 2 - 1
        ) * bound
        bias = (torch.rand(dimension, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    if config.head_init == "random":
        head = torch.randn(dimension, generator=generator, dtype=torch.float64)
    else:
        solution = least_squares_quadratic(pair.pretraining_features, pair.pretraining_targets)
        head = torch.as_tensor(solution.theta_star.copy())
    return theta.requires_grad_(True), bias.requires_grad_(config.bias), head.requires_grad_(True)


def _batches(
    pair: LinearTaskPair,
    batch_size: int | None,
    per_epoch: int,
    order: np.random.Generator,
) -> list[tuple[Tensor, Tensor]]:
    n_p = pair.pretraining_features.shape[0]
    n_h = pair.harmful_features.shape[0]
    if batch_size is None:
        return [(torch.arange(n_p), torch.arange(n_h))]
    perm_p = torch.as_tensor(order.permutation(n_p))
    perm_h = torch.as_tensor(order.permutation(n_h))
    return [
        (
            perm_p[i * batch_size : (i + 1) * batch_size],
            perm_h[i * batch_size : (i + 1) * batch_size],
        )
        for i in range(per_epoch)
    ]


def _preconditioner(inputs: Tensor, ridge: float, scale: float, identity: Tensor) -> Tensor:
    """``(scale·XᵀX + ρI)⁻¹`` of a batch of inputs."""
    inverse: Tensor = torch.linalg.inv(inputs.T @ inputs * scale + ridge * identity)
    return inverse


def _combine(
    config: LinearImmunizationConfig,
    task: tuple[Tensor, ...],
    well: tuple[Tensor, ...],
    ill: tuple[Tensor, ...],
    precondition_p: Tensor,
    precondition_h: Tensor,
) -> list[Tensor]:
    """``∇ task + λ_P P_P(∇R_well) + λ_H P_H(∇R_ill)`` on θ (P per ``config.preconditioner``),
    unpreconditioned on b, ``∇ task`` alone on ω."""

    def apply(matrix: Tensor, gradient: Tensor) -> Tensor:
        if config.preconditioner == "input":
            return matrix @ gradient
        if config.preconditioner == "output":
            return gradient @ matrix
        return gradient

    theta = (
        task[0]
        + config.well_weight * apply(precondition_p, well[0])
        + config.ill_weight * apply(precondition_h, ill[0])
    )
    grads = [theta]
    if config.bias:
        grads.append(task[1] + config.well_weight * well[1] + config.ill_weight * ill[1])
    grads.append(task[-1])
    return grads
