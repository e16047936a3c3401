"""Marks shared by test modules: ``needs_embedded`` skips where the embedded model has not
been built (a fresh checkout before ``hfta build-model``), and ``EMBEDDED_SLOW`` is the
``pytestmark`` of a module that runs the embedded model throughout."""

from __future__ import annotations

import pytest

from empirical.models.model import EMBEDDED_MODEL_DIR

needs_embedded = pytest.mark.skipif(
    not (EMBEDDED_MODEL_DIR / "config.json").is_file(),
    reason="embedded model not built yet (empirical/assets/embedded)",
)

EMBEDDED_SLOW: list[pytest.MarkDecorator] = [pytest.mark.slow, needs_embedded]
