"""``hfta verify --device``: every stage of a verification loads its models and runs its
attacks on the requested device, a device that cannot run is refused before anything is
written, and a verification on another device keeps its caches apart from the CPU's.

This machine has no GPU, so the plumbing is checked with a spy: ``load_model`` records the
device each stage asks for and loads on the CPU, and the stand-in attacker records the device
of every attack configuration it is given. A GPU session runs the real thing
(``benchmarks/gpu_bench.py``)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from torch import nn

from empirical.measurement.trajectory import Trajectory
from empirical.models import model as model_module
from empirical.verify.api import check_options
from empirical.verify.claim import ClaimData
from empirical.verify.stages import Services, prepare, verify
from empirical.verify.workspace import VerifyOptions, Workspace, device_root, work_directory
from tests.verify.test_cli_verify import _invoke
from tests.verify.test_stages import StandIn, _claim
from theory.errors import HftaInputError

#: a defence (replaced by ``_identity_defence``), a certified head-only class (R_T = 0.2, below
#: every harm radius of the embedded model, so its strongest attack runs) and trainability
EVERY_STAGE = {
    "original_path = ": "path = ",
    '[defence]\nname = "none"': (
        '[defence]\nname = "adversarial-loss"\n[defence.hyperparameters]\nsteps = 1'
    ),
    '[conditions]\nclaimed = ["weak_resistance"]\nmeasured = ["stability"]': (
        '[trainability]\nsource = "embedded"\nevaluation_examples = 20\nbudget_steps = 40\n'
        'learning_rate = 1e-3\nschedule = "constant"\nbatch_size = 8\neval_every_steps = 10\n'
        'epsilon_quality = 0.1\nepsilon_steps = 20\n\n'
        '[conditions]\nclaimed = ["weak_resistance"]\nmeasured = ["stability", "trainability"]\n\n'
        '[[certify.classes]]\noptimizer = "sgd"\nmax_learning_rate = 0.005\n'
        'schedule = "constant"\nbudget_steps = 40\nclip = 1.0'
    ),
}


class WithCapability(StandIn):
    """The stand-in attacker, its trajectories also measuring capability (trainability)."""

    def __call__(self, configs: Any, **options: Any) -> list[Trajectory]:
        return [
            t.model_copy(update={
                "evaluations": [e.model_copy(update={"capability": 0.5}) for e in t.evaluations]
            })
            for t in super().__call__(configs, **options)
        ]


def _identity_defence(
    name: str, hyperparameters: Mapping[str, Any], model: nn.Module, tokenizer: Any,
    data: ClaimData,
) -> tuple[nn.Module, dict[str, Any]]:
    return model, {"stand_in": name}


def _spy_on_loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(calling function, device asked for) of every ``load_model`` call from now on; the
    model is loaded on the CPU whatever the device (this machine has no other)."""
    asked: list[tuple[str, str]] = []
    load = model_module.load_model

    def spy(path: Path | None = None, *, device: str = "cpu", dtype: Any = None) -> Any:
        asked.append((sys._getframe(1).f_code.co_name, device))
        return load(path, device="cpu", dtype=dtype)

    monkeypatch.setattr(model_module, "load_model", spy)
    return asked


def _off_device(asked: list[tuple[str, str]], device: str) -> list[tuple[str, str]]:
    """The loads that asked for another device than ``device``, except θ_0's norm and
    dimension (``start_point``), which are read on the CPU: the same bytes on every device."""
    return [(caller, d) for caller, d in asked if caller != "start_point" and d != device]


def test_every_stage_asks_for_the_requested_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _spy_on_loads(monkeypatch)
    attacker = WithCapability()
    claim = _claim(**EVERY_STAGE)
    result = verify(
        prepare(claim), Workspace(tmp_path),
        options=VerifyOptions(progress=False, device="cuda"),
        services=Services(run_attacks=attacker, measure_path=False,
                          apply_defence=_identity_defence),
    )
    roles = {run.role for run in result.runs}
    assert {"grid", "original", "trainability"} <= roles, roles
    assert result.certification is not None
    assert any(c.strongest_attack for c in result.certification.classes)
    assert result.environment["device"] == "cuda"
    callers = {caller for caller, _ in asked}
    # the defence, the predictions' margins, the head radii of M* and M, the stability pass
    assert {"immunize", "_margins", "head_radii_of", "measure_stability"} <= callers, callers
    assert not _off_device(asked, "cuda"), asked
    assert attacker.ran and {config.device for config in attacker.ran} == {"cuda"}
    methods = {config.method for config in attacker.ran}
    assert "head" in methods  # the certified class's strongest attack is among them


@pytest.mark.negative_control
def test_the_spy_sees_a_stage_that_ignores_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stability stage that loads its models on the CPU whatever the options say is seen
    by the criterion the test above applies."""
    asked = _spy_on_loads(monkeypatch)
    from empirical.verify import stages

    original: Any = stages.measure_stability

    def on_the_cpu(*args: Any, **kwargs: Any) -> Any:
        options = args[4]
        cpu = VerifyOptions(progress=options.progress, device="cpu")
        return original(*args[:4], cpu, *args[5:], **kwargs)

    monkeypatch.setattr(stages, "measure_stability", on_the_cpu)
    verify(prepare(_claim()), Workspace(tmp_path),
           options=VerifyOptions(progress=False, device="cuda"),
           services=Services(run_attacks=StandIn(), measure_path=False))
    assert _off_device(asked, "cuda") == [("measure_stability", "cpu")] * 2, asked


def test_a_device_that_cannot_run_is_refused() -> None:
    for options, message in (
        (VerifyOptions(device="tpu"), "device must be cpu or cuda"),  # type: ignore[arg-type]
        (VerifyOptions(device="cuda", workers=2), "one worker"),
        (VerifyOptions(device="cuda", executor="ray"), "one worker"),
    ):
        with pytest.raises(HftaInputError, match=message):
            check_options(options)
    check_options(VerifyOptions(device="cpu", workers=2))  # the CPU takes several workers


def test_cuda_without_a_gpu_exits_2_before_writing(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    out = tmp_path / "out"
    for args, message in (
        (["--device", "cuda"], "no CUDA device"),
        (["--device", "tpu"], "device must be cpu or cuda"),
        (["--device", "cuda", "--workers", "2"], "one worker"),
    ):
        code, errors = _invoke(["verify", *args, "--out", str(out)])
        lines = errors.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, errors)
    assert not out.exists() and not work_directory(out).exists()


def test_another_device_keeps_its_own_caches(tmp_path: Path) -> None:
    work = work_directory(tmp_path / "out")
    assert device_root(work, "cpu") == work  # the layout of every CPU run so far
    assert device_root(work, "cuda") == work / "cuda"
    assert Workspace(device_root(work, "cuda")).store.directory != Workspace(work).store.directory
