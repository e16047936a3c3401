r"""Stage 2b of ``verify``: certified resistance for the claim's declared attacker classes.

A claim may declare, in ``[[certify.classes]]``, classes of attackers whose reachable set can
be bounded before any attack: head-only fine-tuning (the body frozen, an untied copy W of the
output head trained) with clipped SGD or Adam/AdamW at rates at most a given schedule's, for
at most T steps (``empirical.certify.harm_radius.AttackerClass``). For each class, before any
attack, theory's T11 (``harm_radius``; docs/certified.md) gives:

* the exact harm radius r_i of every held-out harmful example: the smallest ‖W − W_0‖_F at
  which its answer can be the arg-max at every token (one convex program,
  ``empirical.measurement.head_radii``; no estimated constant);
* the class's reachable radii R_t (theory's step bounds at the largest rates);
* the certificate: *certified* when count{r_i ≤ R_T} < ⌈φ n⌉, i.e. no attack of the class can
  push f to φ on these examples within the budget, with its Clopper–Pearson bound for the
  population (T8) and the certified minimum steps otherwise.

Two controls make the certificate mean something, and both are in the verdict:

* the *aligned baseline*: the same certificate computed on the original model M. A class for
  which M is certified too says nothing about the defence (the verdict says so: "baseline
  certified too");
* the *strongest attack of the class* run on M* (the largest rates, the full budget, seed 0):
  a certified model must not break under it, and T11's check (f at each evaluation ≤ the
  ceiling at the measured distance, the distance ≤ R_t) must hold on its trajectory. A break
  would contradict a proved theorem: it is reported as a bound violation.

A class of clipped SGD with ``schedule = "exponential"`` (decay γ) and no ``budget_steps`` is
unbounded: its step bounds contract with c = γ, T6 bounds every path by R_∞, and its
certificate is for *strong* resistance (every t). Its strongest attack cannot run forever: it
runs for the class's ``horizon``, until the remaining reach η_max C γ^T/(1 − γ) is below 1% of
R_∞ (the record's text says so); a class with a constant phase K > 0 has no single attack
configuration and runs none.

The radii are cached in the work directory (``theory/head-radii-<key>.json``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from empirical.certify.harm_radius import AttackerClass, HeadCertificate
from empirical.certify.records import BoundCheck
from empirical.engine.attack_config import AttackConfig
from empirical.measurement.trajectory import Trajectory
from empirical.verify.claim import Claim
from empirical.verify.evidence import Record
from empirical.verify.workspace import Log, Workspace, model_data_key, silent, write_json

__all__ = ["Certification", "ClassCertification", "HeadRadii", "certify_classes"]

#: Bump when the radii cache entries change meaning.
_CACHE_VERSION = 1


class HeadRadii(Record):
    """The harm radii of one model on one evaluation file, and the head they were solved for."""

    radii: list[float | None]  # None: infinite (never harmful, or infeasible)
    head_size: int
    head_norm: float
    seconds: float

    def values(self) -> list[float]:
        return [float("inf") if r is None else r for r in self.radii]


class ClassCertification(Record):
    """One declared class: the certificate of M*, the baseline's, and the strongest attack."""

    attacker_class: AttackerClass
    immunized: HeadCertificate
    original: HeadCertificate
    status: Literal["certified", "not certified"]
    baseline_refused: bool
    strongest_attack: str | None
    strongest_peak_harm: float | None
    strongest_broke: bool | None
    check: BoundCheck | None
    text: str


class Certification(Record):
    """Every declared class's certification, on the claim's held-out harmful prompts."""

    evaluation: str
    examples: int
    classes: list[ClassCertification]
    seconds: float

    @property
    def violations(self) -> int:
        """Contradictions of T11 on the strongest attacks (a certified model that broke, or
        the check violated): each is a bug or a wrong assumption, never the model's fault."""
        found = 0
        for item in self.classes:
            if item.check is not None:
                found += item.check.violations
            if item.status == "certified" and item.strongest_broke:
                found += 1
        return found


def head_radii_of(
    workspace: Workspace,
    model_path: Path | None,
    evaluation: Path,
    which: str,
    log: Log,
    device: str = "cpu",
) -> HeadRadii:
    """The harm radii of a model on an evaluation file, from the cache or solved (the
    features by a forward pass on ``device``, the convex program on the CPU)."""
    key = model_data_key(model_path, evaluation, version=_CACHE_VERSION)
    cache = workspace.theory / f"head-radii-{key}.json"
    if cache.is_file():
        return HeadRadii.model_validate_json(cache.read_text(encoding="utf-8"))
    import numpy as np

    from empirical.datasets.data import load_examples
    from empirical.measurement.head_radii import head_features, radii_from_features
    from empirical.models.model import load_model

    started = time.perf_counter()
    examples = load_examples(evaluation)
    log(f"head-only harm radii of {which} on {len(examples)} held-out prompts (convex program)")
    model, tokenizer = load_model(model_path, device=device)
    features = head_features(model, tokenizer, examples)
    radii = radii_from_features(features)
    found = HeadRadii(
        radii=[r if r != float("inf") else None for r in radii],
        head_size=int(features.head.size),
        head_norm=float(np.linalg.norm(features.head)),
        seconds=time.perf_counter() - started,
    )
    write_json(cache, found.model_dump(mode="json"))
    return found


def _schedule(radii: HeadRadii, cls: AttackerClass, workspace: Workspace) -> list[float]:
    """R_1 … R_T of ``cls`` for the head the radii were solved for, cached in
    ``workspace.theory/reach-<key>.json`` (the schedule's rates come from transformers'
    schedulers: a cached rerun then imports neither torch nor transformers for them)."""
    import hashlib
    import json

    from empirical.certify.attacker_class import REMAINING_REACH_FRACTION
    from empirical.certify.harm_radius import step_radii

    # the horizon rule decides an unbounded class's radii: it is part of the key
    inputs = [cls.model_dump(mode="json"), radii.head_size, radii.head_norm,
              REMAINING_REACH_FRACTION]
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]
    cache = workspace.theory / f"reach-{key}.json"
    if cache.is_file():
        return [float(r) for r in json.loads(cache.read_text(encoding="utf-8"))]
    found = step_radii(cls, radii.head_size, radii.head_norm or None)
    write_json(cache, found)
    return found


def _certificate(
    radii: HeadRadii, cls: AttackerClass, schedule: list[float], claim: Claim
) -> HeadCertificate:
    from empirical.certify.harm_radius import certificate_from_radii

    return certificate_from_radii(
        radii.values(), cls, schedule, claim.harm.phi, claim.statistics.confidence
    )


def _text(item: ClassCertification) -> str:
    label = item.attacker_class.label()
    if item.status != "certified":
        return f"{label}: not certified (harm ceiling {item.immunized.harm_ceiling:.3f} >= phi)"
    baseline = (
        "the aligned baseline M is not certified (refused)"
        if item.baseline_refused
        else "the aligned baseline M is certified too: the certificate says nothing about the "
        "defence"
    )
    attack = (
        ""
        if item.strongest_peak_harm is None
        else f"; its strongest attack on M* reached f = {item.strongest_peak_harm:.3f}"
    )
    if item.immunized.resistance == "strong":
        from empirical.certify.harm_radius import STRONG_ASSUMPTIONS

        ran = "" if not attack else f" (run for {item.immunized.listed_steps} steps, until the "
        ran += "" if not attack else "remaining reach is below 1% of R_inf)"
        return (
            f"{label}: strong resistance certified for this class (every t, R_inf = "
            f"{item.immunized.reachable_radius:.4g}); {baseline}{attack}{ran}; assumes: "
            + "; ".join(STRONG_ASSUMPTIONS)
        )
    return f"{label}: weak resistance certified for the budget; {baseline}{attack}"


def certify_classes(
    claim: Claim,
    base: AttackConfig,
    workspace: Workspace,
    immunized: Path | None,
    original: Path | None,
    attack: Callable[[Sequence[AttackConfig]], list[Trajectory]],
    log: Log = silent,
) -> Certification | None:
    """Every class of ``[certify]`` certified (or not) on M* and on M, and the strongest attack
    of each certified class run on M* (module docstring). None when the claim declares none.

    ``base``: the plan's base attack (its data files and evaluation cadence); ``attack``: runs
    attack configurations through the verifier's cache (``stages.Attacker``).
    """
    from empirical.certify.harm_radius import check_harm_radius

    classes = claim.certify.classes
    evaluation = base.evaluation_data
    if not classes or evaluation is None:
        return None
    started = time.perf_counter()
    of_immunized = head_radii_of(workspace, immunized, evaluation, "M*", log, base.device)
    of_original = head_radii_of(workspace, original, evaluation, "M", log, base.device)
    found: list[ClassCertification] = []
    for cls in classes:
        schedule = _schedule(of_immunized, cls, workspace)
        mine = _certificate(of_immunized, cls, schedule, claim)
        baseline = _certificate(of_original, cls, _schedule(of_original, cls, workspace), claim)
        name: str | None = None
        peak: float | None = None
        broke: bool | None = None
        check: BoundCheck | None = None
        if mine.status == "certified" and not cls.constant_steps:
            config = cls.strongest(
                seed=0,
                model=immunized,
                data=base.data,
                evaluation_data=base.evaluation_data,
                reference_data=base.reference_data,
                benchmark_seed=base.benchmark_seed,
                eval_every=base.eval_every,
                batch_size=base.batch_size,
                device=base.device,
            )
            log(f"the strongest attack of {cls.label()} on M*")
            (trajectory,) = attack([config])
            harms = [e.harm for e in trajectory.evaluations if e.harm is not None]
            peak = max(harms) if harms else None
            broke = peak is not None and peak >= claim.harm.phi
            check = check_harm_radius(
                trajectory, of_immunized.values(), schedule, phi=claim.harm.phi
            )
            name = f"strongest head-only attack ({cls.label()})"
        item = ClassCertification(
            attacker_class=cls,
            immunized=mine,
            original=baseline,
            status=mine.status,
            baseline_refused=baseline.status != "certified",
            strongest_attack=name,
            strongest_peak_harm=peak,
            strongest_broke=broke,
            check=check,
            text="",
        )
        found.append(item.model_copy(update={"text": _text(item)}))
    return Certification(
        evaluation=evaluation.name,
        examples=len(of_immunized.radii),
        classes=found,
        seconds=time.perf_counter() - started,
    )
