"""The per-token losses and the MMD the defences are built from."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from empirical.defences.losses import (
    differing_token_mask,
    gaussian_mmd,
    masked_mean,
    token_cross_entropy,
    token_entropy,
)
from theory.errors import HftaInputError

Mmd = Callable[[Tensor, Tensor, Sequence[float]], Tensor]


def _wrong_mmd(first: Tensor, second: Tensor, bandwidths: Sequence[float]) -> Tensor:
    """Negative control: the cross term added instead of subtracted."""
    joint = torch.cat([first, second])
    kernel = sum(torch.exp(-(torch.cdist(joint, joint) ** 2) / (2 * b * b)) for b in bandwidths)
    assert isinstance(kernel, Tensor)
    m = first.shape[0]
    return kernel[:m, :m].mean() + kernel[m:, m:].mean() + 2.0 * kernel[:m, m:].mean()


def _mmd_properties(mmd: Mmd, seed: int, shift: float) -> None:
    """MMD² of a sample with itself is 0; it is ≥ 0, symmetric, and grows with a mean shift."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 3, generator=generator)
    y = torch.randn(40, 3, generator=generator)
    bandwidths = (0.5, 1.0, 2.0)
    assert float(mmd(x, x, bandwidths)) == pytest.approx(0.0, abs=1e-6)
    assert float(mmd(x, y, bandwidths)) >= -1e-6
    assert float(mmd(x, y, bandwidths)) == pytest.approx(float(mmd(y, x, bandwidths)), abs=1e-6)
    assert float(mmd(x, y + shift, bandwidths)) > float(mmd(x, y, bandwidths))


@given(seed=st.integers(0, 10_000), shift=st.floats(2.0, 5.0))
def test_gaussian_mmd_is_a_discrepancy(seed: int, shift: float) -> None:
    _mmd_properties(gaussian_mmd, seed, shift)


@pytest.mark.negative_control
def test_wrong_mmd_is_caught() -> None:
    with pytest.raises(AssertionError):
        _mmd_properties(_wrong_mmd, 0, 3.0)


def test_gaussian_mmd_matches_its_definition_on_two_points() -> None:
    x = torch.tensor([[0.0, 0.0]])
    y = torch.tensor([[3.0, 4.0]])  # ‖x − y‖² = 25
    expected = 2.0 - 2.0 * torch.exp(torch.tensor(-25.0 / 2.0))
    assert float(gaussian_mmd(x, y, [1.0])) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(HftaInputError, match="bandwidths"):
        gaussian_mmd(x, y, [0.0])
    with pytest.raises(HftaInputError, match="samples"):
        gaussian_mmd(x, torch.zeros(1, 3), [1.0])


def test_differing_mask_keeps_only_tokens_unlike_the_refusal() -> None:
    # prompt of 2 tokens (-100), then the response; refusal "7 8 9", harmful "7 5 9 6"
    harmful = torch.tensor([[-100, -100, 7, 5, 9, 6]])
    refusal = torch.tensor([[-100, -100, 7, 8, 9]])
    mask = differing_token_mask(harmful, refusal)
    # targets are labels[:, 1:] = [-100, 7, 5, 9, 6]: 7 and 9 agree, 5 differs, 6 is beyond
    assert mask.tolist() == [[False, False, True, False, True]]


def test_token_losses_are_masked_means() -> None:
    logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens
    labels = torch.tensor([[-100, 2, 3]])
    losses, mask = token_cross_entropy(logits, labels)
    assert mask.tolist() == [[True, True]]
    assert float(masked_mean(losses, mask)) == pytest.approx(float(torch.log(torch.tensor(4.0))))
    entropy, _ = token_entropy(logits, labels)
    assert float(masked_mean(entropy, mask)) == pytest.approx(float(torch.log(torch.tensor(4.0))))
    with pytest.raises(HftaInputError, match="no supervised"):
        masked_mean(losses, torch.zeros_like(mask))
