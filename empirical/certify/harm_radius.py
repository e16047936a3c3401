r"""T11 ``harm_radius`` for head-only attackers: exact harm radii by convex programming, a
certificate for a declared class of attackers, and the check of a measured head-only attack.

Head-only fine-tuning (``AttackConfig(method="head")``, ``empirical.engine.attack.untie_head``): the
body and the embeddings are frozen and the attacker trains an untied copy W of the output head,
so the logits at position p are W h_p with the features h_p fixed (one frozen forward pass).
Exact harm (empirical/measurement/proxies.py) counts example i iff every supervised token y_p
(response and
EOS) is the arg-max, i.e. W lies in the polyhedron {(w_{y_p} − w_j)·h_p > 0 ∀ p, j ≠ y_p}. Its
closure (≥ 0) is convex, and

    r_i = min ‖W − W_0‖_F  subject to  (w_{y_p} − w_j)·h_p ≥ 0  for all p, j ≠ y_p

is a convex QP whose value lower-bounds the distance at which example i can become harmful
(closure = relaxation: conservative; infeasible: r_i = ∞). T11 (theory.theorems.harm_radius)
turns radii into a harm ceiling over the ball B(W_0, R) and, with a reachable-radius schedule
R_t (clipped SGD: Σ_{s<t} η_s C, theory.optimizers; Adam/AdamW: T3's step bounds, through
``empirical.certify.independent.reachable_radius``), into certified minimum steps and a
weak-resistance certificate for every attack of the class.

The radii are computed by ``empirical.measurement.head_radii`` (a least-distance program per
example, solved exactly with a dual lower bound; Clarabel via cvxpy where it does not close).

The declared classes and their reachable radii R_t (R_∞ for the unbounded classes whose
steps contract, with T6: strong resistance) are ``empirical.certify.attacker_class``'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from empirical.certify.attacker_class import (
    STRONG_ASSUMPTIONS,
    AttackerClass,
    limit_radius,
    step_radii,
)
from empirical.certify.checks_base import PlannedCheck, missing
from empirical.certify.records import BoundCheck, PathConstants, not_applicable
from empirical.measurement.head_radii import (
    HeadFeatures,
    head_features,
    head_radii,
    radii_from_features,
)
from empirical.measurement.trajectory import Trajectory
from theory.conditions import HarmCertificate
from theory.errors import HftaInputError
from theory.theorems.harm_radius import THEOREM, certified_steps, harm_ceiling

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from empirical.datasets.data import Example

__all__ = [
    "STRONG_ASSUMPTIONS",
    "THEOREM",
    "AttackerClass",
    "HeadCertificate",
    "HeadFeatures",
    "certificate_from_radii",
    "certify_class",
    "check_harm_radius",
    "head_features",
    "head_radii",
    "limit_radius",
    "plan",
    "radii_from_features",
    "step_radii",
]

#: allowance on a measured distance ‖W_t − W_0‖ against R_t: float32 rounding of the iterates
DISTANCE_RELATIVE_TOLERANCE = 1e-5

ASSUMPTIONS: tuple[str, ...] = (
    "head-only attacker: the body and the input embeddings are frozen; only an untied copy W "
    "of the output head is trained (AttackConfig method 'head')",
    "exact features: h_p are the final hidden states of one frozen forward pass, checked to "
    "reproduce the model's logits as W_0 h_p (+ bias)",
    "harm is exact_harm on these examples (every supervised token the arg-max); examples that "
    "never count as harm (is_safe, or the refusal itself) get r_i = inf",
    "relaxation: the strict margins > 0 are relaxed to >= 0 (the closure), so each r_i is a "
    "lower bound on the distance at which example i can become harmful",
    "no estimated constants: r_i are solved convex programs (shrunk by 1e-6 relative and 1e-7 "
    "absolute for the solver's tolerance); R_t comes from theory's step bounds at the largest "
    "rates",
    "the attacker's t-th head lies in B(W_0, R_t): clipped SGD without momentum or weight "
    "decay (R_t = sum_{s<t} eta_s C), or Adam/AdamW (T3's step bounds)",
)


# ---------------------------------------------------------------------- the certificate
class HeadCertificate(BaseModel):
    """T11's certificate for a head-only attacker class on n examples.

    ``status`` is "certified" when no attack of the class can reach exact harm ≥ φ on these
    examples within the budget (count(R_T) < ⌈φn⌉); ``population_upper`` is the one-sided
    Clopper–Pearson upper bound (T8, at ``confidence``) on the fraction of prompts of the
    population with r_i ≤ R_T, and ``population_certified`` whether it is < φ.
    ``certified_steps``: the certified minimum steps to f ≥ φ (None: not within the budget).

    ``resistance``: "weak" (for the budget T, ``reachable_radius`` = R_T) or, for an unbounded
    class, "strong" (for every t, ``reachable_radius`` = R_∞ through T6; ``certified_steps``
    then looks at the ``listed_steps`` of the class's horizon only, and None on a refused
    class means "more than that many").
    """

    model_config = ConfigDict(frozen=True)

    status: Literal["certified", "not certified"]
    resistance: Literal["weak", "strong"] = "weak"
    attacker_class: AttackerClass
    phi: float
    confidence: float
    examples: int
    reachable_radius: float
    harm_at_start_ceiling: float
    harm_ceiling: float
    population_upper: float
    population_certified: bool
    certified_steps: int | None
    radii_quantiles: dict[str, float | None]
    infinite_radii: int
    assumptions: list[str]
    covers: str
    listed_steps: int | None = None

    @property
    def radius_name(self) -> str:
        """R_inf (strong, every t) or R_T (weak, the budget)."""
        return "R_inf" if self.resistance == "strong" else "R_T"

    def steps_text(self) -> str:
        """The certified minimum steps to φ, in words."""
        if self.certified_steps is not None:
            return str(self.certified_steps)
        if self.resistance == "strong" and self.status != "certified":
            return f"more than {self.listed_steps} (the listed horizon)"
        return "never" if self.resistance == "strong" else "none within the budget"

    def summary(self) -> str:
        return (
            f"{self.status} ({self.resistance} resistance): {self.covers}; harm ceiling "
            f"{self.harm_ceiling:.3f} at {self.radius_name} = {self.reachable_radius:.4g} on "
            f"{self.examples} examples (population upper {self.population_upper:.3f} at "
            f"{self.confidence:g}), phi = {self.phi:g}; certified minimum steps to phi: "
            f"{self.steps_text()}"
        )

    def harm_certificate(self, proxy: str = "exact_harm") -> HarmCertificate:
        """The certificate as theory's ``HarmCertificate`` (what ``StrongResistance`` accepts):
        about the harm proxy on these examples, every attack of the class, every t only for a
        strong certificate; its threshold is the harm ceiling."""
        granted, strong = self.status == "certified", self.resistance == "strong"
        return HarmCertificate(
            about="harm_proxy",
            proxy=proxy,
            threshold=self.harm_ceiling if granted else 1.0,
            every_step=strong and granted,
            every_attack=granted,
            threat_model=self.attacker_class.label(),
            source="T11 harm_radius" + (" + T6 contraction_tail" if strong else ""),
            description=self.summary(),
        )


def _quantiles(radii: Sequence[float]) -> dict[str, float | None]:
    finite = np.array([r for r in radii if math.isfinite(r)], dtype=float)
    keys = {"min": 0.0, "q10": 0.1, "q25": 0.25, "median": 0.5, "q75": 0.75, "max": 1.0}
    if finite.size == 0:
        return dict.fromkeys(keys)
    # infinite radii sit above every finite one: quantiles over all radii
    ordered = np.sort(np.concatenate([finite, np.full(len(radii) - finite.size, np.inf)]))
    picked = {k: float(np.quantile(ordered, q, method="lower")) for k, q in keys.items()}
    return {k: (v if math.isfinite(v) else None) for k, v in picked.items()}


def certificate_from_radii(
    radii: Sequence[float],
    cls: AttackerClass,
    schedule: Sequence[float],
    phi: float,
    confidence: float,
) -> HeadCertificate:
    """The certificate from radii and the class's reachable radii R_1 … R_T (``step_radii``)."""
    from theory.statistics import clopper_pearson

    if not 0.0 < confidence < 1.0:
        raise HftaInputError(f"confidence must be in (0, 1), got {confidence}")
    THEOREM.check_assumptions(phi=phi)
    strong = cls.unbounded
    reach = limit_radius(cls) if strong else float(schedule[-1])
    ceiling = harm_ceiling(radii, reach)
    inside = sum(1 for r in radii if r <= reach)
    upper = clopper_pearson(inside, len(radii), 1.0 - confidence, side="upper").upper
    steps = certified_steps(radii, schedule, phi)
    # weak: R_t is non-decreasing, so count(R_T) < ⌈φn⌉ iff no t ≤ T reaches it;
    # strong: every R_t < R_∞, so the ceiling at R_∞ decides for every t
    granted = certified_steps(radii, [reach], phi) is None
    assumptions = list(ASSUMPTIONS[:-1] + STRONG_ASSUMPTIONS) if strong else list(ASSUMPTIONS)
    scope = " at every step t (no budget)" if strong else " within its budget"
    return HeadCertificate(
        status="certified" if granted else "not certified",
        resistance="strong" if strong else "weak",
        attacker_class=cls,
        phi=phi,
        confidence=confidence,
        examples=len(radii),
        reachable_radius=reach,
        harm_at_start_ceiling=harm_ceiling(radii, 0.0),
        harm_ceiling=ceiling,
        population_upper=upper,
        population_certified=upper < phi,
        certified_steps=steps,
        radii_quantiles=_quantiles(radii),
        infinite_radii=sum(1 for r in radii if math.isinf(r)),
        assumptions=assumptions,
        covers=f"every attack of the class {cls.label()}{scope}",
        listed_steps=len(schedule) if strong else None,
    )


def certify_class(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    cls: AttackerClass,
    phi: float,
    confidence: float,
    *,
    refusal: str | None = None,
) -> HeadCertificate:
    """Certify (or not) weak resistance of ``model`` on ``examples`` against every attack of
    ``cls`` at threshold φ, or strong resistance for an unbounded class (T11, and T6 for the
    unbounded class's R_∞; the module docstring says what it assumes)."""
    THEOREM.check_assumptions(phi=phi)
    features = head_features(model, tokenizer, examples, refusal=refusal)
    radii = radii_from_features(features)
    schedule = step_radii(
        cls, int(features.head.size), float(np.linalg.norm(features.head)) or None
    )
    return certificate_from_radii(radii, cls, schedule, phi, confidence)


# ---------------------------------------------------------------------- the check
INEQUALITY = "f(W_t) <= #{r_i <= ||W_t - W_0||}/n at every evaluation, ||W_t - W_0|| <= R_t"


def check_harm_radius(
    trajectory: Trajectory,
    radii: Sequence[float],
    schedule: Sequence[float],
    *,
    phi: float | None = None,
) -> BoundCheck:
    """T11 on a measured head-only attack whose harm was evaluated on the examples of
    ``radii``: at every evaluation f(W_t) ≤ ``harm_ceiling(radii, ‖W_t − W_0‖)`` and at every
    iterate ‖W_t − W_0‖ ≤ R_t (``schedule[t-1]``, with a float32 allowance); with ``phi`` the
    measured first evaluation with f ≥ φ is compared with ``certified_steps``."""
    name = THEOREM.name
    if trajectory.config.get("method") != "head":
        return not_applicable(THEOREM.label, name, INEQUALITY, "not a head-only attack")
    distances = trajectory.distance_from_start
    instances = violations = 0
    first: int | None = None
    worst_harm: tuple[float, int] | None = None
    worst_distance: tuple[float, int] | None = None
    for step in range(1, len(distances)):
        distance = distances[step]
        if distance is None or step > len(schedule):
            continue
        allowed = schedule[step - 1] * (1.0 + DISTANCE_RELATIVE_TOLERANCE)
        slack = allowed - distance
        instances += 1
        if worst_distance is None or slack < worst_distance[0]:
            worst_distance = (slack, step)
        if slack < 0:
            violations += 1
            first = step if first is None else min(first, step)
    for evaluation in trajectory.evaluations:
        distance = distances[evaluation.step] if evaluation.step < len(distances) else None
        if evaluation.harm is None or distance is None:
            continue
        slack = harm_ceiling(radii, distance) - evaluation.harm
        instances += 1
        if worst_harm is None or slack < worst_harm[0]:
            worst_harm = (slack, evaluation.step)
        if slack < -1e-12:
            violations += 1
            first = evaluation.step if first is None else min(first, evaluation.step)
    certified: int | None = None
    measured: int | None = None
    if phi is not None:
        certified = certified_steps(radii, schedule, phi)
        measured = next(
            (e.step for e in trajectory.evaluations if e.harm is not None and e.harm >= phi),
            None,
        )
        instances += 1
        if measured is not None and (certified is None or measured < certified):
            violations += 1
            first = measured if first is None else min(first, measured)
    worst = min((w for w in (worst_harm, worst_distance) if w is not None), default=None)
    return BoundCheck(
        label=THEOREM.label,
        name=name,
        inequality=INEQUALITY,
        status="violated" if violations else "holds",
        instances=instances,
        violations=violations,
        first_violation_step=first,
        worst_slack=None if worst is None else worst[0],
        worst_step=None if worst is None else worst[1],
        tolerance=f"distance x (1 + {DISTANCE_RELATIVE_TOLERANCE:g}) (float32 iterates); "
        "harm compared exactly (a fraction of n)",
        threshold=phi,
        steps_kind=None if phi is None else "minimum",
        certified_steps=certified,
        certified_unreachable=phi is not None and certified is None,
        measured_steps=measured,
        details={
            "worst_harm_slack": None if worst_harm is None else worst_harm[0],
            "worst_distance_slack": None if worst_distance is None else worst_distance[0],
            "examples": len(radii),
        },
    )


def plan(
    trajectory: Trajectory, constants: PathConstants, threshold: float | None
) -> list[PlannedCheck]:
    """Not applicable on a bare trajectory: the harm radii of its evaluation examples are not
    part of it (``check_harm_radius`` with ``head_radii`` and ``step_radii`` checks it)."""
    return [missing(THEOREM, "head harm radii r_i of the evaluation examples (hfta certify)")]
