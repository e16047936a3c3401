r"""Harm radii of a head-only attacker: per example, the distance from the released output head
W_0 to the closest head under which the example is exactly harmful (T11's r_i; the certificate
and its check are in empirical/certify/harm_radius.py, the theorem in
theory/theorems/harm_radius.py).

With the body frozen the logits at position p are W h_p (+ b), and example i is exact-harmful
iff (w_{y_p} − w_j)·h_p (+ b_{y_p} − b_j) > 0 for every supervised position p and token
j ≠ y_p. The closure of that polyhedron is convex, and

    r_i = min ‖W − W_0‖_F  subject to  every margin ≥ 0

is a convex QP (infeasible: r_i = ∞) whose value lower-bounds the distance at which example i
can become harmful.

Solving it fast. Only the span of the example's features matters: with Q an orthonormal basis
of span{h_p} (SVD of H, k × d, k supervised positions), an optimal W − W_0 is Z Qᵀ (a component
orthogonal to every h_p changes no logit and only adds norm), so ‖W − W_0‖_F = ‖Z‖_F and the
constraints read (z_j − z_{y_p})·(Qᵀh_p) ≤ m_p(j), m the logit margins at W_0: V × rank
unknowns instead of V × d, and nothing relaxed. Each example is then one least-distance
program, min ‖x‖ subject to A x ≤ b, solved exactly by Lawson & Hanson's active-set method
(*Solving Least Squares Problems*, 1974, ch. 23: LDP through one non-negative least squares
problem, ``scipy.optimize.nnls``, with E = [Aᵀ; bᵀ] and f = e_{n+1}). Its non-negative u is a
dual certificate: every x with A x ≤ b has uᵀA x ≤ uᵀb, so ‖x‖ ≥ −bᵀu / ‖Aᵀu‖ whenever
bᵀu < 0 (Cauchy–Schwarz), and that *lower bound* is the radius used, accepted when the
primal point it comes with is feasible and no more than ``GAP_TOLERANCE`` (relative) longer
(so the bound is the program's value, not merely below it). An example where it is not
(none on the embedded model) goes to the interior-point solver Clarabel through cvxpy, as all
examples did before (one sparse QP of every block: 2.1-2.4 CPU s per model of 200 examples;
the active-set solves of the same 200 blocks: 0.4-1.2 CPU s, radii equal to 8e-10 relative;
measured on the demo's M and M*, claims/demo.toml, the 2-core machine shared). The radii are
shrunk by ``SOLVER_SHRINK`` (relative) and ``SOLVER_ABSOLUTE`` for the solvers' tolerance and
rounding. An example whose features span nothing (rank 0) is harmful at every W or at none
(r_i = 0 or ∞); one in the closure at W_0 already has r_i = 0 without a solve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from theory.errors import HftaInputError

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from empirical.datasets.data import Example

__all__ = [
    "FEATURE_TOLERANCE",
    "GAP_TOLERANCE",
    "RANK_CUTOFF",
    "SOLVER_ABSOLUTE",
    "SOLVER_SHRINK",
    "HeadFeatures",
    "head_features",
    "head_radii",
    "radii_from_features",
]

FloatArray = npt.NDArray[np.float64]

#: relative shrink of every solved radius: the interior-point fallback's tolerance (1e-8) with room
SOLVER_SHRINK = 1e-6
#: absolute shrink of every solved radius (an interior-point optimum of 0 comes back as ~1e-9)
SOLVER_ABSOLUTE = 1e-7
#: singular values of H below this fraction of the largest are dropped (a direction with σ costs
#: ‖ΔW‖ ≥ Δlogit/σ: dropped ones matter only for radii beyond 1e10 / σ_max per unit of logit)
RANK_CUTOFF = 1e-10
#: how closely h_p W_0ᵀ must reproduce the model's logits (relative to the largest logit)
FEATURE_TOLERANCE = 1e-4
#: the active-set radius is accepted when its primal point is feasible to this (relative to the
#: largest |b|) and at most this much longer than the dual lower bound (relative); measured on
#: the embedded model's 400 programs: gaps ≤ 1e-14
GAP_TOLERANCE = 1e-9


@dataclass(frozen=True)
class HeadFeatures:
    """What the head-only QP needs, per example: the features H_i (k_i × d, float64) at the
    supervised positions, the target tokens y_i (k_i), whether the example can count as harm
    at all; and the head W_0 (V × d) with its bias (or None)."""

    features: tuple[FloatArray, ...]
    targets: tuple[npt.NDArray[np.int64], ...]
    countable: tuple[bool, ...]
    head: FloatArray
    bias: FloatArray | None

    def margins(self, index: int) -> FloatArray:
        """m_p(j) = logit_{y_p} − logit_j at W_0 (V × k): example ``index`` is harmful iff
        every entry with j ≠ y_p is > 0."""
        logits = self.head @ self.features[index].T
        if self.bias is not None:
            logits = logits + self.bias[:, None]
        y = self.targets[index]
        margins: FloatArray = logits[y, np.arange(y.size)][None, :] - logits
        return margins


def head_features(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    *,
    refusal: str | None = None,
) -> HeadFeatures:
    """One frozen teacher-forced pass (the very batches exact harm scores): the final hidden
    states at the supervised positions, checked to reproduce the logits through the head.

    Raises:
        HftaInputError: no examples, no linear output head, or features that do not
            reproduce the logits (the model's logits are not W h_p + b).
    """
    import torch

    from empirical.datasets.text import IGNORE_INDEX
    from empirical.measurement.proxies import context_length, encode_for_scoring, model_device

    if not examples:
        raise HftaInputError("head radii need at least one example")
    getter = getattr(model, "get_output_embeddings", None)
    head_module = getter() if callable(getter) else None
    if not isinstance(head_module, torch.nn.Linear):
        raise HftaInputError("head radii need a model with a linear output head")
    encoded = encode_for_scoring(
        tokenizer, examples, limit=context_length(model), device=model_device(model)
    )
    weight = head_module.weight.detach().double()
    bias = None if head_module.bias is None else head_module.bias.detach().double()
    features: list[FloatArray] = []
    targets: list[npt.NDArray[np.int64]] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in encoded.batches:
                out = model(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    output_hidden_states=True,
                )
                hidden = out.hidden_states[-1][:, :-1, :].double()
                logits = out.logits[:, :-1, :].double()
                rebuilt = hidden @ weight.T + (0.0 if bias is None else bias)
                scale = float(logits.abs().max()) + 1.0
                if float((rebuilt - logits).abs().max()) > FEATURE_TOLERANCE * scale:
                    raise HftaInputError(
                        "the model's logits are not its output head applied to its last hidden "
                        "states: head-only radii do not apply to this model"
                    )
                labels = batch["labels"][:, 1:]
                for row in range(labels.shape[0]):
                    supervised = labels[row] != IGNORE_INDEX
                    features.append(hidden[row][supervised].cpu().numpy())
                    targets.append(labels[row][supervised].cpu().numpy().astype(np.int64))
    finally:
        model.train(was_training)
    cleaned = None if refusal is None else refusal.strip()
    countable = tuple(
        not e.is_safe and (cleaned is None or e.response.strip() != cleaned) for e in examples
    )
    return HeadFeatures(
        features=tuple(features),
        targets=tuple(targets),
        countable=countable,
        head=weight.cpu().numpy(),
        bias=None if bias is None else bias.cpu().numpy(),
    )


@dataclass(frozen=True)
class _Block:
    """One example's QP block over the coordinates Z (V × rank) of W − W_0 = Z Qᵀ: minimise
    ‖Z‖²_F subject to ``constraints @ vec(Z) <= bound``."""

    size: int
    constraints: object  # scipy.sparse matrix
    bound: FloatArray


def _block(features: HeadFeatures, index: int) -> _Block:
    import scipy.sparse as sparse

    h, y = features.features[index], features.targets[index]
    vocabulary, k = features.head.shape[0], y.size
    _, singular, right = np.linalg.svd(h, full_matrices=False)
    keep = singular > RANK_CUTOFF * max(float(singular.max(initial=0.0)), 0.0)
    basis = right[keep].T  # d × rank, orthonormal: span{h_p}
    coordinates = h @ basis  # k × rank: h_p in that basis
    rank = basis.shape[1]
    margins = features.margins(index)
    j, p = np.meshgrid(np.arange(vocabulary), np.arange(k), indexing="ij")
    active = j != y[p]
    j, p = j[active], p[active]
    rows = np.repeat(np.arange(j.size), rank)
    columns = np.tile(np.arange(rank), j.size)
    values = coordinates[p].reshape(-1)
    constraints = sparse.csr_matrix(
        (
            np.concatenate([values, -values]),
            (
                np.concatenate([rows, rows]),
                np.concatenate(
                    [np.repeat(j, rank) * rank + columns, np.repeat(y[p], rank) * rank + columns]
                ),
            ),
        ),
        shape=(j.size, vocabulary * rank),
    )
    return _Block(vocabulary * rank, constraints, margins[j, p])


def _shrunk(radius: float) -> float:
    """A solved radius made safe for the solver's tolerance (relative and absolute)."""
    return max(0.0, radius * (1.0 - SOLVER_SHRINK) - SOLVER_ABSOLUTE)


def _least_distance(block: _Block) -> float | None:
    """The value of min ‖x‖ s.t. A x ≤ b (A = ``block.constraints``, b = ``block.bound``) as
    its dual lower bound −bᵀu / ‖Aᵀu‖ from Lawson & Hanson's LDP (module docstring), not shrunk;
    None when the active-set solve does not certify it (infeasible, a primal point that is not
    feasible, or a gap above ``GAP_TOLERANCE``): the caller then asks Clarabel."""
    from scipy.optimize import nnls

    a = np.asarray(block.constraints.toarray(), dtype=np.float64)  # type: ignore[attr-defined]
    b = block.bound
    e = np.vstack([-a.T, -b[None, :]])  # G x ≥ h with G = −A, h = −b: E = [Gᵀ; hᵀ]
    f = np.zeros(e.shape[0])
    f[-1] = 1.0
    try:
        u, _ = nnls(e, f, maxiter=10 * e.shape[1])
    except RuntimeError:  # pragma: no cover - the iteration limit; Clarabel decides
        return None
    residual = e @ u - f
    if not residual[-1] < 0.0:  # ‖Eu − f‖ = 0: the constraints are infeasible (or rounding)
        return None
    x = -residual[:-1] / residual[-1]
    scale = 1.0 + float(np.max(np.abs(b)))
    if float(np.max(a @ x - b)) > GAP_TOLERANCE * scale:
        return None
    bu, atu = float(b @ u), float(np.linalg.norm(a.T @ u))
    if not (bu < 0.0 and atu > 0.0):
        return None
    lower, upper = -bu / atu, float(np.linalg.norm(x))
    if upper - lower > GAP_TOLERANCE * upper:
        return None
    return lower


def _solve(blocks: Sequence[_Block]) -> list[float] | None:
    """Solve the blocks as one QP by Clarabel (the fallback of ``_least_distance``); their
    radii, or None when the joint problem is not solved to optimality."""
    import cvxpy as cp
    import scipy.sparse as sparse

    if len(blocks) == 1 and blocks[0].size == 0:  # no weight change moves these logits
        return [0.0 if bool(np.all(blocks[0].bound >= 0.0)) else math.inf]
    constraints = sparse.block_diag([b.constraints for b in blocks], format="csr")
    bound = np.concatenate([b.bound for b in blocks])
    x = cp.Variable(constraints.shape[1])
    squares = cp.sum_squares(x)  # type: ignore[attr-defined]
    problem = cp.Problem(cp.Minimize(squares), [constraints @ x <= bound])
    try:
        problem.solve(solver=cp.CLARABEL)  # type: ignore[no-untyped-call]
    except cp.SolverError:
        return None
    if problem.status != cp.OPTIMAL or x.value is None:
        if len(blocks) == 1 and problem.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
            return [math.inf]
        return None
    offsets = np.cumsum([0, *(b.size for b in blocks)])
    return [
        _shrunk(float(np.linalg.norm(x.value[offsets[i] : offsets[i + 1]])))
        for i in range(len(blocks))
    ]


def radii_from_features(features: HeadFeatures) -> list[float]:
    """r_i for every example (module docstring): ∞ for examples that never count as harm."""
    radii = [math.inf] * len(features.countable)
    indices = []
    for i, countable in enumerate(features.countable):
        if not countable:
            continue
        margins = features.margins(i)
        margins[features.targets[i], np.arange(features.targets[i].size)] = 0.0
        if bool(np.all(margins >= 0.0)):
            radii[i] = 0.0  # in the closure at W_0 already
        else:
            indices.append(i)
    if not indices:
        return radii
    for i in indices:
        block = _block(features, i)
        exact = _least_distance(block) if block.size else None
        if exact is not None:
            radii[i] = _shrunk(exact)
            continue
        single = _solve([block])
        if single is None:
            raise HftaInputError("the head-only radius QP could not be solved (Clarabel)")
        radii[i] = single[0]
    return radii


def head_radii(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    *,
    refusal: str | None = None,
) -> list[float]:
    """The harm radius r_i of every example for a head-only attacker (module docstring)."""
    return radii_from_features(head_features(model, tokenizer, examples, refusal=refusal))
