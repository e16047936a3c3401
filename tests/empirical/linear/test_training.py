"""empirical/linear/training.py: the paper's loop as its code runs it, and the project variant."""

from __future__ import annotations

import numpy as np
import pytest

from empirical.linear import LinearTaskPair, configure, immunize_linear, synthetic_task_pair
from empirical.linear.tasks import digits_pair
from empirical.linear.training import PRESETS, steps_per_epoch
from theory.errors import HftaInputError
from theory.quadratic import FloatArray, condition_number


def test_paper_preset_is_the_papers_code() -> None:
    """configs/house_price.yaml and models/model.py of the paper's code (commit dc536a8)."""
    paper = configure("paper")
    assert (paper.optimizer, paper.learning_rate, paper.batch_size) == ("adam", 5e-3, 64)
    assert (paper.well_weight, paper.ill_weight) == (100.0, 1e7)
    assert (paper.pretraining_ridge, paper.harmful_ridge) == (1.0, 1.0)
    assert paper.bias and paper.init == "random" and paper.head_init == "random"
    assert (paper.gram, paper.task_loss, paper.ill_divisor) == ("sum", "mse", "dimension")
    assert (paper.kappa_rule, paper.preconditioner) == ("paper", "output")
    project = configure("project")
    assert project.variant == "project" and project.init == "identity" and not project.bias
    assert project.preconditioner == "input" and project.ill_divisor == "rank"
    assert set(PRESETS["project"]) < set(type(project).model_fields)


@pytest.mark.parametrize(
    ("variant", "changes", "message"),
    [
        ("nope", {}, "unknown variant"),
        ("paper", {"radius": 1}, "unknown hyperparameter 'radius'"),
        ("paper", {"learning_rate": -1.0}, "learning_rate"),
        ("paper", {"optimizer": "lbfgs"}, "optimizer"),
    ],
)
def test_configure_rejects_bad_values(
    variant: str, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(HftaInputError, match=message):
        configure(variant, **changes)


def test_mini_batches_epochs_and_progress() -> None:
    pair = digits_pair((0, 1), (2, 3))  # 360 rows per task: 5 batches of 64 per epoch
    assert steps_per_epoch(pair, 64) == 5 and steps_per_epoch(pair, None) == 1
    with pytest.raises(HftaInputError, match="larger than the smaller task"):
        steps_per_epoch(pair, 361)
    calls: list[tuple[int, int]] = []
    result = immunize_linear(pair, configure("paper", epochs=2), lambda d, t: calls.append((d, t)))
    assert len(result.curve) == 10 and calls == [(i, 10) for i in range(1, 11)]
    assert result.diverged_at is None and result.bias.shape == (64,)
    assert np.any(result.bias != 0.0)


def test_random_start_is_seeded() -> None:
    pair = synthetic_task_pair(dimension=4, samples=64, seed=1)
    first = immunize_linear(pair, configure("paper", epochs=1, seed=3))
    again = immunize_linear(pair, configure("paper", epochs=1, seed=3))
    other = immunize_linear(pair, configure("paper", epochs=1, seed=4))
    assert np.array_equal(first.extractor, again.extractor)
    assert not np.allclose(first.extractor, other.extractor)


def test_divergence_is_recorded_and_the_last_finite_iterate_kept() -> None:
    pair = synthetic_task_pair(dimension=4, samples=64, seed=2)
    result = immunize_linear(pair, configure("project", learning_rate=1e3, epochs=50))
    assert result.diverged_at is not None and len(result.curve) == result.diverged_at
    assert np.all(np.isfinite(result.extractor)) and np.all(np.isfinite(result.head))


# ------------------------------------------------------- Theorem 4.3: preconditioned monotonicity
def _zero_task_pair() -> LinearTaskPair:
    """Pre-training targets 0 and head 0: ∇ of the task loss vanishes, θ moves by the
    regulariser alone."""
    pair = synthetic_task_pair(dimension=5, samples=80, spread=20.0, seed=5)
    return LinearTaskPair(
        pair.pretraining_features,
        np.zeros_like(pair.pretraining_targets),
        pair.harmful_features,
        pair.harmful_targets,
        "zero-task",
    )


def _kappas(pair: LinearTaskPair, theta: FloatArray) -> tuple[float, float]:
    k_p, k_h = pair.pretraining_covariance, pair.harmful_covariance
    return condition_number(theta.T @ k_p @ theta), condition_number(theta.T @ k_h @ theta)


def _moves(pair: LinearTaskPair, theta_0: FloatArray, theta_1: FloatArray) -> tuple[float, float]:
    """(κ_P after − before, κ_H after − before)."""
    before, after = _kappas(pair, theta_0), _kappas(pair, theta_1)
    return after[0] - before[0], after[1] - before[1]


@pytest.mark.parametrize("which", ["well", "ill"])
def test_one_preconditioned_step_moves_kappa_as_theorem_4_3_says(which: str) -> None:
    """One small step θ' = θ − ηλ K⁻¹∇_θR from θ = I: R_well lowers κ(θᵀK_Pθ) (Thm 4.3 (1)),
    R_ill raises κ(θᵀK_Hθ) (Thm 4.3 (2)). The reflected step θ − (θ' − θ) moves κ the other
    way: the check can fail."""
    pair = _zero_task_pair()
    weights = (
        {"well_weight": 1.0, "ill_weight": 0.0}
        if which == "well"
        else {
            "well_weight": 0.0,
            "ill_weight": 1.0,
        }
    )
    config = configure(
        "project",
        epochs=1,
        learning_rate=1e-4,
        harmful_ridge=1e-9,
        pretraining_ridge=1e-9,
        **weights,
    )
    result = immunize_linear(pair, config)
    theta_0 = np.eye(pair.dimension)
    step = result.extractor - theta_0
    assert np.linalg.norm(step) > 0
    moved = _moves(pair, theta_0, result.extractor)
    reflected = _moves(pair, theta_0, theta_0 - step)
    if which == "well":
        assert moved[0] < 0 < reflected[0]
    else:
        assert moved[1] > 0 > reflected[1]


def test_preconditioner_side_matters() -> None:
    pair = synthetic_task_pair(dimension=4, samples=64, seed=6)
    runs = {
        side: immunize_linear(pair, configure("project", epochs=3, preconditioner=side)).extractor
        for side in ("input", "output", "none")
    }
    assert not np.allclose(runs["input"], runs["output"])
    assert not np.allclose(runs["input"], runs["none"])


def test_the_papers_weights_need_adam() -> None:
    """The code's weights on unnormalised Gram matrices: plain gradient descent diverges within
    a few steps (recorded, no exception), Adam runs every step."""
    pair = digits_pair((0, 1), (2, 3))
    sgd = immunize_linear(pair, configure("paper", optimizer="sgd", epochs=2))
    adam = immunize_linear(pair, configure("paper", epochs=2))
    assert sgd.diverged_at is not None and sgd.diverged_at < 10
    assert adam.diverged_at is None and len(adam.curve) == 10
