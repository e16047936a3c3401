"""empirical/linear/tasks.py: task pairs from scikit-learn's bundled data and from files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from empirical.linear.tasks import (
    BUNDLED_PAIRS,
    LinearTaskPair,
    bundled_pair,
    diabetes_pair,
    digits_pair,
    load_pair,
    save_pair,
    synthetic_task_pair,
)
from theory.errors import HftaInputError
from theory.quadratic import nonzero_singular_values


def test_digits_pair_is_two_binary_tasks_on_real_images() -> None:
    pair = digits_pair((0, 1), (2, 3))
    assert pair.dimension == 64 and pair.name == "digits:0-1:2-3"
    # scikit-learn's digits: 178 zeros, 182 ones, 177 twos, 183 threes.
    assert pair.pretraining_features.shape == (360, 64)
    assert pair.harmful_features.shape == (360, 64)
    assert set(np.unique(pair.pretraining_targets)) == {-1.0, 1.0}
    assert int((pair.pretraining_targets == 1.0).sum()) == 178
    assert pair.pretraining_features.min() >= 0.0 and pair.pretraining_features.max() <= 1.0
    # Some pixels are 0 in every image: the Gram matrix is rank-deficient.
    gram = pair.harmful_features.T @ pair.harmful_features
    assert nonzero_singular_values(gram).size < 64


def test_diabetes_pair_follows_the_papers_tabular_construction() -> None:
    pair = diabetes_pair("bmi")
    assert pair.dimension == 9  # ten columns minus the pre-training target
    n_p, n_h = pair.pretraining_features.shape[0], pair.harmful_features.shape[0]
    assert n_p + n_h == 442
    for features, targets in (
        (pair.pretraining_features, pair.pretraining_targets),
        (pair.harmful_features, pair.harmful_targets),
    ):
        assert np.allclose(targets.mean(), 0.0) and np.isclose(targets.std(ddof=1), 1.0)
        # sex is constant within each task: after standardisation a zero column (rank D − 1).
        assert np.all(features[:, 1] == 0.0)
        assert nonzero_singular_values(features.T @ features).size == 8


def test_bundled_specs() -> None:
    for spec in BUNDLED_PAIRS:
        assert bundled_pair(spec).name == spec
    for bad in ("digits:0-1", "digits:0-0:1-2", "digits:a-b:1-2", "diabetes:sex", "mnist:1:2"):
        with pytest.raises(HftaInputError):
            bundled_pair(bad)


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_files_round_trip(tmp_path: Path, suffix: str) -> None:
    pair = synthetic_task_pair(dimension=4, samples=12, seed=3)
    path = tmp_path / f"pair{suffix}"
    save_pair(pair, path)
    loaded = load_pair(path)
    for name in ("pretraining_features", "pretraining_targets", "harmful_features"):
        assert np.array_equal(getattr(loaded, name), getattr(pair, name))
    assert loaded.fingerprint() == pair.fingerprint()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("task,target,x0\npretraining,1,2\n", "no rows for the harmful task"),
        ("task,x0\npretraining,1\n", "'target'"),
        ("task,target,x0\npretraining,1,abc\nharmful,1,2\n", "non-numeric"),
        ("task,target,x0\nuseful,1,2\nharmful,1,2\n", "neither"),
        ("task,target,x0\npretraining,1,2,3\nharmful,1,2\n", "cells"),
        ("task,target\npretraining,1\nharmful,1\n", "no feature columns"),
        ("task,target,x0\npretraining,1,nan\nharmful,1,2\n", "NaN"),
    ],
)
def test_bad_csv_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "pair.csv"
    path.write_text(content)
    with pytest.raises(HftaInputError, match=message):
        load_pair(path)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(HftaInputError, match="not found"):
        load_pair(tmp_path / "missing.npz")
    (tmp_path / "pair.txt").write_text("x")
    with pytest.raises(HftaInputError, match=r"\.npz or \.csv"):
        load_pair(tmp_path / "pair.txt")
    np.savez(tmp_path / "partial.npz", pretraining_features=np.ones((2, 2)))
    with pytest.raises(HftaInputError, match="missing array"):
        load_pair(tmp_path / "partial.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(HftaInputError, match="not a readable"):
        load_pair(tmp_path / "broken.npz")
    with pytest.raises(HftaInputError, match="dimension"):
        LinearTaskPair(np.ones((3, 2)), np.ones(3), np.ones((3, 4)), np.ones(3))
