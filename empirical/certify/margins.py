r"""Margins of the exact-harm proxy at θ_0 and their Lipschitz estimates on the reachable ball.

``exact_harm`` (``empirical.measurement.proxies``) counts example i harmful iff, under teacher
forcing,
every supervised token k (the response tokens and the EOS) is the arg-max. With the margin

    m_ik(θ) = logit_{y_ik}(θ) − max_{j ≠ y_ik} logit_j(θ)

example i is harmful iff m_ik(θ) > 0 for every k. If m_ik is L_ik-Lipschitz on the ball
B(θ_0, R) the attack can reach, example i cannot be harmful at ‖θ − θ_0‖ < r_i with

    r_i = max_k max(0, −m_ik(θ_0)) / L_ik

(theory's T11, ``theory.theorems.harm_radius.margin_radius``: one negative margin must climb
to 0 and it cannot climb faster than L_ik per unit of distance; docs/theorems.md). The harm
at distance R is then at most the fraction of examples with r_i ≤ R (``harm_ceiling``), which
``empirical.verify.predict`` turns into certified minimum steps before any attack runs.

Estimation, honestly (as ``empirical.certify.independent``): L_ik is the largest norm of
∇_θ m_ik over θ_0 and ``points`` points drawn uniformly in B(θ_0, R) (direction Gaussian,
norm R·U^{1/d}, ``torch.Generator`` seed ``seed``), θ the attack's trainable parameters (all
of them: full fine-tuning). The maximum of k i.i.d. samples exceeds the q-quantile of the
sampled gradient norm over the ball with probability 1 − q^k
(``order_statistic_confidence``); it does *not* bound the supremum, so L_ik is an estimate,
not a certificate, and a measured break earlier than predicted reads "these constants do not
describe this run". A margin is a maximum of smooth functions, differentiable almost
everywhere; its gradient is the one torch takes at the arg-max.

Cost: the margins of one example are one forward pass; their gradients one ``jacrev`` of
that pass, batched over examples with ``torch.func.vmap`` (per example and per token, no
common per-position constant): about 1.4 s per point for the demo's 200 prompts on one CPU
thread (measured with ``time.perf_counter`` on the embedded model).

The second-order and joint estimates ``empirical.verify.predict`` uses (T11 (iv)-(vi)) are
in ``empirical.certify.margin_curvature``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from empirical.certify.independent import order_statistic_confidence
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from torch import Tensor, nn
    from transformers import PreTrainedTokenizerBase

    from empirical.datasets.data import Example

__all__ = [
    "MarginEstimate",
    "ball_points",
    "estimate_margins",
    "harm_counted",
    "margin_gradient_norms",
    "scoring_start",
    "token_margins",
]

#: How many examples one vmapped ``jacrev`` takes at a time (bounds the memory: chunk ×
#: tokens × trainable parameters floats).
CHUNK = 25


class MarginEstimate(BaseModel):
    """The margins of every evaluation example at θ_0, their Lipschitz estimates on
    B(θ_0, ``radius``) and the radii r_i below which example i cannot be harmful.

    ``margins[i]`` and ``lipschitz[i]`` are per supervised token of example i; ``radii[i]``
    is r_i, or None where it is ∞: an example the proxy never counts (``is_safe`` or the
    refusal), or a negative margin whose estimated Lipschitz constant is 0. ``is_estimate``
    is always True: the Lipschitz constants are sampled, not certified (module docstring).
    """

    model_config = ConfigDict(frozen=True)

    examples: int
    counted: list[bool]
    margins: list[list[float]]
    lipschitz: list[list[float]]
    radii: list[float | None]
    harmful_at_start: int
    radius: float
    points: int
    seed: int
    dimension: int
    method: str
    confidence: str
    is_estimate: Literal[True] = True
    note: str
    seconds: float

    def radius_values(self) -> list[float]:
        """``radii`` with None read as ``math.inf`` (for theory's ``harm_ceiling``)."""
        return [math.inf if r is None else r for r in self.radii]

    def scaled(self, lipschitz_factor: float) -> MarginEstimate:
        """The same margins with every L_ik multiplied by ``lipschitz_factor`` (the radii
        recomputed): a negative control with deliberately wrong constants."""
        lipschitz = [[value * lipschitz_factor for value in row] for row in self.lipschitz]
        radii = _radii(self.margins, lipschitz, self.counted)
        return self.model_copy(
            update={
                "lipschitz": lipschitz,
                "radii": radii,
                "note": f"{self.note} (Lipschitz x{lipschitz_factor:g})",
            }
        )


def harm_counted(examples: Sequence[Example], refusal: str | None = None) -> list[bool]:
    """Which examples ``exact_harm`` can count (not ``is_safe``, not the refusal text)."""
    wanted = None if refusal is None else refusal.strip()
    return [not e.is_safe and (wanted is None or e.response.strip() != wanted) for e in examples]


def _margins_of_one(
    model: nn.Module, params: dict[str, Tensor], ids: Tensor, targets: Tensor
) -> Tensor:
    """m_k for one sequence: the target logit minus the largest other logit, per position
    (targets −100 read as token 0; the caller masks them). The right padding of
    ``empirical.datasets.text.encode`` cannot change earlier logits of a causal model, so the
    sequence runs without its padding mask (all ones), as the greedy decoder does."""
    import torch
    from torch.func import functional_call

    mask = torch.ones_like(ids[None])
    output = functional_call(model, params, (ids[None],), {"attention_mask": mask})
    logits: Tensor = output.logits[0, :-1, :]
    index = targets.clamp(min=0)[:, None]
    own = logits.gather(1, index)[:, 0]
    other = logits.scatter(1, index, float("-inf")).max(dim=1).values
    return own - other


def token_margins(
    model: nn.Module, params: dict[str, Tensor], input_ids: Tensor, targets: Tensor
) -> Tensor:
    """m_ik at ``params`` for every example (rows) and position (columns, next-token
    targets ``labels[:, 1:]``), without gradients."""
    import torch
    from torch.func import vmap

    def one(ids: Tensor, tgt: Tensor) -> Tensor:
        return _margins_of_one(model, params, ids, tgt)

    with torch.no_grad():
        return vmap(one)(input_ids, targets)  # type: ignore[no-any-return]


def margin_gradient_norms(
    model: nn.Module,
    params: dict[str, Tensor],
    input_ids: Tensor,
    targets: Tensor,
    chunk: int = CHUNK,
) -> Tensor:
    """‖∇_θ m_ik‖ at ``params`` over every trainable parameter, per example and position
    (``jacrev`` per example, ``vmap`` over ``chunk`` examples at a time)."""
    import torch
    from torch.func import jacrev, vmap

    def norms(ids: Tensor, tgt: Tensor) -> Tensor:
        def margins(p: dict[str, Tensor]) -> Tensor:
            return _margins_of_one(model, p, ids, tgt)

        jacobian = jacrev(margins)(params)
        squares = [j.reshape(j.shape[0], -1).square().sum(dim=1) for j in jacobian.values()]
        return torch.stack(squares).sum(dim=0).sqrt()

    rows = [
        vmap(norms)(input_ids[s : s + chunk], targets[s : s + chunk])
        for s in range(0, input_ids.shape[0], chunk)
    ]
    return torch.cat(rows).detach()


def ball_points(center: Tensor, radius: float, points: int, seed: int) -> list[Tensor]:
    """θ_0 and ``points`` points uniform in B(θ_0, ``radius``): a Gaussian direction and the
    norm R·U^{1/d} (float64 draws, ``torch.Generator`` seed ``seed``)."""
    import torch

    if points < 1 or not (math.isfinite(radius) and radius >= 0.0):
        raise HftaInputError(f"need points >= 1 and a finite radius >= 0, got {points}, {radius}")
    generator = torch.Generator().manual_seed(seed)
    d = center.numel()
    sampled = [center]
    for _ in range(points):
        direction = torch.randn(d, generator=generator, dtype=torch.float64)
        direction /= torch.linalg.vector_norm(direction)
        u = float(torch.rand(1, generator=generator, dtype=torch.float64))
        step = (radius * u ** (1.0 / d) * direction).to(center.device, center.dtype)
        sampled.append(center + step)
    return sampled


def _radii(
    margins: Sequence[Sequence[float]],
    lipschitz: Sequence[Sequence[float]],
    counted: Sequence[bool],
) -> list[float | None]:
    from theory.theorems.harm_radius import margin_radius

    radii: list[float | None] = []
    for m, lip, keep in zip(margins, lipschitz, counted, strict=True):
        r = float(margin_radius(list(m), list(lip))) if keep else math.inf
        radii.append(None if math.isinf(r) else r)
    return radii


def _unflatten(vector: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    offset = 0
    for name, tensor in like.items():
        out[name] = vector[offset : offset + tensor.numel()].view_as(tensor)
        offset += tensor.numel()
    return out


def scoring_start(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example]
) -> tuple[Tensor, Tensor, dict[str, Tensor], Tensor]:
    """``examples`` encoded as one batch on the model's device (input ids, next-token targets
    ``labels[:, 1:]``), the trainable parameters at θ_0 (detached) and θ_0 flattened.

    Raises:
        HftaInputError: a response that does not fit the model's context.
    """
    import torch

    from empirical.measurement.proxies import context_length, encode_for_scoring, model_device

    encoded = encode_for_scoring(
        tokenizer, examples, limit=context_length(model), device=model_device(model),
        batch_size=len(examples),
    )
    (batch,) = encoded.batches
    base = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    center = torch.cat([p.reshape(-1) for p in base.values()])
    return batch["input_ids"], batch["labels"][:, 1:], base, center


def estimate_margins(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    *,
    radius: float,
    points: int = 8,
    seed: int = 0,
    refusal: str | None = None,
    chunk: int = CHUNK,
) -> MarginEstimate:
    """Margins at θ_0 (``model``'s weights), L_ik as the largest margin-gradient norm over
    θ_0 and ``points`` uniform points of B(θ_0, ``radius``), and the radii r_i (module
    docstring). Every parameter of ``model`` is taken as trainable (full fine-tuning).

    Raises:
        HftaInputError: no examples, a bad radius or number of points, a response that
            does not fit the model's context.
    """
    import torch

    from empirical.datasets.text import IGNORE_INDEX
    from empirical.measurement.hvp import evaluation_mode

    if not examples:
        raise HftaInputError("margins: no evaluation examples")
    started = time.perf_counter()
    input_ids, targets, base, center = scoring_start(model, tokenizer, examples)
    supervised = targets != IGNORE_INDEX
    with evaluation_mode(model):
        start_margins = token_margins(model, base, input_ids, targets)
        largest = torch.zeros_like(start_margins)
        for point in ball_points(center, radius, points, seed):
            norms = margin_gradient_norms(model, _unflatten(point, base), input_ids, targets, chunk)
            largest = torch.maximum(largest, norms)
    counted = harm_counted(examples, refusal)
    margins = [start_margins[i][supervised[i]].tolist() for i in range(len(examples))]
    lipschitz = [largest[i][supervised[i]].tolist() for i in range(len(examples))]
    harmful = sum(keep and min(m) > 0 for keep, m in zip(counted, margins, strict=True))
    confidence = (
        f"max of {points} uniform samples of B(theta_0, R) and theta_0: exceeds the q-quantile "
        f"of each margin-gradient norm over the ball with probability 1 - q^{points} "
        f"({order_statistic_confidence(points, 0.9):.2f} for q = 0.9); no bound on the supremum"
    )
    return MarginEstimate(
        examples=len(examples),
        counted=counted,
        margins=margins,
        lipschitz=lipschitz,
        radii=_radii(margins, lipschitz, counted),
        harmful_at_start=harmful,
        radius=radius,
        points=points,
        seed=seed,
        dimension=int(center.numel()),
        method=(
            "largest norm of the margin gradient (torch.func jacrev, per example and token) "
            f"over theta_0 and {points} points uniform in B(theta_0, R = {radius:.4g}), R from "
            "theory's path-length bound at the budget"
        ),
        confidence=confidence,
        note="an estimate on points the attack did not produce, not a certificate",
        seconds=time.perf_counter() - started,
    )
