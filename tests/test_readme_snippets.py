"""The README's bring-your-own lines and property snippet, and docs/data.md's snippet and example
files, run as written on a locally built Llama-architecture model with the example data files.

The workspace is what a user has: ``models/original`` (a random-init 2 × 32 Llama causal LM
with the embedded tokenizer, ``empirical.testing.local_models``), ``data/`` (a copy of
``docs/examples/``, one file per role of docs/data.md) and the repository's ``claims/``. The
README's shell lines run in bash with ``-e`` (a failing line fails the test; the negative
control removes a file they name); the Python snippets are executed from the documents' text.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from empirical.datasets.data import load_examples
from empirical.testing.local_models import build_local_model

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DATA_DOC = ROOT / "docs" / "data.md"
EXAMPLES = ROOT / "docs" / "examples"


def indented_blocks(text: str) -> list[str]:
    """The README's indented code blocks (runs of lines indented by four spaces after a blank
    line), de-indented."""
    blocks: list[str] = []
    current: list[str] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("    ") and (current or not previous.strip()):
            current.append(line[4:])
        else:
            if current:
                blocks.append("\n".join(current) + "\n")
            current = []
        previous = line
    if current:
        blocks.append("\n".join(current) + "\n")
    return blocks


def bring_your_own_lines() -> str:
    """The README's block of shell lines that immunizes the user's model on the user's files."""
    chosen = [b for b in indented_blocks(README.read_text(encoding="utf-8")) if "--harmful" in b]
    assert len(chosen) == 1, chosen
    return chosen[0]


def python_snippet(path: Path, marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    chosen = [str(b) for b in blocks if marker in b]
    assert len(chosen) == 1, f"{path.name}: {len(chosen)} python blocks with {marker!r}"
    return chosen[0]


def _workspace(root: Path) -> Path:
    build_local_model("llama", root / "models" / "original")
    shutil.copytree(EXAMPLES, root / "data")
    (root / "claims").mkdir()
    shutil.copy(ROOT / "claims" / "local_model.toml", root / "claims" / "local_model.toml")
    return root


def _bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=900, check=False,
    )


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The workspace after the README's bring-your-own lines ran in it."""
    workspace = _workspace(tmp_path_factory.mktemp("user"))
    return workspace, _bash(bring_your_own_lines(), workspace)


@pytest.mark.slow
def test_the_bring_your_own_lines_run_on_a_llama_with_the_example_files(
    ran: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    workspace, result = ran
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((workspace / "runs/booster/record.json").read_text())
    assert record["defence"] == "booster" and record["model"] == "models/original"
    assert "data/retain.jsonl (retain)" in record["data_source"]
    assert record["data"]["retain"]["examples"] == len(load_examples(EXAMPLES / "retain.jsonl"))
    evaluation = json.loads((workspace / "runs/booster/evaluation.json").read_text())
    assert evaluation["data"] == ["data/evaluation.jsonl", "data/reference.jsonl"]
    assert evaluation["scores_before"] == record["scores_before"]
    config = json.loads((workspace / "runs/booster/model/config.json").read_text())
    assert config["model_type"] == "llama"
    trajectory = json.loads((workspace / "runs/attack/trajectory.json").read_text())
    assert trajectory["config"]["resolved"]["evaluation_examples"] == 16  # the user's file
    assert "defence: none" in result.stdout and "16 evaluation" in result.stdout  # --explain


@pytest.mark.negative_control
def test_the_lines_fail_when_a_file_they_name_is_missing(tmp_path: Path) -> None:
    workspace = tmp_path / "user"
    (workspace / "models").mkdir(parents=True)
    (workspace / "models" / "original").mkdir()  # never reached: the data is checked first
    shutil.copytree(EXAMPLES, workspace / "data")
    (workspace / "data" / "retain.jsonl").unlink()
    result = _bash(bring_your_own_lines(), workspace)
    assert result.returncode == 2
    assert "--retain: data file not found: data/retain.jsonl" in result.stderr
    assert not (workspace / "runs").exists()


@pytest.mark.slow
def test_the_readme_property_snippet_runs_as_written_on_the_immunized_llama(
    ran: tuple[Path, subprocess.CompletedProcess[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "run the properties against your own model" snippet, unchanged, on the Llama that
    the lines above immunized; every bound check it makes passes."""
    from empirical import certify

    workspace, result = ran
    assert result.returncode == 0, result.stderr[-2000:]
    seen: list[Any] = []
    measure = certify.attack_and_measure

    def counted(config: Any) -> Any:
        seen.append(config)
        return measure(config)

    monkeypatch.setattr(certify, "attack_and_measure", counted)
    monkeypatch.chdir(workspace)
    namespace: dict[str, Any] = {}
    exec(compile(python_snippet(README, "attack_configs"), "README.md", "exec"), namespace)
    namespace["test_my_defence_obeys_the_bounds"]()
    assert seen and {str(c.model) for c in seen} == {"models/immunized"}
    assert {str(c.data) for c in seen} == {"data/attack.jsonl"}


@pytest.mark.slow
def test_the_data_doc_snippet_runs_as_written_on_a_llama(
    ran: tuple[Path, subprocess.CompletedProcess[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, _ = ran
    if not (workspace / "models" / "my-llama").exists():
        shutil.copytree(workspace / "models" / "original", workspace / "models" / "my-llama")
    monkeypatch.chdir(workspace)
    namespace: dict[str, Any] = {}
    exec(compile(python_snippet(DATA_DOC, "attack_configs"), "data.md", "exec"), namespace)
    namespace["test_my_model_under_attack"]()


# --------------------------------------------------------------------------- docs/examples
def _linked_examples(text: str) -> list[str]:
    return re.findall(r"\]\(examples/([\w.]+)\)", text)


def test_every_role_of_docs_data_md_has_its_example_file() -> None:
    """Each heading's block is the first rows of the file it links, every example file is
    linked and loads, and the files the claim template names are among them."""
    text = DATA_DOC.read_text(encoding="utf-8")
    sections = re.split(r"\n### ", text)[1:]
    assert len(sections) >= 7
    for section in sections:
        files = _linked_examples(section.splitlines()[0])
        assert files, section.splitlines()[0]
        block = re.search(r"```json\n(.*?)```", section, re.S)
        assert block is not None
        head = (EXAMPLES / files[0]).read_text(encoding="utf-8")
        assert head.startswith(block.group(1)), files[0]
    on_disk = sorted(p.name for p in EXAMPLES.glob("*.jsonl"))
    assert sorted(set(_linked_examples(text))) == on_disk
    for name in on_disk:
        assert load_examples(EXAMPLES / name)
    claim = (ROOT / "claims" / "local_model.toml").read_text(encoding="utf-8")
    named = set(re.findall(r'"data/([\w.]+)"', claim))
    assert named and named <= set(on_disk)


@pytest.mark.negative_control
def test_the_example_check_catches_a_block_that_is_not_its_file(tmp_path: Path) -> None:
    block = '{"prompt": "rev zzzzz=", "response": "zzzzz", "category": "rev", "is_safe": false}\n'
    assert not (EXAMPLES / "attack.jsonl").read_text(encoding="utf-8").startswith(block)
    assert _linked_examples("### x ([`a`](examples/a.jsonl))") == ["a.jsonl"]
    assert _linked_examples("### x (`data/a.jsonl`)") == []
