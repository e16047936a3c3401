"""``--json`` on every command that prints a table (besides ``bounds`` and ``prove``, whose JSON
is tested in ``test_cli_bounds_prove.py``): the JSON is stdout alone, parses, and holds the
rows the table or lines show; tables drawn in a pipe keep each row on one line.

Commands run through the real entry point (``empirical.cli.main``) in this process, with
stdout captured (not a terminal), or in a child process where imports are checked.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from empirical.datasets.benchmark import BenchmarkSizes
from empirical.defences import descriptions, names
from empirical.models.build import BuildRecipe
from tests.cli_helpers import run_hfta as _hfta
from tests.verify._claims import tiny_claim

TINY = BuildRecipe(
    benchmark_sizes=BenchmarkSizes(
        pretrain=12, align=6, defence=2, attack=2, evaluation=4, reference=4,
        trainability_train=2, trainability_eval=4,
    ),
    n_layer=1, n_embd=16, n_head=2, batch_size=8, pretrain_steps=12, align_steps=4,
)


# --------------------------------------------------------------------------- immunize --list
def test_immunize_list_json_has_every_defence_and_its_description(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _hfta(monkeypatch, "immunize", "--list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == names()
    assert {row["name"]: row["description"] for row in rows} == descriptions()


def test_immunize_list_json_imports_no_torch() -> None:
    probe = (
        "import sys; sys.argv = ['hfta', 'immunize', '--list', '--json']\n"
        "import empirical.cli as cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('TORCH=' + str('torch' in sys.modules) + '\\n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert json.loads(result.stdout)
    assert "TORCH=False" in result.stderr


def test_immunize_describe_in_a_pipe_is_one_line_per_defence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _hfta(monkeypatch, "immunize", "--list", "--describe") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(names())
    for line, (name, text) in zip(lines, descriptions().items(), strict=True):
        assert line.startswith(name) and line.endswith(text)


# --------------------------------------------------------------------------- build-model
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """``hfta build-model --recipe TINY --out DIR --json``: the folder and the printed JSON."""
    root = tmp_path_factory.mktemp("build")
    recipe = root / "recipe.json"
    recipe.write_text(TINY.model_dump_json())
    out = root / "tiny"
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(buffer):
        code = _hfta(patch, "build-model", "--recipe", str(recipe), "--out", str(out), "--json")
    assert code == 0, buffer.getvalue()
    return out, json.loads(buffer.getvalue())


@pytest.mark.slow
def test_build_model_json_is_build_json_with_the_folder(
    built: tuple[Path, dict[str, object]],
) -> None:
    out, payload = built
    assert payload["out"] == str(out)
    record = json.loads((out / "build.json").read_text())
    assert {k: v for k, v in payload.items() if k != "out"} == record
    assert isinstance(payload["metrics"], dict) and "harmless_accuracy" in payload["metrics"]


@pytest.mark.slow
def test_build_model_check_json_says_reproduced_by_bytes(
    built: tuple[Path, dict[str, object]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, _ = built
    assert _hfta(monkeypatch, "build-model", "--check", "--out", str(out), "--json") == 0
    payload = json.loads(capsys.readouterr().out)
    assert (payload["reproduced"], payload["check"]) == (True, "bytes")
    assert payload["model"] == str(out / "model.safetensors")


@pytest.mark.slow
@pytest.mark.negative_control
def test_build_model_check_json_reports_tampered_weights(
    built: tuple[Path, dict[str, object]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, _ = built
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for item in out.iterdir():
        (tampered / item.name).write_bytes(item.read_bytes())
    tensors = load_file(str(out / "model.safetensors"))
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] + 1e-3
    save_file(tensors, str(tampered / "model.safetensors"), metadata={"format": "pt"})
    assert _hfta(monkeypatch, "build-model", "--check", "--out", str(tampered), "--json") == 1
    payload = json.loads(capsys.readouterr().out)
    assert (payload["reproduced"], payload["check"]) == (False, "bytes")
    assert first in payload["difference"]


# --------------------------------------------------------------------------- verify
@pytest.mark.slow
def test_verify_json_is_the_verdict_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    claim = tmp_path / "claim.toml"
    claim.write_text(
        tiny_claim("json", budget_steps=10, attack_examples=16, evaluation_examples=10)
    )
    out = tmp_path / "run"
    code = _hfta(monkeypatch, "verify", str(claim), "--out", str(out), "--quiet", "--json")
    streams = capsys.readouterr()
    assert code in (0, 1), streams.err
    payload = json.loads(streams.out)
    assert payload == json.loads((out / "verdict.json").read_text())
    assert set(payload["conditions"]) >= {"weak_resistance"}
    assert payload["exit_code"] == code


LONG_EVIDENCE = (
    "4 attacks, 16 evaluations of f, every upper bound ≤ 0.377 (Clopper–Pearson, "
    "simultaneous); attack success ≤ 0.60 (95%, 4 runs)"
)
"""A "rests on" cell as long as the README's demo table shows."""


@pytest.mark.parametrize("width", [None, 80])
def test_the_verify_table_in_a_pipe_keeps_each_row_on_one_line(
    width: int | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hfta verify``'s table (``_summary``) with the README's longest evidence; at 80 columns,
    the width rich takes off a terminal by default, the row folds (negative control)."""
    from rich.console import Console

    from empirical.commands import verify

    if width is not None:
        monkeypatch.setattr(verify, "stdout_console", lambda: Console(width=width))
    record = {
        "verdict": "holds",
        "exit_code": 0,
        "conditions": {
            "weak_resistance": {
                "status": "holds", "claimed": True, "rests_on": {"text": LONG_EVIDENCE}
            }
        },
        "warnings": [],
        "bound_violations": 0,
    }
    verify._summary(record, Path("runs/x"), 1.0, quiet=False)
    lines = capsys.readouterr().out.splitlines()
    one_line = any("weak_resistance" in line and LONG_EVIDENCE in line for line in lines)
    assert one_line == (width is None)


def test_verify_explain_json_lists_the_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    claim = tmp_path / "claim.toml"
    claim.write_text(
        tiny_claim("json", budget_steps=10, attack_examples=16, evaluation_examples=10)
    )
    assert _hfta(monkeypatch, "verify", str(claim), "--explain") == 0
    lines = capsys.readouterr().out.splitlines()
    assert _hfta(monkeypatch, "verify", str(claim), "--explain", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"explain": lines}
    assert not list(tmp_path.glob("run*"))


# --------------------------------------------------------------------------- immunize, linear
def test_immunize_linear_pair_json_is_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The condition-number summary's figures (RIR, steps, verdict) as ``report.json``."""
    out = tmp_path / "cn"
    code = _hfta(
        monkeypatch, "immunize", "--defence", "condition-number", "--sklearn", "digits:0-1:2-3",
        "--set", "epochs=2", "--set", "budget=5000", "--quiet", "--json", "--out", str(out),
    )
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert Path(payload["out"]) == out.resolve()
    assert payload["report"] == json.loads((out / "report.json").read_text())
    assert set(payload["report"]["judgement"]["rir"]) == {"pinv", "paper"}
