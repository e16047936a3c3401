"""Per-token losses the defences are built from (supervised fine-tuning form, torch).

A batch is ``empirical.datasets.text.encode``'s output: ``input_ids``, ``attention_mask`` and
``labels``
(``-100`` on the prompt and the padding). A causal LM predicts token ``j + 1`` at position ``j``,
so the supervised targets are ``labels[:, 1:]`` against ``logits[:, :-1]``:

* ``token_cross_entropy``: ℓ_ij = −log p(y_i,j+1 | x_i, y_i,≤j) and the mask of supervised
  targets;
* ``masked_mean``: Σ ℓ·m / Σ m, the token-weighted mean (the model's own causal-LM loss when
  ``m`` is the supervised mask);
* ``differing_token_mask``: the targets where a harmful answer and its paired refusal differ
  (Rosati et al. 2024's adversarial loss ascends only on those);
* ``token_entropy``: H_ij = −Σ_v p_v log p_v of the next-token distribution (TAR's
  tamper-resistance objective maximises it after a simulated attack);
* ``gaussian_mmd``: the squared maximum mean discrepancy with a Gaussian kernel (RepNoise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from empirical.datasets.text import IGNORE_INDEX
from theory.errors import HftaInputError


def shifted_targets(labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(targets, mask)``: ``labels[:, 1:]`` with −100 set to 0; ``labels[:, 1:] ≠ −100``."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    return targets.masked_fill(~mask, 0), mask


def logits_of(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """The model's logits ``(n, L, V)`` on ``input_ids`` / ``attention_mask`` (no labels)."""
    output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits: Tensor = output.logits
    return logits


def token_cross_entropy(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(ℓ, mask)``, both ``(n, L − 1)``: per-target cross-entropy (0 off the mask), the mask."""
    targets, mask = shifted_targets(labels)
    losses = nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2).float(), targets, reduction="none"
    )
    return losses * mask, mask


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """``Σ values·mask / Σ mask``; an empty mask is an error (it would be 0/0)."""
    count = mask.sum()
    if int(count) == 0:
        raise HftaInputError("no supervised tokens in the batch (every label is -100)")
    return (values * mask).sum() / count


def response_loss(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """Token-weighted mean cross-entropy of the responses (the SFT loss)."""
    losses, mask = token_cross_entropy(logits_of(model, batch), batch["labels"])
    return masked_mean(losses, mask)


def differing_token_mask(harmful_labels: Tensor, refusal_labels: Tensor) -> Tensor:
    """``(n, L_h − 1)`` bool: harmful targets whose token differs from the refusal's at the same
    position (a position the refusal does not reach counts as differing).

    Both label tensors come from the same prompts, so response position j is the same sequence
    position in both (``empirical.datasets.text.encode`` appends the response right after the
    prompt).
    """
    harmful_targets, harmful_mask = shifted_targets(harmful_labels)
    refusal_targets, refusal_mask = shifted_targets(refusal_labels)
    width = harmful_targets.shape[1]
    shared = min(width, refusal_targets.shape[1])
    same = torch.zeros_like(harmful_mask)
    same[:, :shared] = refusal_mask[:, :shared] & (
        refusal_targets[:, :shared] == harmful_targets[:, :shared]
    )
    return harmful_mask & ~same


def token_entropy(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``(H, mask)``: entropy (nats) of each next-token distribution at the supervised targets."""
    _, mask = shifted_targets(labels)
    log_probabilities = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    entropy = -(log_probabilities.exp() * log_probabilities).sum(dim=-1)
    return entropy * mask, mask


def gaussian_mmd(first: Tensor, second: Tensor, bandwidths: Sequence[float]) -> Tensor:
    """Squared MMD between samples ``first`` (m, d) and ``second`` (n, d), biased V-statistic:

        MMD² = mean k(x, x') + mean k(y, y') − 2 mean k(x, y),
        k(x, y) = Σ_σ exp(−‖x − y‖² / (2σ²))  (one Gaussian kernel per bandwidth σ),

    Gretton, Borgwardt, Rasch, Schölkopf, Smola, "A Kernel Two-Sample Test" (JMLR 2012), eq. 5.
    It is ≥ 0 and 0 when the two samples coincide; a characteristic kernel makes the population
    MMD zero only for equal distributions.
    """
    if first.ndim != 2 or second.ndim != 2 or first.shape[1] != second.shape[1]:
        raise HftaInputError(
            f"gaussian_mmd: samples must be (m, d) and (n, d), got {tuple(first.shape)} and "
            f"{tuple(second.shape)}"
        )
    if not bandwidths or any(not b > 0 for b in bandwidths):
        raise HftaInputError(f"gaussian_mmd: bandwidths must be positive, got {bandwidths}")
    joint = torch.cat([first, second]).float()
    distances = torch.cdist(joint, joint).pow(2)
    kernel = sum(torch.exp(-distances / (2.0 * b * b)) for b in bandwidths)
    assert isinstance(kernel, Tensor)
    m = first.shape[0]
    return kernel[:m, :m].mean() + kernel[m:, m:].mean() - 2.0 * kernel[:m, m:].mean()
