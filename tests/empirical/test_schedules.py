"""``empirical.engine.schedules.learning_rates`` evaluates each ``LambdaLR``'s
``base_lr * lr_lambda(s)`` directly: the same floats as stepping an optimizer and the
scheduler, which is what an attack does."""

from __future__ import annotations

import pytest
import torch

from empirical.engine.attack_config import ScheduleName
from empirical.engine.schedules import SCHEDULES, learning_rates, make_scheduler, stepped_rates


def _stepped(
    schedule: ScheduleName, rate: float, warmup: float, steps: int, decay: float | None
) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=rate)
    scheduler = make_scheduler(
        optimizer,
        schedule,
        warmup_fraction=warmup,
        total_steps=steps,
        decay=decay,
    )
    return stepped_rates(optimizer, scheduler, steps)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize(
    ("rate", "warmup", "steps"), [(3e-4, 0.1, 200), (0.1, 0.0, 37), (0.03, 0.25, 1)]
)
def test_direct_rates_equal_the_stepped_scheduler(
    schedule: ScheduleName, rate: float, warmup: float, steps: int
) -> None:
    decay = 0.97 if schedule == "exponential" else None
    direct = learning_rates(schedule, rate, warmup_fraction=warmup, total_steps=steps, decay=decay)
    assert direct == _stepped(schedule, rate, warmup, steps, decay)
    assert all(type(value) is float for value in direct)


def test_a_different_rate_is_told_apart() -> None:
    """Control: the comparison above sees one ulp (the rates are compared as floats)."""
    direct = learning_rates("cosine", 3e-4, warmup_fraction=0.1, total_steps=50)
    nudged = [
        *direct[:-1],
        float(
            torch.nextafter(
                torch.tensor(direct[-1], dtype=torch.float64),
                torch.tensor(1.0, dtype=torch.float64),
            )
        ),
    ]
    assert nudged != _stepped("cosine", 3e-4, 0.1, 50, None)
