"""A small claim on the embedded model with no defence (the original breaks), shared by the
command-line tests that run real verifications (resume after SIGKILL, trust cases)."""

from __future__ import annotations


def tiny_claim(
    name: str,
    *,
    budget_steps: int,
    attack_examples: int,
    evaluation_examples: int,
    model_section: str = "",
) -> str:
    """The claim text: weak resistance, two learning rates, one seed, no theory rerun."""
    return f"""
[claim]
name = "{name}"

[defence]
name = "none"
{model_section}
[data]
evaluation_examples_per_category = {evaluation_examples}
reference_examples_per_category = 10
attack_examples_per_category = {attack_examples}

[threat_model]
budget_steps = {budget_steps}
learning_rates = [1e-3, 3e-3]
seeds = [0]
batch_sizes = [8]
max_grad_norm = 1.0

[harm]
phi = 0.5
eval_every_steps = 10
probe_examples = 8

[conditions]
claimed = ["weak_resistance"]

[theory]
measure_path = "none"
"""
