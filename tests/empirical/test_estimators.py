"""Estimators of β, G, μ, c and the HVP machinery, checked against exact ground truth.

Ground truth: quadratics L(θ) = ½θᵀAθ + bᵀθ with a chosen spectrum (H = A exactly), and a
small float64 MLP whose full Hessian ``torch.autograd.functional.hessian`` forms. Negative
controls: a smoothness "estimate" that keeps only the dominant eigenvalue, an HVP missing a
factor, a PL ratio missing its ½, and a contraction factor taken as a mean, each caught by
the same check that the real estimator passes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from empirical.measurement.estimators import (
    CONTRACTION_RATIO,
    PL_RATIO,
    SmoothnessEstimate,
    contraction,
    curvature_along_segment,
    directional_curvature,
    gradient_bound,
    gradient_bound_along_path,
    hessian_extremes_lanczos,
    hessian_extremes_power,
    path_points,
    pl_ratios,
    pl_ratios_from,
    segment_curvatures,
    smoothness,
    smoothness_of,
)
from empirical.measurement.hvp import (
    HVP_METHODS,
    LossLandscape,
    model_landscape,
    set_flat_parameters,
)
from empirical.models.model import tiny_gpt2
from theory import symbols as sym
from theory.errors import HftaInputError
from theory.theorems import contraction_tail
from theory.theorems.contraction_tail import THEOREM as CONTRACTION_TAIL

torch.set_num_threads(1)


# ---------------------------------------------------------------------- ground truths
def quadratic(eigenvalues: Sequence[float], seed: int = 0) -> tuple[LossLandscape, Tensor, Tensor]:
    """L(θ) = ½θᵀAθ + bᵀθ with spec(A) = eigenvalues (float64); returns (landscape, A, b)."""
    generator = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    basis, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    matrix = basis @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ basis.T
    matrix = (matrix + matrix.T) / 2
    offset = torch.randn(n, generator=generator, dtype=torch.float64)

    def loss(parameters: Mapping[str, Tensor]) -> Tensor:
        theta = parameters["theta"]
        value: Tensor = 0.5 * theta @ matrix @ theta + offset @ theta
        return value

    start = torch.randn(n, generator=generator, dtype=torch.float64)
    return LossLandscape(loss, {"theta": start}), matrix, offset


class SmallMLP(nn.Module):
    """3 → 4 → 2 tanh MLP; 26 parameters, an indefinite Hessian under squared error."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(3, 4)
        self.second = nn.Linear(4, 2)

    def forward(self, inputs: Tensor) -> Tensor:
        hidden: Tensor = torch.tanh(self.first(inputs))
        return self.second(hidden)  # type: ignore[no-any-return]


def mlp_landscape(seed: int = 0) -> tuple[LossLandscape, Tensor]:
    """A float64 MLP regression loss and its exact Hessian at the current parameters."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SmallMLP().double()
    batch = {
        "inputs": torch.randn(8, 3, generator=generator, dtype=torch.float64),
        "targets": torch.randn(8, 2, generator=generator, dtype=torch.float64),
    }

    def squared_error(module: nn.Module, data: Mapping[str, Tensor]) -> Tensor:
        error: Tensor = ((module(data["inputs"]) - data["targets"]) ** 2).mean()
        return error

    landscape = model_landscape(model, batch, loss=squared_error)

    def flat(theta: Tensor) -> Tensor:
        return landscape.function(landscape.unflatten(theta))

    hessian: Tensor = torch.autograd.functional.hessian(  # type: ignore[no-untyped-call]
        flat, landscape.origin
    )
    return landscape, hessian


def hvp_matches_exact(
    matvec: Callable[[Tensor], Tensor], hessian: Tensor, directions: Sequence[Tensor]
) -> bool:
    """The ground-truth check: matvec(v) = H v to 1e-5 (relative to ‖H v‖) for every v."""
    for v in directions:
        exact = hessian @ v
        if float(torch.linalg.vector_norm(matvec(v) - exact)) > 1e-5 * max(
            1.0, float(torch.linalg.vector_norm(exact))
        ):
            return False
    return True


def upper_bounds_positive_curvature(
    claimed_lambda_max: float, landscape: LossLandscape, directions: Sequence[Tensor]
) -> bool:
    """Whether the claimed λ_max bounds vᵀHv/‖v‖² from above along every given direction."""
    return all(
        directional_curvature(landscape, v).value <= claimed_lambda_max + 1e-9 for v in directions
    )


def dominant_only(estimate: SmoothnessEstimate) -> float:
    """The wrong smoothness read-out: the largest-magnitude eigenvalue taken as λ_max."""
    return (
        estimate.lambda_max
        if abs(estimate.lambda_max) >= abs(estimate.lambda_min)
        else (estimate.lambda_min)
    )


spectra = st.lists(
    st.floats(min_value=-10.0, max_value=10.0, allow_nan=False).filter(lambda x: abs(x) > 0.05),
    min_size=4,
    max_size=9,
    unique=True,
).filter(lambda values: max(values) - min(values) > 0.5)


# ---------------------------------------------------------------------- HVP ground truth
@pytest.mark.parametrize("method", HVP_METHODS)
def test_hvp_equals_exact_hessian_times_vector_on_mlp(method: str) -> None:
    landscape, hessian = mlp_landscape()
    operator = landscape.hessian_at(method=method)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(1)
    directions = [
        torch.randn(landscape.dimension, generator=generator, dtype=torch.float64) for _ in range(5)
    ]
    assert hvp_matches_exact(operator.matvec, hessian, directions)
    assert landscape.counter.hvps == 5


@pytest.mark.negative_control
def test_hvp_missing_a_factor_is_caught_by_the_ground_truth_check() -> None:
    landscape, hessian = mlp_landscape()
    operator = landscape.hessian_at()
    generator = torch.Generator().manual_seed(1)
    directions = [
        torch.randn(landscape.dimension, generator=generator, dtype=torch.float64) for _ in range(3)
    ]

    def half_hvp(v: Tensor) -> Tensor:  # e.g. forgetting the 2 of d/dθ (θ²)
        return 0.5 * operator.matvec(v)

    assert hvp_matches_exact(operator.matvec, hessian, directions)
    assert not hvp_matches_exact(half_hvp, hessian, directions)


@given(seed=st.integers(0, 10_000))
def test_hvp_on_quadratic_is_the_matrix(seed: int) -> None:
    landscape, matrix, _ = quadratic([-3.0, -0.5, 0.2, 1.0, 4.0], seed=seed % 7)
    v = torch.randn(5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    for method in HVP_METHODS:
        product = landscape.hessian_at(method=method).matvec(v)
        torch.testing.assert_close(product, matrix @ v, rtol=1e-10, atol=1e-10)


def test_reused_graph_gives_the_same_products_as_fresh_ones() -> None:
    landscape, _ = mlp_landscape(seed=3)
    reused = landscape.hessian_at(method="reuse_graph")
    fresh = landscape.hessian_at(method="double_backward")
    for index in range(3):
        v = torch.randn(
            landscape.dimension, generator=torch.Generator().manual_seed(index), dtype=torch.float64
        )
        torch.testing.assert_close(reused.matvec(v), fresh.matvec(v))
    assert landscape.counter.graphs == 1  # one graph served three products


# ---------------------------------------------------------------------- eigenvalues
@given(eigenvalues=spectra, seed=st.integers(0, 50))
def test_lanczos_finds_both_extreme_eigenvalues(eigenvalues: list[float], seed: int) -> None:
    landscape, _, _ = quadratic(eigenvalues, seed=seed)
    estimate = smoothness_of(landscape, method="lanczos", tolerance=1e-8)
    assert estimate.converged
    assert estimate.lambda_max == pytest.approx(max(eigenvalues), rel=1e-6, abs=1e-8)
    assert estimate.lambda_min == pytest.approx(min(eigenvalues), rel=1e-6, abs=1e-8)
    assert estimate.beta == pytest.approx(max(abs(x) for x in eigenvalues), rel=1e-6)
    assert estimate.value == estimate.beta
    assert estimate.hvps == estimate.iterations > 0


def _separated(values: Sequence[float], ratio: float = 0.8) -> bool:
    magnitudes = sorted((abs(v) for v in values), reverse=True)
    return magnitudes[1] <= ratio * magnitudes[0]


def _power_friendly(values: Sequence[float]) -> bool:
    """Both passes converge geometrically at rate ≤ 0.8: H, and H shifted by its dominant λ."""
    dominant = max(values, key=abs)
    return _separated(values) and _separated([v - dominant for v in values])


@given(eigenvalues=spectra.filter(_power_friendly), seed=st.integers(0, 50))
def test_power_iteration_finds_both_extreme_eigenvalues(
    eigenvalues: list[float], seed: int
) -> None:
    landscape, _, _ = quadratic(eigenvalues, seed=seed)
    estimate = smoothness_of(landscape, method="power", tolerance=1e-6, max_iterations=500)
    spread = max(eigenvalues) - min(eigenvalues)
    assert estimate.converged
    # a Rayleigh residual r bounds the eigenvalue error by r (Weyl); r ≤ tol·scale
    assert estimate.lambda_max == pytest.approx(max(eigenvalues), abs=1e-4 * spread)
    assert estimate.lambda_min == pytest.approx(min(eigenvalues), abs=1e-4 * spread)


def test_both_methods_match_the_exact_mlp_spectrum() -> None:
    landscape, hessian = mlp_landscape(seed=2)
    exact = np.linalg.eigvalsh(hessian.numpy())
    assert exact[0] < 0 < exact[-1]  # an indefinite Hessian: both ends matter
    lanczos = hessian_extremes_lanczos(landscape.hessian_at(), tolerance=1e-10)
    power = hessian_extremes_power(landscape.hessian_at(), tolerance=1e-7, max_iterations=50_000)
    for estimate in (lanczos, power):
        assert estimate.lambda_max == pytest.approx(exact[-1], rel=1e-4)
        assert estimate.lambda_min == pytest.approx(exact[0], rel=1e-4)


def test_power_iteration_reports_non_convergence_honestly() -> None:
    # |λ_max| = |λ_min|: plain power iteration oscillates between the two eigenvectors.
    landscape, _, _ = quadratic([-2.0, 0.1, 0.3, 2.0], seed=1)
    estimate = smoothness_of(landscape, method="power", tolerance=1e-9, max_iterations=30)
    assert not estimate.converged
    assert estimate.iterations <= 60
    lanczos = smoothness_of(landscape, method="lanczos", tolerance=1e-9)
    assert lanczos.converged
    assert (lanczos.lambda_min, lanczos.lambda_max) == pytest.approx((-2.0, 2.0))


@pytest.mark.negative_control
def test_dominant_eigenvalue_alone_is_caught_as_a_bad_upper_curvature_bound() -> None:
    # Immunized-model shape: the negative eigenvalue dominates (docs/science.md).
    eigenvalues = [-6.0, -1.0, 0.5, 2.0]
    landscape, matrix, _ = quadratic(eigenvalues, seed=4)
    estimate = smoothness_of(landscape, tolerance=1e-10)
    _, vectors = torch.linalg.eigh(matrix)
    generator = torch.Generator().manual_seed(0)
    directions = [
        *vectors.T,
        *(torch.randn(4, generator=generator, dtype=torch.float64) for _ in range(5)),
    ]
    assert upper_bounds_positive_curvature(estimate.lambda_max, landscape, directions)
    assert not upper_bounds_positive_curvature(dominant_only(estimate), landscape, directions)


def test_tiny_dimension_uses_the_exact_dense_hessian() -> None:
    landscape, _, _ = quadratic([-1.5, 3.0], seed=0)
    estimate = smoothness_of(landscape)
    assert estimate.method.startswith("dense")
    assert (estimate.lambda_min, estimate.lambda_max) == pytest.approx((-1.5, 3.0))


# ---------------------------------------------------------------------- curvature along Δ
@given(eigenvalues=spectra, seed=st.integers(0, 1000), scale=st.floats(1e-3, 10.0))
def test_segment_curvature_of_quadratic_is_the_rayleigh_quotient(
    eigenvalues: list[float], seed: int, scale: float
) -> None:
    landscape, matrix, _ = quadratic(eigenvalues, seed=seed % 11)
    generator = torch.Generator().manual_seed(seed)
    start = landscape.origin
    delta = scale * torch.randn(len(eigenvalues), generator=generator, dtype=torch.float64)
    expected = float(delta @ matrix @ delta / (delta @ delta))
    kappa = curvature_along_segment(landscape, start, start + delta)
    assert kappa.value == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert directional_curvature(landscape, delta, start).value == pytest.approx(expected)
    assert (kappa.gradients, kappa.losses) == (1, 1)


def _float64_cross_entropy(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    # transformers' own loss casts logits to float32; keep float64 for a clean limit
    logits = model(input_ids=batch["input_ids"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def test_segment_curvature_approaches_the_directional_second_derivative_on_gpt2() -> None:
    model = tiny_gpt2(vocab_size=12, n_layer=1, n_embd=16, n_head=2, n_positions=16).double()
    ids = torch.randint(3, 12, (4, 10), generator=torch.Generator().manual_seed(0))
    landscape = model_landscape(model, {"input_ids": ids}, loss=_float64_cross_entropy)
    start = landscape.origin
    direction = torch.randn(
        landscape.dimension, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    exact = directional_curvature(landscape, direction).value
    errors = [
        abs(curvature_along_segment(landscape, start, start + eps * direction).value - exact)
        for eps in (1e-3, 1e-4, 1e-5)  # ‖εΔ‖ ≈ 0.06, 0.006, 0.0006
    ]
    # κ(εΔ) = ΔᵀHΔ/‖Δ‖² + O(ε): the error shrinks about tenfold per step
    assert errors[2] < 0.3 * errors[1] < 0.09 * errors[0]
    assert errors[2] < 1e-3


def test_segment_curvatures_of_a_path() -> None:
    eigenvalues = [-3.0, 0.5, 1.0, 2.0]
    landscape, matrix, _ = quadratic(eigenvalues, seed=5)
    generator = torch.Generator().manual_seed(2)
    points = [landscape.origin]
    for _ in range(4):
        points.append(points[-1] + torch.randn(4, generator=generator, dtype=torch.float64))
    points.append(points[-1].clone())  # a zero-length step is skipped, not divided by
    result = segment_curvatures(landscape, points)
    expected = [
        float((b - a) @ matrix @ (b - a) / ((b - a) @ (b - a)))
        for a, b in itertools.pairwise(points[:5])
    ]
    assert result.details["curvatures"] == pytest.approx(expected)
    assert result.details["skipped"] == 1
    assert result.value == pytest.approx(max(abs(k) for k in expected))
    assert result.value <= max(abs(x) for x in eigenvalues) + 1e-9  # T1: |κ| ≤ β


# ---------------------------------------------------------------------- G
def test_gradient_bound_over_points_and_along_a_path() -> None:
    landscape, matrix, offset = quadratic([0.5, 1.0, 3.0], seed=1)
    a, b = landscape.origin, landscape.origin + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    sampled = path_points([a, b], samples_per_segment=4)
    assert len(sampled) == 5
    torch.testing.assert_close(sampled[2], (a + b) / 2)
    exact = [float(torch.linalg.vector_norm(matrix @ p + offset)) for p in sampled]
    estimate = gradient_bound_along_path(landscape, [a, b], samples_per_segment=4)
    assert estimate.value == pytest.approx(max(exact))
    assert estimate.gradients == 5 and estimate.points == 5
    endpoints = gradient_bound(landscape, [a, b])
    assert endpoints.value <= estimate.value + 1e-12  # more samples never lower the max


# ---------------------------------------------------------------------- μ
def test_pl_ratio_of_strongly_convex_quadratic_lies_in_its_spectrum() -> None:
    # L − L* = ½ eᵀAe with e = θ − θ*, ½‖∇L‖² = ½ eᵀA²e, so the ratio is a Rayleigh
    # quotient of A in the A-weighted inner product: in [λ_min, λ_max], = λ_i on eigenvectors.
    eigenvalues = [0.5, 1.5, 4.0]
    landscape, matrix, offset = quadratic(eigenvalues, seed=6)
    minimiser = -torch.linalg.solve(matrix, offset)
    floor = float(0.5 * minimiser @ matrix @ minimiser + offset @ minimiser)
    _, vectors = torch.linalg.eigh(matrix)
    generator = torch.Generator().manual_seed(3)
    points = [minimiser + v for v in vectors.T]
    points += [
        minimiser + torch.randn(3, generator=generator, dtype=torch.float64) for _ in range(6)
    ]
    estimate = pl_ratios(landscape, points, loss_floor=floor)
    ratios = estimate.details["ratios"]
    assert ratios[:3] == pytest.approx(eigenvalues, rel=1e-8)
    assert all(0.5 - 1e-9 <= r <= 4.0 + 1e-9 for r in ratios)
    assert estimate.value == pytest.approx(0.5, rel=1e-8)


@pytest.mark.negative_control
def test_pl_ratio_without_its_half_is_caught_outside_the_spectrum() -> None:
    eigenvalues = [0.5, 1.5, 4.0]
    landscape, matrix, offset = quadratic(eigenvalues, seed=6)
    minimiser = -torch.linalg.solve(matrix, offset)
    floor = float(0.5 * minimiser @ matrix @ minimiser + offset @ minimiser)
    _, vectors = torch.linalg.eigh(matrix)
    losses, norms = [], []
    for v in vectors.T:
        loss, gradient = landscape.gradient(minimiser + v)
        losses.append(loss)
        norms.append(float(torch.linalg.vector_norm(gradient)))
    right = pl_ratios_from(losses, norms, floor).details["ratios"]
    wrong = [n**2 / (loss - floor) for loss, n in zip(losses, norms, strict=True)]
    assert all(0.5 - 1e-9 <= r <= 4.0 + 1e-9 for r in right)
    assert not all(0.5 - 1e-9 <= r <= 4.0 + 1e-9 for r in wrong)


def test_pl_ratio_rejects_a_floor_above_a_loss() -> None:
    with pytest.raises(HftaInputError, match="below the floor"):
        pl_ratios_from([1.0, 0.2], [1.0, 0.5], loss_floor=0.5)
    skipped = pl_ratios_from([1.0, 0.5], [2.0, 0.0], loss_floor=0.5)
    assert skipped.details["points_used"] == [0]
    assert skipped.value == pytest.approx(0.5 * 4.0 / 0.5)


# ---------------------------------------------------------------------- c
def test_ratios_are_theorys_hypotheses_solved_for_their_constants() -> None:
    assert sp.simplify(PL_RATIO - sym.grad_norm**2 / (2 * (sym.L_s - sym.L_star))) == 0
    assert sp.simplify(CONTRACTION_RATIO - sym.u_next / sym.u_s) == 0


@given(
    first=st.floats(1e-3, 10.0),
    factor=st.floats(0.05, 0.99),
    length=st.integers(3, 30),
)
def test_contraction_of_a_geometric_sequence_is_its_factor(
    first: float, factor: float, length: int
) -> None:
    norms = [first * factor**s for s in range(length)]
    estimate = contraction(norms)
    assert estimate.value == pytest.approx(factor, rel=1e-9)
    assert len(estimate.details["ratios"]) == length - 1


def test_contraction_from_step_k_ignores_earlier_growth() -> None:
    norms = [1.0, 3.0, 2.4, 1.2, 0.9, 0.45]
    assert contraction(norms).value == pytest.approx(3.0)
    # ratios: 3.0, 0.8, 0.5, 0.75, 0.5
    late = contraction(norms, start_step=1)
    assert late.value == pytest.approx(0.8) and late.details["argmax_step"] == 1
    later = contraction(norms, start_step=2)
    assert later.value == pytest.approx(0.75) and later.details["argmax_step"] == 3


def _tail_within_t6_bound(norms: list[float], start: int, factor: float) -> bool:
    """T6's path conclusion on the measured tail: Σ_{s=K}^{K+n−1} ‖u_s‖ ≤ ‖u_K‖(1 − cⁿ)/(1 − c)."""
    n = len(norms) - start
    bound = CONTRACTION_TAIL.evaluate_expression(
        contraction_tail.HORIZON_PATH, u_K=norms[start], c=factor, n=n
    )
    return sum(norms[start:]) <= bound * (1 + 1e-12)


@given(seed=st.integers(0, 10_000))
def test_max_ratio_makes_t6_tail_bound_hold(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ratios = rng.uniform(0.1, 0.95, size=12)
    norms = [1.0, *np.cumprod(ratios).tolist()]
    estimate = contraction(norms)
    assert _tail_within_t6_bound(norms, 0, estimate.value)


@pytest.mark.negative_control
def test_mean_ratio_as_contraction_factor_breaks_the_tail_bound() -> None:
    # slow early contraction, fast later: the mean ratio understates c
    norms = [1.0, 0.95, 0.9, 0.855, 0.1, 0.01, 0.001]
    right = contraction(norms).value
    wrong = float(np.mean(contraction(norms).details["ratios"]))
    assert _tail_within_t6_bound(norms, 0, right)
    assert not _tail_within_t6_bound(norms, 0, wrong)


# ---------------------------------------------------------------------- real models
def _tiny_batch(vocab: int = 12) -> dict[str, Tensor]:
    ids = torch.randint(3, vocab, (4, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :4] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def test_hvp_methods_agree_on_gpt2_and_are_symmetric() -> None:
    model = tiny_gpt2(vocab_size=12, n_layer=1, n_embd=16, n_head=2, n_positions=16)
    landscape = model_landscape(model, _tiny_batch())
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(landscape.dimension, generator=generator)
    v = torch.randn(landscape.dimension, generator=generator)
    products = {m: landscape.hessian_at(method=m).matvec(v) for m in HVP_METHODS}
    for method in HVP_METHODS:
        torch.testing.assert_close(products[method], products["reuse_graph"], rtol=1e-4, atol=1e-5)
    hu = landscape.hessian_at().matvec(u)
    assert float(u @ products["reuse_graph"]) == pytest.approx(float(v @ hu), rel=1e-3)


def test_smoothness_on_gpt2_lanczos_and_power_agree() -> None:
    model = tiny_gpt2(vocab_size=12, n_layer=1, n_embd=16, n_head=2, n_positions=16).double()
    batch = _tiny_batch()
    lanczos = smoothness(model, batch, tolerance=1e-8)
    power = smoothness(model, batch, method="power", tolerance=1e-5, max_iterations=5000)
    assert lanczos.converged
    assert lanczos.lambda_min < 0 < lanczos.lambda_max
    assert lanczos.beta == max(abs(lanczos.lambda_max), abs(lanczos.lambda_min))
    if power.converged:
        assert power.lambda_max == pytest.approx(lanczos.lambda_max, rel=1e-3)
        assert power.lambda_min == pytest.approx(lanczos.lambda_min, rel=1e-3)
    record = lanczos.model_dump()
    assert record["hvps"] > 0 and record["graphs"] == 1 and record["method"].startswith("lanczos")


def test_lora_restricts_estimates_to_trainable_parameters() -> None:
    from peft import LoraConfig, get_peft_model

    model = tiny_gpt2(vocab_size=12, n_layer=1, n_embd=16, n_head=2, n_positions=16)
    adapted = get_peft_model(
        model,
        LoraConfig(
            r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["c_attn"], fan_in_fan_out=True
        ),
    )
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    landscape = model_landscape(adapted, _tiny_batch())
    assert landscape.dimension == trainable < sum(p.numel() for p in adapted.parameters())
    estimate = smoothness_of(landscape, tolerance=1e-4)
    assert estimate.details["dimension"] == trainable
    assert estimate.beta >= 0


def test_landscape_gradient_is_the_models_gradient_with_tied_weights() -> None:
    model = tiny_gpt2(vocab_size=12, n_layer=1, n_embd=16, n_head=2, n_positions=16)
    assert model.lm_head.weight is model.transformer.wte.weight  # GPT-2 ties them
    batch = _tiny_batch()
    landscape = model_landscape(model, batch)
    loss, gradient = landscape.gradient()
    model.zero_grad()
    reference_loss = model(**batch).loss
    reference_loss.backward()
    expected = torch.cat([p.grad.reshape(-1) for _, p in model.named_parameters()])  # type: ignore[union-attr]
    assert loss == pytest.approx(float(reference_loss.detach()))
    torch.testing.assert_close(gradient, expected)
    moved = landscape.origin + 0.01
    set_flat_parameters(model, landscape, moved)
    torch.testing.assert_close(model_landscape(model, batch).origin, moved)
    assert float(model(**batch).loss) == pytest.approx(landscape.loss(moved), rel=1e-6)


def test_fused_attention_is_refused_with_one_clear_error() -> None:
    model = tiny_gpt2(vocab_size=12, n_layer=1, n_embd=16, n_head=2, n_positions=16)
    model.config._attn_implementation = "sdpa"
    with pytest.raises(HftaInputError, match="eager"):
        model_landscape(model, _tiny_batch())


def test_estimates_never_modify_the_model() -> None:
    model = tiny_gpt2(vocab_size=12, n_layer=1, n_embd=16, n_head=2, n_positions=16)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    landscape = model_landscape(model, _tiny_batch())
    smoothness_of(landscape, tolerance=1e-3)
    curvature_along_segment(landscape, landscape.origin, landscape.origin + 0.1)
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name])


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call",
    [
        lambda ls: ls.hessian_at().matvec(torch.ones(3, dtype=torch.float64)),
        lambda ls: ls.loss(torch.full((5,), float("nan"), dtype=torch.float64)),
        lambda ls: smoothness_of(ls, tolerance=0.0),
        lambda ls: smoothness_of(ls, method="newton"),  # type: ignore[arg-type]
        lambda ls: smoothness_of(ls, method="power", max_iterations=0),
        lambda ls: directional_curvature(ls, torch.zeros(5, dtype=torch.float64)),
        lambda ls: segment_curvatures(ls, [ls.origin, ls.origin]),
        lambda ls: path_points([ls.origin], samples_per_segment=0),
        lambda ls: gradient_bound(ls, []),
        lambda ls: ls.hessian_at(method="finite_differences"),
    ],
)
def test_bad_input_raises_hfta_input_error(call: Callable[[LossLandscape], object]) -> None:
    landscape, _, _ = quadratic([-1.0, 0.5, 1.0, 2.0, 3.0])
    with pytest.raises(HftaInputError):
        call(landscape)


def test_contraction_bad_input() -> None:
    with pytest.raises(HftaInputError):
        contraction([1.0], start_step=0)
    with pytest.raises(HftaInputError):
        contraction([1.0, 0.5, 0.2], start_step=2)
    with pytest.raises(HftaInputError):
        contraction([1.0, 0.5], start_step=-1)
