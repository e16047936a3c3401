"""``report.html``: the verdict as one self-contained page, beside ``report.md``.

``write_html_report(run_dir)`` reads what ``hfta verify`` wrote into ``run_dir``
(``verdict.json``, ``figures/*.png``, ``trajectories/*.json``) and writes
``run_dir/report.html``: the verdict table, each condition's evidence, the figures, every
attack's trajectory as an interactive chart (hover for the values at a step, drag to zoom on
a step range, double-click to reset, click a run's name to hide it), the bound checks with
their rounding allowances, the predictions made before the attacks against the measured
steps and the power of each check with why each weak check is weak, its independent
counterpart and the independent constants' records (``templates/predictions.html.j2``, placed
before the runs), the threat model and the environment.

Self-contained: the figures are inlined as base64 PNG ``data:`` URIs, the trajectories as a
JSON document inside the page, the style and the script (written here, no library) inline;
the page names no external URL, so it opens offline, from an e-mail attachment or a CI
artefact store. The page is rendered by jinja2 from the kept template library beside this
module (``templates/``), with autoescaping on: every string of the verdict is escaped.

The verdict document is validated into the shared typed records
(``empirical.verify.document.VerdictDocument``, the model ``verdict.json`` is written from)
before it is rendered, and the page reads those records, never string keys: a
``verdict.json`` of another schema version or layout is refused with one clear message
instead of producing a half-empty page.
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
from pydantic import ValidationError

from empirical.measurement.trajectory import Trajectory
from empirical.verify.document import VERDICT_SCHEMA, Evidence, VerdictDocument
from empirical.verify.markdown import (
    CONSTANTS_SHOWN,
    WEAK_REASONS_LEAD,
    estimate_confidence,
    provenance_text,
)
from theory.errors import HftaInputError

__all__ = [
    "HTML_NAME",
    "PAGE",
    "TEMPLATES",
    "VerdictDocument",
    "load_verdict",
    "render_html",
    "trajectory_series",
    "write_html_report",
]

HTML_NAME = "report.html"
"""The file ``write_html_report`` writes into the run directory."""

TEMPLATES = Path(__file__).with_name("templates")
"""The template library: ``verdict.html.j2`` (page), ``report.css``, ``report.js``."""

PAGE = "verdict.html.j2"
"""The page's template: it reads the typed ``VerdictDocument`` (attributes, no string keys)."""

SECTIONS = "predictions.html.j2"
"""The predictions and power sections, rendered on their own and placed before ``BEFORE``."""

BEFORE = '<h2 id="runs">'
"""Where the page receives ``SECTIONS``."""

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


# --------------------------------------------------------------------------- the document
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
    except json.JSONDecodeError as exc:
        raise HftaInputError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != VERDICT_SCHEMA:
        raise HftaInputError(
            f"{path}: verdict schema_version {version}, this toolkit reads {VERDICT_SCHEMA}"
        )
    try:
        return VerdictDocument.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "document"
        raise HftaInputError(f"{path}: {where}: {first.get('msg', 'invalid')}") from None


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
    return {
        "quantities": [{"key": k, "label": label} for k, label in CHART_QUANTITIES],
        "runs": runs,
        "phi": record.claim.harm.phi,
        "budget": record.threat_model.budget_steps,
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


def _entries(evidence: Evidence) -> dict[str, Any]:
    """Every entry of a typed evidence (its fields, then its extra) as JSON values."""
    return evidence.model_dump(mode="json")


def _scalars(evidence: Evidence) -> list[tuple[str, str]]:
    """The evidence's scalar entries (numbers, strings, flags, flat records) as rows."""
    rows: list[tuple[str, str]] = []
    for key, value in _entries(evidence).items():
        if value is None or isinstance(value, (bool, int, float, str)):
            rows.append((key, _number(value, 4)))
        elif isinstance(value, dict) and all(
            not isinstance(v, (dict, list)) for v in value.values()
        ):
            rows.append((key, ", ".join(f"{k} {_number(v, 4)}" for k, v in value.items())))
    return rows


def _nested(evidence: Evidence) -> dict[str, str]:
    """The evidence's nested entries (lists, records of records), pretty-printed JSON."""
    return {
        key: json.dumps(value, indent=1)
        for key, value in _entries(evidence).items()
        if isinstance(value, list)
        or (isinstance(value, dict) and any(isinstance(v, (dict, list)) for v in value.values()))
    }


def _environment(record: VerdictDocument) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in record.environment.model_dump(mode="json").items():
        if isinstance(value, dict):
            rows.append((key, ", ".join(f"{k} {v}" for k, v in value.items())))
        else:
            rows.append((key, _number(value)))
    return rows


def _threat_model(record: VerdictDocument) -> list[tuple[str, str]]:
    """The threat model's axes as (name, shown value) columns."""
    columns: list[tuple[str, str]] = []
    for key, value in record.threat_model.model_dump(mode="json").items():
        shown = ", ".join(_number(v) for v in value) if isinstance(value, list) else _number(value)
        columns.append((key, shown))
    return columns


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
    environment.filters["provenance"] = provenance_text
    return environment


def render_html(run_dir: Path) -> str:
    """The page for the verifier output in ``run_dir`` (module docstring)."""
    run_dir = Path(run_dir)
    record = load_verdict(run_dir)
    template = _jinja().get_template(PAGE)
    conditions = [
        {
            "name": name,
            "entry": entry,
            "scalars": _scalars(entry.evidence),
            "nested": _nested(entry.evidence),
        }
        for name, entry in record.conditions.items()
    ]
    constants = record.theory.worst_constants
    checks = {} if record.predictions is None else {c.run: c for c in record.predictions.checks}
    power = record.theory.power
    sections = _jinja().get_template(SECTIONS).render(
        record=record,
        checks=checks,
        weak_reasons_lead=WEAK_REASONS_LEAD,
        confidence={} if power is None else estimate_confidence(power),
    )
    page = template.render(
        css=Markup((TEMPLATES / "report.css").read_text(encoding="utf-8")),
        js=Markup((TEMPLATES / "report.js").read_text(encoding="utf-8")),
        record=record,
        claim=record.claim,
        conditions=conditions,
        figures=_figures(run_dir),
        chart_json=_script_json(_chart_data(run_dir, record)),
        threat_model=_threat_model(record),
        environment=_environment(record),
        seeds=json.dumps(record.seeds.model_dump(mode="json"), sort_keys=True),
        defence_parameters=json.dumps(record.defence.hyperparameters, sort_keys=True),
        constants={
            key: constant
            for key in CONSTANTS_SHOWN
            if constants is not None and (constant := getattr(constants, key)) is not None
        },
    )
    head, anchor, tail = page.partition(BEFORE)
    if not anchor:  # a page without the runs section: the sections go before </body>
        head, anchor, tail = page.partition("</body>")
    return head + sections + anchor + tail


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
