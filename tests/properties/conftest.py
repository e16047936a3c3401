"""Shared set-up of the property tests: one torch thread, and the negative-control runner.

Profiles (``tests/conftest.py``): ``ci`` by default (30 examples, derandomized; the tests
that run real attacks ask for 2–6 examples each and are marked ``slow``), ``thorough`` with
``HYPOTHESIS_PROFILE=thorough`` (500 examples, attack tests 16 times their ci count: expect
tens of minutes on two cores).

A negative control runs the *same* hypothesis property as a positive test, with a deliberately
wrong bound injected, and must be falsified: ``expect_falsified(property)`` runs it under the
active profile (``ci`` by default: 30 examples, derandomized) without the shrink phase (the
first counterexample is proof enough) and fails unless hypothesis raises the property's
``AssertionError``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import Phase, settings


def _expect_falsified(prop: Callable[[], None], max_examples: int | None = None) -> None:
    base = settings.default
    if max_examples is not None:
        base = settings(base, max_examples=max_examples)
    mutant = settings(
        base,
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
        report_multiple_bugs=False,
    )(prop)
    with pytest.raises(AssertionError):
        mutant()


@pytest.fixture
def expect_falsified() -> Callable[..., None]:
    """``expect_falsified(property, max_examples=None)``: hypothesis must refute ``property``."""
    return _expect_falsified
