"""``hfta verify``: turn a claimed defence guarantee into a verdict.

    hfta verify                                  # claims/demo.toml on the embedded model
    hfta verify claims/lora_attacker.toml --out runs/lora
    hfta verify my_claim.toml --executor ray --ray-address auto --quiet
    hfta verify my_claim.toml --device cuda      # train and evaluate on the GPU

Reads the claim (``empirical.verify.claim``), checks it and everything it names before
writing anything (bad input: one line on stderr, exit code 2, nothing written): the claim,
its data files, its model folders (config, tokenizer, safetensors header and shapes) and
``--out``. An existing ``--out`` that is not a previous ``hfta verify`` output is refused and
left untouched unless ``--force`` (``empirical.outputs``); replacing a previous run is said.
The verification caches its attacks, search, immunized models and theory measurements in
``OUT.cache`` (a killed run, rerun with the same command, resumes from there), under a lock:
a second run on the same ``--out`` is refused with one "busy" line. ``OUT/verdict.json``,
``OUT/report.md``, ``OUT/figures/`` and ``OUT/trajectories/`` are written in a staging
folder that is renamed to ``OUT`` at the end. All of it is one Python call,
``empirical.verify.api.verify_claim``; this command adds the flags, the printing and the
exit code.

The verdict table is drawn for the terminal, and without wrapping in a pipe; ``--json`` prints
the verdict document (``OUT/verdict.json``'s content; with ``--explain``, its lines) on stdout
alone.

Exit codes: 0 every claimed condition holds; 1 one is violated or inconclusive; 2 bad input;
3 internal error or a run that does not reproduce (traceback in ``OUT.cache/logs``);
130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from empirical.cli import app
from empirical.commands.console import echo_json, stdout_console


@app.command("verify")
def verify_command(
    claim: Annotated[
        Path | None,
        typer.Argument(help="Claim file (TOML). Default: the bundled claims/demo.toml."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory (default: runs/verify-<time>)."),
    ] = None,
    executor: Annotated[str, typer.Option(help="Where attacks run: local or ray.")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="Address of a ray cluster (with --executor ray).")
    ] = None,
    threads: Annotated[int, typer.Option(help="torch CPU threads per attack.")] = 1,
    device: Annotated[
        str,
        typer.Option(
            help="Where the models are trained and evaluated: cpu or cuda (cuda: one worker, "
            "its own caches in OUT.cache/cuda)."
        ),
    ] = "cpu",
    workers: Annotated[
        int,
        typer.Option(
            help="Attacks (and optuna trials) at once in local worker processes (same results)."
        ),
    ] = 1,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress; print only the verdict line.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace an existing --out that is not a verify output."),
    ] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Check the claim, print the resolved threat model and the attacks it would "
            "run, and stop (nothing runs, nothing is written).",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the verdict document (verdict.json) on stdout, not the table."
        ),
    ] = False,
) -> None:
    """Verify a claimed immunization guarantee; exit 0 if every claimed condition holds."""
    from empirical.cli import set_log_directory
    from empirical.verify.api import EXECUTORS, verify_claim
    from empirical.verify.workspace import VerifyOptions
    from theory.errors import HftaInputError

    if executor not in EXECUTORS:
        raise HftaInputError(f"--executor must be local or ray, not {executor!r}")
    if ray_address is not None and executor != "ray":
        raise HftaInputError("--ray-address needs --executor ray")
    if threads < 1:
        raise HftaInputError(f"--threads must be at least 1, got {threads}")
    if workers < 1:
        raise HftaInputError(f"--workers must be at least 1, got {workers}")

    if explain:
        _explain(claim, as_json)
        return

    from rich.console import Console

    errors = Console(stderr=True)

    def log(message: str) -> None:
        if not quiet:
            errors.print(f"[dim]verify:[/dim] {message}", highlight=False)

    options = VerifyOptions(
        executor=executor,  # type: ignore[arg-type]
        ray_address=ray_address,
        progress=not quiet,
        threads=threads,
        workers=workers,
        device=device,  # type: ignore[arg-type]
    )
    result = verify_claim(
        claim,
        out,
        force=force,
        options=options,
        log=log,
        on_locked=lambda work: set_log_directory(work / "logs"),
    )
    if as_json:
        echo_json(result.record)
    else:
        _summary(result.record, result.out, result.seconds, quiet)
    raise typer.Exit(result.exit_code)


def _explain(claim: Path | None, as_json: bool = False) -> None:
    """``--explain``: the claim checked end to end (``prepare``), then what would run."""
    from empirical.verify.api import resolve_claim
    from empirical.verify.plan import explain
    from empirical.verify.stages import prepare

    prepared = prepare(*resolve_claim(claim, None))
    lines = explain(prepared.claim, prepared.data)
    if as_json:
        echo_json({"explain": lines})
        return
    for line in lines:
        typer.echo(line)


def _summary(record: dict[str, object], destination: Path, seconds: float, quiet: bool) -> None:
    from rich.table import Table

    console = stdout_console()
    verdict = str(record["verdict"])
    line = f"verdict: {verdict} (exit {record['exit_code']}) -> {destination}/verdict.json"
    if quiet:
        console.print(line, highlight=False, soft_wrap=True)
        return
    table = Table(title=f"hfta verify: {verdict}")
    for column in ("condition", "claimed", "status", "rests on"):
        table.add_column(column)
    conditions = record["conditions"]
    assert isinstance(conditions, dict)
    colours = {"holds": "green", "violated": "red", "inconclusive": "yellow"}
    for name, entry in conditions.items():
        status = entry["status"]
        table.add_row(
            name,
            "yes" if entry["claimed"] else "measured",
            f"[{colours[status]}]{status}[/{colours[status]}]",
            entry["rests_on"]["text"],
        )
    console.print(table)
    warnings = record.get("warnings") or []
    assert isinstance(warnings, list)
    for warning in warnings:
        console.print(f"[bold red]warning:[/bold red] {warning}", highlight=False)
    violations = record["bound_violations"]
    console.print(f"bound violations: {violations}; wall time {seconds:.1f} s", highlight=False)
    console.print(line, highlight=False, soft_wrap=True)
