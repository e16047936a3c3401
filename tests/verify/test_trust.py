"""Trust: ``--out`` never destroys a user's files, bad model folders fail before compute,
one run per output, exit codes that mean what they say (0 / 1 / 2 / 3 / 130), leaks refused.

Each case asserts the exit code, the single stderr line, and that nothing of the user's
changed (``_snapshot`` compares every file's bytes before and after).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from filelock import FileLock

from empirical.cli import main
from empirical.models.model import EMBEDDED_MODEL_DIR
from empirical.outputs import MARKER, claim_output, marker_command
from tests.verify._claims import tiny_claim

HFTA = [sys.executable, "-c", "from empirical.cli import main; main()"]



def _trust_claim(model_section: str = "") -> str:
    return tiny_claim(
        "trust",
        budget_steps=40,
        attack_examples=20,
        evaluation_examples=10,
        model_section=model_section,
    )


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _invoke(args: list[str]) -> tuple[int, str, str]:
    """``hfta ARGS`` in this process: (exit code, stdout, stderr)."""
    out, errors = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(sys, "argv", ["hfta", *args]),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(errors),
    ):
        try:
            main()
        except SystemExit as exc:
            return int(exc.code or 0), out.getvalue(), errors.getvalue()
    return 0, out.getvalue(), errors.getvalue()


def _one_error_line(errors: str, *words: str) -> str:
    lines = errors.strip().splitlines()
    assert len(lines) == 1, errors
    assert "Traceback" not in errors
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _claim(directory: Path, model: str = "") -> Path:
    path = directory / "claim.toml"
    path.write_text(_trust_claim(model), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- --out safety
def test_claim_output_decisions(tmp_path: Path) -> None:
    """Absent or empty: create; own previous run: replace (said); anything else refused."""
    assert claim_output(tmp_path / "new", "verify").disposition == "create"
    (tmp_path / "empty").mkdir()
    assert claim_output(tmp_path / "empty", "verify").disposition == "create"
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / MARKER).write_text(json.dumps({"command": "verify"}))
    plan = claim_output(previous, "verify")
    assert plan.disposition == "replace" and "replacing the previous" in (plan.notice() or "")
    from theory.errors import HftaInputError

    with pytest.raises(HftaInputError, match="an `hfta verify` output"):
        claim_output(previous, "attack")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(HftaInputError, match="no hfta command wrote"):
        claim_output(tmp_path / "mine", "verify")
    assert claim_output(tmp_path / "mine", "verify", force=True).disposition == "replace"
    (tmp_path / "a_file").write_text("keep")
    with pytest.raises(HftaInputError, match="not a directory"):
        claim_output(tmp_path / "a_file", "verify", force=True)


@pytest.mark.parametrize("command", ["verify", "attack"])
def test_a_foreign_out_is_refused_and_untouched(tmp_path: Path, command: str) -> None:
    """The user's folder (and a file) given as --out: exit 2, one line, nothing changed,
    no work folder made."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's notes")
    (tmp_path / "a_file").write_text("the user's file")
    before = _snapshot(tmp_path)
    for target in (mine, tmp_path / "a_file"):
        args = ["verify", str(_claim_path(tmp_path)), "--quiet"] if command == "verify" else [
            "attack",
            "--budget",
            "2",
        ]
        code, _, errors = _invoke([*args, "--out", str(target)])
        assert code == 2, errors
        _one_error_line(errors, str(target), "left untouched")
        assert _snapshot(tmp_path) == before
        assert not target.with_name(target.name + ".cache").exists()


def _claim_path(tmp_path: Path) -> Path:
    claim = tmp_path.parent / f"{tmp_path.name}-claim.toml"
    claim.write_text(_trust_claim(), encoding="utf-8")
    return claim


@pytest.mark.slow
def test_attack_replaces_only_its_own_previous_output(tmp_path: Path) -> None:
    """A previous ``hfta attack`` output is replaced, and the replacement is said; --force
    replaces a foreign folder; the marker names the command."""
    out = tmp_path / "run"
    args = ["attack", "--budget", "2", "--eval-every", "1", "--out", str(out)]
    code, _, errors = _invoke(args)
    assert code == 0, errors
    assert marker_command(out) == "attack"
    code, _, errors = _invoke(args)
    assert code == 0 and "replacing the previous `hfta attack` output" in errors
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    code, _, errors = _invoke([*args[:-1], str(foreign), "--force"])
    assert code == 0, errors
    assert not (foreign / "notes.txt").exists() and marker_command(foreign) == "attack"


# ----------------------------------------------------------------------------- bad models
def _broken_models(root: Path) -> dict[str, tuple[Path, str]]:
    """Model folders broken in the ways users break them, with the words the error names."""
    cases: dict[str, tuple[Path, str]] = {}

    def copy(name: str) -> Path:
        target = root / name
        shutil.copytree(EMBEDDED_MODEL_DIR, target)
        return target

    weights = (EMBEDDED_MODEL_DIR / "model.safetensors").read_bytes()
    truncated = copy("truncated")
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    cases["truncated"] = (truncated, "truncated safetensors")
    empty = copy("zero_bytes")
    (empty / "model.safetensors").write_bytes(b"")
    cases["zero_bytes"] = (empty, "truncated safetensors")
    garbage = copy("garbage_header")
    header = (16).to_bytes(8, "little") + b"{not json at all"
    (garbage / "model.safetensors").write_bytes(header + weights[24:])
    cases["garbage_header"] = (garbage, "corrupt safetensors header")
    no_tokenizer = copy("no_tokenizer")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tokenizer / name).unlink()
    cases["no_tokenizer"] = (no_tokenizer, "no tokenizer files")
    wrong_shape = copy("wrong_shape")
    config = json.loads((wrong_shape / "config.json").read_text())
    config["n_embd"] = 32
    (wrong_shape / "config.json").write_text(json.dumps(config))
    cases["wrong_shape"] = (wrong_shape, "has shape")
    no_weights = copy("no_weights")
    (no_weights / "model.safetensors").unlink()
    cases["no_weights"] = (no_weights, "no safetensors weights")
    return cases


def test_check_model_directory_refuses_every_broken_folder(tmp_path: Path) -> None:
    from empirical.models.model import check_model_directory
    from theory.errors import HftaInputError

    check_model_directory(EMBEDDED_MODEL_DIR)  # negative control: the real model passes
    for path, words in _broken_models(tmp_path).values():
        with pytest.raises(HftaInputError, match=words):
            check_model_directory(path, "model.path")


@pytest.mark.parametrize("field", ["path", "original_path"])
def test_verify_refuses_a_broken_model_before_any_compute(tmp_path: Path, field: str) -> None:
    """A truncated model (or original model) is bad input: exit 2, one line naming the field,
    nothing written, no work folder; and the refusal comes before any attack ran."""
    models = _broken_models(tmp_path / "models")
    for case, (broken, words) in models.items():
        healthy = tmp_path / "healthy"
        if not healthy.exists():
            shutil.copytree(EMBEDDED_MODEL_DIR, healthy)
        section = (
            f'[model]\npath = "{broken}"\noriginal_path = "{healthy}"\n'
            if field == "path"
            else f'[model]\npath = "{healthy}"\noriginal_path = "{broken}"\n'
        )
        claim = _claim(tmp_path, section).read_text().replace(
            'claimed = ["weak_resistance"]', 'claimed = ["weak_resistance", "stability"]'
        ) + "\n[stability]\nepsilon = 0.1\n"
        (tmp_path / "claim.toml").write_text(claim)
        out = tmp_path / f"out-{case}"
        before = _snapshot(tmp_path)
        with mock.patch("empirical.verify.api.verify", side_effect=AssertionError("ran")):
            code, _, errors = _invoke(["verify", str(tmp_path / "claim.toml"), "--out", str(out)])
        assert code == 2, (case, errors)
        _one_error_line(errors, f"model.{field}", words)
        assert _snapshot(tmp_path) == before
        assert not out.exists() and not out.with_name(out.name + ".cache").exists()


# ----------------------------------------------------------------------------- one run at a time
def test_a_second_run_on_a_busy_out_is_refused(tmp_path: Path) -> None:
    """While another process holds the output's lock, ``hfta verify`` says "busy" in one
    line, exits 2 and changes nothing; once the lock is free it runs."""
    claim = _claim(tmp_path)
    out = tmp_path / "out"
    work = tmp_path / "out.cache"
    work.mkdir()
    (work / MARKER).write_text(json.dumps({"command": "verify (work folder)"}))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from filelock import FileLock; "
            f"lock = FileLock({str(work / 'lock')!r}); lock.acquire(); "
            "print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = _snapshot(tmp_path)
        with mock.patch("empirical.verify.api.verify", side_effect=AssertionError("ran")):
            code, _, errors = _invoke(["verify", str(claim), "--out", str(out), "--quiet"])
        assert code == 2
        _one_error_line(errors, "busy", str(out))
        assert _snapshot(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()
    free = FileLock(str(work / "lock"))
    free.acquire(timeout=5)  # negative control: the lock is free again, the check was real
    free.release()


# ----------------------------------------------------------------------------- exit codes 3, 130
def test_an_internal_error_exits_3_with_a_log(tmp_path: Path) -> None:
    """A bug is not bad input: exit 3, one line pointing to a log file holding the traceback."""
    claim = _claim(tmp_path)
    out = tmp_path / "out"
    with mock.patch(
        "empirical.verify.api.verify", side_effect=ZeroDivisionError("a bug in the toolkit")
    ):
        code, _, errors = _invoke(["verify", str(claim), "--out", str(out), "--quiet"])
    assert code == 3
    line = _one_error_line(errors, "internal error", "a bug in the toolkit", "traceback in")
    log = Path(line.rsplit("traceback in ", 1)[1])
    assert log.is_file() and log.parent == tmp_path / "out.cache" / "logs"
    assert "ZeroDivisionError" in log.read_text() and "Traceback" in log.read_text()
    assert not out.exists()


@pytest.mark.slow
def test_sigint_mid_run_exits_130_and_the_rerun_resumes(tmp_path: Path) -> None:
    """Ctrl-C during the attacks: exit 130, "interrupted; rerun the same command to resume",
    no output folder; the same command then finishes, reusing the finished attacks."""
    claim = _claim(tmp_path)
    # 8 attacks: the interrupt lands while most are still to run, even on a loaded machine
    claim.write_text(claim.read_text().replace("seeds = [0]", "seeds = [0, 1, 2, 3]"))
    out = tmp_path / "out"
    store = tmp_path / "out.cache" / "attacks"
    process = subprocess.Popen(
        [*HFTA, "verify", str(claim), "--out", str(out), "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a test run started in the background (`... &`) inherits SIGINT ignored, and Python
        # then never installs its KeyboardInterrupt handler: give the child the default one
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if store.is_dir() and list(store.glob("*.json")):
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run finished before it could be interrupted"
    os.kill(process.pid, signal.SIGINT)
    output, errors = process.communicate(timeout=120)
    assert process.returncode == 130, (output, errors)
    _one_error_line(errors, "interrupted; rerun the same command to resume")
    assert not out.exists()
    finished = {p.name: p.stat().st_mtime_ns for p in store.glob("*.json")}
    assert finished
    code, _, errors = _invoke(["verify", str(claim), "--out", str(out), "--quiet"])
    assert code in (0, 1), errors
    assert (out / "verdict.json").is_file() and marker_command(out) == "verify"
    for name, mtime in finished.items():
        assert (store / name).stat().st_mtime_ns == mtime


# ----------------------------------------------------------------------------- one threat model
def test_a_search_leaving_the_threat_model_exits_2(tmp_path: Path) -> None:
    claim = _claim(tmp_path)
    claim.write_text(
        claim.read_text() + '\n[search]\nstrategy = "optuna"\nlearning_rate_range = [1e-4, 1e-2]\n'
    )
    out = tmp_path / "out"
    code, _, errors = _invoke(["verify", str(claim), "--out", str(out), "--quiet"])
    assert code == 2
    _one_error_line(errors, "search.learning_rate_range", "leaves the threat model")
    assert not out.exists() and not (tmp_path / "out.cache").exists()


# ----------------------------------------------------------------------------- leaks
def _files_claim(directory: Path, allow: bool) -> Path:
    def write(name: str, rows: list[dict[str, object]]) -> None:
        (directory / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    harmful = [
        {"prompt": f"next of abcd{c}", "response": f"answer {c}", "category": "next",
         "is_safe": False}
        for c in "abcdefgh"
    ]
    write("defence.jsonl", harmful[:3])
    write("attack.jsonl", harmful[3:6])
    shared = dict(harmful[4], response="another answer")  # the attack's prompt, other response
    write("evaluation.jsonl", [harmful[6], harmful[7], shared])
    write("reference.jsonl", [
        {"prompt": "copy abcde", "response": "abcde", "category": "copy", "is_safe": True}
    ])
    claim = directory / "claim.toml"
    claim.write_text(
        f"""
[claim]
name = "leak"
[defence]
name = "none"
[data]
source = "files"
defence = "defence.jsonl"
attack = "attack.jsonl"
evaluation = "evaluation.jsonl"
reference = "reference.jsonl"
allow_shared_prompts = {"true" if allow else "false"}
[threat_model]
budget_steps = 10
learning_rates = [1e-3]
[harm]
phi = 0.5
[conditions]
claimed = ["weak_resistance"]
"""
    )
    return claim


def test_a_prompt_shared_by_attack_and_evaluation_is_a_leak(tmp_path: Path) -> None:
    """Same prompt, different response: exit 2 naming both files, their rows and the prompt;
    accepted when the claim says ``allow_shared_prompts = true`` (negative control)."""
    claim = _files_claim(tmp_path, allow=False)
    out = tmp_path / "out"
    before = _snapshot(tmp_path)
    code, _, errors = _invoke(["verify", str(claim), "--out", str(out), "--quiet"])
    assert code == 2
    _one_error_line(
        errors, "data.attack", "attack.jsonl, row 2", "data.evaluation", "evaluation.jsonl, row 3",
        "next of abcde", "allow_shared_prompts",
    )
    assert _snapshot(tmp_path) == before
    allowed = _files_claim(tmp_path, allow=True)
    from empirical.verify.claim import load_claim, resolve_data

    data = resolve_data(load_claim(allowed), allowed)
    assert {e.prompt for e in data.attack} & {e.prompt for e in data.evaluation}


def test_published_outputs_have_ordinary_permissions(tmp_path: Path) -> None:
    """A published folder is readable like any folder the user makes (not mkdtemp's 0700)."""
    import tempfile

    from empirical.outputs import publish

    staging = Path(tempfile.mkdtemp(dir=tmp_path))
    (staging / "verdict.json").write_text("{}")
    (staging / "verdict.json").chmod(0o600)
    out = tmp_path / "out"
    publish(staging, claim_output(out, "verify"))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (out / "verdict.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert marker_command(out) == "verify"
