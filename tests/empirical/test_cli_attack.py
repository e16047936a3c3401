"""``hfta attack`` through the real entry point (``empirical.cli.main``), in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from empirical.datasets.benchmark import TOKENIZER_ALPHABET, BenchmarkSizes, embedded_benchmark
from empirical.datasets.data import save_examples
from empirical.measurement.trajectory import Trajectory
from empirical.models.model import EMBEDDED_MODEL_DIR, build_char_tokenizer, save_model, tiny_gpt2
from tests.cli_helpers import run_hfta as _hfta
from theory.errors import HftaInputError

pytestmark = pytest.mark.slow

QUICK = ["--budget", "6", "--eval-every", "3", "--batch-size", "8"]
SIZES = BenchmarkSizes(
    pretrain=1, align=1, defence=1, attack=16, evaluation=6, reference=4,
    trainability_train=1, trainability_eval=1,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 with the character tokenizer, saved as a local HF directory."""
    tokenizer = build_char_tokenizer(TOKENIZER_ALPHABET)
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, n_positions=32, seed=0)
    directory = tmp_path_factory.mktemp("models") / "tiny"
    save_model(model, tokenizer, directory)
    return directory


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Small attack / evaluation / reference files (the embedded splits, fewer words)."""
    benchmark = embedded_benchmark(seed=0, sizes=SIZES)
    directory = tmp_path_factory.mktemp("data")
    options: list[str] = []
    for option, split in (("--data", "attack"), ("--evaluation-data", "evaluation"),
                          ("--reference-data", "reference")):
        path = directory / f"{split}.jsonl"
        save_examples(getattr(benchmark, split), path)
        options += [option, str(path)]
    return options


def test_same_seed_gives_identical_trajectories(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    model_dir: Path,
    small_data: list[str],
) -> None:
    common = ["attack", "--model", str(model_dir), "--seed", "7", *QUICK, *small_data]
    assert _hfta(monkeypatch, *common, "--out", str(tmp_path / "A")) == 0
    assert _hfta(monkeypatch, *common, "--out", str(tmp_path / "B")) == 0
    for name in ("trajectory.json", "trajectory.parquet", "figure.png"):
        assert (tmp_path / "A" / name).is_file() and (tmp_path / "B" / name).is_file()
    first = Trajectory.load(tmp_path / "A" / "trajectory.json")
    second = Trajectory.load(tmp_path / "B" / "trajectory.parquet")
    assert first.comparable() == second.comparable()
    assert first.config["seed"] == 7 and first.n_steps == 6
    raw_a = json.loads((tmp_path / "A" / "trajectory.json").read_text())
    raw_b = json.loads((tmp_path / "B" / "trajectory.json").read_text())
    raw_a.pop("timing"), raw_b.pop("timing")
    assert raw_a == raw_b
    output = capsys.readouterr().out
    assert "steps/s" in output and "first step with harm > 0.5" in output
    assert "final harm" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A", "B"]  # no staging left


def test_options_reach_the_attack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path, small_data: list[str]
) -> None:
    out = tmp_path / "lora"
    code = _hfta(
        monkeypatch, "attack", "--model", str(model_dir), *QUICK, *small_data,
        "--lora", "--lora-rank", "2",
        "--optimizer", "sgd", "--lr", "0.01", "--schedule", "constant", "--warmup", "0",
        "--max-grad-norm", "0", "--probe", "--out", str(out),
    )
    assert code == 0
    trajectory = Trajectory.load(out / "trajectory.json")
    config = trajectory.config
    assert config["method"] == "lora" and config["lora"]["r"] == 2
    assert config["optimizer"] == "sgd" and config["max_grad_norm"] is None
    assert config["resolved"]["attack_examples"] == 48
    assert trajectory.learning_rate == [0.01] * 6
    assert trajectory.probe_loss is not None
    assert trajectory.trainable_parameters < 10_000


def test_default_attack_uses_the_embedded_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not (EMBEDDED_MODEL_DIR / "config.json").is_file():
        pytest.fail(f"the embedded model is missing from {EMBEDDED_MODEL_DIR} (hfta build-model)")
    out = tmp_path / "default"
    arguments = ["attack", "--budget", "4", "--eval-every", "2", "--out", str(out)]
    assert _hfta(monkeypatch, *arguments) == 0
    trajectory = Trajectory.load(out / "trajectory.json")
    assert trajectory.config["model"] is None and trajectory.config["optimizer"] == "adamw"
    assert trajectory.config["learning_rate"] == 3e-4 and trajectory.config["batch_size"] == 16
    assert [e.step for e in trajectory.evaluations] == [0, 2, 4]


def _no_pad_model(directory: Path) -> Path:
    """A model whose tokenizer has neither pad nor EOS token (so none can stand in)."""
    tokenizer = build_char_tokenizer(TOKENIZER_ALPHABET)
    model = tiny_gpt2(len(tokenizer), n_layer=1, n_embd=32, n_head=2, n_positions=32)
    save_model(model, tokenizer, directory)
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    for key in ("pad_token", "eos_token"):
        config.pop(key, None)
    config_path.write_text(json.dumps(config))
    special = directory / "special_tokens_map.json"
    if special.exists():
        special.write_text("{}")
    return directory


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--lr", "0"], "learning_rate"),
        (["--lr", "-1e-3"], "learning_rate"),
        (["--budget", "0"], "budget_steps"),
        (["--optimizer", "rmsprop"], "optimizer"),
        (["--warmup", "1.5"], "warmup_fraction"),
        (["--device", "tpu"], "device"),
        (["--model", "MISSING"], "model directory not found"),
        (["--data", "NO_FIELDS"], "missing required field 'is_safe'"),
        (["--model", "NO_PAD"], "pad token"),
        (["--threshold", "2"], "threshold"),
    ],
)
def test_bad_input_is_one_line_exit_two_and_nothing_written(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    model_dir: Path,
    small_data: list[str],
    arguments: list[str],
    message: str,
) -> None:
    replaced = list(arguments)
    if "MISSING" in replaced:
        replaced[replaced.index("MISSING")] = str(tmp_path / "no-such-model")
    if "NO_FIELDS" in replaced:
        data = tmp_path / "bad.jsonl"
        data.write_text(json.dumps({"prompt": "shift abc=", "response": "bcd", "category": "x"}))
        replaced[replaced.index("NO_FIELDS")] = str(data)
    if "NO_PAD" in replaced:
        replaced[replaced.index("NO_PAD")] = str(_no_pad_model(tmp_path / "nopad"))
    if "--model" not in replaced:
        replaced += ["--model", str(model_dir)]
    out = tmp_path / "out"
    capsys.readouterr()
    code = _hfta(monkeypatch, "attack", *QUICK, *small_data, *replaced, "--out", str(out))
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("hfta: error:") and message in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not out.exists()


def test_failure_while_writing_leaves_no_output(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    model_dir: Path,
    small_data: list[str],
) -> None:
    import empirical.plots

    def broken(*args: object, **kwargs: object) -> None:
        raise HftaInputError("figure could not be drawn")

    monkeypatch.setattr(empirical.plots, "attack_figure", broken)
    out = tmp_path / "out"
    code = _hfta(monkeypatch, "attack", "--model", str(model_dir), *QUICK, *small_data,
                 "--budget", "1", "--out", str(out))
    assert code == 2 and "figure could not be drawn" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither the output nor a staging directory


def test_json_summary_and_head_only_method(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    model_dir: Path,
    small_data: list[str],
) -> None:
    """``--json`` prints the summary alone on stdout, matching the written trajectory;
    ``--head`` trains only the head (the trajectory records it, fewer parameters move)."""
    out = tmp_path / "head"
    code = _hfta(
        monkeypatch, "attack", "--model", str(model_dir), *QUICK, *small_data,
        "--head", "--optimizer", "sgd", "--lr", "0.03", "--schedule", "constant",
        "--warmup", "0", "--json", "--quiet", "--out", str(out),
    )
    streams = capsys.readouterr()
    assert code == 0, streams.err
    summary = json.loads(streams.out)  # nothing but the JSON on stdout
    trajectory = Trajectory.load(out / "trajectory.json")
    assert trajectory.config["method"] == "head"
    from empirical.models.model import load_model

    model, _ = load_model(model_dir)
    assert trajectory.trainable_parameters == model.get_output_embeddings().weight.numel()
    assert summary["steps"] == trajectory.n_steps == 6
    assert summary["final_harm"] == trajectory.evaluations[-1].harm
    assert summary["files"] == ["trajectory.json", "trajectory.parquet", "figure.png"]
    # negative control: two methods at once is bad input, before anything is written
    code = _hfta(monkeypatch, "attack", "--lora", "--head", "--out", str(tmp_path / "both"))
    assert code == 2 and not (tmp_path / "both").exists()
    assert "--lora and --head" in capsys.readouterr().err
