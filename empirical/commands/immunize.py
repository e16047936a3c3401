"""``hfta immunize``: apply a defence of the literature to a model and save the result.

    hfta immunize --list                                  # one defence name per line
    hfta immunize --list --json                           # [{"name", "description"}, ...]
    hfta immunize --defence repnoise --out runs/repnoise  # the embedded model and data
    hfta immunize --defence vaccine --set rho=4 --steps 100 --seed 1 --out runs/vaccine
    hfta immunize --defence tar --model path/to/hf-model --harmful defence.jsonl \\
        --retain retain.jsonl --evaluate evaluation.jsonl --evaluate reference.jsonl \\
        --refusal "I cannot help with that." --out runs/tar
    hfta immunize --defence condition-number --sklearn digits:0-1:2-3 --out runs/cn
    hfta immunize --defence condition-number --pair pair.npz --set variant=project --out runs/cn

With ``--pair`` or ``--sklearn`` the condition-number defence runs on a linear task pair
(``empirical.linear``; docs/condition_number.md) and writes ``OUT/report.json`` (RIR under both
κ rules, gradient-descent steps before/after on both tasks with T5's predictions, the verdict)
and ``OUT/extractor.npz``; see ``immunize_linear_pair``.

The data (``empirical.commands.immunize_data``; one example file per role in docs/data.md):
``--harmful FILE`` (alias ``--data``) the harmful rows and refusals the defence is built on,
``--retain FILE`` the harmless rows it keeps skills on, ``--evaluate FILE`` (repeatable) the
held-out rows the original and the immunized model are scored on (harm on the harmful rows,
capability on the harmless rows); each omitted role comes from the embedded benchmark. A
prompt of ``--evaluate`` that the defence trains on is refused unless ``--allow-shared-prompts``.

Writes ``OUT/model`` (safetensors and tokenizer, ``empirical.models.model.save_model``) and
``OUT/record.json`` (``empirical.defences.DefenceRecord``: hyperparameters, data fingerprints,
training curve, wall time, environment and, unless ``--no-evaluate``, harm and capability
before and after, on ``--evaluate``'s rows or the embedded benchmark's held-out ``evaluation``
and ``reference`` splits); with ``--evaluate FILE`` also ``OUT/evaluation.json``
(``empirical.defences.evaluation.EvaluationRecord``: the files, fingerprints of their rows, the
scores). ``--json`` prints the record (or the list, or the linear report) as JSON on stdout
instead of the summary. Everything is staged in a temporary sibling directory and renamed to
``OUT`` at the end, so a failed run leaves nothing. ``--set key=value`` sets one hyperparameter
of the defence (values are read as JSON when they parse, e.g. ``--set layers=[1,2]``, else as
text). Bad input (an unknown defence or hyperparameter, an out-of-range value, a model directory
that is not a causal LM, a data file that is missing, empty, malformed or lacks the rows its role
needs, a shared prompt, an existing non-empty ``OUT``) is one line on stderr and exit code 2,
before anything is trained or written.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from empirical.cli import app
from empirical.commands.console import echo_json, stdout_console
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from empirical.commands.immunize_data import ImmunizeData
    from empirical.defences.evaluation import EvaluationRecord
    from empirical.defences.record import ModelScores
    from empirical.linear import (
        ConditionNumberReport,
        JudgeConfig,
        LinearImmunization,
        LinearImmunizationConfig,
        LinearTaskPair,
    )
    from empirical.linear.training import Progress
    from empirical.outputs import OutputPlan
    from empirical.progress import Stages


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


def _check_output(out: Path, force: bool) -> OutputPlan:
    """What may happen to ``--out`` (``empirical.outputs.claim_output``): created, or replacing
    a previous ``hfta immunize`` output (said on stderr); anything else refused unless
    ``--force``."""
    from empirical.outputs import claim_output

    plan = claim_output(out.resolve(), "immunize", force=force)
    notice = plan.notice()
    if notice is not None:
        sys.stderr.write(f"hfta: {notice}\n")
    return plan


def _publish(staging: Path, plan: OutputPlan) -> None:
    from empirical.outputs import publish

    try:
        publish(staging, plan)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write(
    plan: OutputPlan, result: Any, tokenizer: Any, evaluation: EvaluationRecord | None = None
) -> None:
    """Stage ``model/``, ``record.json`` (and ``evaluation.json``) next to ``plan.path``, then
    publish the stage."""
    from empirical.models.model import save_model

    out = plan.path
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_model(result.model, tokenizer, staging / "model")
        result.record.save(staging / "record.json")
        if evaluation is not None:
            (staging / EVALUATION_FILE).write_text(
                evaluation.model_dump_json(indent=1) + "\n", encoding="utf-8"
            )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, plan)


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
    harmful: Annotated[
        Path | None,
        typer.Option(
            "--harmful",
            "--data",
            help="Data the defence is built on: harmful rows and their refusals, JSONL or "
            "Parquet in BeaverTails form (docs/data.md; default: embedded).",
        ),
    ] = None,
    retain: Annotated[
        Path | None,
        typer.Option(
            help="Harmless data the defence keeps skills on (default: the --harmful file's "
            "safe rows on other prompts, or embedded)."
        ),
    ] = None,
    refusal: Annotated[
        str | None,
        typer.Option(
            help="Refusal text for harmful prompts that have no safe answer in --harmful."
        ),
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
        list[Path] | None,
        typer.Option(
            help="Held-out data both models are scored on after the defence: harm on the "
            "harmful rows, capability on the harmless rows (repeatable: e.g. evaluation and "
            "reference files; default: embedded held-out data)."
        ),
    ] = None,
    no_evaluate: Annotated[
        bool, typer.Option("--no-evaluate", help="Do not score the models.")
    ] = False,
    allow_shared_prompts: Annotated[
        bool,
        typer.Option(
            "--allow-shared-prompts",
            help="Allow --evaluate to share prompts with the data the defence trains on.",
        ),
    ] = False,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (tiny models run fastest on one).")
    ] = 1,
    device: Annotated[
        str, typer.Option(help="Where the defence trains and the models are scored: cpu or cuda.")
    ] = "cpu",
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory (new, empty, or a previous immunize output)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace an existing --out that is not an immunize output."),
    ] = False,
    describe: Annotated[
        bool, typer.Option("--describe", help="With --list: add each defence's description.")
    ] = False,
    pair: Annotated[
        Path | None,
        typer.Option(
            help="condition-number only: a linear task pair, .npz or .csv "
            "(docs/condition_number.md)."
        ),
    ] = None,
    sklearn: Annotated[
        str | None,
        typer.Option(
            help="condition-number only: a bundled scikit-learn pair, digits:a-b:c-d or "
            "diabetes:COLUMN."
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", help="No progress (defence steps, scoring, linear pair training)."),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print JSON on stdout instead of the summary or the list."),
    ] = False,
) -> None:
    """Immunize a model with a defence of the literature."""
    if list_defences:
        _list_defences(describe, as_json)
        return
    if defence is None:
        raise HftaInputError("give --defence NAME (see hfta immunize --list)")
    if out is None:
        raise HftaInputError("give --out DIR")
    if threads < 1:
        raise HftaInputError(f"--threads must be at least 1, got {threads}")
    from empirical.engine.attack_config import checked_device

    device = checked_device(device)
    if pair is not None or sklearn is not None:
        if defence != "condition-number":
            raise HftaInputError("--pair and --sklearn go with --defence condition-number")
        for flag, given in (
            ("--model", model),
            ("--harmful", harmful),
            ("--retain", retain),
            ("--evaluate", evaluate or None),
            ("--refusal", refusal),
        ):
            if given is not None:
                raise HftaInputError(f"{flag} does not apply to a linear task pair")
        if steps is not None:
            raise HftaInputError("a linear task pair trains for epochs: use --set epochs=N")
        immunize_linear_pair(
            pair_file=pair,
            sklearn=sklearn,
            settings=settings or [],
            seed=seed,
            threads=threads,
            quiet=quiet,
            out=out,
            force=force,
            as_json=as_json,
        )
        return
    if evaluate and no_evaluate:
        raise HftaInputError("--evaluate FILE and --no-evaluate both given")
    from empirical.commands.immunize_data import resolve_immunize_data
    from empirical.defences import registry

    chosen = registry.get(defence)
    values = parse_settings(settings or [])
    for option, value in (("steps", steps), ("seed", seed)):
        if value is not None:
            if option in values:
                raise HftaInputError(f"--{option} and --set {option}= both given")
            values[option] = value
    config = chosen.configure(**values)
    inputs = resolve_immunize_data(
        harmful=harmful,
        retain=retain,
        evaluate=evaluate or [],
        refusal=refusal,
        allow_shared_prompts=allow_shared_prompts,
    )
    if model is not None:
        from empirical.models.model import check_model_directory

        check_model_directory(model, "--model")
    plan = _check_output(out, force)
    target = plan.path

    import torch
    from transformers.utils import logging as transformers_logging

    from empirical.models.model import load_model

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.set_num_threads(threads)
    loaded, tokenizer = load_model(model, device=device)
    score = None if no_evaluate else _scorer(inputs)
    from empirical.progress import progress_stages

    with progress_stages(enabled=not quiet) as stages:
        with stages.stage(f"immunize: {defence}", int(getattr(config, "steps", 0))) as advance:
            result = chosen.apply(loaded, tokenizer, inputs.defence, config, on_step=advance)
        before, after = _scores(score, (loaded, result.model), tokenizer, stages)
    result.record = result.record.model_copy(
        update={
            "model": "embedded" if model is None else str(model),
            "scores_before": before,
            "scores_after": after,
        }
    )
    evaluation = _evaluation_record(inputs, before, after)
    _write(plan, result, tokenizer, evaluation)
    if as_json:
        echo_json(
            {
                "out": str(target),
                "record": result.record.model_dump(mode="json"),
                "evaluation": None if evaluation is None else evaluation.model_dump(mode="json"),
            }
        )
        return
    _summary(result.record, target, evaluation)


def _scorer(given: ImmunizeData) -> Callable[[Any, Any], ModelScores]:
    """Scores on ``--evaluate``'s rows, or on the embedded benchmark's held-out splits."""
    from empirical.defences.evaluation import score_model, score_on_benchmark

    evaluation = given.evaluation
    if evaluation is None:
        return score_on_benchmark

    def score(model: Any, tokenizer: Any) -> ModelScores:
        return score_model(
            model, tokenizer, evaluation.harmful, evaluation.harmless, refusal=given.refusal
        )

    return score


def _scores(
    score: Callable[[Any, Any], ModelScores] | None,
    models: tuple[Any, Any],
    tokenizer: Any,
    stages: Stages,
) -> tuple[ModelScores | None, ModelScores | None]:
    """The scores of M and M* (after the defence, which leaves M untouched), as one stage of
    two models on the command's progress display; ``(None, None)`` with ``--no-evaluate``."""
    if score is None:
        return None, None
    with stages.stage("scoring M and M* on held-out data", len(models)) as advance:
        scores = []
        for model in models:
            scores.append(score(model, tokenizer))
            advance(len(scores), len(models))
    return scores[0], scores[1]


def _evaluation_record(
    given: ImmunizeData, before: ModelScores | None, after: ModelScores | None
) -> EvaluationRecord | None:
    """``OUT/evaluation.json``'s content when the models were scored on ``--evaluate``."""
    from empirical.defences.evaluation import EvaluationRecord

    if given.evaluation is None or before is None or after is None:
        return None
    return EvaluationRecord(
        data=list(given.evaluation.files),
        splits=given.evaluation.fingerprints(),
        scores_before=before,
        scores_after=after,
    )


EVALUATION_FILE = "evaluation.json"


def _summary(record: Any, out: Path, evaluation: EvaluationRecord | None) -> None:
    console = stdout_console()
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
        scored_on = "embedded held-out data" if evaluation is None else ", ".join(evaluation.data)
        console.print(f"scores before -> after, on {scored_on}:", highlight=False)
        for field in ("harmful_loss", "harm", "reference_loss", "harmless_accuracy"):
            console.print(
                f"{field}: {getattr(record.scores_before, field):.4g} -> "
                f"{getattr(record.scores_after, field):.4g}",
                highlight=False,
            )
    extra = "" if evaluation is None else f" and {out}/{EVALUATION_FILE}"
    console.print(f"wrote {out}/model, {out}/record.json{extra}", highlight=False)


# --------------------------------------------------------------------------- --list
def _list_defences(describe: bool, as_json: bool = False) -> None:
    """One defence name per line (``--describe``: name, two spaces, description; ``--json``: a
    list of {name, description}); imports no defence module (``empirical.defences.registry`` is
    lazy)."""
    from empirical.defences import registry

    if as_json:
        echo_json(
            [
                {"name": name, "description": text}
                for name, text in registry.descriptions().items()
            ]
        )
        return
    if describe:
        described = registry.descriptions()
        width = max(len(name) for name in described)
        for name, text in described.items():
            typer.echo(f"{name.ljust(width)}  {text}")
        return
    for name in registry.names():
        typer.echo(name)


# --------------------------------------------------------------------------- linear task pairs
def immunize_linear_pair(
    *,
    pair_file: Path | None,
    sklearn: str | None,
    settings: list[str],
    seed: int | None,
    threads: int,
    quiet: bool,
    out: Path,
    force: bool = False,
    as_json: bool = False,
) -> None:
    """``hfta immunize --defence condition-number --pair FILE | --sklearn SPEC --out DIR``.

    Everything is checked before training (the pair is read, the hyperparameters validated,
    ``OUT`` checked); then ``empirical.linear.immunize_linear`` trains (a rich progress bar on a
    terminal, none with ``--quiet`` or when stderr is not a terminal),
    ``judge_immunization`` judges, and ``OUT/report.json`` (``ConditionNumberReport``) and
    ``OUT/extractor.npz`` (``theta``, ``bias``, ``head``) are staged and renamed into place;
    the report's summary is printed (``--json``: the report itself).
    ``--set`` takes the fields of ``LinearImmunizationConfig`` (``variant=paper|project``
    picks the preset) and of ``JudgeConfig``. Imports neither transformers nor peft.
    """
    from empirical.linear import JudgeConfig, bundled_pair, configure, load_pair

    if (pair_file is None) == (sklearn is None):
        raise HftaInputError("give exactly one of --pair FILE and --sklearn SPEC")
    values = parse_settings(settings)
    if seed is not None:
        if "seed" in values:
            raise HftaInputError("--seed and --set seed= both given")
        values["seed"] = seed
    judge_fields = set(JudgeConfig.model_fields)
    judge_values = {k: values.pop(k) for k in list(values) if k in judge_fields}
    variant = values.pop("variant", "paper")
    config = configure(str(variant), **values)
    judge = _judge_config(judge_values)
    task_pair = load_pair(pair_file) if pair_file is not None else bundled_pair(str(sklearn))
    from empirical.linear.training import steps_per_epoch

    total_steps = steps_per_epoch(task_pair, config.batch_size) * config.epochs  # checks batch
    plan = _check_output(out, force)
    target = plan.path

    import torch

    from empirical.linear import immunize_linear, judge_immunization

    torch.set_num_threads(threads)
    result = _train_with_progress(task_pair, config, quiet, immunize_linear, total_steps)
    report = judge_immunization(task_pair, result, judge)
    _write_linear(plan, report, result)
    if as_json:
        echo_json({"out": str(target), "report": report.model_dump(mode="json")})
        return
    console = stdout_console()
    for line in report.summary_lines():
        console.print(line, highlight=False, markup=False)
    console.print(f"wrote {target}/report.json and {target}/extractor.npz", highlight=False)


def _judge_config(values: dict[str, Any]) -> JudgeConfig:
    from pydantic import ValidationError

    from empirical.linear import JudgeConfig

    try:
        return JudgeConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "judge"
        raise HftaInputError(f"{where}: {first.get('msg', 'invalid value')}") from None


def _train_with_progress(
    pair: LinearTaskPair,
    config: LinearImmunizationConfig,
    quiet: bool,
    train: Callable[
        [LinearTaskPair, LinearImmunizationConfig, Progress | None], LinearImmunization
    ],
    total: int,
) -> LinearImmunization:
    """Run ``train(pair, config, progress)`` with a rich bar on stderr when it is a terminal."""
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        return train(pair, config, None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("immunizing"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("train", total=total)

        def progress(done: int, steps: int) -> None:
            bar.update(task, completed=done, total=steps)

        return train(pair, config, progress)


def _write_linear(
    plan: OutputPlan, report: ConditionNumberReport, result: LinearImmunization
) -> None:
    """Stage ``report.json`` and ``extractor.npz`` next to ``plan.path``, then publish."""
    import numpy as np

    out = plan.path
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / "report.json").write_text(report.model_dump_json(indent=2) + "\n")
        np.savez(
            staging / "extractor.npz", theta=result.extractor, bias=result.bias, head=result.head
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, plan)
