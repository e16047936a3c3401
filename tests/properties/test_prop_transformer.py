"""T1, T2, T3 and T6 on real attacks of tiny transformers (random-init GPT-2s and the embedded
model): every recorded step of every generated attack against the bound, with the constants
measured along the path (``empirical.certify.attack_and_measure``).

What is checked, and how honestly:

* T1 per step with a *per-segment* β_s: the larger of the Lanczos estimates of ‖∇²L_P‖₂ (both
  ends of the spectrum, times 1 + the Lanczos tolerance) at the two ends of the segment. β is
  measured at the iterates, independently of the segment curvature κ_s the check compares it
  with (using max |κ_s| as β would make the check circular). It is local: a lower estimate of
  the smoothness of the region the path visits, so a violation would say "the Hessian along
  this segment exceeded its value at both ends", and is reported by the check, not hidden.
* T2 (SGD, clipped or not, with momentum): the cumulative envelope at every step with G the
  largest probe-gradient norm at the iterates (T2's hypothesis is about the iterates only),
  β the path maximum, C the clipping norm or the largest recorded minibatch-gradient norm.
* T3 (Adam/AdamW, full or LoRA): the Adam step lemma on every step, the path-length bound with
  the measured update norms, and the certified envelope, with G the largest probe-gradient
  norm on points sampled along the segments.
* Steps to a threshold τ between the lowest probe loss reached and L_0: measured ≥ certified.
* T6, inside the T2 and T3 properties, wherever the update norms contract from some K on
  (late steps of decaying schedules), over the rest of the run.

Tolerances: 8 ulp of every loss-sized value compared (float32 losses agree with float64
evaluations to ~1.2 ulp), plus the rounding of the parameters for bounds on step norms
(``empirical.certify`` module docstring). Failing examples print the attack configuration as
JSON (``AttackConfig.model_validate_json``) and the model spec, which reproduce the run.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from torch import nn

from empirical import certify
from empirical.attack import AttackConfig
from empirical.benchmark import Benchmark, BenchmarkSizes, embedded_benchmark
from empirical.testing import TransformerSpec
from empirical.testing import strategies as hst
from theory import symbols as sym
from theory.theorem import lambdified
from theory.theorems import clipped_sgd_progress, path_length_adam
from theory.theorems import smoothness_sandwich as sandwich

pytestmark = pytest.mark.slow


def examples(ci: int) -> int:
    """``ci`` examples under the ``ci`` profile (30 examples per test), proportionally more
    under ``thorough`` (500): real attacks cost seconds each."""
    return ci * max(1, settings.default.max_examples // 30)

SIZES = BenchmarkSizes(
    pretrain=1, align=1, defence=1, attack=8, evaluation=2, reference=1,
    trainability_train=1, trainability_eval=1,
)
#: Lanczos at every iterate for the tiny models, every fourth for the embedded one (108k
#: parameters): the per-segment β is then the larger estimate at the sampled points around it.
BETA_EVERY = {False: 1, True: 4}
TINY = hst.transformer_specs()
EMBEDDED = hst.transformer_specs(embedded=True)


@functools.lru_cache(maxsize=1)
def _benchmark() -> Benchmark:
    return embedded_benchmark(seed=0, sizes=SIZES)


@functools.lru_cache(maxsize=8)
def _model(spec: TransformerSpec) -> tuple[nn.Module, Any]:
    return spec.build()


@functools.lru_cache(maxsize=64)
def _measured(spec: TransformerSpec, config_json: str) -> certify.MeasuredAttack:
    """One attack, its iterates and constants (deterministic, so cached across properties)."""
    config = AttackConfig.model_validate_json(config_json)
    model, tokenizer = _model(spec)
    bench = _benchmark()
    return certify.attack_and_measure(
        config,
        model=model,
        tokenizer=tokenizer,
        data=bench.attack,
        evaluation=bench.evaluation,
        reference=bench.reference,
        beta_every=BETA_EVERY[spec.embedded],
    )


def measure(spec: TransformerSpec, config: AttackConfig) -> certify.MeasuredAttack:
    note(f"spec = {spec!r}")
    note(f"config = AttackConfig.model_validate_json({config.model_dump_json()!r})")
    return _measured(spec, config.model_dump_json())


def _threshold(losses: list[float | None], position: float) -> float:
    """τ at ``position`` ∈ [0, 1] between the lowest probe loss reached and L_0."""
    values = [v for v in losses if v is not None]
    lowest, start = min(values), values[0]
    return lowest + position * (start - lowest)


def _no_violation(check: certify.BoundCheck) -> None:
    note(check.summary())
    assert check.applicable, check.summary()
    assert check.violations == 0, check.summary()


def _contraction_tail_if_any(measured: certify.MeasuredAttack) -> None:
    """T6 over the rest of the run where the update norms contract from some K on (late
    steps of decaying schedules): the first K after which every measured ratio
    ‖u_{s+1}‖/‖u_s‖ is below 1, c the largest of those ratios."""
    constants = measured.constants
    if constants.contraction_start is None or constants.c is None:
        return
    assert constants.G_path is not None
    _no_violation(
        certify.check_contraction_tail(
            measured.trajectory, constants.contraction_start, constants.c, constants.G_path
        )
    )


# ---------------------------------------------------------------------- T1
def sandwich_property(
    specs: st.SearchStrategy[TransformerSpec],
    configs: st.SearchStrategy[AttackConfig],
    lower: Callable[..., float] | None = None,
) -> Callable[[], None]:
    @given(spec=specs, config=configs)
    def prop(spec: TransformerSpec, config: AttackConfig) -> None:
        measured = measure(spec, config)
        segments = measured.constants.beta_segments
        assert segments is not None
        check = certify.check_step_sandwich(measured.trajectory, segments, lower=lower)
        note(f"beta estimates: {measured.constants.beta}")
        _no_violation(check)

    return prop


TINY_ATTACKS = hst.attack_configs(budget=(12, 24))
EMBEDDED_ATTACKS = hst.attack_configs(
    budget=(10, 20),
    learning_rates={"sgd": (1e-4, 3e-2), "adam": (1e-4, 1e-2), "adamw": (1e-4, 1e-2)},
)


def test_t1_sandwich_holds_per_step_on_random_init_transformers() -> None:
    settings(max_examples=examples(5))(sandwich_property(TINY, TINY_ATTACKS))()


def test_t1_sandwich_holds_per_step_on_the_embedded_model() -> None:
    settings(max_examples=examples(2))(sandwich_property(EMBEDDED, EMBEDDED_ATTACKS))()


def _turned_sign_lower(**values: float) -> float:
    """T1's lower side with the sign of ⟨∇L, Δ⟩ turned: L + |⟨∇L,Δ⟩| − (β/2)‖Δ‖² for a
    descent step, i.e. 'every step raises the loss to first order'."""
    expression = sandwich.LOWER_BOUND.subs(sym.gdot, -sym.gdot)
    fn = lambdified(expression, (sym.L0, sym.beta, sym.delta_norm, sym.gdot))
    return float(fn(values["L0"], values["beta"], values["delta_norm"], values["gdot"]))


@pytest.mark.negative_control
def test_t1_with_the_sign_of_the_slope_turned_is_refuted(
    expect_falsified: Callable[..., None],
) -> None:
    expect_falsified(sandwich_property(TINY, TINY_ATTACKS, lower=_turned_sign_lower), examples(5))


# ---------------------------------------------------------------------- T2
SGD_ATTACKS = hst.attack_configs(optimizers=("sgd",), budget=(12, 24))
#: Full-batch SGD at small rates: the minibatch is the whole attack set (24 examples), the
#: probe too, so every step is a gradient step on the probe loss and the cumulative decrease
#: runs close to G·η·C: the regime where a halved G is refutable.
FULL_BATCH_SGD = hst.attack_configs(
    optimizers=("sgd",),
    methods=("full",),
    clipping=(None,),
    schedules=("constant",),
    warmup_fractions=(0.0,),
    learning_rates={"sgd": (1e-3, 1e-2)},
    batch_sizes=(24,),
    probe_size=24,
    budget=(4, 8),
)


def sgd_property(
    configs: st.SearchStrategy[AttackConfig], envelope: Callable[..., Any] | None = None
) -> Callable[[], None]:
    @given(spec=TINY, config=configs, position=st.floats(0.0, 1.0))
    def prop(spec: TransformerSpec, config: AttackConfig, position: float) -> None:
        measured = measure(spec, config)
        constants = measured.constants
        assert constants.G_iterates is not None and constants.beta is not None
        assert constants.theta0_norm is not None
        losses = measured.trajectory.probe_loss or []
        check = certify.check_sgd_progress(
            measured.trajectory,
            constants.G_iterates,
            constants.beta,
            constants.C,
            threshold=_threshold(list(losses), position),
            theta0_norm=constants.theta0_norm.value,
            envelope=envelope,
        )
        _no_violation(check)
        assert check.measured_steps is not None
        assert check.certified_steps is not None and check.measured_steps >= check.certified_steps
        _contraction_tail_if_any(measured)

    return prop


def test_t2_envelope_holds_on_every_step_of_sgd_attacks() -> None:
    settings(max_examples=examples(4))(sgd_property(SGD_ATTACKS))()


def _halved_g_envelope(**values: Any) -> Any:
    return clipped_sgd_progress.envelope(**{**values, "G": values["G"] / 2.0})


@pytest.mark.negative_control
def test_t2_with_g_halved_is_refuted(expect_falsified: Callable[..., None]) -> None:
    """The same property passes on full-batch SGD and fails with G/2 in the envelope."""
    settings(max_examples=examples(3))(sgd_property(FULL_BATCH_SGD))()
    expect_falsified(sgd_property(FULL_BATCH_SGD, envelope=_halved_g_envelope), examples(3))


# ---------------------------------------------------------------------- T3
ADAM_ATTACKS = hst.attack_configs(optimizers=("adam", "adamw"), budget=(12, 24))


def adam_property(step_bounds: Callable[..., Any] | None = None) -> Callable[[], None]:
    @given(spec=TINY, config=ADAM_ATTACKS, position=st.floats(0.0, 1.0))
    def prop(spec: TransformerSpec, config: AttackConfig, position: float) -> None:
        measured = measure(spec, config)
        constants = measured.constants
        assert constants.G_path is not None and constants.theta0_norm is not None
        trajectory = measured.trajectory
        _no_violation(
            certify.check_adam_steps(
                trajectory, theta0_norm=constants.theta0_norm, step_bounds=step_bounds
            )
        )
        _no_violation(certify.check_path_length(trajectory, constants.G_path))
        check = certify.check_adam_path(
            trajectory,
            constants.G_path,
            theta0_norm=constants.theta0_norm,
            threshold=_threshold(list(trajectory.probe_loss or []), position),
        )
        _no_violation(check)
        assert check.certified_steps is not None and check.measured_steps is not None
        assert check.measured_steps >= check.certified_steps
        _contraction_tail_if_any(measured)

    return prop


def test_t3_step_lemma_path_length_and_envelope_hold_on_adam_attacks() -> None:
    settings(max_examples=examples(4))(adam_property())()


def _bounds_without_sqrt_d(**values: Any) -> Any:
    """The per-coordinate bound η a_k used as a bound on the step's norm (√d dropped)."""
    return path_length_adam.step_norm_bounds(**values) / math.sqrt(values["d"])


@pytest.mark.negative_control
def test_t3_without_the_sqrt_d_factor_is_refuted(expect_falsified: Callable[..., None]) -> None:
    expect_falsified(adam_property(step_bounds=_bounds_without_sqrt_d), examples(4))


# ---------------------------------------------------------------------- all checks
@settings(max_examples=examples(2))
@given(spec=EMBEDDED, config=EMBEDDED_ATTACKS)
def test_check_all_passes_on_attacks_of_the_embedded_model(
    spec: TransformerSpec, config: AttackConfig
) -> None:
    """``check_all`` (what ``hfta verify`` runs) finds no violation on real attacks of the
    released model, and applies at least T1 and the theorem of the attack's optimizer."""
    measured = measure(spec, config)
    checks = measured.check_all()
    for check in checks:
        note(check.summary())
    assert not [c for c in checks if c.status == "violated"]
    applied = {c.label for c in checks if c.applicable}
    expected = "T2" if config.optimizer == "sgd" else "T3"
    assert {"T1", expected} <= applied
    np.testing.assert_equal(len(measured.iterates), measured.trajectory.n_steps + 1)
