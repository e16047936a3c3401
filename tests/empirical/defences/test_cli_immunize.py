"""``hfta immunize`` through the real entry point (``empirical.cli.main``), in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empirical.commands.immunize import parse_settings
from empirical.datasets.benchmark import BenchmarkSizes, embedded_benchmark
from empirical.datasets.data import save_examples
from empirical.defences import DefenceRecord, names
from empirical.models.model import load_model
from tests.cli_helpers import run_hfta as _hfta
from theory.errors import HftaInputError


def test_list_prints_one_name_per_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _hfta(monkeypatch, "immunize", "--list") == 0
    assert capsys.readouterr().out.split() == names()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--defence", "nope"], "unknown defence 'nope'"),
        (["--defence", "adversarial-loss", "--set", "alpha=-0.1"], "alpha"),
        (["--defence", "vaccine", "--set", "rho=0"], "rho"),
        (["--defence", "vaccine", "--set", "radius=2"], "unknown hyperparameter 'radius'"),
        (["--defence", "vaccine", "--set", "rho"], "key=value"),
        (["--defence", "vaccine", "--steps", "0"], "steps"),
        (["--defence", "vaccine", "--steps", "5", "--set", "steps=4"], "both given"),
        (["--defence", "tar", "--data", "missing.jsonl"], "not found"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    arguments: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    assert _hfta(monkeypatch, "immunize", *arguments, "--out", str(out)) == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_is_not_a_causal_lm_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertModel"]})
    )
    out = tmp_path / "out"
    code = _hfta(
        monkeypatch, "immunize", "--defence", "booster", "--model", str(encoder), "--out", str(out)
    )
    assert code == 2
    assert "not a causal language model" in capsys.readouterr().err
    assert not out.exists()


def test_an_existing_output_is_not_overwritten(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _hfta(monkeypatch, "immunize", "--defence", "booster", "--out", str(out)) == 2
    assert "left untouched" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_parse_settings_reads_json_values() -> None:
    assert parse_settings(["alpha=0.2", "layers=[1,2]", "tamper_objective=entropy"]) == {
        "alpha": 0.2,
        "layers": [1, 2],
        "tamper_objective": "entropy",
    }
    with pytest.raises(HftaInputError, match="twice"):
        parse_settings(["a=1", "a=2"])


@pytest.mark.slow
def test_immunize_writes_model_and_record(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "runs" / "vaccine"
    code = _hfta(
        monkeypatch,
        "immunize",
        "--defence",
        "vaccine",
        "--set",
        "rho=4",
        "--steps",
        "3",
        "--seed",
        "2",
        "--out",
        str(out),
    )
    streams = capsys.readouterr()
    assert code == 0, streams.err
    # not a terminal: one line when the defence starts and one when it ends, no bar
    progress = [line for line in streams.err.splitlines() if line.startswith("immunize: vaccine")]
    assert progress[0] == "immunize: vaccine: 3 steps" and "done in" in progress[1]
    assert len(progress) == 2
    assert sorted(p.name for p in out.iterdir()) == [".hfta-output.json", "model", "record.json"]
    assert [p.name for p in out.parent.iterdir()] == ["vaccine"]  # no staging left behind
    record = DefenceRecord.load(out / "record.json")
    assert record.defence == "vaccine"
    assert record.hyperparameters["rho"] == 4.0
    assert record.hyperparameters["steps"] == 3 and record.hyperparameters["seed"] == 2
    assert len(record.curve) == 3
    assert record.model == "embedded"
    assert record.scores_before is not None and record.scores_after is not None
    model, _ = load_model(out / "model")
    assert sum(p.numel() for p in model.parameters()) == record.trainable_parameters
    assert "wrote" in streams.out


@pytest.mark.slow
def test_immunize_with_beavertails_data_and_a_local_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sizes = BenchmarkSizes(
        pretrain=1,
        align=4,
        defence=4,
        attack=1,
        evaluation=1,
        reference=1,
        trainability_train=1,
        trainability_eval=1,
    )
    benchmark = embedded_benchmark(seed=1, sizes=sizes)
    harmless = [e for e in benchmark.align if e.category in benchmark.harmless_skills]
    data = tmp_path / "defence.parquet"
    save_examples(benchmark.defence + harmless, data)
    first = tmp_path / "first"
    assert (
        _hfta(
            monkeypatch,
            "immunize",
            "--defence",
            "alignment",
            "--steps",
            "2",
            "--no-evaluate",
            "--out",
            str(first),
        )
        == 0
    )
    out = tmp_path / "second"
    code = _hfta(
        monkeypatch,
        "immunize",
        "--defence",
        "adversarial-loss-bounded",
        "--model",
        str(first / "model"),
        "--data",
        str(data),
        "--refusal",
        "sorry",
        "--steps",
        "2",
        "--no-evaluate",
        "--out",
        str(out),
    )
    assert code == 0, capsys.readouterr().err
    record = DefenceRecord.load(out / "record.json")
    assert record.data["harmful"].examples == len(benchmark.defence)
    assert record.data["retain"].examples == len(harmless)
    assert record.data_source == str(data)
    assert record.model == str(first / "model")
    assert record.scores_before is None
