"""Shared pytest configuration: hypothesis profiles chosen by ``HYPOTHESIS_PROFILE``.

* ``ci`` (default): few examples, no deadline, derandomized so CI is reproducible.
* ``thorough``: many examples, for a long local run:
  ``HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=500,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

try:  # one intra-op thread: tiny models run faster single-threaded on small CPUs
    import torch
except ImportError:  # pragma: no cover - theory-only installs
    torch = None  # type: ignore[assignment]
else:
    torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread in every test module, whatever a command run by an earlier module
    set, and the count restored after it."""
    if torch is None:  # pragma: no cover - theory-only installs
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="module")
def _fresh_evaluation_caches() -> Iterator[None]:
    """Every test module starts with the process's evaluation caches empty
    (``empirical.engine.evaluation_cache``), so what a module tests does not depend on which
    modules ran before it."""
    if torch is None:  # pragma: no cover - theory-only installs
        yield
        return
    from empirical.engine.evaluation_cache import FIRST_SCORES, SETS

    SETS.clear()
    FIRST_SCORES.clear()
    yield


@pytest.fixture(scope="module")
def embedded() -> Any:
    """The embedded tiny GPT-2 and its tokenizer (``load_model(None)``), once per module."""
    from empirical.models.model import load_model

    return load_model(None)


@pytest.fixture(scope="module")
def held_out_prompts() -> Any:
    """Twenty held-out harmful prompts of the embedded benchmark (seed 0, every tenth of the
    categories ``next`` and ``flip``: the demo's evaluation set, thinned)."""
    from empirical.engine.attack import _embedded_benchmark

    benchmark = _embedded_benchmark(0)
    return [e for e in benchmark.evaluation if e.category in ("next", "flip")][::10]


@pytest.fixture(scope="module")
def held_out_file(held_out_prompts: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``held_out_prompts`` as JSONL."""
    from empirical.datasets.data import save_examples

    path = tmp_path_factory.mktemp("data") / "evaluation.jsonl"
    save_examples(held_out_prompts, path)
    return path
