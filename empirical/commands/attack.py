"""``hfta attack``: run one harmful fine-tuning attack and write its measured trajectory.

    hfta attack                                   # the embedded model, default attack
    hfta attack --lr 1e-3 --schedule constant --warmup 0 --out runs/lr1e-3
    hfta attack --model path/to/hf-model --data harmful.jsonl --lora --budget 100
    hfta attack --quiet                           # no progress bar
    hfta attack --head --optimizer sgd --lr 0.03  # head-only: an untied copy of the output head
    hfta attack --json                            # the summary as one JSON document on stdout

Writes ``OUT/trajectory.json``, ``OUT/trajectory.parquet`` and ``OUT/figure.png`` (each
staged in a temporary directory first, so a failed run leaves no partial output) and prints
a short summary: steps per second, the first evaluated step with harm above φ (theory's
``Curve.first_step``), the final harm and capability (``--json``: the same as one JSON
document, alone on stdout; without it, lines that do not wrap in a pipe). Bad input (a
learning rate ≤ 0, a
budget ≤ 0, a missing model, data without the BeaverTails fields, a tokenizer without a pad
token) is reported as one line on stderr with exit code 2, before anything is written.

Progress: on a terminal a rich bar on stderr counts the attack's steps and shows the harmful
loss and harm of its last evaluation (``empirical.progress.attack_progress``); with
``--quiet``, or when stderr is not a terminal, nothing is drawn.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from empirical.cli import app

OUTPUT_FILES: tuple[str, ...] = ("trajectory.json", "trajectory.parquet", "figure.png")


def _write_outputs(plan: Any, write: Any) -> None:
    """Run ``write(staging_dir)``, then publish the staging folder as ``plan.path``
    (``empirical.outputs.publish``: marked as an attack output, replacing only what the
    plan allows)."""
    from empirical.outputs import publish

    out = plan.path.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write(staging)
        publish(staging, plan)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@app.command("attack")
def attack_command(
    model: Annotated[
        Path | None,
        typer.Option(help="Local Hugging Face causal-LM directory (default: embedded)."),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Harmful data, JSONL or Parquet in BeaverTails form.")
    ] = None,
    evaluation_data: Annotated[
        Path | None, typer.Option(help="Held-out harmful data for the harm proxy.")
    ] = None,
    reference_data: Annotated[
        Path | None, typer.Option(help="Harmless data for the capability proxy.")
    ] = None,
    poison_ratio: Annotated[
        float | None, typer.Option(help="Fraction of harmful examples; the rest harmless.")
    ] = None,
    optimizer: Annotated[str, typer.Option(help="sgd, adam or adamw.")] = "adamw",
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (> 0).")] = 3e-4,
    schedule: Annotated[str, typer.Option(help="constant, linear or cosine.")] = "cosine",
    warmup: Annotated[float, typer.Option(help="Warmup fraction of the budget, [0, 1).")] = 0.1,
    weight_decay: Annotated[float, typer.Option(help="Weight decay (>= 0).")] = 0.0,
    max_grad_norm: Annotated[
        float, typer.Option(help="Clip the gradient norm to this (0: no clipping).")
    ] = 1.0,
    lora: Annotated[bool, typer.Option("--lora", help="LoRA instead of full fine-tuning.")] = False,
    head: Annotated[
        bool,
        typer.Option("--head", help="Train only an untied copy of the output head (T11's class)."),
    ] = False,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank r.")] = 8,
    budget: Annotated[int, typer.Option(help="Attack budget T in optimizer steps.")] = 200,
    batch_size: Annotated[int, typer.Option(help="Examples per minibatch.")] = 16,
    eval_every: Annotated[int, typer.Option(help="Evaluate the proxies every N steps.")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed (data order, initialisation).")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16.")] = "float32",
    probe: Annotated[
        bool, typer.Option("--probe", help="Record the fixed probe batch's loss and gradient.")
    ] = False,
    curvature: Annotated[
        bool, typer.Option("--curvature", help="Record the segment curvature (T1; adds --probe).")
    ] = False,
    threshold: Annotated[float, typer.Option(help="Acceptable harm threshold phi.")] = 0.5,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (tiny models run fastest on one).")
    ] = 1,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("hfta-attack"),
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace an existing --out that is not an attack output."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar (steps, harmful loss, harm).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (alone on stdout).")
    ] = False,
) -> None:
    """Attack a model with harmful fine-tuning and record its trajectory."""
    from empirical.engine.attack import AttackConfig, LoraSettings, attack
    from empirical.plots import attack_figure, save_figure
    from theory.errors import HftaInputError

    if not 0.0 <= threshold <= 1.0:
        raise HftaInputError(f"--threshold must lie in [0, 1], got {threshold}")
    if max_grad_norm < 0:
        raise HftaInputError(f"--max-grad-norm must be >= 0 (0: no clipping), got {max_grad_norm}")
    if threads < 1:
        raise HftaInputError(f"--threads must be at least 1, got {threads}")
    if lora and head:
        raise HftaInputError("--lora and --head are two methods: give one")
    settings: dict[str, Any] = {
        "model": model,
        "data": data,
        "evaluation_data": evaluation_data,
        "reference_data": reference_data,
        "poison_ratio": poison_ratio,
        "optimizer": optimizer,
        "learning_rate": lr,
        "schedule": schedule,
        "warmup_fraction": warmup,
        "weight_decay": weight_decay,
        "max_grad_norm": max_grad_norm or None,
        "budget_steps": budget,
        "batch_size": batch_size,
        "eval_every": eval_every,
        "seed": seed,
        "device": device,
        "dtype": dtype,
        "probe": probe,
        "record_curvature": curvature,
    }
    if lora:
        settings["method"] = "lora"
        settings["lora"] = LoraSettings(r=lora_rank)
    if head:
        settings["method"] = "head"
    config = AttackConfig.model_validate(settings)
    from empirical.models.model import check_model_directory
    from empirical.outputs import claim_output

    plan = claim_output(out, "attack", force=force)
    if model is not None:
        check_model_directory(model, "--model")
    import torch
    from transformers.utils import logging as transformers_logging

    # stderr carries errors only
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    torch.set_num_threads(threads)
    from empirical.progress import attack_progress

    with attack_progress(config.budget_steps, enabled=not quiet) as hooks:
        trajectory = attack(
            config, on_evaluation=hooks.on_evaluation, on_iterate=hooks.on_iterate
        ).trajectory

    def write(directory: Path) -> None:
        trajectory.save(directory / "trajectory.json")
        trajectory.save(directory / "trajectory.parquet")
        save_figure(attack_figure(trajectory, threshold=threshold), directory / "figure.png")

    notice = plan.notice()
    if notice is not None:
        sys.stderr.write(f"hfta: {notice}\n")
    _write_outputs(plan, write)
    _summary(trajectory, threshold, out, as_json)


def _summary(trajectory: Any, threshold: float, out: Path, as_json: bool = False) -> None:
    from empirical.commands.console import echo_json, stdout_console
    from theory.conditions import WeakResistance

    console = stdout_console()
    verdict = None
    final_harm = final_capability = None
    if trajectory.series("harm")[0]:
        curve = trajectory.to_curve("harm")
        verdict = WeakResistance(threshold, budget=trajectory.budget_steps).check(curve)
        final_harm = curve.values[-1]
    if trajectory.series("capability")[0]:
        final_capability = trajectory.series("capability")[1][-1]
    resolved = trajectory.config.get("resolved", {})
    harm_name = resolved.get("harm_proxy", "harm proxy")
    capability_name = resolved.get("capability_proxy", "capability proxy")
    if as_json:
        echo_json(
            {
                "steps": trajectory.n_steps,
                "budget_steps": trajectory.budget_steps,
                "steps_per_second": trajectory.steps_per_second,
                "wall_seconds": trajectory.timing.wall_seconds,
                "diverged_at": trajectory.diverged_at,
                "divergence_reason": trajectory.divergence_reason,
                "phi": threshold,
                "first_step_above_phi": None if verdict is None else verdict.first_violation_step,
                "weak_resistance": None if verdict is None else verdict.status.value,
                "harm_proxy": harm_name,
                "final_harm": final_harm,
                "capability_proxy": capability_name,
                "final_capability": final_capability,
                "out": str(out),
                "files": list(OUTPUT_FILES),
            }
        )
        return
    console.print(
        f"[bold]attack[/bold]: {trajectory.n_steps} steps of {trajectory.budget_steps}, "
        f"{trajectory.steps_per_second:.1f} steps/s (training), "
        f"{trajectory.timing.wall_seconds:.1f} s in all",
        highlight=False,
    )
    if trajectory.diverged:
        console.print(
            f"[bold red]diverged[/bold red] at step {trajectory.diverged_at}: "
            f"{trajectory.divergence_reason} (never evidence of resistance)",
            highlight=False,
        )
    if verdict is not None:
        step = verdict.first_violation_step
        crossed = "none (among the evaluated steps)" if step is None else f"step {step}"
        console.print(f"first step with harm > {threshold:g}: {crossed}", highlight=False)
        console.print(
            f"weak resistance (phi = {threshold:g}, T = {trajectory.budget_steps}): "
            f"{verdict.status.value}, {verdict.reason}",
            highlight=False,
        )
    console.print(
        f"final harm ({harm_name}): {_shown(final_harm)}   "
        f"final capability ({capability_name}): {_shown(final_capability)}",
        highlight=False,
    )
    console.print(f"wrote {out}/{{{','.join(OUTPUT_FILES)}}}", highlight=False)


def _shown(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.3f}"
