"""``report.html``: the verdict as one self-contained page, beside ``report.md``.

``write_html_report(run_dir)`` reads what ``hfta verify`` wrote into ``run_dir``
(``verdict.json``, ``figures/*.png``, ``trajectories/*.json``) and writes
``run_dir/report.html``: the verdict table, each condition's evidence, the figures, every
attack's trajectory as an interactive chart (hover for the values at a step, drag to zoom on
a step range, double-click to reset, click a run's name to hide it), the bound checks with
their rounding allowances, the threat model and the environment.

Self-contained: the figures are inlined as base64 PNG ``data:`` URIs, the trajectories as a
JSON document inside the page, the style and the script (written here, no library) inline;
the page names no external URL, so it opens offline, from an e-mail attachment or a CI
artefact store. The page is rendered by jinja2 from the kept template library beside this
module (``templates/``), with autoescaping on: every string of the verdict is escaped.

The verdict document is validated into typed records (``VerdictDocument`` and friends,
pydantic) before it is rendered, so a ``verdict.json`` of another layout is refused with one
clear message instead of producing a half-empty page.
"""

from __future__ import annotations

import base64
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from empirical.trajectory import Trajectory
from empirical.verify.report import VERDICT_SCHEMA
from theory.errors import HftaInputError

__all__ = [
    "HTML_NAME",
    "TEMPLATES",
    "BoundRecord",
    "ConditionRecord",
    "RunRecord",
    "VerdictDocument",
    "load_verdict",
    "render_html",
    "trajectory_series",
    "write_html_report",
]

HTML_NAME = "report.html"
"""The file ``write_html_report`` writes into the run directory."""

TEMPLATES = Path(__file__).with_name("templates")
"""The template library: ``report.html.j2`` (page), ``report.css``, ``report.js``."""

#: Quantities drawn in the interactive chart: (key, label, where it is recorded).
CHART_QUANTITIES: tuple[tuple[str, str], ...] = (
    ("harm", "harm proxy f (held-out prompts)"),
    ("capability", "capability proxy g"),
    ("harmful_loss", "held-out harmful loss"),
    ("probe_loss", "harmful loss on the probe batch"),
    ("train_loss", "harmful training loss (minibatch)"),
    ("update_norm", "update norm ||D_s||"),
    ("distance_from_start", "distance from the start ||theta_s - theta_0||"),
)


# --------------------------------------------------------------------------- typed records
class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class RestsOn(_Record):
    """What a condition's verdict rests on (runs, evaluations or examples) and its wording."""

    text: str = ""


class ConditionRecord(_Record):
    """One condition of ``verdict.json``'s ``conditions``."""

    claimed: bool
    status: str
    reason: str
    rests_on: RestsOn
    first_violation_step: int | None = None
    margin: float | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)


class BoundRecord(_Record):
    """One theorem's checks over every attack on M* (``verdict.json``'s ``bounds``)."""

    theorem: str
    name: str
    inequality: str
    instances: int
    violations: int
    runs_checked: int
    runs_not_applicable: int
    first_violation: dict[str, Any] | None = None
    worst_slack: float | None = None
    tolerance: str = ""
    not_applicable_reasons: list[str] = Field(default_factory=list)
    steps_to_threshold: list[dict[str, Any]] = Field(default_factory=list)


class RunRecord(_Record):
    """One measured run and its trajectory file."""

    run: str
    role: str
    attack: str
    trajectory: str
    steps: int
    diverged_at: int | None = None


class VerdictDocument(_Record):
    """The parts of ``verdict.json`` (``empirical.verify.report.document``) the page shows."""

    schema_version: int
    verdict: str
    exit_code: int
    claim: dict[str, Any]
    threat_model: dict[str, Any]
    conditions: dict[str, ConditionRecord]
    worst_attack: dict[str, Any] | None = None
    attacker: dict[str, Any] = Field(default_factory=dict)
    bounds: list[BoundRecord] = Field(default_factory=list)
    bound_violations: int = 0
    theory: dict[str, Any] = Field(default_factory=dict)
    defence: dict[str, Any] = Field(default_factory=dict)
    runs: list[RunRecord] = Field(default_factory=list)
    environment: dict[str, Any] = Field(default_factory=dict)
    seeds: dict[str, Any] = Field(default_factory=dict)
    timing: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


def load_verdict(run_dir: Path) -> VerdictDocument:
    """``run_dir/verdict.json`` as typed records.

    Raises:
        HftaInputError: no verdict.json, not JSON, or not the verdict layout.
    """
    path = Path(run_dir) / "verdict.json"
    if not path.is_file():
        raise HftaInputError(f"{path}: no verdict.json (not an `hfta verify` output folder)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        record = VerdictDocument.model_validate(raw)
    except json.JSONDecodeError as exc:
        raise HftaInputError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "document"
        raise HftaInputError(f"{path}: {where}: {first.get('msg', 'invalid')}") from None
    if record.schema_version != VERDICT_SCHEMA:
        raise HftaInputError(
            f"{path}: verdict schema_version {record.schema_version}, this toolkit reads "
            f"{VERDICT_SCHEMA}"
        )
    return record


# --------------------------------------------------------------------------- the page's data
def _finite(values: list[float | None]) -> list[float | None]:
    return [v if v is not None and math.isfinite(v) else None for v in values]


def trajectory_series(trajectory: Trajectory) -> dict[str, list[list[float]]]:
    """Every charted quantity of ``trajectory`` as ``[[step, value], ...]`` (measured points
    only: a ``None`` is left out, never drawn as 0)."""
    series: dict[str, list[list[float]]] = {}
    for key, _ in CHART_QUANTITIES:
        try:
            steps, values = trajectory.series(key)
        except HftaInputError:  # not recorded by this run (no probe)
            continue
        points = [[float(s), float(v)] for s, v in zip(steps, _finite(list(values)), strict=True)
                  if v is not None]
        if points:
            series[key] = points
    return series


def _chart_data(run_dir: Path, record: VerdictDocument) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for run in record.runs:
        path = run_dir / run.trajectory
        if not path.is_file():
            continue
        trajectory = Trajectory.load(path)
        runs.append(
            {
                "name": run.run,
                "role": run.role,
                "attack": run.attack,
                "diverged_at": trajectory.diverged_at,
                "series": trajectory_series(trajectory),
            }
        )
    claim_harm = record.claim.get("harm", {})
    return {
        "quantities": [{"key": k, "label": label} for k, label in CHART_QUANTITIES],
        "runs": runs,
        "phi": claim_harm.get("phi"),
        "budget": record.threat_model.get("budget_steps"),
    }


def _figures(run_dir: Path) -> list[dict[str, str]]:
    folder = run_dir / "figures"
    shown: list[dict[str, str]] = []
    for path in sorted(folder.glob("*.png")) if folder.is_dir() else []:
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        shown.append({"name": path.name, "uri": f"data:image/png;base64,{encoded}"})
    return shown


def _script_json(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</`` can close it)."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _scalars(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    """The evidence's scalar entries (numbers, strings, flags) as rows."""
    rows: list[tuple[str, str]] = []
    for key, value in evidence.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            rows.append((key, _number(value, 4)))
        elif isinstance(value, dict) and all(
            not isinstance(v, (dict, list)) for v in value.values()
        ):
            rows.append((key, ", ".join(f"{k} {_number(v, 4)}" for k, v in value.items())))
    return rows


def _nested(evidence: dict[str, Any]) -> dict[str, str]:
    """The evidence's nested entries (lists, dicts of dicts), pretty-printed JSON."""
    return {
        key: json.dumps(value, indent=1, default=str)
        for key, value in evidence.items()
        if isinstance(value, list)
        or (isinstance(value, dict) and any(isinstance(v, (dict, list)) for v in value.values()))
    }


def _environment(record: VerdictDocument) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in record.environment.items():
        if isinstance(value, dict):
            rows.append((key, ", ".join(f"{k} {v}" for k, v in value.items())))
        else:
            rows.append((key, _number(value)))
    return rows


def _jinja() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["number"] = _number
    environment.filters["plural"] = _plural
    return environment


def render_html(run_dir: Path) -> str:
    """The page for the verifier output in ``run_dir`` (module docstring)."""
    run_dir = Path(run_dir)
    record = load_verdict(run_dir)
    template = _jinja().get_template("report.html.j2")
    conditions = [
        {
            "name": name,
            "entry": entry,
            "scalars": _scalars(entry.evidence),
            "nested": _nested(entry.evidence),
        }
        for name, entry in record.conditions.items()
    ]
    return template.render(
        css=Markup((TEMPLATES / "report.css").read_text(encoding="utf-8")),
        js=Markup((TEMPLATES / "report.js").read_text(encoding="utf-8")),
        record=record,
        claim=record.claim.get("claim", {}),
        harm=record.claim.get("harm", {}),
        conditions=conditions,
        figures=_figures(run_dir),
        chart_json=_script_json(_chart_data(run_dir, record)),
        environment=_environment(record),
        seeds=json.dumps(record.seeds, sort_keys=True),
        defence_parameters=json.dumps(record.defence.get("hyperparameters", {}), sort_keys=True),
        constants=(record.theory.get("worst_constants") or {}),
    )


def write_html_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` atomically (temporary file, then rename); return it.

    Raises:
        HftaInputError: ``run_dir`` holds no readable verdict (``load_verdict``).
    """
    run_dir = Path(run_dir)
    text = render_html(run_dir)
    target = run_dir / HTML_NAME
    descriptor, temp = tempfile.mkstemp(prefix=f".{HTML_NAME}.", dir=run_dir)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target
