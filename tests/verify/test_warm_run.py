"""A rerun whose every stage hits its cache: no model loaded, transformers never imported,
the same verdict; and the caches that make it so (the start point, the stability outcome).

The modules on that path import transformers for types only (under ``TYPE_CHECKING``): the
proxies, ``empirical.datasets.text``, ``empirical.defences.base``; the predictions read ‖θ_0‖
back from ``workspace.cached_start_point``. The end-to-end check below stands the predictions
in and claims no defence; ``empirical.engine.schedules`` still calls transformers'
``get_scheduler`` at run time where a stage computes a schedule's rates.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from empirical.verify import stages
from empirical.verify.claim import parse_claim, resolve_data
from empirical.verify.workspace import VerifyOptions, Workspace, cached_start_point
from tests.verify._claims import tiny_claim

ROOT = Path(__file__).resolve().parents[2]

RUN = """
import sys
import empirical.models.model as model
from empirical.verify.api import verify_claim
from empirical.verify.predict import Predictions
from empirical.verify.stages import Services
from empirical.verify.workspace import VerifyOptions

loads = []
load_model = model.load_model
def counted(*args, **kwargs):
    loads.append(args)
    return load_model(*args, **kwargs)
model.load_model = counted

def predict(claim, data, plan, workspace, immunized, log):
    return Predictions(proxy=claim.harm.proxy, predictions=[], constants=[], seconds=0.0)

result = verify_claim(sys.argv[1], sys.argv[2], force=True,
                      services=Services(predict=predict), options=VerifyOptions(progress=False))
print(result.exit_code, len(loads), int("transformers" in sys.modules))
"""


@dataclass(frozen=True)
class Run:
    """One ``verify_claim`` in a fresh process: its exit code, how many models it loaded,
    whether it imported transformers, and the verdict document it wrote."""

    exit_code: int
    models_loaded: int
    transformers: bool
    verdict: dict[str, Any]


def _verify(claim: Path, out: Path) -> Run:
    done = subprocess.run([sys.executable, "-c", RUN, str(claim), str(out)], cwd=ROOT,
                          check=True, capture_output=True, text=True)
    code, loads, transformers = done.stdout.strip().splitlines()[-1].split()
    verdict = json.loads((out / "verdict.json").read_text())
    return Run(int(code), int(loads), transformers == "1", verdict)


def _comparable(value: Any) -> Any:
    """A verdict document without what differs between any two runs: seconds, and whether a
    stage's result came from the cache."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()
                if k not in ("timing", "seconds", "wall_seconds", "cached", "measured_again")}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


@pytest.fixture(scope="module")
def cold_and_warm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Run]:
    """A tiny real verification (two 10-step attacks on the embedded model), then the same
    again on its cache; the predictions stood in (module docstring)."""
    folder = tmp_path_factory.mktemp("warm")
    claim = folder / "claim.toml"
    claim.write_text(tiny_claim("warm", budget_steps=10, attack_examples=8,
                                evaluation_examples=8))
    cold = _verify(claim, folder / "out")
    return cold, _verify(claim, folder / "out")


@pytest.mark.slow
def test_a_fully_cached_verify_loads_no_model_and_gives_the_same_verdict(
    cold_and_warm: tuple[Run, Run],
) -> None:
    cold, warm = cold_and_warm
    assert cold.models_loaded > 0  # the negative control: the count sees the attacks' loads
    assert warm.models_loaded == 0
    assert warm.exit_code == cold.exit_code
    assert _comparable(warm.verdict) == _comparable(cold.verdict)


@pytest.mark.slow
def test_a_fully_cached_verify_imports_no_transformers(cold_and_warm: tuple[Run, Run]) -> None:
    cold, warm = cold_and_warm
    assert cold.transformers  # the negative control: the cold run trains, so it is seen
    assert not warm.transformers


def test_the_executors_import_no_torch() -> None:
    """The attack executor reads the store without torch; torch comes with the first attack."""
    code = ("import sys, empirical.verify.executors, empirical.verify.search; "
            "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.negative_control
def test_the_import_check_sees_torch() -> None:
    code = "import sys, empirical.models.model as m; m.load_model; import torch; print('ok')"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT,
                          check=True, capture_output=True, text=True)
    assert "| torch" in done.stderr


def test_the_start_point_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from empirical.verify import theory

    workspace = Workspace(tmp_path)
    measured = cached_start_point(workspace, None)
    assert measured == theory.start_point(None)
    assert len(list(workspace.theory.glob("start-*.json"))) == 1

    def no_load(path: Path | None) -> tuple[int, float]:
        raise AssertionError("the model was loaded again")

    monkeypatch.setattr(theory, "start_point", no_load)
    assert cached_start_point(workspace, None) == measured


STABILITY = """
[claim]
name = "stability cache"

[defence]
name = "none"

[model]
original_path = "{original}"

[data]
evaluation_examples_per_category = 10
reference_examples_per_category = 5
attack_examples_per_category = 10

[threat_model]
budget_steps = 10
learning_rates = [1e-3]
seeds = [0]

[harm]
phi = 0.5

[stability]
epsilon = {epsilon}

[conditions]
claimed = ["stability"]
"""


def test_the_stability_outcome_is_cached_by_its_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from empirical.models.model import EMBEDDED_MODEL_DIR

    claim = parse_claim(STABILITY.format(original=EMBEDDED_MODEL_DIR, epsilon=0.05))
    data = resolve_data(claim, None)
    workspace, options = Workspace(tmp_path), VerifyOptions(progress=False)
    measured = stages.measure_stability(claim, data, EMBEDDED_MODEL_DIR, None, options,
                                        workspace=workspace)
    assert measured is not None

    def no_load(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was loaded again")

    monkeypatch.setattr("empirical.models.model.load_model", no_load)
    again = stages.measure_stability(claim, data, EMBEDDED_MODEL_DIR, None, options,
                                     workspace=workspace)
    assert again is not None
    assert again.verdict == measured.verdict and again.values == measured.values
    # another epsilon is another key: measured again (so the stand-in load is reached)
    other = parse_claim(STABILITY.format(original=EMBEDDED_MODEL_DIR, epsilon=0.1))
    with pytest.raises(AssertionError, match="loaded again"):
        stages.measure_stability(other, data, EMBEDDED_MODEL_DIR, None, options,
                                 workspace=workspace)
