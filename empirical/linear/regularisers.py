"""Zheng et al.'s two regularisers in torch (differentiable), restating ``theory.quadratic``.

``R_well(S) = ½σ_max² − (1/2p)‖S‖_F²`` (their Eq. (3), Nenov et al. 2024; p = min(rows, cols))
and ``R_ill(S) = 1/((1/2k)‖S‖_F² − ½σ_min²)`` (their Eq. (12); k and σ_min as
``theory.quadratic.ill_conditioning_regularizer`` with the same ``rule`` and ``divisor``).
``theory.quadratic`` holds the formulas (numpy, not differentiable); tests tie these to them on
random and rank-deficient matrices.
"""

from __future__ import annotations

import torch
from torch import Tensor

from theory.quadratic import PAPER_SHIFT, IllDivisor, KappaRule


def well_conditioning(matrix: Tensor) -> Tensor:
    """R_well(S) = ½σ_max² − (1/2p)Σσ_i², differentiable (``theory.quadratic``'s)."""
    sigma: Tensor = torch.linalg.svdvals(matrix)
    value: Tensor = 0.5 * sigma[0] ** 2 - (sigma**2).sum() / (2 * sigma.numel())
    return value


def nonzero_singular_values(
    matrix: Tensor, rule: KappaRule = "pinv", shift: float = PAPER_SHIFT
) -> Tensor:
    """The singular values ``rule`` counts as nonzero (``theory.quadratic``'s
    ``nonzero_singular_values``), differentiable, in no particular order. ``"paper"`` needs a
    symmetric S (a Gram matrix): the eigenvalues of ``S + δI`` above δ, minus δ."""
    if rule == "pinv":
        sigma: Tensor = torch.linalg.svdvals(matrix)
        tolerance = max(matrix.shape) * torch.finfo(matrix.dtype).eps * sigma[0].detach()
        return sigma[sigma > tolerance]
    identity = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    shifted: Tensor = torch.linalg.eigvalsh((matrix + matrix.T) / 2 + shift * identity)
    return (shifted[shifted > shift] - shift).abs()


def ill_conditioning(
    matrix: Tensor,
    rule: KappaRule = "pinv",
    divisor: IllDivisor = "rank",
    shift: float = PAPER_SHIFT,
) -> Tensor:
    """R_ill(S) = 1/((1/2k)Σσ_i² − ½σ_min²) over the nonzero σ_i, differentiable."""
    sigma = nonzero_singular_values(matrix, rule, shift)
    k = sigma.numel() if divisor == "rank" else min(matrix.shape)
    value: Tensor = 1.0 / ((sigma**2).sum() / (2 * k) - 0.5 * sigma.min() ** 2)
    return value


def normalized_gram(features: Tensor) -> Tensor:
    """G = FᵀF/m of features F (m, d), divided by its mean eigenvalue tr(G)/d."""
    gram = features.T @ features / features.shape[0]
    return gram * (gram.shape[0] / torch.trace(gram))
