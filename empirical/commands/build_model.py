"""``hfta build-model``: train the embedded model by its recipe, or check that it reproduces.

    hfta build-model                      # build into empirical/assets/embedded (the default)
    hfta build-model --out DIR            # build elsewhere
    hfta build-model --recipe R.json      # a different recipe (JSON of BuildRecipe's fields)
    hfta build-model --check              # rebuild in a temp dir; exit 0 iff model.safetensors
                                          # is byte-identical to the committed one
    hfta build-model --check --out DIR    # the same against DIR (recipe from DIR/build.json)

The output directory holds ``model.safetensors``, ``config.json``, the tokenizer files and
``build.json`` (recipe, measured metrics, software versions); it is written atomically.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from empirical.cli import app
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

    from empirical.build import BuildRecipe

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


def _environment() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


def _build(recipe: Any, out: Path) -> dict[str, Any]:
    from empirical.build import build_embedded_model
    from empirical.model import save_model

    started = time.perf_counter()
    result = build_embedded_model(recipe)
    wall = time.perf_counter() - started
    record = {
        "recipe": recipe.model_dump(mode="json"),
        "metrics": result.metrics.model_dump(mode="json"),
        "wall_seconds": round(wall, 2),
        "environment": _environment(),
    }
    save_model(result.model, result.tokenizer, out, extra_files={BUILD_FILE: record})
    return record


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
) -> None:
    """Train the embedded model by its deterministic recipe (or --check it reproduces)."""
    from empirical.model import EMBEDDED_MODEL_DIR

    target = EMBEDDED_MODEL_DIR if out is None else out
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
        with tempfile.TemporaryDirectory(prefix="hfta-build-check-") as scratch:
            rebuilt = Path(scratch) / "model"
            record = _build(recipe, rebuilt)
            same = (rebuilt / WEIGHTS_FILE).read_bytes() == committed.read_bytes()
            summary = "" if same else difference_summary(committed, rebuilt / WEIGHTS_FILE)
        if same:
            typer.echo(
                f"reproduced: {committed} is byte-identical (rebuilt in {record['wall_seconds']} s)"
            )
            return
        typer.echo(f"NOT reproduced: {committed} differs from the rebuild: {summary}")
        raise typer.Exit(1)

    recipe = _recipe_from(
        {} if recipe_file is None else _read_recipe_file(recipe_file),
        recipe_file or Path("default recipe"),
    )
    _check_output_directory(target)
    record = _build(recipe, target)
    metrics = record["metrics"]
    typer.echo(f"built {target} in {record['wall_seconds']} s")
    for name in (
        "harmless_accuracy",
        "refusal_rate",
        "harm_after_alignment",
        "latent_harm",
        "harmless_accuracy_before_alignment",
        "parameters",
    ):
        typer.echo(f"  {name}: {metrics[name]}")
