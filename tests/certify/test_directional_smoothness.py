"""T1 checked with the directional smoothness β_dir fitted on data the checked steps did not
produce (issue 14, items 1 and 3; ``empirical.certify.directional.directional_fit``).

β_dir is the largest trustworthy |κ_s| along the attack's own update directions, fitted on the
first half of a run (checked on the second) or on another run of the same attack class (the
same configuration with another seed; checked on every step). T1 applied to the restriction of
L to each checked step's line is still T1, with β_dir.

Runs (real ``empirical.engine.attack.attack`` runs with the probe and the curvature recorded,
deterministic): a random-init GPT-2 (1 layer, width 8; Adam, lr 0.01, 16 steps) and the
embedded model (Adam, lr 1e-3, 12 steps), no clipping, each with seeds 1 and 2.

* The check is exact about what it tests: with β_dir × f it flags a step iff the step's
  curvature exceeds f β_dir, up to the step's rounding bound (every f, every run).
* Positive control: at ×1 it holds where the checked run is no more curved along its steps
  than its source (the tiny seed-2 run against seed 1's fit; the seed-2 runs against their
  own first halves); negative control: β_dir × 0.5 is detected there.
* Measured on ``benchmarks/power_bench.py`` (24 tiny GPT-2 attacks and 2 of the embedded model,
  each with a run of seed + 1), detected / applicable runs: β_dir from the other run of the
  class ×0.5: 20/21, ×0.8: 15/21, ×1 (false alarms, "these constants do not describe this
  run"): 7/21; from the prefix ×0.5: 7/20, ×1: 1/20 (the curvature along these runs' steps
  falls as they train, so the first half's maximum overshoots the second half's). The pair of
  embedded runs here shows both: seed 1 is twice as curved as seed 2 (|κ| 25.8 against 12.2),
  so seed 2's fit does not describe seed 1 (violated at ×1), and seed 1's fit checks seed 2
  at ×1 but is not caught at ×0.5 (ratio 0.47).
"""

from __future__ import annotations

import functools

import pytest

from empirical.certify.directional import (
    DirectionalFit,
    curvature_roundings,
    directional_fit,
    segment_curvatures,
)
from empirical.certify.smoothness_sandwich import check_step_sandwich
from empirical.engine.attack import AttackConfig, attack
from empirical.measurement.trajectory import Trajectory
from empirical.testing import TransformerSpec
from tests.properties._runs import benchmark
from theory.errors import HftaInputError
from theory.theorems.smoothness_sandwich import segment_curvature

TINY = TransformerSpec(n_layer=1, n_embd=8, n_head=2, seed=3)
EMBEDDED = TransformerSpec(embedded=True)
SETTINGS = {"tiny": (TINY, 0.01, 16), "embedded": (EMBEDDED, 1e-3, 12)}


@functools.lru_cache(maxsize=4)
def run(model: str, seed: int) -> Trajectory:
    spec, rate, steps = SETTINGS[model]
    config = AttackConfig(
        optimizer="adam",
        learning_rate=rate,
        schedule="constant",
        warmup_fraction=0.0,
        max_grad_norm=None,
        batch_size=4,
        budget_steps=steps,
        eval_every=steps,
        seed=seed,
        probe=True,
        probe_size=8,
        record_curvature=True,
    )
    network, tokenizer = spec.build()
    bench = benchmark()
    return attack(
        config,
        model=network,
        tokenizer=tokenizer,
        data=bench.attack,
        evaluation=bench.evaluation,
        reference=bench.reference,
    ).trajectory


def violations(trajectory: Trajectory, fit: DirectionalFit | None, factor: float) -> int:
    assert fit is not None
    beta = [None if b is None else factor * b for b in fit.beta_rest]
    check = check_step_sandwich(trajectory, beta)
    assert check.applicable and check.instances == fit.checked, check.summary()
    return check.violations


def prefix(model: str, seed: int) -> DirectionalFit | None:
    trajectory = run(model, seed)
    return directional_fit(trajectory, trajectory, split=trajectory.n_steps // 2)


def sibling(model: str, seed: int, other: int) -> DirectionalFit | None:
    return directional_fit(run(model, other), run(model, seed), source_name=f"seed {other}")


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(SETTINGS))
@pytest.mark.parametrize("factor", [1.0, 0.8, 0.5])
def test_the_check_flags_exactly_the_steps_more_curved_than_beta(model: str, factor: float) -> None:
    """With β_dir × f, T1 flags a checked step iff |κ_s| > f β_dir, up to the step's rounding
    bound ρ_s (a step within ρ_s of f β_dir may go either way)."""
    for seed, other in ((1, 2), (2, 1)):
        trajectory, fit = run(model, seed), sibling(model, seed, other)
        assert fit is not None
        beta = [None if b is None else factor * b for b in fit.beta_rest]
        check = check_step_sandwich(trajectory, beta)
        roundings = curvature_roundings(trajectory)
        losses, slopes = trajectory.probe_loss, trajectory.probe_directional_derivative
        assert losses is not None and slopes is not None
        must, may = set(), set()
        for s, b in enumerate(beta):
            if b is None:
                continue
            norm, rho = trajectory.update_norm[s], roundings[s]
            assert norm is not None and rho is not None
            kappa = abs(
                segment_curvature(L0=losses[s], L1=losses[s + 1], gdot=slopes[s], delta_norm=norm)  # type: ignore[arg-type]
            )
            if kappa > b + rho:
                must.add(s)
            if kappa > b - rho:
                may.add(s)
        assert len(must) <= check.violations <= len(may), (must, may, check.summary())
        first = check.first_violation_step
        assert (first is None) == (check.violations == 0)
        if first is not None:
            assert first in may and first <= min(must, default=first)


@pytest.mark.slow
def test_a_random_init_transformer_holds_at_x1_and_is_caught_at_half() -> None:
    for fit in (sibling("tiny", 2, 1), prefix("tiny", 2)):
        assert violations(run("tiny", 2), fit, 1.0) == 0
        assert violations(run("tiny", 2), fit, 0.5) > 0


@pytest.mark.slow
def test_the_embedded_model_holds_at_x1_and_is_caught_at_half() -> None:
    fit = prefix("embedded", 2)
    assert violations(run("embedded", 2), fit, 1.0) == 0
    assert violations(run("embedded", 2), fit, 0.5) > 0


@pytest.mark.slow
def test_a_fit_from_a_more_curved_run_is_not_caught_at_half() -> None:
    """The documented limitation of a fit on another run: the embedded seed-1 run is about
    twice as curved along its steps as seed 2, so seed 1's β_dir holds on seed 2 even halved,
    and seed 2's does not describe seed 1 (violated at ×1)."""
    tight, loose = run("embedded", 1), run("embedded", 2)
    peak = {
        name: max(abs(k) for k in segment_curvatures(t) if k is not None)
        for name, t in (("1", tight), ("2", loose))
    }
    assert peak["2"] / peak["1"] < 0.5
    assert violations(loose, sibling("embedded", 2, 1), 0.5) == 0
    assert violations(tight, sibling("embedded", 1, 2), 1.0) > 0


def test_bad_fits_are_refused() -> None:
    trajectory = run("tiny", 2)
    with pytest.raises(HftaInputError, match="margin"):
        directional_fit(trajectory, trajectory, margin=0.5)
    with pytest.raises(HftaInputError, match="split"):
        directional_fit(trajectory, trajectory, split=trajectory.n_steps)
    with pytest.raises(HftaInputError, match="own prefix"):
        directional_fit(run("tiny", 1), trajectory, split=4)
