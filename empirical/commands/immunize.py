"""``hfta immunize``: apply a defence of the literature to a model and save the result.

    hfta immunize --list                                  # one defence name per line
    hfta immunize --defence repnoise --out runs/repnoise  # the embedded model and data
    hfta immunize --defence vaccine --set rho=4 --steps 100 --seed 1 --out runs/vaccine
    hfta immunize --defence tar --model path/to/hf-model --data beavertails.jsonl \\
        --refusal "I cannot help with that." --out runs/tar

Writes ``OUT/model`` (safetensors and tokenizer, ``empirical.model.save_model``) and
``OUT/record.json`` (``empirical.defences.DefenceRecord``: hyperparameters, data fingerprints,
training curve, wall time, environment and, with ``--evaluate`` (default), harm and capability
on the embedded benchmark's held-out ``evaluation`` and ``reference`` splits before and after).
Everything is staged in a temporary sibling directory and renamed to ``OUT`` at the end, so a
failed run leaves nothing. ``--set key=value`` sets one hyperparameter of the defence (values
are read as JSON when they parse, e.g. ``--set layers=[1,2]``, else as text). Bad input (an
unknown defence or hyperparameter, an out-of-range value, a model directory that is not a
causal LM, unreadable data, an existing non-empty ``OUT``) is one line on stderr and exit
code 2, before anything is trained or written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from empirical.cli import app
from theory.errors import HftaInputError


def parse_settings(settings: list[str]) -> dict[str, Any]:
    """``["alpha=0.2", "layers=[1,2]"]`` → ``{"alpha": 0.2, "layers": [1, 2]}``.

    Each value is parsed as JSON when it is valid JSON, else kept as text.

    Raises:
        HftaInputError: an entry without ``=``, an empty key, or a key given twice.
    """
    values: dict[str, Any] = {}
    for entry in settings:
        key, separator, text = entry.partition("=")
        key = key.strip()
        if not separator or not key:
            raise HftaInputError(f"--set expects key=value, got {entry!r}")
        if key in values:
            raise HftaInputError(f"--set gives '{key}' twice")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


def _check_output(out: Path) -> Path:
    out = out.resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HftaInputError(f"{out}: already exists and is not an empty directory")
    return out


def _write(out: Path, result: Any, tokenizer: Any) -> None:
    """Stage ``model/`` and ``record.json`` next to ``out``, then rename the stage to ``out``."""
    from empirical.model import save_model

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_model(result.model, tokenizer, staging / "model")
        result.record.save(staging / "record.json")
        staging.chmod(0o777 & ~_umask())
        if out.is_dir():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@app.command("immunize")
def immunize_command(
    defence: Annotated[str | None, typer.Option(help="Defence to apply (see --list).")] = None,
    list_defences: Annotated[
        bool, typer.Option("--list", help="Print the defence names, one per line, and exit.")
    ] = False,
    model: Annotated[
        Path | None,
        typer.Option(help="Local Hugging Face causal-LM directory (default: embedded)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Defence data, JSONL or Parquet in BeaverTails form (default: embedded)."
        ),
    ] = None,
    refusal: Annotated[
        str | None,
        typer.Option(help="Refusal text for harmful prompts that have no safe answer in --data."),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="Hyperparameter key=value (repeatable)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Optimizer steps (overrides the default).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of the defence.")] = None,
    evaluate: Annotated[
        bool,
        typer.Option(help="Score harm and capability before and after (embedded held-out data)."),
    ] = True,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (tiny models run fastest on one).")
    ] = 1,
    out: Annotated[Path | None, typer.Option(help="Output directory (must not exist).")] = None,
) -> None:
    """Immunize a model with a defence of the literature."""
    from empirical.defences import registry

    if list_defences:
        for name in registry.names():
            typer.echo(name)
        return
    if defence is None:
        raise HftaInputError("give --defence NAME (see hfta immunize --list)")
    if out is None:
        raise HftaInputError("give --out DIR")
    if threads < 1:
        raise HftaInputError(f"--threads must be at least 1, got {threads}")
    chosen = registry.get(defence)
    values = parse_settings(settings or [])
    for option, value in (("steps", steps), ("seed", seed)):
        if value is not None:
            if option in values:
                raise HftaInputError(f"--{option} and --set {option}= both given")
            values[option] = value
    config = chosen.configure(**values)
    target = _check_output(out)

    import torch
    from transformers.utils import logging as transformers_logging

    from empirical.defences.data import DefenceData
    from empirical.defences.evaluation import score_on_benchmark
    from empirical.model import load_model

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.set_num_threads(threads)
    loaded, tokenizer = load_model(model)
    if data is None:
        defence_data = DefenceData.from_benchmark()
    else:
        defence_data = DefenceData.from_file(data, refusal=refusal)
    before = score_on_benchmark(loaded, tokenizer) if evaluate else None
    result = chosen.apply(loaded, tokenizer, defence_data, config)
    after = score_on_benchmark(result.model, tokenizer) if evaluate else None
    result.record = result.record.model_copy(
        update={
            "model": "embedded" if model is None else str(model),
            "scores_before": before,
            "scores_after": after,
        }
    )
    _write(target, result, tokenizer)
    _summary(result.record, target)


def _summary(record: Any, out: Path) -> None:
    console = Console()
    console.print(
        f"[bold]{record.defence}[/bold]: {len(record.curve)} steps in "
        f"{record.wall_seconds:.1f} s ({record.source})",
        highlight=False,
    )
    if record.diverged_at is not None:
        console.print(
            f"[bold red]stopped[/bold red] at step {record.diverged_at}: "
            f"{record.divergence_reason}; the model is the last finite iterate",
            highlight=False,
        )
    if record.curve:
        last = record.curve[-1]
        parts = ", ".join(f"{k} {v:.4g}" for k, v in last.components.items())
        console.print(f"last step: objective {last.total:.4g} ({parts})", highlight=False)
    for key, value in record.metrics.items():
        console.print(f"{key}: {value:.4g}", highlight=False)
    if record.scores_before is not None and record.scores_after is not None:
        for field in ("harmful_loss", "harm", "reference_loss", "harmless_accuracy"):
            console.print(
                f"{field}: {getattr(record.scores_before, field):.4g} -> "
                f"{getattr(record.scores_after, field):.4g}",
                highlight=False,
            )
    console.print(f"wrote {out}/model and {out}/record.json", highlight=False)
