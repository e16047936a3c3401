"""``hfta immunize --defence condition-number`` on linear task pairs, and a lazy ``--list``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from empirical.defences import registry
from empirical.linear import ConditionNumberReport, save_pair, synthetic_task_pair
from tests.cli_helpers import run_hfta as _hfta

ROOT = Path(__file__).resolve().parents[3]


def test_bundled_pair_writes_report_and_extractor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "cn"
    code = _hfta(
        monkeypatch,
        "immunize",
        "--defence",
        "condition-number",
        "--sklearn",
        "digits:0-1:2-3",
        "--set",
        "epochs=2",
        "--set",
        "budget=5000",
        "--quiet",
        "--out",
        str(out),
    )
    assert code == 0
    report = ConditionNumberReport.model_validate_json((out / "report.json").read_text())
    assert report.pair == "digits:0-1:2-3" and report.steps_trained == 10
    assert report.judge.budget == 5000 and set(report.judgement.rir) == {"pinv", "paper"}
    with np.load(out / "extractor.npz") as saved:
        assert saved["theta"].shape == (64, 64) and saved["head"].shape == (64,)
    printed = capsys.readouterr().out
    assert "verdict:" in printed and "RIR:" in printed and "T5:" in printed


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_pair_from_a_file_with_the_project_variant(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"pair{suffix}"
    save_pair(synthetic_task_pair(dimension=4, samples=40, seed=2), path)
    out = tmp_path / "cn"
    args = ["--pair", str(path), "--set", "variant=project", "--set", "epochs=5", "--seed", "1"]
    assert (
        _hfta(monkeypatch, "immunize", "--defence", "condition-number", *args, "--out", str(out))
        == 0
    )
    report = ConditionNumberReport.model_validate_json((out / "report.json").read_text())
    assert report.config.variant == "project" and report.config.seed == 1
    assert report.pair == str(path)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--sklearn", "digits:1-1:2-3"], "two different digits"),
        (["--sklearn", "mnist:1:2"], "unknown bundled pair"),
        (["--pair", "missing.npz"], "not found"),
        (["--pair", "x.npz", "--sklearn", "diabetes:bmi"], "exactly one"),
        (["--sklearn", "diabetes:bmi", "--set", "radius=1"], "unknown hyperparameter 'radius'"),
        (["--sklearn", "diabetes:bmi", "--set", "learning_rate=-1"], "learning_rate"),
        (["--sklearn", "diabetes:bmi", "--set", "batch_size=100000"], "larger than"),
        (["--sklearn", "diabetes:bmi", "--set", "variant=nope"], "unknown variant"),
        (["--sklearn", "diabetes:bmi", "--set", "budget=0"], "budget"),
        (["--sklearn", "diabetes:bmi", "--steps", "3"], "epochs"),
        (["--sklearn", "diabetes:bmi", "--model", "m"], "--model"),
        (["--sklearn", "diabetes:bmi", "--seed", "1", "--set", "seed=2"], "both given"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    arguments: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    code = _hfta(
        monkeypatch, "immunize", "--defence", "condition-number", *arguments, "--out", str(out)
    )
    assert code == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert list(tmp_path.iterdir()) == []


def test_pair_options_need_the_condition_number_defence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = _hfta(
        monkeypatch,
        "immunize",
        "--defence",
        "repnoise",
        "--sklearn",
        "diabetes:bmi",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 2 and "--defence condition-number" in capsys.readouterr().err


def test_list_describe(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _hfta(monkeypatch, "immunize", "--list", "--describe") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == registry.names()
    assert all(len(line.split()) > 2 for line in lines)


def _modules_after(code: str) -> set[str]:
    """The names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in {"transformers", "peft"}}


def test_the_linear_path_imports_neither_transformers_nor_peft(tmp_path: Path) -> None:
    code = f"""
import sys
from empirical.cli import main
sys.argv = ["hfta", "immunize", "--defence", "condition-number", "--sklearn",
            "diabetes:bmi", "--set", "epochs=1", "--quiet", "--out", {str(tmp_path / "o")!r}]
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
"""
    modules = _modules_after(code)
    assert "empirical.linear.training" in modules and "torch" in modules
    assert _heavy(modules) == set()
    assert (tmp_path / "o" / "report.json").is_file()


@pytest.mark.negative_control
def test_the_import_check_sees_a_heavy_module_when_one_is_loaded() -> None:
    """The same check after code that loads a module named ``peft`` (a stand-in, so the control
    costs no real import): it is seen."""
    loaded = _modules_after("import sys, types\nsys.modules['peft.tuners'] = types.ModuleType('x')")
    assert _heavy(loaded) == {"peft.tuners"}


def test_registry_lists_without_importing_any_defence() -> None:
    modules = _modules_after(
        "from empirical.defences import registry\nregistry.names()\nregistry.descriptions()"
    )
    defences = {f"empirical.defences.{m}" for m in registry.BUILTIN_MODULES}
    assert defences & modules == set()


@pytest.mark.negative_control
def test_get_imports_the_module_it_needs() -> None:
    """The module check above sees a defence module once ``get`` has imported it."""
    registry.get("vaccine")
    assert "empirical.defences.vaccine" in sys.modules


def test_list_imports_neither_torch_nor_transformers() -> None:
    """``hfta immunize --list`` reads the registry's names without importing a defence."""
    modules = _modules_after(
        "import sys\nfrom empirical.cli import main\n"
        "sys.argv = ['hfta', 'immunize', '--list']\ntry:\n    main()\nexcept SystemExit:\n    pass"
    )
    assert not {m for m in modules if m.split(".")[0] in {"torch", "transformers"}}
