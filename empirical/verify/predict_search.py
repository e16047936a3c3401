r"""Predictions for the optuna search's trials, stated before the search runs (issue 14, item 2).

The search's trials are not known before it runs, but its space is (``plan.search_space``):
optimizers × schedules × warm-ups × full fine-tuning or LoRA × batch sizes × seeds, the
learning rate log-uniform on [lo, hi] (or one of the threat model's rates), the budget T and
the clip C fixed by the claim. One prediction per *class* of trials covers them all:

* a trial's rates are η_s = η · g(s), g ≥ 0 its schedule's factor (warm-up, cosine, ...: the
  real scheduler, ``empirical.engine.schedules``), so η ≤ hi gives η_s ≤ hi · g(s) at every s;
* every step bound theory's path-length bound sums is η_s × a factor that does not depend on
  η (clipped SGD: η_s C, with momentum η_s C Σ_j μ^j; Adam/AdamW: T3's step bounds, AdamW's
  decay term only while λ‖θ_s‖ stays small, docs/certified.md: refused, ``predict_radii``),
  so R_t is non-decreasing in the rate and R_t(η) ≤ R_t(hi) for every t;
* T11's certified minimum ``steps_beyond(ρ, R)`` (the first t with R_t > ρ) is then at hi no
  later than at any η ≤ hi: the prediction at hi is a certified minimum for every trial of
  the class, with the same flip radius ρ (estimated on a ball that contains every class's
  reach: ``predict.predict_attacks`` takes the largest R_T over grid and classes).

What a class fixes: R_t reads the optimizer, the schedule and warm-up, the budget, the clip,
the betas, momentum and weight decay, d and ‖θ_0‖ (``predict_radii.step_radii``), neither the
batch size nor the seed, so full fine-tuning has one class per (optimizer, schedule, warm-up).
A LoRA attack's merged reach s (a_0 R_t + R_t²/2) reads a_0 = max_j ‖A_j⁰‖₂ and ‖(A⁰, B⁰)‖ of
its own initialisation, drawn under its seed (``predict_lora``): one LoRA class per seed.
A class's name reads as the class: ``search: adamw cosine full, lr <= 0.003``.

After the search (``predict.compare``): each trial (``search-NNN``, its configuration in the
``AttackRun``) is checked against its class's prediction (``covering``), its check naming
the class; a trial above hi, or in no class, stays "not available".

Source: docs/science.md §4 ("Predictions", "Reachable sets"); docs/certified.md (a class
given by its largest rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

from empirical.engine.attack_config import AttackConfig
from empirical.verify.claim import Claim
from empirical.verify.outcome import AttackRun
from empirical.verify.plan import AttackPlan
from empirical.verify.predict import Planned, Prediction

__all__ = [
    "CLASS_ASSUMPTION",
    "SEARCH_PREFIX",
    "class_name",
    "covering",
    "search_classes",
    "search_high",
    "unused_text",
]

#: How a search class's prediction is named (search trials' runs are ``search-NNN``).
SEARCH_PREFIX = "search: "

CLASS_ASSUMPTION = (
    "a search trial of this class has rates eta g(s) with eta <= the range's upper end and its "
    "class's schedule g; every step bound is eta_s times a factor that does not depend on eta, "
    "so its R_t is at most the R_t stated at the upper end, and so is its reach"
)


def search_high(claim: Claim) -> float:
    """The upper end hi of the search's learning rates (``plan.search_space``: the search's
    range, else the threat model's range, else the largest of its rates)."""
    span = claim.search.learning_rate_range or claim.threat_model.learning_rate_range
    return float(span[1]) if span is not None else max(claim.threat_model.learning_rates)


def class_name(config: AttackConfig, high: float, *, warmup: bool = False) -> str:
    """The name of the class ``config`` falls in at upper end ``high`` (module docstring): the
    seed for LoRA only, the warm-up only where the space has more than one."""
    seed = f" seed {config.seed}" if config.method == "lora" else ""
    ramp = f" warm-up {config.warmup_fraction:g}" if warmup else ""
    return (
        f"{SEARCH_PREFIX}{config.optimizer} {config.schedule}{ramp} {config.method}{seed}, "
        f"lr <= {high:g}"
    )


def search_classes(plan: AttackPlan) -> list[Planned]:
    """One ``Planned`` per class of the search's trials (module docstring), its configuration
    at the upper end of the learning rates; none without a search."""
    space = plan.search
    if space is None:
        return []
    axes = space.grid_values()
    low, high = min(axes["learning_rate"]), max(axes["learning_rate"])
    warmups = len(axes["warmup_fraction"]) > 1
    sizes = ", ".join(str(b) for b in axes["batch_size"])
    found: list[Planned] = []
    for optimizer, schedule, warmup, method in product(
        axes["optimizer"], axes["schedule"], axes["warmup_fraction"], axes["method"]
    ):
        seeds = axes["seed"] if method == "lora" else axes["seed"][:1]
        for seed in seeds:
            config = space.config({
                "learning_rate": high, "optimizer": optimizer, "schedule": schedule,
                "warmup_fraction": warmup, "method": method,
                "batch_size": axes["batch_size"][0], "seed": seed,
            })
            which = (
                f"seed {seed}" if method == "lora"
                else f"seeds {', '.join(str(s) for s in axes['seed'])}"
            )
            label = (
                f"any search trial: {optimizer} {schedule} (warm-up {warmup:g}) {method}, "
                f"lr in [{low:g}, {high:g}], batch sizes {sizes}, {which}"
            )
            name = class_name(config, high, warmup=warmups)
            found.append(Planned(name, config, label=label, assumptions=(CLASS_ASSUMPTION,)))
    return found


def covering(
    claim: Claim, predictions: Sequence[Prediction], run: AttackRun
) -> Prediction | None:
    """The prediction ``run`` is checked against: its own (a planned attack), or for a search
    trial at a rate no larger than hi its class's; None: no prediction covers it."""
    by_name = {p.run: p for p in predictions}
    if run.name in by_name or run.role != "search":
        return by_name.get(run.name)
    high = search_high(claim)
    if not run.config.learning_rate <= high:
        return None
    for warmup in (False, True):
        found = by_name.get(class_name(run.config, high, warmup=warmup))
        if found is not None:
            return found
    return None


def unused_text(prediction: Prediction) -> str:
    """The text of a prediction no run was checked against."""
    if prediction.run.startswith(SEARCH_PREFIX):
        return "no finished search trial in this class (a trial the pruner stopped is no run)"
    return "the attack did not run"
