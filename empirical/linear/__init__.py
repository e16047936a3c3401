"""The linear path of condition-number immunization (Zheng, Bai, Bullins, Yeh, ICML 2025).

Task pairs from real files and scikit-learn's bundled data (``tasks``), the paper's training
loop and this project's variant (``training``), and a report that judges the result by the
slowdown it causes on gradient descent, next to RIR under two κ rules (``report``). One call
runs it all:

    from empirical.linear import bundled_pair, configure, run_condition_number
    report = run_condition_number(bundled_pair("digits:0-1:2-3"), configure("paper"))
    print("\\n".join(report.summary_lines()))

Imports numpy, torch and scikit-learn (for the bundled pairs), never transformers or peft.
See docs/condition_number.md.
"""

from __future__ import annotations

from empirical.linear.report import (
    ConditionNumberReport,
    JudgeConfig,
    Judgement,
    TaskSteps,
    gradient_descent_steps,
    judge_features,
    judge_immunization,
)
from empirical.linear.tasks import (
    BUNDLED_PAIRS,
    LinearTaskPair,
    bundled_pair,
    diabetes_pair,
    digits_pair,
    load_pair,
    save_pair,
    synthetic_task_pair,
)
from empirical.linear.training import (
    PRESETS,
    LinearImmunization,
    LinearImmunizationConfig,
    LinearStep,
    Progress,
    configure,
    immunize_linear,
)


def run_condition_number(
    pair: LinearTaskPair,
    config: LinearImmunizationConfig | None = None,
    judge: JudgeConfig | None = None,
    progress: Progress | None = None,
) -> ConditionNumberReport:
    """Immunize ``pair`` (``immunize_linear``) and judge the result (``judge_immunization``)."""
    result = immunize_linear(pair, config, progress)
    return judge_immunization(pair, result, judge)


__all__ = [
    "BUNDLED_PAIRS",
    "PRESETS",
    "ConditionNumberReport",
    "JudgeConfig",
    "Judgement",
    "LinearImmunization",
    "LinearImmunizationConfig",
    "LinearStep",
    "LinearTaskPair",
    "Progress",
    "TaskSteps",
    "bundled_pair",
    "configure",
    "diabetes_pair",
    "digits_pair",
    "gradient_descent_steps",
    "immunize_linear",
    "judge_features",
    "judge_immunization",
    "load_pair",
    "run_condition_number",
    "save_pair",
    "synthetic_task_pair",
]
