"""empirical.build and ``hfta build-model``: a deterministic recipe, exact scores, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from empirical import cli
from empirical.benchmark import BenchmarkSizes
from empirical.build import (
    BuildRecipe,
    build_embedded_model,
    deterministic,
)
from empirical.commands.build_model import difference_summary
from empirical.model import EMBEDDED_MODEL_DIR, save_model

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
    directory = tmp_path_factory.mktemp("build") / "tiny"
    result = build_embedded_model(TINY)
    record = {"recipe": TINY.model_dump(mode="json"), "metrics": result.metrics.model_dump()}
    save_model(result.model, result.tokenizer, directory, extra_files={"build.json": record})
    return directory


def test_the_recipe_is_bit_for_bit_reproducible(tiny_build: Path, tmp_path: Path) -> None:
    again = build_embedded_model(TINY)
    save_model(again.model, again.tokenizer, tmp_path / "again")
    first = (tiny_build / "model.safetensors").read_bytes()
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == first


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
    code, stdout, _ = _run_cli(["build-model", "--check", "--out", str(out)], monkeypatch, capsys)
    assert (code, stdout.startswith("reproduced")) == (0, True)


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
    """``hfta build-model --check``: rebuild by the committed recipe, compare the bytes."""
    code, stdout, stderr = _run_cli(["build-model", "--check"], monkeypatch, capsys)
    assert code == 0, stdout + stderr
    assert stdout.startswith(f"reproduced: {EMBEDDED_MODEL_DIR / 'model.safetensors'}")


def test_committed_build_used_the_default_recipe() -> None:
    """``hfta build-model`` (defaults) and the committed weights must describe the same build."""
    record = json.loads((EMBEDDED_MODEL_DIR / "build.json").read_text())
    assert record["recipe"] == BuildRecipe().model_dump(mode="json")
