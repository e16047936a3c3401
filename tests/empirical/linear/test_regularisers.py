"""empirical/linear/regularisers.py restates theory.quadratic's R_well and R_ill in torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import Tensor

from empirical.linear.regularisers import ill_conditioning, well_conditioning
from empirical.linear.regularisers import nonzero_singular_values as torch_nonzero
from theory.quadratic import (
    ill_conditioning_regularizer,
    nonzero_singular_values,
    well_conditioning_regularizer,
)

matrices = arrays(
    np.float64,
    st.tuples(st.integers(2, 6), st.integers(2, 6)),
    elements=st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False),
)


def _agrees(matrix: np.ndarray, torch_version: object, theory_version: object) -> bool:
    assert callable(torch_version) and callable(theory_version)
    expected = float(theory_version(matrix))
    return bool(
        float(torch_version(torch.as_tensor(matrix))) == pytest.approx(expected, rel=1e-7, abs=1e-9)
    )


def _spread(matrix: np.ndarray) -> float:
    sigma = np.linalg.svd(matrix, compute_uv=False)
    kept = sigma[sigma > max(matrix.shape) * np.finfo(float).eps * sigma[0]]
    return float(np.mean(kept**2) / 2 - kept[-1] ** 2 / 2) / float(np.mean(kept**2))


@given(matrices)
def test_torch_regularisers_restate_theory(matrix: np.ndarray) -> None:
    assert _agrees(matrix, well_conditioning, well_conditioning_regularizer)
    if np.linalg.norm(matrix) > 1e-6 and _spread(matrix) > 1e-6:  # away from R_ill = ∞
        # numpy and torch may round a zero singular value to either side of the rank
        # tolerance; compare where they agree on the rank (almost always).
        rank = nonzero_singular_values(matrix).size
        if rank == int(torch_nonzero(torch.as_tensor(matrix)).numel()):
            assert _agrees(matrix, ill_conditioning, ill_conditioning_regularizer)


@given(
    st.lists(st.floats(0.1, 10.0), min_size=2, max_size=5), st.integers(1, 3), st.integers(0, 99)
)
def test_torch_r_ill_on_rank_deficient_gram_matrices(
    values: list[float], zeros: int, seed: int
) -> None:
    """Gram matrices XᵀX with ``zeros`` zero eigenvalues, under every rule and divisor."""
    if max(values) - min(values) < 1e-3:
        values = [*values[:-1], values[-1] + 1.0]
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(values) + zeros,) * 2))
    spectrum = np.array([*values, *([0.0] * zeros)])
    gram = q @ np.diag(spectrum) @ q.T
    gram = (gram + gram.T) / 2
    tensor = torch.as_tensor(gram)
    for rule in ("pinv", "paper"):
        same_rank = nonzero_singular_values(gram, rule).size == int(
            torch_nonzero(tensor, rule).numel()
        )
        for divisor in ("rank", "dimension"):
            expected = ill_conditioning_regularizer(gram, rule=rule, divisor=divisor)
            value = float(ill_conditioning(tensor, rule, divisor))
            # The paper's absolute cutoff keeps a rounding eigenvalue of +1e-19 and drops one
            # of -1e-19; numpy and torch round differently, so compare where they kept the
            # same values (always, for the relative tolerance).
            if np.isfinite(expected) and (rule == "pinv" or same_rank):
                assert value == pytest.approx(expected, rel=1e-7)
        if rule == "pinv":
            assert same_rank


def _wrong_well(matrix: Tensor) -> Tensor:
    """Negative control: σ_min where R_well has σ_max."""
    sigma = torch.linalg.svdvals(matrix)
    value: Tensor = 0.5 * sigma[-1] ** 2 - (sigma**2).sum() / (2 * sigma.numel())
    return value


def _all_values_ill(matrix: Tensor) -> Tensor:
    """Negative control: R_ill over all singular values (zeros included)."""
    sigma = torch.linalg.svdvals(matrix)
    value: Tensor = 1.0 / ((sigma**2).mean() / 2 - sigma[-1] ** 2 / 2)
    return value


@pytest.mark.negative_control
def test_wrong_regularisers_disagree_with_theory() -> None:
    assert not _agrees(np.diag([3.0, 1.0, 0.5]), _wrong_well, well_conditioning_regularizer)
    assert not _agrees(np.diag([4.0, 1.0, 0.0]), _all_values_ill, ill_conditioning_regularizer)


def test_torch_r_ill_is_differentiable_on_a_rank_deficient_gram() -> None:
    features = torch.tensor(
        [[1.0, 0.0, 2.0], [0.0, 1.0, 0.0], [1.0, 1.0, 2.0]], dtype=torch.float64
    )
    theta = torch.eye(3, dtype=torch.float64, requires_grad=True)
    mapped = features @ theta
    value = ill_conditioning(mapped.T @ mapped)
    (gradient,) = torch.autograd.grad(value, theta)
    assert bool(torch.isfinite(gradient).all()) and float(gradient.abs().sum()) > 0
