"""Immunization defences of the literature as plug-ins (issue #5).

Each defence is a ``Defence`` subclass (``empirical.defences.base``) with a frozen pydantic
``Config`` holding the paper's hyperparameters and their provenance, registered by name:

* ``alignment``: plain safety alignment (SFT on refusals and harmless data), the baseline;
* ``adversarial-loss`` / ``adversarial-loss-bounded``: Rosati et al. 2024's demonstration;
* ``repnoise``: Representation Noising (Rosati et al., NeurIPS 2024);
* ``vaccine``: perturbation-aware alignment (Huang et al., NeurIPS 2024);
* ``booster``: harmful-perturbation attenuation (Huang et al., ICLR 2025);
* ``tar``: tamper-resistant safeguards by first-order meta-learning (Tamirisa et al., 2024);
* ``condition-number``: Zheng, Bai, Bullins, Yeh (ICML 2025), with the paper's linear setting in
  ``empirical.defences.condition_number``;
* ``contraction``: a CLAMP-like penalty that makes a simulated attacker's steps contract (T6).

    from empirical.defences import DefenceData, get
    defence = get("repnoise")
    result = defence.apply(model, tokenizer, DefenceData.from_benchmark(),
                           defence.configure(steps=100))
    result.model, result.record

The classes are imported on first use (PEP 562), so that listing the defences
(``names()``, ``descriptions()``: ``hfta immunize --list``) imports neither torch nor
transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from empirical.defences.registry import descriptions, get, names, register

if TYPE_CHECKING:
    from empirical.defences.base import (
        Defence,
        DefenceBatch,
        DefenceConfig,
        LossDefence,
        StepOutcome,
        Term,
        TrainingState,
    )
    from empirical.defences.data import DefenceData, SplitFingerprint
    from empirical.defences.record import DefenceRecord, DefenceResult, ModelScores, StepRecord

_LAZY: dict[str, str] = {
    **dict.fromkeys(
        [
            "Defence",
            "DefenceBatch",
            "DefenceConfig",
            "LossDefence",
            "StepOutcome",
            "Term",
            "TrainingState",
        ],
        "base",
    ),
    **dict.fromkeys(["DefenceData", "SplitFingerprint"], "data"),
    **dict.fromkeys(["DefenceRecord", "DefenceResult", "ModelScores", "StepRecord"], "record"),
}


def __getattr__(name: str) -> Any:
    """Import ``name`` from its module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'empirical.defences' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"empirical.defences.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Defence",
    "DefenceBatch",
    "DefenceConfig",
    "DefenceData",
    "DefenceRecord",
    "DefenceResult",
    "LossDefence",
    "ModelScores",
    "SplitFingerprint",
    "StepOutcome",
    "StepRecord",
    "Term",
    "TrainingState",
    "descriptions",
    "get",
    "names",
    "register",
]
