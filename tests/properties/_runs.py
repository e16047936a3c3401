"""Runs shared by the property tests of several theorems (not a test module).

* Descent: the problems of ``empirical.testing`` with a known global smoothness β
  (quadratics, least squares, the non-convex Σ x_i² + 3 sin²(x_i)), run with real
  ``torch.optim.SGD`` in float64 (``descend``), with momentum and clipping drawn too.
* Attacks: real attacks of tiny transformers (random-init GPT-2s and the embedded model) with
  the iterates captured and the constants measured along the path
  (``empirical.certify.attack_and_measure``). An attack is deterministic, so each (model,
  config) is run once per session and shared by the T1, T2, T3, T6 and ``check_all``
  properties (``measure``). Failing examples print the attack configuration as JSON
  (``AttackConfig.model_validate_json``) and the model spec, which reproduce the run.

Tolerances: 8 ulp of every loss-sized value compared, plus the rounding of the parameters for
bounds on step norms (``empirical.certify.checks_base``, which says where 8 float32 ulp is too
few and how the verifier evaluates in float64 instead: ``empirical.certify.float64``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from hypothesis import note, settings
from hypothesis import strategies as st
from torch import nn

from empirical import certify
from empirical.datasets.benchmark import SMALL_SIZES, Benchmark, embedded_benchmark
from empirical.engine.attack import AttackConfig
from empirical.testing import TransformerSpec
from empirical.testing import strategies as hst


# ---------------------------------------------------------------------- descent
def recorded(values: Sequence[float | None] | None) -> list[float]:
    """A trajectory column as floats; every entry must have been measured."""
    assert values is not None
    assert all(v is not None for v in values), values
    return [float(v) for v in values if v is not None]


PROBLEMS = st.one_of(
    hst.quadratic_problems(), hst.least_squares_problems(), hst.sinusoidal_pl_problems()
)
MOMENTA = st.sampled_from([0.0, 0.5, 0.9])
CLIPPING = st.one_of(st.none(), st.floats(0.05, 5.0))


# ---------------------------------------------------------------------- attacks
def examples(ci: int) -> int:
    """``ci`` examples under the ``ci`` profile (30 examples per test), proportionally more
    under ``thorough`` (500): real attacks cost seconds each."""
    profile = settings.default
    assert profile is not None
    return ci * max(1, profile.max_examples // 30)


SIZES = SMALL_SIZES
#: Lanczos at every iterate for the tiny models, every fourth for the embedded one (108k
#: parameters): the per-segment β is then the larger estimate at the sampled points around it.
BETA_EVERY = {False: 1, True: 4}
TINY = hst.transformer_specs()
EMBEDDED = hst.transformer_specs(embedded=True)
TINY_ATTACKS = hst.attack_configs(budget=(12, 24))
EMBEDDED_ATTACKS = hst.attack_configs(
    budget=(10, 20),
    learning_rates={"sgd": (1e-4, 3e-2), "adam": (1e-4, 1e-2), "adamw": (1e-4, 1e-2)},
)


@functools.lru_cache(maxsize=1)
def benchmark() -> Benchmark:
    return embedded_benchmark(seed=0, sizes=SIZES)


@functools.lru_cache(maxsize=8)
def _model(spec: TransformerSpec) -> tuple[nn.Module, Any]:
    return spec.build()


@functools.lru_cache(maxsize=64)
def _measured(spec: TransformerSpec, config_json: str) -> certify.MeasuredAttack:
    """One attack, its iterates and constants (deterministic, so cached across properties)."""
    config = AttackConfig.model_validate_json(config_json)
    model, tokenizer = _model(spec)
    bench = benchmark()
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
    """The attack of ``config`` on the model of ``spec``, measured (noted for a failure)."""
    note(f"spec = {spec!r}")
    note(f"config = AttackConfig.model_validate_json({config.model_dump_json()!r})")
    return _measured(spec, config.model_dump_json())


def threshold_at(losses: list[float | None], position: float) -> float:
    """τ at ``position`` ∈ [0, 1] between the lowest probe loss reached and L_0."""
    values = [v for v in losses if v is not None]
    lowest, start = min(values), values[0]
    return lowest + position * (start - lowest)


def no_violation(check: certify.BoundCheck) -> None:
    """The check applied and found no violation."""
    note(check.summary())
    assert check.applicable, check.summary()
    assert check.violations == 0, check.summary()


def contraction_tail_if_any(measured: certify.MeasuredAttack) -> None:
    """T6 over the rest of the run where the update norms contract from some K on (late
    steps of decaying schedules): the first K after which every measured ratio
    ‖u_{s+1}‖/‖u_s‖ is below 1, c the largest of those ratios."""
    constants = measured.constants
    if constants.contraction_start is None or constants.c is None:
        return
    assert constants.G_path is not None
    no_violation(
        certify.check_contraction_tail(
            measured.trajectory, constants.contraction_start, constants.c, constants.G_path
        )
    )
