"""Linear task pairs: a pre-training (useful) task and a harmful task on inputs of one dimension.

The setting of Zheng, Bai, Bullins, Yeh, "Model Immunization from a Condition Number
Perspective" (ICML 2025), §3: two supervised data sets ``D_P = (X_P, y_P)`` and
``D_H = (X_H, y_H)`` with inputs in ``R^D``; a linear feature extractor is shared, and an
attacker fits a linear probe on the harmful task's features by gradient descent on least
squares (their Eq. (8)), whose Hessian is ``θᵀK_Hθ`` with ``K_H = X_HᵀX_H`` (Eq. (9)).

Sources of pairs, all real files or data shipped with a package (no network):

* ``digits_pair``: scikit-learn's bundled 8×8 handwritten digits (UCI, 1,797 images, pixel
  values 0…16, scaled here to [0, 1]). A binary task ``a-b`` classifies digit a (+1) against
  digit b (−1) by least squares; a pair ``digits:a-b:c-d`` takes ``a-b`` as the pre-training
  task and ``c-d`` as the harmful one (the paper ran 90 pairs of MNIST binary tasks; MNIST is
  not bundled with any package here, and we fit ±1 targets by least squares, which is the loss
  its theory is about, where its code used a logistic loss). Several pixels are 0 in every
  image: the Gram matrices are rank-deficient, as real data often are.
* ``diabetes_pair``: scikit-learn's bundled diabetes data (Efron et al. 2004; 442 patients,
  10 baseline variables, a disease-progression target). Following the paper's house-price
  construction (the data split by one feature, ``MSZoning``; the pre-training task predicts
  one column, ``LotArea``, the harmful task the price), the patients are split by ``sex``;
  the pre-training task predicts a chosen column (default ``bmi``) from the others, the
  harmful task predicts disease progression from the same columns. Like the paper's code
  (``dataset.py::TabularDataset``) every feature and target is standardised within its task
  (a constant column, here ``sex``, becomes a zero column: rank-deficient data).
* ``synthetic_task_pair``: Gaussian inputs with chosen covariances (immunizable or aligned).
* ``load_pair``: a pair from an ``.npz`` file (arrays ``pretraining_features``,
  ``pretraining_targets``, ``harmful_features``, ``harmful_targets``) or a ``.csv`` file (a
  header; a column ``task`` with values ``pretraining``/``harmful``, a column ``target``, every
  other column a numeric feature).

``bundled_pair("digits:0-1:2-3")`` / ``bundled_pair("diabetes:bmi")`` name the bundled pairs;
``BUNDLED_PAIRS`` lists the ones used in the documentation and the notebook.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from theory.errors import HftaInputError
from theory.quadratic import FloatArray

BUNDLED_PAIRS: tuple[str, ...] = (
    "digits:0-1:2-3",
    "digits:3-8:1-7",
    "digits:4-9:5-6",
    "diabetes:bmi",
)
"""Named pairs from scikit-learn's bundled data (``bundled_pair``)."""

DIABETES_COLUMNS: tuple[str, ...] = (
    "age",
    "sex",
    "bmi",
    "bp",
    "s1",
    "s2",
    "s3",
    "s4",
    "s5",
    "s6",
)

ARRAY_NAMES: tuple[str, ...] = (
    "pretraining_features",
    "pretraining_targets",
    "harmful_features",
    "harmful_targets",
)


@dataclass(frozen=True)
class LinearTaskPair:
    """A pre-training and a harmful least-squares task on inputs of the same dimension D.

    Features are ``(n, D)`` float64 arrays, targets ``(n,)``; ``name`` says where they came
    from (a bundled spec, a file path, ``synthetic``)."""

    pretraining_features: FloatArray
    pretraining_targets: FloatArray
    harmful_features: FloatArray
    harmful_targets: FloatArray
    name: str = "unnamed"

    def __post_init__(self) -> None:
        checked = []
        for label in ARRAY_NAMES:
            array = np.asarray(getattr(self, label), dtype=np.float64)
            wanted = 2 if label.endswith("features") else 1
            if array.ndim != wanted or array.shape[0] == 0:
                raise HftaInputError(f"{self.name}: {label} has shape {array.shape}")
            if not np.all(np.isfinite(array)):
                raise HftaInputError(f"{self.name}: {label} has a NaN or infinite entry")
            checked.append(array)
            object.__setattr__(self, label, array)
        x_p, y_p, x_h, y_h = checked
        if x_p.shape[0] != y_p.shape[0] or x_h.shape[0] != y_h.shape[0]:
            raise HftaInputError(f"{self.name}: features and targets differ in length")
        if x_p.shape[1] != x_h.shape[1]:
            raise HftaInputError(
                f"{self.name}: the tasks' inputs differ in dimension "
                f"({x_p.shape[1]} vs {x_h.shape[1]})"
            )

    @property
    def dimension(self) -> int:
        """D, the input dimension."""
        return int(self.pretraining_features.shape[1])

    @property
    def pretraining_covariance(self) -> FloatArray:
        """K_P = X_PᵀX_P/n, the least-squares Hessian of the pre-training task (T5)."""
        x = self.pretraining_features
        return np.asarray(x.T @ x / x.shape[0])

    @property
    def harmful_covariance(self) -> FloatArray:
        """K_H = X_HᵀX_H/n."""
        x = self.harmful_features
        return np.asarray(x.T @ x / x.shape[0])

    def fingerprint(self) -> str:
        """sha256 of the four arrays (shape, then float64 bytes, in ``ARRAY_NAMES`` order)."""
        digest = hashlib.sha256()
        for label in ARRAY_NAMES:
            array = np.ascontiguousarray(getattr(self, label), dtype=np.float64)
            digest.update(repr(array.shape).encode())
            digest.update(array.tobytes())
        return digest.hexdigest()


# --------------------------------------------------------------------------- synthetic
def _random_rotation(generator: np.random.Generator, dimension: int) -> FloatArray:
    q, r = np.linalg.qr(generator.standard_normal((dimension, dimension)))
    return np.asarray(q * np.sign(np.diag(r)), dtype=np.float64)


def synthetic_task_pair(
    *,
    dimension: int = 16,
    samples: int = 400,
    spread: float = 10.0,
    aligned: bool = False,
    noise: float = 0.1,
    seed: int = 0,
) -> LinearTaskPair:
    """Two linear-regression tasks x ~ N(0, K), y = xᵀβ + noise·ε.

    Each covariance K = Q diag(λ) Qᵀ has eigenvalues log-spaced in [1, spread]. The
    pre-training task's Q_P is a random rotation; the harmful task's Q_H is an independent
    one (singular vectors at a large angle: immunizable), or Q_P itself when ``aligned`` (the
    two tasks then share their covariance: the non-immunizable case of Zheng et al.'s
    Proposition 3.2, where every θ gives the two Hessians θᵀKθ the same condition number up to
    sampling).
    """
    if dimension < 2 or samples < dimension or not spread >= 1.0 or noise < 0:
        raise HftaInputError(
            "synthetic_task_pair: need dimension >= 2, samples >= dimension, spread >= 1, "
            "noise >= 0"
        )
    generator = np.random.default_rng(seed)
    spectrum = np.logspace(0.0, math.log10(spread), dimension)
    pretraining_rotation = _random_rotation(generator, dimension)
    harmful_rotation = pretraining_rotation if aligned else _random_rotation(generator, dimension)

    def task(rotation: FloatArray) -> tuple[FloatArray, FloatArray]:
        features = generator.standard_normal((samples, dimension)) * np.sqrt(spectrum) @ rotation.T
        weights = generator.standard_normal(dimension)
        targets = features @ weights + noise * generator.standard_normal(samples)
        return np.asarray(features), np.asarray(targets)

    pretraining = task(pretraining_rotation)
    harmful = task(harmful_rotation)
    name = f"synthetic(dimension={dimension}, aligned={aligned}, seed={seed})"
    return LinearTaskPair(pretraining[0], pretraining[1], harmful[0], harmful[1], name)


# --------------------------------------------------------------------------- scikit-learn
_DIGIT_TASK = re.compile(r"^([0-9])-([0-9])$")


def _parse_digit_task(text: str) -> tuple[int, int]:
    match = _DIGIT_TASK.match(text.strip())
    if match is None or match.group(1) == match.group(2):
        raise HftaInputError(f"a digits task is 'a-b' with two different digits, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def digits_pair(pretraining: tuple[int, int], harmful: tuple[int, int]) -> LinearTaskPair:
    """Binary least-squares tasks on scikit-learn's bundled 8×8 digits (module docstring):
    inputs the 64 pixels / 16, target +1 for the first digit and −1 for the second."""
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    bunch = load_digits()
    images = np.asarray(bunch.data, dtype=np.float64) / 16.0
    labels = np.asarray(bunch.target)

    def task(digits: tuple[int, int]) -> tuple[FloatArray, FloatArray]:
        first, second = digits
        if not all(0 <= d <= 9 for d in digits) or first == second:
            raise HftaInputError(f"digits task needs two different digits 0-9, got {digits}")
        chosen = (labels == first) | (labels == second)
        targets = np.where(labels[chosen] == first, 1.0, -1.0)
        return np.asarray(images[chosen]), np.asarray(targets)

    x_p, y_p = task(pretraining)
    x_h, y_h = task(harmful)
    name = f"digits:{pretraining[0]}-{pretraining[1]}:{harmful[0]}-{harmful[1]}"
    return LinearTaskPair(x_p, y_p, x_h, y_h, name)


def _standardise(columns: FloatArray) -> FloatArray:
    """Per column ``(x − mean)/std`` (sample std, ddof = 1), a zero std replaced by 1: the
    paper's code (``TabularDataset._preprocess``)."""
    mean = columns.mean(axis=0)
    std = columns.std(axis=0, ddof=1)
    std = np.where(std == 0.0, 1.0, std)
    return np.asarray((columns - mean) / std)


def diabetes_pair(pretraining_target: str = "bmi") -> LinearTaskPair:
    """scikit-learn's bundled diabetes data as a task pair (module docstring): patients with
    ``sex`` = 1 learn ``pretraining_target`` from the other nine columns, patients with
    ``sex`` = 2 learn disease progression from the same nine columns; standardised per task."""
    if pretraining_target not in DIABETES_COLUMNS or pretraining_target == "sex":
        allowed = ", ".join(c for c in DIABETES_COLUMNS if c != "sex")
        raise HftaInputError(
            f"diabetes pre-training target {pretraining_target!r} is not one of: {allowed}"
        )
    from sklearn.datasets import load_diabetes  # type: ignore[import-untyped]

    bunch = load_diabetes(scaled=False)
    data = np.asarray(bunch.data, dtype=np.float64)
    progression = np.asarray(bunch.target, dtype=np.float64)
    target_column = DIABETES_COLUMNS.index(pretraining_target)
    kept = [i for i in range(len(DIABETES_COLUMNS)) if i != target_column]
    sex = data[:, DIABETES_COLUMNS.index("sex")]
    group_p, group_h = sex == 1.0, sex == 2.0
    x_p = _standardise(data[group_p][:, kept])
    y_p = _standardise(data[group_p][:, [target_column]])[:, 0]
    x_h = _standardise(data[group_h][:, kept])
    y_h = _standardise(progression[group_h][:, None])[:, 0]
    return LinearTaskPair(x_p, y_p, x_h, y_h, f"diabetes:{pretraining_target}")


def bundled_pair(spec: str) -> LinearTaskPair:
    """A pair from scikit-learn's bundled data: ``digits:a-b:c-d`` or ``diabetes:COLUMN``."""
    parts = spec.strip().split(":")
    if parts[0] == "digits" and len(parts) == 3:
        return digits_pair(_parse_digit_task(parts[1]), _parse_digit_task(parts[2]))
    if parts[0] == "diabetes" and len(parts) == 2:
        return diabetes_pair(parts[1])
    raise HftaInputError(
        f"unknown bundled pair {spec!r}: use digits:a-b:c-d or diabetes:COLUMN "
        f"(e.g. {', '.join(BUNDLED_PAIRS)})"
    )


# --------------------------------------------------------------------------- files
def save_pair(pair: LinearTaskPair, path: Path) -> None:
    """Write ``pair`` as ``.npz`` (the four arrays of ``ARRAY_NAMES``) or ``.csv``
    (``load_pair``'s layout, feature columns ``x0 … x{D−1}``)."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        np.savez(path, **{label: getattr(pair, label) for label in ARRAY_NAMES})
        return
    if suffix != ".csv":
        raise HftaInputError(f"{path}: a task pair is saved as .npz or .csv")
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["task", "target", *(f"x{i}" for i in range(pair.dimension))])
        for task, features, targets in (
            ("pretraining", pair.pretraining_features, pair.pretraining_targets),
            ("harmful", pair.harmful_features, pair.harmful_targets),
        ):
            for row, target in zip(features, targets, strict=True):
                writer.writerow([task, repr(float(target)), *(repr(float(v)) for v in row)])


def load_pair(path: Path) -> LinearTaskPair:
    """Read a task pair from ``.npz`` or ``.csv`` (module docstring). Every problem (missing
    file, wrong suffix, a missing array or column, a non-numeric cell, an unknown task label,
    a task with no rows) is an ``HftaInputError`` naming the file."""
    if not path.is_file():
        raise HftaInputError(f"{path}: task-pair file not found")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    if suffix == ".csv":
        return _load_csv(path)
    raise HftaInputError(
        f"{path}: a task pair is read from .npz or .csv, not {suffix or 'no suffix'}"
    )


def _load_npz(path: Path) -> LinearTaskPair:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [label for label in ARRAY_NAMES if label not in archive.files]
            if missing:
                raise HftaInputError(f"{path}: missing array(s) {', '.join(missing)}")
            arrays = [_numeric(path, label, archive[label]) for label in ARRAY_NAMES]
    except (OSError, ValueError) as exc:
        raise HftaInputError(f"{path}: not a readable .npz file ({exc})") from None
    x_p, y_p, x_h, y_h = arrays
    return LinearTaskPair(x_p, y_p, x_h, y_h, name=str(path))


def _numeric(path: Path, label: str, value: npt.ArrayLike) -> FloatArray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise HftaInputError(f"{path}: array {label} is not numeric") from None


def _load_csv(path: Path) -> LinearTaskPair:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise HftaInputError(f"{path}: empty CSV file")
    header = [name.strip() for name in rows[0]]
    for required in ("task", "target"):
        if header.count(required) != 1:
            raise HftaInputError(f"{path}: needs exactly one column named {required!r}")
    task_index, target_index = header.index("task"), header.index("target")
    feature_indices = [i for i in range(len(header)) if i not in (task_index, target_index)]
    if not feature_indices:
        raise HftaInputError(f"{path}: no feature columns besides task and target")
    tasks: dict[str, tuple[list[list[float]], list[float]]] = {
        "pretraining": ([], []),
        "harmful": ([], []),
    }
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise HftaInputError(f"{path}:{line}: {len(row)} cells, the header has {len(header)}")
        label = row[task_index].strip()
        if label not in tasks:
            raise HftaInputError(
                f"{path}:{line}: task {label!r} is neither 'pretraining' nor 'harmful'"
            )
        try:
            features = [float(row[i]) for i in feature_indices]
            target = float(row[target_index])
        except ValueError:
            raise HftaInputError(f"{path}:{line}: a non-numeric cell") from None
        tasks[label][0].append(features)
        tasks[label][1].append(target)
    for label, (features_list, _) in tasks.items():
        if not features_list:
            raise HftaInputError(f"{path}: no rows for the {label} task")
    x_p, y_p = tasks["pretraining"]
    x_h, y_h = tasks["harmful"]
    return LinearTaskPair(
        np.asarray(x_p), np.asarray(y_p), np.asarray(x_h), np.asarray(y_h), name=str(path)
    )
