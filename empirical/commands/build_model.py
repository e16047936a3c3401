"""``hfta build-model``: train the embedded model by its recipe, or check that it reproduces.

    hfta build-model                      # build into empirical/assets/embedded (the default)
    hfta build-model --out DIR            # build elsewhere
    hfta build-model --recipe R.json      # a different recipe (JSON of BuildRecipe's fields)
    hfta build-model --check              # rebuild in a temp dir and compare (below)
    hfta build-model --check --out DIR    # the same against DIR (recipe from DIR/build.json)
    hfta build-model --kernels native     # this CPU's own kernels (machine-specific bytes)

The build runs in a child process with pinned CPU kernels (``empirical.models.reproducible``), so
the
same recipe gives the same bytes on any x86-64 machine with the same torch. The output
directory holds ``model.safetensors``, ``config.json``, the tokenizer files and ``build.json``
(recipe, measured metrics, wall time, the platform it ran on); it is written atomically.

``--check`` compares the bytes when the rebuild ran on the platform ``build.json`` records
(exit 1 if they differ). Where the platforms differ (another torch, other kernels) bytes
cannot match: it says why and runs the behavioural check of ``empirical.models.build_check``
instead. Its first line names the check that ran. ``--json`` prints the same as one JSON
object on stdout instead (``build``: ``out`` and ``build.json``'s record; ``--check``:
``reproduced``, ``check`` (bytes or behavioural), ``model``, ``rebuilt`` (wall time and
platform), ``difference`` and ``reasons`` where the bytes differ, ``behavioural`` where that
check ran); the exit code is the same.

Progress on stderr (``empirical.progress``): the training runs in the child process, which
reports no steps, so a terminal gets a pulsing bar with the elapsed time of the build, a pipe
one line when it starts and one when it ends, and ``--quiet`` nothing.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from empirical.cli import app
from empirical.commands.console import echo_json
from theory.errors import HftaInputError

WEIGHTS_FILE = "model.safetensors"
BUILD_FILE = "build.json"


def _read_recipe_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise HftaInputError(f"{path}: recipe file not found")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HftaInputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(content, dict):
        raise HftaInputError(f"{path}: a recipe must be a JSON object")
    return content


def _recipe_from(content: dict[str, Any], where: Path) -> Any:
    from pydantic import ValidationError

    from empirical.models.build import BuildRecipe

    try:
        return BuildRecipe.model_validate(content)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "recipe"
        raise HftaInputError(f"{where}: recipe field '{field}': {first['msg']}") from None


def _check_output_directory(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise HftaInputError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / BUILD_FILE).is_file():
        raise HftaInputError(
            f"{out}: a non-empty directory that is not a model build (no {BUILD_FILE}); "
            "refusing to replace it"
        )


def _build(recipe: Any, out: Path, kernels: str, quiet: bool = False) -> dict[str, Any]:
    """Train by ``recipe`` into ``out`` in a child process with ``kernels``; build.json's record
    (a progress stage on stderr unless ``quiet``)."""
    from empirical.models.reproducible import run_build_child
    from empirical.progress import step_progress

    steps = recipe.pretrain_steps + recipe.align_steps
    with step_progress(f"build-model: {steps} training steps", None, enabled=not quiet):
        run_build_child(recipe.model_dump_json(), out, kernels)  # type: ignore[arg-type]
    record: dict[str, Any] = json.loads((out / BUILD_FILE).read_text(encoding="utf-8"))
    return record


def _recorded_platform(record: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from empirical.models.reproducible import BuildPlatform

    try:
        return BuildPlatform.model_validate(record["platform"])
    except (KeyError, ValidationError):
        return None


def difference_summary(expected: Path, actual: Path) -> str:
    """One line on how two safetensors files differ (tensors that differ, largest |Δ|)."""
    from safetensors.torch import load_file

    first, second = load_file(str(expected)), load_file(str(actual))
    if set(first) != set(second):
        missing = sorted(set(first) ^ set(second))
        return f"tensor names differ: {', '.join(missing[:5])}"
    differing: list[tuple[float, str]] = []
    for name in sorted(first):
        a, b = first[name], second[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            differing.append((float("inf"), name))
        elif not bool((a == b).all()):
            differing.append((float((a.double() - b.double()).abs().max()), name))
    if not differing:
        return "same tensors, different file bytes (metadata or layout)"
    largest, where = max(differing)
    return (
        f"{len(differing)} of {len(first)} tensors differ; largest |difference| {largest:.3g} "
        f"in {where}"
    )


def _report_check(
    target: Path,
    rebuilt: Path,
    recipe: Any,
    record: dict[str, Any],
    rebuilt_record: dict[str, Any],
    as_json: bool = False,
) -> None:
    """Compare the rebuild with the committed build: bytes where the platforms agree, else the
    behavioural check (``empirical.models.build_check``); print which check ran (``as_json``: one
    JSON
    object, the module docstring); exit 1 on failure."""
    from empirical.models.reproducible import BuildPlatform, platform_differences

    committed = target / WEIGHTS_FILE
    now = BuildPlatform.model_validate(rebuilt_record["platform"])
    seconds = rebuilt_record["wall_seconds"]
    report: dict[str, Any] = {
        "model": str(committed),
        "rebuilt": {"wall_seconds": seconds, "platform": rebuilt_record["platform"]},
    }
    if (rebuilt / WEIGHTS_FILE).read_bytes() == committed.read_bytes():
        if as_json:
            echo_json({"reproduced": True, "check": "bytes", **report})
            return
        typer.echo(
            f"reproduced: {committed} is byte-identical (check: bytes; rebuilt in {seconds} s, "
            f"{now.kernels} kernels, CPU capability {now.cpu_capability}, {now.cpu})"
        )
        return
    summary = difference_summary(committed, rebuilt / WEIGHTS_FILE)
    reasons = platform_differences(_recorded_platform(record), now)
    report.update(difference=summary, reasons=list(reasons))
    if not reasons:
        if as_json:
            echo_json({"reproduced": False, "check": "bytes", **report})
            raise typer.Exit(1)
        typer.echo(
            f"NOT reproduced: {committed} differs from a rebuild on the platform it records "
            f"(check: bytes): {summary}"
        )
        raise typer.Exit(1)
    from empirical.models.build_check import behavioural_check

    result = behavioural_check(target, rebuilt, recipe, record["metrics"])
    if as_json:
        behavioural = {**result.model_dump(mode="json"), "lines": result.lines()}
        echo_json(
            {"reproduced": result.ok, "check": "behavioural", **report, "behavioural": behavioural}
        )
        if not result.ok:
            raise typer.Exit(1)
        return
    verdict = "reproduced" if result.ok else "NOT reproduced"
    typer.echo(
        f"{verdict}: {committed} (check: behavioural; bytes cannot match: "
        f"{'; '.join(reasons)}; {summary})"
    )
    for line in result.lines():
        typer.echo(line)
    if not result.ok:
        raise typer.Exit(1)


@app.command("build-model")
def build_model(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (default: the embedded model's)."),
    ] = None,
    recipe_file: Annotated[
        Path | None,
        typer.Option("--recipe", help="JSON file of BuildRecipe fields (default: the recipe)."),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Rebuild in a temp dir and compare model.safetensors."),
    ] = False,
    kernels: Annotated[
        str,
        typer.Option(
            "--kernels",
            help="pinned: the CPU kernels that give the same bytes on every x86-64 machine "
            "(default); native: this machine's own (fast, machine-specific bytes).",
        ),
    ] = "pinned",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of the lines.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress on stderr.")] = False,
) -> None:
    """Train the embedded model by its deterministic recipe (or --check it reproduces)."""
    from empirical.models.model import EMBEDDED_MODEL_DIR

    target = EMBEDDED_MODEL_DIR if out is None else out
    if kernels not in ("pinned", "native"):
        raise HftaInputError(f"--kernels must be 'pinned' or 'native', not '{kernels}'")
    if check:
        if recipe_file is not None:
            raise HftaInputError(f"--check takes the recipe from {target / BUILD_FILE}")
        committed = target / WEIGHTS_FILE
        build_file = target / BUILD_FILE
        if not committed.is_file() or not build_file.is_file():
            raise HftaInputError(f"{target}: no {WEIGHTS_FILE} and {BUILD_FILE} to check against")
        recorded = _read_recipe_file(build_file).get("recipe")
        if not isinstance(recorded, dict):
            raise HftaInputError(f"{build_file}: no 'recipe' object")
        recipe = _recipe_from(recorded, build_file)
        record = json.loads(build_file.read_text(encoding="utf-8"))
        with tempfile.TemporaryDirectory(prefix="hfta-build-check-") as scratch:
            rebuilt = Path(scratch) / "model"
            rebuilt_record = _build(recipe, rebuilt, kernels, quiet)
            _report_check(target, rebuilt, recipe, record, rebuilt_record, as_json)
        return

    recipe = _recipe_from(
        {} if recipe_file is None else _read_recipe_file(recipe_file),
        recipe_file or Path("default recipe"),
    )
    _check_output_directory(target)
    record = _build(recipe, target, kernels, quiet)
    if as_json:
        echo_json({"out": str(target), **record})
        return
    metrics = record["metrics"]
    where = record["platform"]
    typer.echo(
        f"built {target} in {record['wall_seconds']} s ({kernels} kernels, CPU capability "
        f"{where['cpu_capability']}, {where['cpu']})"
    )
    for name in (
        "harmless_accuracy",
        "refusal_rate",
        "harm_after_alignment",
        "latent_harm",
        "harmless_accuracy_before_alignment",
        "parameters",
    ):
        typer.echo(f"  {name}: {metrics[name]}")
