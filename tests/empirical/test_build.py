"""empirical.models.build and ``hfta build-model``: a deterministic recipe, exact scores, the
CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from empirical import cli
from empirical.commands.build_model import difference_summary
from empirical.datasets.benchmark import BenchmarkSizes
from empirical.models.build import (
    BuildRecipe,
    build_embedded_model,
    deterministic,
)
from empirical.models.model import EMBEDDED_MODEL_DIR, load_model, save_model
from empirical.models.reproducible import BuildPlatform, run_build_child

TINY = BuildRecipe(
    benchmark_sizes=BenchmarkSizes(
        pretrain=12,
        align=6,
        defence=2,
        attack=2,
        evaluation=4,
        reference=4,
        trainability_train=2,
        trainability_eval=4,
    ),
    n_layer=1,
    n_embd=16,
    n_head=2,
    batch_size=8,
    pretrain_steps=12,
    align_steps=4,
)


def _run_cli(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run ``hfta ARGS`` in this process through the console entry point."""
    monkeypatch.setattr(sys, "argv", ["hfta", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TINY recipe built as ``hfta build-model`` builds: a child process, pinned kernels."""
    directory = tmp_path_factory.mktemp("build") / "tiny"
    run_build_child(TINY.model_dump_json(), directory, "pinned")
    return directory


def test_the_recipe_is_bit_for_bit_reproducible(tiny_build: Path, tmp_path: Path) -> None:
    """Two pinned builds in two processes give the same bytes; so do two builds in this
    process (whatever kernels this process uses)."""
    run_build_child(TINY.model_dump_json(), tmp_path / "again", "pinned")
    first = (tiny_build / "model.safetensors").read_bytes()
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == first
    for name in ("here-1", "here-2"):
        built = build_embedded_model(TINY)
        save_model(built.model, built.tokenizer, tmp_path / name)
    here = (tmp_path / "here-1" / "model.safetensors").read_bytes()
    assert (tmp_path / "here-2" / "model.safetensors").read_bytes() == here


@pytest.mark.negative_control
def test_negative_control_another_seed_is_detected(tiny_build: Path, tmp_path: Path) -> None:
    other = build_embedded_model(TINY.model_copy(update={"seed": 1}))
    save_model(other.model, other.tokenizer, tmp_path / "other")
    first, second = tiny_build / "model.safetensors", tmp_path / "other" / "model.safetensors"
    assert first.read_bytes() != second.read_bytes()
    assert "tensors differ; largest |difference|" in difference_summary(first, second)
    assert difference_summary(first, first).startswith("same tensors")


def test_build_metrics_are_rates(tiny_build: Path) -> None:
    metrics = json.loads((tiny_build / "build.json").read_text())["metrics"]
    for name in ("harmless_accuracy", "refusal_rate", "latent_harm", "harm_after_alignment"):
        assert 0.0 <= metrics[name] <= 1.0
    assert set(metrics["latent_harm_by_skill"]) == {"next", "flip", "half"}
    assert metrics["parameters"] > 0


def test_deterministic_restores_torch_state() -> None:
    threads, flag = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with deterministic(1):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (
        threads,
        flag,
    )


def test_cli_builds_and_checks_a_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "recipe.json"
    recipe.write_text(TINY.model_dump_json())
    out = tmp_path / "built"
    code, stdout, _ = _run_cli(
        ["build-model", "--recipe", str(recipe), "--out", str(out)], monkeypatch, capsys
    )
    assert code == 0, stdout
    assert "harmless_accuracy" in stdout
    record = json.loads((out / "build.json").read_text())
    assert record["recipe"] == json.loads(TINY.model_dump_json())
    platform = BuildPlatform.model_validate(record["platform"])
    assert (platform.kernels, platform.cpu_capability) == ("pinned", "DEFAULT")
    code, stdout, _ = _run_cli(["build-model", "--check", "--out", str(out)], monkeypatch, capsys)
    assert (code, stdout.startswith("reproduced")) == (0, True)
    assert "(check: bytes;" in stdout.splitlines()[0]


@pytest.mark.negative_control
def test_negative_control_check_fails_on_other_weights(
    tiny_build: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = build_embedded_model(TINY.model_copy(update={"seed": 3}))
    target = tmp_path / "tampered"
    save_model(other.model, other.tokenizer, target)
    (target / "build.json").write_text((tiny_build / "build.json").read_text())
    code, stdout, _ = _run_cli(
        ["build-model", "--check", "--out", str(target)], monkeypatch, capsys
    )
    assert code == 1
    assert stdout.startswith("NOT reproduced") and "tensors differ" in stdout


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d: ["--out", str(d / "a_file")], "exists and is not a directory"),
        (lambda d: ["--out", str(d / "precious")], "not a model build"),
        (lambda d: ["--recipe", str(d / "bad.json"), "--out", str(d / "new")], "pretrain_steps"),
        (lambda d: ["--recipe", str(d / "missing.json"), "--out", str(d / "new")], "not found"),
        (lambda d: ["--recipe", str(d / "a_file"), "--out", str(d / "new")], "not valid JSON"),
        (lambda d: ["--check", "--out", str(d / "precious")], "to check against"),
        (lambda d: ["--check", "--recipe", str(d / "bad.json")], "takes the recipe from"),
        (lambda d: ["--kernels", "fast", "--out", str(d / "new")], "--kernels must be"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_nothing_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make_args: object,
    message: str,
) -> None:
    (tmp_path / "a_file").write_text("{x")
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep")
    (tmp_path / "bad.json").write_text(json.dumps({"pretrain_steps": -1}))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert callable(make_args)
    code, stdout, stderr = _run_cli(["build-model", *make_args(tmp_path)], monkeypatch, capsys)
    assert code == 2
    assert stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("hfta: error: ")
    assert message in stderr
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.slow
def test_committed_embedded_model_reproduces(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hfta build-model --check``: rebuild by the committed recipe with pinned kernels; the
    bytes match wherever the platform's ``bytes_key`` matches build.json's, and otherwise the
    behavioural check must pass. The first line says which check ran."""
    code, stdout, stderr = _run_cli(["build-model", "--check"], monkeypatch, capsys)
    assert code == 0, stdout + stderr
    first = stdout.splitlines()[0]
    assert first.startswith(f"reproduced: {EMBEDDED_MODEL_DIR / 'model.safetensors'}")
    assert "(check: bytes;" in first or "(check: behavioural; bytes cannot match: " in first


def _other_capability() -> str:
    """An ATen CPU capability other than the pinned 'default' that this CPU supports."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return "avx2" if " avx2" in flags else "default"


@pytest.mark.slow
def test_check_on_other_kernels_runs_the_behavioural_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A machine whose kernels differ from the committed build's, forced here: torch's CPU
    capability set to another value and oneMKL left to choose its own code path
    (``--kernels native``). The bytes cannot match; ``--check`` says why and passes the
    behavioural check instead."""
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", _other_capability())
    for name in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    code, stdout, stderr = _run_cli(
        ["build-model", "--check", "--kernels", "native"], monkeypatch, capsys
    )
    assert code == 0, stdout + stderr
    first = stdout.splitlines()[0]
    assert first.startswith("reproduced: ") and "(check: behavioural; bytes cannot match: " in first
    assert "kernels pinned -> native" in first
    assert "default attack, first harm > 0.5" in stdout


@pytest.mark.slow
@pytest.mark.negative_control
def test_negative_control_behavioural_check_fails_on_tampered_weights(tmp_path: Path) -> None:
    """The behavioural check is not a rubber stamp: the committed model with its weights
    perturbed (seeded noise of 0.5 standard deviations) fails it."""
    from empirical.models.build_check import behavioural_check

    model, tokenizer = load_model()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(0.5 * parameter.std().nan_to_num(0.0) * noise)
    save_model(model, tokenizer, tmp_path / "tampered")
    record = json.loads((EMBEDDED_MODEL_DIR / "build.json").read_text())
    result = behavioural_check(
        EMBEDDED_MODEL_DIR, tmp_path / "tampered", BuildRecipe(), record["metrics"]
    )
    assert not result.ok
    assert any("FAILS" in line for line in result.lines())


def test_committed_build_used_the_default_recipe() -> None:
    """``hfta build-model`` (defaults) and the committed weights must describe the same build."""
    record = json.loads((EMBEDDED_MODEL_DIR / "build.json").read_text())
    assert record["recipe"] == BuildRecipe().model_dump(mode="json")


def test_platform_differences_name_what_decides_the_bytes() -> None:
    """Fields that decide the bytes are compared; the processor's name and Python are not."""
    from empirical.models.reproducible import (
        PINNED_KERNELS,
        child_environment,
        platform_differences,
    )

    recorded = BuildPlatform(
        kernels="pinned",
        cpu_capability="DEFAULT",
        mkl_cbwr="COMPATIBLE",
        onednn_max_cpu_isa="SSE41",
        machine="x86_64",
        cpu="one processor",
        python="3.11.7",
        torch="2.13.0+cpu",
        transformers="5.24.0",
        tokenizers="0.23.3",
    )
    elsewhere = recorded.model_copy(update={"cpu": "another processor", "python": "3.11.9"})
    assert platform_differences(recorded, elsewhere) == []
    other = recorded.model_copy(update={"cpu_capability": "AVX512", "torch": "2.14.0+cpu"})
    assert platform_differences(recorded, other) == [
        "cpu_capability DEFAULT -> AVX512",
        "torch 2.13.0+cpu -> 2.14.0+cpu",
    ]
    assert platform_differences(None, recorded) == ["the committed build.json records no platform"]
    environment = child_environment("pinned")
    assert all(environment[name] == value for name, value in PINNED_KERNELS.items())


def test_the_committed_build_records_a_pinned_platform() -> None:
    record = json.loads((EMBEDDED_MODEL_DIR / "build.json").read_text())
    platform = BuildPlatform.model_validate(record["platform"])
    assert (platform.kernels, platform.cpu_capability, platform.mkl_cbwr) == (
        "pinned",
        "DEFAULT",
        "COMPATIBLE",
    )
