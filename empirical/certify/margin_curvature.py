r"""Second-order and joint constants of the harm proxies on the reachable ball (T11 (iv)-(vi)).

The first-order margins and Lipschitz estimates, and the helpers shared here
(``ball_points``, ``harm_counted``), are in ``empirical.certify.margins``.

Second order and jointly (``estimate_curvature``, T11 (iv)-(v), what ``empirical.verify.predict``
uses). Per example i the supervised tokens with m_ik(θ_0) ≤ 0 are summed into one smooth
function D_i(θ) = Σ_k (logit_{y_ik} − logit_{j_ik})(θ), j_ik the strongest competitor at θ_0
(fixed): m_ik ≤ d_ik, so example i is harmful only where D_i > 0, and D_i(θ_0) = −a_i with the
deficit a_i = Σ_k −m_ik(θ_0). Its gradient g_i at θ_0 is exact (one ``grad`` per example,
``vmap``-ed: one backward pass per example instead of one per token); the Gram matrix of the
g_i gives U_k (``gram_sum_bound``). The curvature bound β_i is estimated as the largest secant
‖∇D_i(θ) − g_i‖/‖θ − θ_0‖ over points θ of the ball B(θ_0, ρ):

* θ_0 ± ρ v_j for the ``directions`` leading right-singular vectors v_j of the matrix of the
  g_i (the directions that move the margins most, where an attacker gains harm first: on the
  demo's M* the median secant was 23 over uniform points of B(θ_0, 1.4), about 330-370 along
  the leading directions, and about 415 implied along a clipped-SGD attack's path at its
  break, so uniform points alone gave radii the attack beat);
* ``random_points`` points uniform in the ball (as for the Lipschitz estimates above).

ρ is the smallest ball that matters: the first-order flip radius (β = 0), which bounds the
second-order one from above, capped at the largest reachable radius; the certificate is
stated only up to ρ. Cost on the demo's 200 prompts: 4.0-4.5 CPU seconds against 14.6-16.5
for ``estimate_margins`` at 8 points (paired in one process, ``time.process_time``, machine
shared). The β_i remain *estimates* (a maximum over sampled points, no bound on
the supremum), and the prediction built on them a prediction, not a certificate.

Sampled harm (``estimate_loss_curvature``, T11 (vi) with T10): the same procedure for each
harmful example's sequence cross-entropy CE_i (summed over the response and its EOS, as
``sampled_harm`` scores it): CE_i at θ_0, its exact gradient, curvature bounds as above on the
ball up to the first-order radius where T10's cap on the sampled harm reaches φ.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from empirical.certify.independent import order_statistic_confidence
from empirical.certify.margins import _unflatten, ball_points, harm_counted, scoring_start
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from torch import Tensor, nn
    from transformers import PreTrainedTokenizerBase

    from empirical.datasets.data import Example

__all__ = [
    "CurvatureEstimate",
    "EstimatedCurvatures",
    "LossCurvatureEstimate",
    "estimate_curvature",
    "estimate_loss_curvature",
]


# --------------------------------------------------------------------------- second order
class EstimatedCurvatures(BaseModel):
    """What T11 (iv)-(vi)'s estimates share: per example whether the proxy counts it and the
    exact gradient norm at θ_0 with its curvature bound estimated on B(θ_0, ``ball``) (from
    ``directions`` singular directions and ``random_points`` uniform points, ``seed``, in
    ``dimension`` parameters), φ, the reachable radius, and how they were estimated;
    ``is_estimate`` is always True."""

    model_config = ConfigDict(frozen=True)

    examples: int
    counted: list[bool]
    gradient_norms: list[float]
    curvatures: list[float]
    phi: float
    ball: float
    radius: float
    directions: int
    random_points: int
    seed: int
    dimension: int
    method: str
    confidence: str
    is_estimate: Literal[True] = True
    note: str
    seconds: float


class CurvatureEstimate(EstimatedCurvatures):
    """T11 (iv)-(v) constants of every candidate example (counted, not harmful at θ_0): its
    deficit a_i, the exact gradient norm ‖g_i‖ at θ_0, the estimated curvature bound β_i on
    B(θ_0, ``ball``), and the Gram matrix of the g_i (module docstring). ``phi`` fixes how
    many examples must turn harmful (``needed``); ``is_estimate`` is always True."""

    harmful_at_start: int
    candidates: list[int]
    deficits: list[float]
    gram: list[list[float]]

    def needed(self) -> int:
        """k = ⌈φ n⌉ − (examples harmful at θ_0): how many candidates must turn harmful."""
        return math.ceil(self.phi * self.examples - 1e-12) - self.harmful_at_start

    def flip_radius(self) -> float:
        """theory's ``flip_radius`` for ``needed`` examples, stated up to ``ball`` (the
        curvatures hold there only): below it f < φ."""
        from theory.theorems.harm_radius import flip_radius

        k = self.needed()
        if k <= 0:
            return 0.0
        if k > len(self.candidates):
            return math.inf
        return min(flip_radius(self.deficits, self.gram, self.curvatures, k), self.ball)

    def ceiling(self, radius: float) -> float:
        """A harm ceiling over B(θ_0, ``radius``): theory's ``harm_ceiling`` of ``radii``,
        and (h_0 + k − 1)/n where ``radius`` ≤ ``flip_radius`` (fewer than k flip)."""
        from theory.theorems.harm_radius import harm_ceiling

        union = harm_ceiling(self.radius_values(), radius)
        if radius <= self.flip_radius() and self.needed() >= 1:
            return min(union, (self.harmful_at_start + self.needed() - 1) / self.examples)
        return union

    def radii(self) -> list[float | None]:
        """Per example: theory's ``curvature_radius`` capped at ``ball`` (0 for an example
        harmful at θ_0, None = ∞ for one the proxy never counts)."""
        from theory.theorems.harm_radius import curvature_radius

        radii: list[float | None] = [None if not c else 0.0 for c in self.counted]
        for index, a, g, beta in zip(
            self.candidates, self.deficits, self.gradient_norms, self.curvatures, strict=True
        ):
            radii[index] = min(curvature_radius(a, g, beta), self.ball)
        return radii

    def radius_values(self) -> list[float]:
        """``radii`` with None read as ``math.inf`` (for theory's ``harm_ceiling``)."""
        return [math.inf if r is None else r for r in self.radii()]

    def scaled(self, factor: float) -> CurvatureEstimate:
        """Every gradient and curvature constant ×``factor`` (the Gram matrix ×factor², the
        ball ÷factor up to ``radius``, as the first-order radius would scale): a negative
        control with deliberately wrong constants."""
        return self.model_copy(
            update={
                "ball": max(self.ball, min(self.radius, self.ball / factor)),
                "gradient_norms": [g * factor for g in self.gradient_norms],
                "curvatures": [b * factor for b in self.curvatures],
                "gram": [[v * factor**2 for v in row] for row in self.gram],
                "note": f"{self.note} (constants x{factor:g})",
            }
        )

    def without_remainder(self) -> CurvatureEstimate:
        """β_i = 0 (the Taylor remainder dropped): the first-order prediction, a negative
        control."""
        return self.model_copy(
            update={
                "curvatures": [0.0] * len(self.curvatures),
                "note": f"{self.note} (remainder dropped)",
            }
        )


def _combined_margin(
    model: nn.Module,
    params: dict[str, Tensor],
    ids: Tensor,
    targets: Tensor,
    competitors: Tensor,
    weights: Tensor,
) -> Tensor:
    """D_i(θ) = Σ_k w_k (logit_{y_k} − logit_{j_k}) for one sequence (competitors j_k fixed)."""
    from torch.func import functional_call

    mask = ids.new_ones((1, ids.shape[0]))
    logits: Tensor = functional_call(model, params, (ids[None],), {"attention_mask": mask}).logits
    rows = logits[0, :-1, :]
    own = rows.gather(1, targets.clamp(min=0)[:, None])[:, 0]
    other = rows.gather(1, competitors[:, None])[:, 0]
    return (weights * (own - other)).sum()


def _sequence_loss(
    model: nn.Module, params: dict[str, Tensor], ids: Tensor, targets: Tensor
) -> Tensor:
    """CE_i: the summed cross-entropy of one sequence's supervised tokens (targets −100 skipped)."""
    from torch.func import functional_call

    mask = ids.new_ones((1, ids.shape[0]))
    logits: Tensor = functional_call(model, params, (ids[None],), {"attention_mask": mask}).logits
    logp = logits[0, :-1, :].log_softmax(dim=-1)
    picked = logp.gather(1, targets.clamp(min=0)[:, None])[:, 0]
    return -(picked * (targets >= 0).to(picked.dtype)).sum()


def _per_example_gradients(
    function: Callable[..., Tensor],
    params: dict[str, Tensor],
    tensors: tuple[Tensor, ...],
    chunk: int = 50,
) -> Tensor:
    """∇_θ ``function(params, *row)`` at ``params``, one row per example (flattened over the
    trainable parameters): ``torch.func.grad`` per example, ``vmap``-ed over ``chunk``."""
    import torch
    from torch.func import grad, vmap

    per_example = vmap(grad(function), in_dims=(None, *(0 for _ in tensors)))
    rows = []
    for s in range(0, tensors[0].shape[0], chunk):
        part = per_example(params, *(t[s : s + chunk] for t in tensors))
        rows.append(torch.cat([g.reshape(g.shape[0], -1) for g in part.values()], dim=1))
    return torch.cat(rows).detach()


def combined_gradients(
    model: nn.Module,
    params: dict[str, Tensor],
    tensors: tuple[Tensor, Tensor, Tensor, Tensor],
    chunk: int = 50,
) -> Tensor:
    """∇_θ D_i at ``params``, one row per example (ids, targets, competitors, weights)."""

    def one(p: dict[str, Tensor], i: Tensor, t: Tensor, c: Tensor, w: Tensor) -> Tensor:
        return _combined_margin(model, p, i, t, c, w)

    return _per_example_gradients(one, params, tensors, chunk)


def _curvature_bounds(
    gradients_at: Callable[[dict[str, Tensor]], Tensor],
    base: dict[str, Tensor],
    center: Tensor,
    at_start: Tensor,
    ball: float,
    sampling: tuple[int, int, int],
) -> Tensor:
    """β_i: the largest secant ‖∇(θ) − ∇(θ_0)‖/‖θ − θ_0‖ over θ_0 ± ρ v_j and uniform points
    of B(θ_0, ρ) (``sampling`` = directions, random points, seed; module docstring)."""
    import torch

    directions, random_points, seed = sampling
    curvatures = torch.zeros(at_start.shape[0], dtype=torch.float64, device=at_start.device)
    if at_start.shape[0] == 0 or ball <= 0.0:
        return curvatures
    points = _directed_points(center, at_start, ball, directions)
    if random_points:
        points += ball_points(center, ball, random_points, seed)[1:]
    for point in points:
        distance = float(torch.linalg.vector_norm((point - center).double()))
        if distance == 0.0:
            continue
        moved = gradients_at(_unflatten(point, base))
        secant = torch.linalg.vector_norm((moved - at_start).double(), dim=1) / distance
        curvatures = torch.maximum(curvatures, secant)
    return curvatures


def _directed_points(
    center: Tensor, gradients: Tensor, radius: float, directions: int
) -> list[Tensor]:
    """θ_0 ± ``radius`` v_j for the ``directions`` leading right-singular vectors v_j of
    ``gradients`` (from the eigenvectors of its Gram matrix: v_j ∝ Gᵀ u_j)."""
    import torch

    if directions < 1 or gradients.shape[0] == 0:
        return []
    gram = gradients.double() @ gradients.double().T
    _, vectors = torch.linalg.eigh(gram)
    points = []
    for j in range(min(directions, gradients.shape[0])):
        v = gradients.double().T @ vectors[:, -1 - j]
        norm = torch.linalg.vector_norm(v)
        if float(norm) == 0.0:
            continue
        step = (radius * v / norm).to(center.dtype)
        points += [center + step, center - step]
    return points


def _check_inputs(
    examples: Sequence[Example], radius: float, phi: float, directions: int, random_points: int
) -> None:
    """Raise ``HftaInputError`` for no examples, a bad radius, φ or number of points."""
    if not examples:
        raise HftaInputError("curvature: no evaluation examples")
    if not (math.isfinite(radius) and radius >= 0.0) or not 0.0 < phi <= 1.0:
        raise HftaInputError(f"need a finite radius >= 0 and 0 < phi <= 1, got {radius}, {phi}")
    if directions < 0 or random_points < 0 or directions + random_points < 1:
        raise HftaInputError(
            f"need directions, random_points >= 0, one at least, got {directions}, {random_points}"
        )


def _ball_record(
    gradients: str,
    examples: Sequence[Example],
    counted: list[bool],
    ball: tuple[float, float, float],
    sampling: tuple[int, int, int],
    center: Tensor,
    started: float,
) -> dict[str, Any]:
    """The fields ``CurvatureEstimate`` and ``LossCurvatureEstimate`` share: ``ball`` = (φ,
    ρ, R), ``sampling`` = (directions, random points, seed), the confidence of the secants of
    the ``gradients`` ("margin" or "loss") and the seconds since ``started``."""
    phi, rho, radius = ball
    directions, random_points, seed = sampling
    confidence = (
        f"max over 2 x {directions} points theta_0 +- rho v_j (leading singular directions of "
        f"the {gradients} gradients) and {random_points} uniform samples of B(theta_0, rho): "
        f"the uniform part exceeds the q-quantile of each secant over the ball with probability "
        f"1 - q^{random_points} ({order_statistic_confidence(max(random_points, 1), 0.9):.2f} "
        "for q = 0.9); no bound on the supremum"
    )
    return {
        "examples": len(examples),
        "counted": counted,
        "phi": phi,
        "ball": rho,
        "radius": radius,
        "directions": directions,
        "random_points": random_points,
        "seed": seed,
        "dimension": int(center.numel()),
        "confidence": confidence,
        "note": "curvatures estimated on points the attack did not produce, not a certificate",
        "seconds": time.perf_counter() - started,
    }


def estimate_curvature(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    *,
    radius: float,
    phi: float,
    directions: int = 2,
    random_points: int = 4,
    seed: int = 0,
    refusal: str | None = None,
) -> CurvatureEstimate:
    """Deficits, exact gradients at θ_0, their Gram matrix and curvature bounds estimated on
    B(θ_0, ρ) with ρ the first-order flip radius capped at ``radius`` (module docstring).
    Every parameter of ``model`` is taken as trainable (full fine-tuning).

    Raises:
        HftaInputError: no examples, a bad radius, φ or number of points, a response that
            does not fit the model's context.
    """
    import torch

    from empirical.datasets.text import IGNORE_INDEX
    from empirical.measurement.hvp import evaluation_mode
    from theory.theorems.harm_radius import flip_radius

    _check_inputs(examples, radius, phi, directions, random_points)
    started = time.perf_counter()
    input_ids, targets, base, center = scoring_start(model, tokenizer, examples)
    supervised = targets != IGNORE_INDEX
    counted = harm_counted(examples, refusal)
    with evaluation_mode(model):
        with torch.no_grad():
            logits = torch.func.vmap(
                lambda ids: torch.func.functional_call(
                    model, base, (ids[None],), {"attention_mask": ids.new_ones((1, ids.shape[0]))}
                ).logits[0, :-1, :]
            )(input_ids)
        index = targets.clamp(min=0)[..., None]
        competitors = logits.scatter(2, index, float("-inf")).argmax(dim=2)
        margins = logits.gather(2, index)[..., 0] - logits.gather(2, competitors[..., None])[..., 0]
        short = (margins <= 0) & supervised
        harmful = [keep and not bool(short[i].any()) for i, keep in enumerate(counted)]
        candidates = [i for i, keep in enumerate(counted) if keep and not harmful[i]]
        weights = short.to(margins.dtype)
        chosen = torch.tensor(candidates, dtype=torch.long)
        tensors = (input_ids[chosen], targets[chosen], competitors[chosen], weights[chosen])
        deficits = (-(margins * weights).sum(dim=1))[chosen].clamp(min=0.0).tolist()
        at_start = (
            combined_gradients(model, base, tensors)
            if candidates
            else center.new_zeros((0, center.numel()))
        )
        gram = (at_start.double() @ at_start.double().T).cpu().numpy()
        k = math.ceil(phi * len(examples) - 1e-12) - sum(harmful)
        zero = [0.0] * len(candidates)
        first_order = (
            flip_radius(deficits, gram, zero, k) if 0 < k <= len(candidates) else math.inf
        )
        ball = min(radius, first_order)
        curvatures = _curvature_bounds(
            lambda p: combined_gradients(model, p, tensors), base, center, at_start, ball,
            (directions, random_points, seed),
        )
    return CurvatureEstimate(
        **_ball_record(
            "margin", examples, counted, (phi, ball, radius), (directions, random_points, seed),
            center, started,
        ),
        harmful_at_start=sum(harmful),
        candidates=candidates,
        deficits=deficits,
        gradient_norms=torch.linalg.vector_norm(at_start.double(), dim=1).tolist(),
        curvatures=curvatures.tolist(),
        gram=gram.tolist(),
        method=(
            "T11 (iv)-(v): per example the tokens with a margin <= 0 summed (competitor fixed "
            "at theta_0), exact gradients at theta_0 (torch.func grad per example), their Gram "
            "matrix, curvature as the largest gradient secant over theta_0 +- rho v_j and "
            f"uniform points of B(theta_0, rho = {ball:.4g}), rho the first-order flip radius "
            f"capped at R = {radius:.4g} (theory's path-length bound at the budget)"
        ),
    )


# --------------------------------------------------------------------------- sampled harm
#: the floor given to an example the proxy never counts: exp(−floor) is 0
NEVER_COUNTED_LOSS = 1e300


class LossCurvatureEstimate(EstimatedCurvatures):
    """T11 (vi) constants for ``sampled_harm``: per example CE_i at θ_0 (``NEVER_COUNTED_LOSS``
    for one the proxy never counts), the exact gradient norm of CE_i at θ_0 and its curvature
    bound estimated on B(θ_0, ``ball``) (module docstring); ``is_estimate`` is always True."""

    losses: list[float]

    def flip_radius(self) -> float:
        """theory's ``sampled_radius`` (the cap on f_s stays < φ below it), up to ``ball``."""
        from theory.theorems.harm_radius import sampled_radius

        found = sampled_radius(self.losses, self.gradient_norms, self.curvatures, self.phi)
        return min(found, self.ball)

    def ceiling(self, radius: float) -> float:
        """T10's cap on the sampled harm over B(θ_0, ``radius``) (theory's ``sampled_ceiling``)."""
        from theory.theorems.harm_radius import sampled_ceiling

        return sampled_ceiling(self.losses, self.gradient_norms, self.curvatures, radius)

    def radii(self) -> list[float | None]:
        """Per counted example the distance at which its floor reaches 0 (its probability cap
        1; theory's ``curvature_radius`` of CE_i), capped at ``ball``; None for the others."""
        from theory.theorems.harm_radius import curvature_radius

        return [
            min(curvature_radius(ce, g, b), self.ball) if keep else None
            for keep, ce, g, b in zip(
                self.counted, self.losses, self.gradient_norms, self.curvatures, strict=True
            )
        ]

    def scaled(self, factor: float) -> LossCurvatureEstimate:
        """Gradient norms and curvatures ×``factor``, the ball ÷factor up to ``radius``: a
        negative control with deliberately wrong constants."""
        return self.model_copy(
            update={
                "ball": max(self.ball, min(self.radius, self.ball / factor)),
                "gradient_norms": [g * factor for g in self.gradient_norms],
                "curvatures": [b * factor for b in self.curvatures],
                "note": f"{self.note} (constants x{factor:g})",
            }
        )


def estimate_loss_curvature(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    *,
    radius: float,
    phi: float,
    directions: int = 2,
    random_points: int = 4,
    seed: int = 0,
    refusal: str | None = None,
) -> LossCurvatureEstimate:
    """CE_i at θ_0, their exact gradients and curvature bounds on B(θ_0, ρ), ρ the
    first-order radius of T11 (vi) capped at ``radius`` (module docstring).

    Raises:
        HftaInputError: no examples, a bad radius, φ or number of points, a response that
            does not fit the model's context.
    """
    import torch

    from empirical.measurement.hvp import evaluation_mode
    from theory.theorems.harm_radius import sampled_radius

    _check_inputs(examples, radius, phi, directions, random_points)
    started = time.perf_counter()
    input_ids, targets, base, center = scoring_start(model, tokenizer, examples)
    counted = harm_counted(examples, refusal)
    chosen = torch.tensor([i for i, keep in enumerate(counted) if keep], dtype=torch.long)
    tensors = (input_ids[chosen], targets[chosen])

    def one(p: dict[str, Tensor], i: Tensor, t: Tensor) -> Tensor:
        return _sequence_loss(model, p, i, t)

    with evaluation_mode(model):
        if len(chosen):
            with torch.no_grad():
                values = torch.func.vmap(lambda i, t: one(base, i, t))(*tensors)
            at_start = _per_example_gradients(one, base, tensors)
        else:  # nothing the proxy counts: f_s = 0 everywhere
            values = center.new_zeros(0)
            at_start = center.new_zeros((0, center.numel()))
        norms = torch.linalg.vector_norm(at_start.double(), dim=1)
        every = [NEVER_COUNTED_LOSS] * (len(examples) - len(chosen))
        first_order = sampled_radius(
            [*values.tolist(), *every],
            [*norms.tolist(), *(0.0 for _ in every)],
            [0.0] * len(examples),
            phi,
        )
        ball = min(radius, first_order)
        curvatures = _curvature_bounds(
            lambda p: _per_example_gradients(one, p, tensors), base, center, at_start, ball,
            (directions, random_points, seed),
        )
    losses = [NEVER_COUNTED_LOSS] * len(examples)
    gradient_norms = [0.0] * len(examples)
    bounds = [0.0] * len(examples)
    for position, index in enumerate(chosen.tolist()):
        losses[index] = float(values[position])
        gradient_norms[index] = float(norms[position])
        bounds[index] = float(curvatures[position])
    return LossCurvatureEstimate(
        **_ball_record(
            "loss", examples, counted, (phi, ball, radius), (directions, random_points, seed),
            center, started,
        ),
        losses=losses,
        gradient_norms=gradient_norms,
        curvatures=bounds,
        method=(
            "T11 (vi) with T10: per example the sequence cross-entropy, its exact gradient at "
            "theta_0 (torch.func grad per example), curvature as the largest gradient secant "
            f"over theta_0 +- rho v_j and uniform points of B(theta_0, rho = {ball:.4g}), rho "
            f"the first-order radius capped at R = {radius:.4g}"
        ),
    )
