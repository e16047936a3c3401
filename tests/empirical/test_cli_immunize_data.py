"""``hfta immunize --harmful FILE --retain FILE --evaluate FILE`` on the user's own data and
models: the embedded GPT-2 and locally built Llama- and GPT-NeoX-architecture models
(``empirical.testing.local_models``: random init, 2 layers, hidden 32, the embedded tokenizer,
eager attention), with JSONL files written here (docs/data.md's roles; a made-up "reverse a
word" skill stands for the harmful one, no harmful text).

What must hold: the defence is built on the given harmful and retain files, the models are
scored on the given evaluation file (the scores equal ``score_model`` on its rows, not the
embedded benchmark's), a different retain file gives a different model (and the same one the
same model: the difference is the data's), and bad input exits 2 with one line before any model
is loaded, nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from empirical.datasets.data import load_examples
from empirical.defences import DefenceRecord
from empirical.defences.data import split_fingerprint
from empirical.defences.evaluation import EvaluationRecord, score_model, score_on_benchmark
from empirical.models.model import load_model
from empirical.testing.local_models import (
    build_local_model,
    rows,
    words,
    write_jsonl,
    write_user_data,
)
from tests.cli_helpers import run_hfta as _hfta


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {kind: build_local_model(kind, root / kind) for kind in ("llama", "gpt_neox")}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_user_data(tmp_path_factory.mktemp("data"))


def _immunize(
    monkeypatch: pytest.MonkeyPatch,
    out: Path,
    data: dict[str, Path],
    *extra: str,
    retain: str = "retain",
) -> int:
    return _hfta(
        monkeypatch, "immunize", "--defence", "alignment", "--steps", "3", "--seed", "0",
        "--harmful", str(data["defence"]), "--retain", str(data[retain]),
        "--evaluate", str(data["evaluation"]), "--evaluate", str(data["reference"]),
        "--quiet", "--out", str(out), *extra,
    )


# --------------------------------------------------------------------------- the user's data
@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        "embedded",
        "llama",
        "gpt_neox",
    ],
)
def test_a_defence_on_the_users_files_and_model(
    kind: str,
    models: dict[str, Path],
    data: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    model_args = () if kind == "embedded" else ("--model", str(models[kind]))
    code = _immunize(monkeypatch, out, data, *model_args)
    streams = capsys.readouterr()
    assert code == 0, streams.err
    assert sorted(p.name for p in out.iterdir()) == [
        ".hfta-output.json", "evaluation.json", "model", "record.json"
    ]
    record = DefenceRecord.load(out / "record.json")
    # built on the given files: the harmful rows with their refusals, the retain file alone
    defence_rows = load_examples(data["defence"])
    harmful = [e for e in defence_rows if not e.is_safe]
    assert record.data["harmful"] == split_fingerprint(harmful)
    assert record.data["retain"] == split_fingerprint(load_examples(data["retain"]))
    assert str(data["retain"]) in record.data_source and str(data["defence"]) in record.data_source
    # scored on the given evaluation file, before and after, and the file is named
    evaluation = EvaluationRecord.model_validate_json((out / "evaluation.json").read_text())
    assert evaluation.data == [str(data["evaluation"]), str(data["reference"])]
    assert evaluation.splits["harmful"].examples == 16
    assert evaluation.splits["harmless"].examples == 16
    assert evaluation.scores_before == record.scores_before
    assert evaluation.scores_after == record.scores_after
    original, tokenizer = load_model(None if kind == "embedded" else models[kind])
    expected = score_model(
        original, tokenizer, load_examples(data["evaluation"]), load_examples(data["reference"])
    )
    assert record.scores_before == expected
    assert record.scores_before != score_on_benchmark(original, tokenizer)  # not the benchmark's
    immunized, _ = load_model(out / "model")
    assert immunized.config.model_type == original.config.model_type
    assert f"on {data['evaluation']}, {data['reference']}" in streams.out


@pytest.mark.slow
def test_json_of_a_defence_on_gpt_neox(
    models: dict[str, Path],
    data: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A GPT-NeoX folder (its head saved as ``embed_out.weight``, held as ``lm_head.weight``)
    passes the folder check; ``--json`` gives the record and the evaluation."""
    out = tmp_path / "out"
    code = _immunize(monkeypatch, out, data, "--model", str(models["gpt_neox"]), "--json")
    streams = capsys.readouterr()
    assert code == 0, streams.err
    payload = json.loads(streams.out)
    assert payload["record"]["model"] == str(models["gpt_neox"])
    assert payload["evaluation"]["data"] == [str(data["evaluation"]), str(data["reference"])]
    assert payload["record"]["scores_before"] == payload["evaluation"]["scores_before"]
    immunized, _ = load_model(out / "model")
    assert immunized.config.model_type == "gpt_neox"


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    model, _ = load_model(directory)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_the_retain_data_is_what_the_defence_trains_on(
    models: dict[str, Path],
    data: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Same seed and harmful data: another retain file gives another model, the same file the
    same model (negative control: the difference is not run-to-run noise)."""
    llama = ("--model", str(models["llama"]))
    runs = {"first": "retain", "again": "retain", "other": "retain_other"}
    for name, retain in runs.items():
        code = _immunize(monkeypatch, tmp_path / name, data, *llama, retain=retain)
        assert code == 0, capsys.readouterr().err
    weights = {name: _weights(tmp_path / name / "model") for name in runs}
    records = {name: DefenceRecord.load(tmp_path / name / "record.json") for name in runs}
    same = all(torch.equal(weights["first"][k], weights["again"][k]) for k in weights["first"])
    differs = any(
        not torch.equal(weights["first"][k], weights["other"][k]) for k in weights["first"]
    )
    assert same and differs
    assert records["first"].data["retain"] == records["again"].data["retain"]
    assert records["first"].data["retain"] != records["other"].data["retain"]
    assert str(data["retain_other"]) in records["other"].data_source


# --------------------------------------------------------------------------- bad input
def _bad_files(root: Path, data: dict[str, Path]) -> dict[str, tuple[list[str], str]]:
    """name → (arguments, what the one error line says)."""
    chunk = words(40, seed=7)
    no_column = root / "no_column.jsonl"
    no_column.write_text('{"prompt": "rev abcde=", "response": "edcba", "category": "rev"}\n')
    empty = root / "empty.jsonl"
    empty.write_text("")
    unsafe_retain = write_jsonl(root / "unsafe_retain.jsonl", rows(chunk[:4], "rev", safe=False))
    leaked = [json.loads(line) for line in data["evaluation"].read_text().splitlines()]
    leaked[0] = {**leaked[0], "response": "sorry", "is_safe": True}  # same prompt, other answer
    leaking_defence = write_jsonl(
        root / "leaking_defence.jsonl",
        [*(json.loads(line) for line in data["defence"].read_text().splitlines()), leaked[0]],
    )
    retain_leak = write_jsonl(
        root / "retain_leak.jsonl", [json.loads(data["reference"].read_text().splitlines()[-1])]
    )
    defence, retain, evaluation, reference = (
        str(data[k]) for k in ("defence", "retain", "evaluation", "reference")
    )
    both = ["--evaluate", evaluation, "--evaluate", reference]
    return {
        "missing harmful": (["--harmful", str(root / "nowhere.jsonl")], "not found"),
        "missing retain": (["--retain", str(root / "nowhere.jsonl")], "not found"),
        "missing evaluate": (["--evaluate", str(root / "nowhere.jsonl")], "not found"),
        "wrong columns": (["--harmful", str(no_column)], "is_safe"),
        "harmful without retain rows": (["--harmful", defence], "give --retain FILE"),
        "empty retain": (["--harmful", defence, "--retain", str(empty)], "no examples"),
        "unsafe retain": (["--retain", str(unsafe_retain)], "row 1 is flagged is_safe = false"),
        "evaluate without harmless rows": (["--evaluate", evaluation], "no harmless"),
        "harmful shares a prompt with evaluate": (
            ["--harmful", str(leaking_defence), "--retain", retain, *both], "share the prompt"
        ),
        "retain shares a prompt with evaluate": (
            ["--harmful", defence, "--retain", str(retain_leak), *both], "share the prompt"
        ),
        "evaluate and no-evaluate": (["--evaluate", evaluation, "--no-evaluate"], "both given"),
        "a data option on a linear pair": (
            ["--sklearn", "digits:0-1:2-3", "--retain", retain], "does not apply"
        ),
        "an unknown device": (["--device", "tpu"], "device must be cpu or cuda"),
        "cuda without a GPU": (["--device", "cuda"], "no CUDA device"),
    }


BAD = [
    "missing harmful", "missing retain", "missing evaluate", "wrong columns",
    "harmful without retain rows", "empty retain",
    "unsafe retain", "evaluate without harmless rows", "harmful shares a prompt with evaluate",
    "retain shares a prompt with evaluate", "evaluate and no-evaluate",
    "a data option on a linear pair", "an unknown device",
    *([] if torch.cuda.is_available() else ["cuda without a GPU"]),
]


@pytest.mark.negative_control
@pytest.mark.parametrize("case", BAD)
def test_bad_files_exit_2_with_one_line_before_any_model_is_loaded(
    case: str,
    data: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    import empirical.models.model

    def no_compute(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(empirical.models.model, "load_model", no_compute)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    arguments, message = _bad_files(inputs, data)[case]
    runs = tmp_path / "runs"
    runs.mkdir()
    defence = "condition-number" if "--sklearn" in arguments else "alignment"
    code = _hfta(
        monkeypatch, "immunize", "--defence", defence, *arguments, "--out", str(runs / "out")
    )
    error = capsys.readouterr().err
    assert code == 2, error
    assert message in error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert list(runs.iterdir()) == []


@pytest.mark.slow
def test_allow_shared_prompts_lets_a_meant_overlap_run(
    data: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The refusal above is about the shared prompt: the same files run when it is allowed."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    arguments, _ = _bad_files(inputs, data)["harmful shares a prompt with evaluate"]
    out = tmp_path / "out"
    code = _hfta(
        monkeypatch, "immunize", "--defence", "alignment", "--steps", "1", *arguments,
        "--allow-shared-prompts", "--quiet", "--out", str(out),
    )
    assert code == 0, capsys.readouterr().err
    assert (out / "evaluation.json").is_file()
