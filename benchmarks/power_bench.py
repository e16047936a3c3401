"""Figures for issue 14, item 3: the power of each trajectory check of ``empirical.certify``.

Runs (all real torch training, deterministic):

* ``TINY_RUNS`` attacks of random-init GPT-2s (1–2 layers, width 8–16) and ``EMBEDDED_RUNS``
  of the embedded model, each an ``empirical.engine.attack`` run with the probe recorded and its
  constants measured along the path (``empirical.certify.attack_and_measure``; Lanczos β at
  every iterate for the tiny models, every fourth for the embedded one); optimizer, schedule,
  clipping, learning rate, batch size and seed drawn from a ``numpy`` generator with seed 0;
* ``DESCENT_RUNS`` runs of gradient descent (torch SGD, float64) on quadratics with a known
  spectrum, where T4 and T9 apply, with their exact constants.

Then ``empirical.certify.power.power_table``: for each check × perturbation (correct; every
constant ×0.5 and ×0.8, together and alone; the wrong statements) the fraction of applicable
runs with at least one violation, separately for the attacks and the descents. ``run()``
prints the tables and returns their figures (``power_attacks.<check>.<perturbation>`` and
``power_descents.<check>.<perturbation>`` → rate; ``power_false_alarms``: detections at the
correct constants, which must be 0). A third table: T1 and T6 with constants independent of the
checked steps (``empirical.certify.independent``: β and G on the ball B(θ_0, R) of the budget's
path-length bound before the attack; β, G and c fitted on the first half of each run and
checked on the second; the directional β_dir, the largest trustworthy |κ_s| along the steps,
fitted on the first half, and on another run of the attack's class, ``sibling_runs``: the same
model and configuration with seed + 1, checked on every step), figures
``independent_power.<check>.<perturbation>``; ``independent_power_refusals``: detections at the
independent constants as estimated ("these constants do not describe this run"). Measured
(one run of ``python -m benchmarks power_bench``; detected/applicable runs): T1 with β_dir of
the other run ×0.5 20/21, ×0.8 15/21, refused at ×1 7/21; with β_dir of the prefix ×0.5 7/20,
×1 1/20; T6's refusals are refutations of its contraction hypothesis on runs whose updates
stop contracting after the prefix, its loss side never.
"""

from __future__ import annotations

import numpy as np

from empirical.certify.capture import MeasuredAttack
from empirical.certify.independent import independent_power, independent_run
from empirical.certify.power import (
    PowerSubject,
    PowerTable,
    attack_subject,
    descent_subject,
    power_table,
)
from empirical.datasets.benchmark import SMALL_SIZES, embedded_benchmark
from empirical.engine.attack import AttackConfig
from empirical.measurement.trajectory import Trajectory
from empirical.testing import TransformerSpec

TINY_RUNS = 24
EMBEDDED_RUNS = 2
DESCENT_RUNS = 12

_LEARNING_RATES = {"sgd": (1e-3, 0.5), "adam": (1e-4, 3e-2), "adamw": (1e-4, 3e-2)}
_EMBEDDED_RATES = {"sgd": (1e-4, 3e-2), "adam": (1e-4, 1e-2), "adamw": (1e-4, 1e-2)}


def attack_config(rng: np.random.Generator, *, embedded: bool) -> AttackConfig:
    """One attack configuration drawn as ``empirical.testing.strategies.attack_configs`` draws
    them (full fine-tuning; 12–24 steps for the tiny models, 10–20 for the embedded one)."""
    optimizer = str(rng.choice(["sgd", "adam", "adamw"]))
    low, high = (_EMBEDDED_RATES if embedded else _LEARNING_RATES)[optimizer]
    steps = int(rng.integers(10, 21) if embedded else rng.integers(12, 25))
    return AttackConfig(
        optimizer=optimizer,  # type: ignore[arg-type]
        learning_rate=float(np.exp(rng.uniform(np.log(low), np.log(high)))),
        momentum=float(rng.choice([0.0, 0.5, 0.9])) if optimizer == "sgd" else 0.0,
        weight_decay=float(rng.choice([0.0, 0.01, 0.1])) if optimizer != "sgd" else 0.0,
        schedule=str(rng.choice(["constant", "linear", "cosine"])),  # type: ignore[arg-type]
        warmup_fraction=float(rng.choice([0.0, 0.1, 0.25])),
        max_grad_norm=[None, 0.5, 1.0][int(rng.integers(0, 3))],
        batch_size=int(rng.choice([4, 8])),
        budget_steps=steps,
        eval_every=steps,
        seed=int(rng.integers(0, 1000)),
        probe=True,
        probe_size=8,
        record_curvature=True,
    )


#: The sizes of the embedded benchmark the attacks train and probe on.
SIZES = SMALL_SIZES


def plans(
    tiny: int = TINY_RUNS, embedded: int = EMBEDDED_RUNS
) -> list[tuple[str, TransformerSpec, AttackConfig]]:
    """(name, model spec, configuration) of every attack (numpy seed 0), named
    ``tiny-<i>:<optimizer>`` or ``embedded-<i>:<optimizer>``."""
    rng = np.random.default_rng(0)
    found: list[tuple[str, TransformerSpec, AttackConfig]] = []
    for index in range(tiny + embedded):
        is_embedded = index >= tiny
        if is_embedded:
            spec = TransformerSpec(embedded=True)
        else:
            width = int(rng.choice([8, 16]))
            spec = TransformerSpec(
                n_layer=int(rng.choice([1, 2])),
                n_embd=width,
                n_head=int(rng.choice([1, 2])),
                seed=int(rng.integers(0, 2**16)),
            )
        config = attack_config(rng, embedded=is_embedded)
        name = f"{'embedded' if is_embedded else 'tiny'}-{index}:{config.optimizer}"
        found.append((name, spec, config))
    return found


def attack_runs(
    tiny: int = TINY_RUNS, embedded: int = EMBEDDED_RUNS
) -> list[tuple[str, AttackConfig, MeasuredAttack]]:
    """The measured attacks of ``plans`` (deterministic)."""
    import torch

    from empirical.certify import attack_and_measure

    torch.set_num_threads(1)
    bench = embedded_benchmark(seed=0, sizes=SIZES)
    runs: list[tuple[str, AttackConfig, MeasuredAttack]] = []
    for name, spec, config in plans(tiny, embedded):
        model, tokenizer = spec.build()
        measured = attack_and_measure(
            config,
            model=model,
            tokenizer=tokenizer,
            data=bench.attack,
            evaluation=bench.evaluation,
            reference=bench.reference,
            beta_every=4 if spec.embedded else 1,
        )
        runs.append((name, config, measured))
    return runs


def sibling_runs(tiny: int = TINY_RUNS, embedded: int = EMBEDDED_RUNS) -> dict[str, Trajectory]:
    """For every attack of ``plans``, another run of its class: the same model and
    configuration with seed + 1 (other minibatches and another probe batch of the same data),
    a plain ``empirical.engine.attack.attack`` (no constants measured: the directional β of
    ``empirical.certify.independent.directional_fit`` needs only its probe columns)."""
    import torch

    from empirical.engine.attack import attack

    torch.set_num_threads(1)
    bench = embedded_benchmark(seed=0, sizes=SIZES)
    found: dict[str, Trajectory] = {}
    for name, spec, config in plans(tiny, embedded):
        model, tokenizer = spec.build()
        other = config.model_copy(update={"seed": config.seed + 1})
        found[name] = attack(
            other,
            model=model,
            tokenizer=tokenizer,
            data=bench.attack,
            evaluation=bench.evaluation,
            reference=bench.reference,
        ).trajectory
    return found


def attack_subjects(tiny: int = TINY_RUNS, embedded: int = EMBEDDED_RUNS) -> list[PowerSubject]:
    """``attack_runs`` as power subjects (their trajectories and path constants)."""
    return [attack_subject(name, measured) for name, _, measured in attack_runs(tiny, embedded)]


def descent_subjects(count: int = DESCENT_RUNS) -> list[PowerSubject]:
    """Gradient descent on random quadratics (d = 2..5, eigenvalues log-uniform in
    [1e-2, 1e2], η = f/λ_max with f ∈ [0.2, 1], 10–40 steps; numpy seed 1)."""
    from empirical.testing import QuadraticProblem

    rng = np.random.default_rng(1)
    subjects: list[PowerSubject] = []
    for index in range(count):
        d = int(rng.integers(2, 6))
        eigenvalues = np.exp(rng.uniform(np.log(1e-2), np.log(1e2), size=d))
        basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
        problem = QuadraticProblem(
            theta_0=rng.uniform(-3.0, 3.0, size=d),
            learning_rate=float(rng.uniform(0.2, 1.0) / eigenvalues.max()),
            hessian=basis @ np.diag(eigenvalues) @ basis.T,
            theta_star=rng.uniform(-1.0, 1.0, size=d),
            minimum=float(rng.uniform(0.0, 1.0)),
        )
        subjects.append(descent_subject(f"descent-{index}", problem, int(rng.integers(10, 41))))
    return subjects


def measure(
    tiny: int = TINY_RUNS, embedded: int = EMBEDDED_RUNS, descents: int = DESCENT_RUNS
) -> dict[str, PowerTable]:
    """The power tables over the benchmark's runs: ``attacks`` (the transformer attacks, with
    their path constants as the verifier measures them), ``descents`` (gradient descent on
    quadratics, exact constants) and ``independent`` (T1/T6 on the attacks with independent
    constants, ``empirical.certify.independent.independent_power``, the directional β of the
    other run of each attack's class from ``sibling_runs``)."""
    attacks = attack_runs(tiny, embedded)
    siblings = sibling_runs(tiny, embedded)
    subjects = [attack_subject(name, measured) for name, _, measured in attacks]
    return {
        "attacks": power_table(subjects),
        "descents": power_table(descent_subjects(descents)),
        "independent": independent_power(
            [
                independent_run(name, config, measured, sibling=(f"{name} seed+1", siblings[name]))
                for name, config, measured in attacks
            ]
        ),
    }


def run() -> dict[str, float | str]:
    """Print the tables; return their figures and the false alarms / refusals."""
    tables = measure()
    figures: dict[str, float | str] = {}
    for key, table in tables.items():
        print(f"== {key}")
        print(table.table())
        print()
        prefix = "independent_power" if key == "independent" else f"power_{key}"
        figures.update(table.figures(prefix))
    figures["power_false_alarms"] = float(
        sum(r.detected for key in ("attacks", "descents") for r in tables[key].false_alarms())
    )
    figures["independent_power_refusals"] = float(
        sum(r.detected for r in tables["independent"].false_alarms())
    )
    return figures


if __name__ == "__main__":
    run()
