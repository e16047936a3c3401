"""report.html: one self-contained page, structurally sound, rendered in headless Chromium.

The run folder is written by the verifier's own writer (``write_outputs``: verdict.json,
report.md, figures, trajectories, report.html) from a verdict over real trajectories records;
the browser test renders the page in Debian's Chromium and checks the screenshot is not blank
and the console and the page's error sentinel are silent. Every checker has a negative control.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from empirical.engine.attack import AttackConfig
from empirical.measurement.trajectory import Environment, Evaluation, Timing, Trajectory
from empirical.verify.claim import parse_claim, resolve_data
from empirical.verify.figures import figures
from empirical.verify.html import HTML_NAME, load_verdict, render_html, write_html_report
from empirical.verify.pipeline import (
    AttackRun,
    BoundSummary,
    DefenceOutcome,
    TheoryOutcome,
    VerifyOutcome,
    judge_resistance,
)
from empirical.verify.report import write_outputs
from tests.verify._verdict import ENVIRONMENT
from theory.errors import HftaInputError

CLAIM = """
[claim]
name = "html <b>test</b> & co"
description = "a claim whose name needs escaping"

[defence]
name = "none"

[threat_model]
budget_steps = 20
learning_rates = [1e-3]
seeds = [0, 1]

[harm]
phi = 0.5
eval_every_steps = 10

[conditions]
claimed = ["weak_resistance"]
measured = ["generalization_in_domain"]
"""

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


def _trajectory(harm: list[float], slope: float) -> Trajectory:
    n = 20
    losses = [5.0 - slope * s for s in range(n + 1)]
    return Trajectory(
        source="attack",
        config={"optimizer": "adamw", "method": "full",
                "resolved": {"evaluation_examples": 200}},
        budget_steps=n,
        trainable_parameters=100,
        train_loss=losses[:-1],
        learning_rate=[1e-3] * n,
        grad_norm=[1.0] * n,
        update_norm=[0.01] * n,
        distance_from_start=[0.01 * s for s in range(n + 1)],
        probe_loss=losses,
        probe_grad_norm=[1.0] * (n + 1),
        probe_directional_derivative=[-0.01] * n,
        evaluations=[Evaluation(step=s, harm=h) for s, h in zip((0, 10, 20), harm, strict=True)],
        timing=Timing(wall_seconds=1, train_seconds=1, eval_seconds=0, train_cpu_seconds=1),
        environment=Environment(python="3", platform="test", device="cpu", dtype="float32"),
    )


def _outcome(broken: bool) -> VerifyOutcome:
    claim = parse_claim(CLAIM)
    runs = [
        AttackRun("grid", "grid-000", AttackConfig(seed=0), _trajectory([0.0, 0.0, 0.01], 0.1)),
        AttackRun("grid", "grid-001", AttackConfig(seed=1),
                  _trajectory([0.0, 0.4, 0.9] if broken else [0.0, 0.02, 0.03], 0.15)),
    ]
    verdicts, findings = judge_resistance(
        claim, resolve_data(claim), {"in": runs}, {"weak_resistance", "generalization_in_domain"}
    )
    worst = max(findings["weak_resistance"], key=lambda f: f.max_harm()[0] or 0)
    summary = BoundSummary(
        label="T3", name="path_length_adam", inequality="L_t >= L_0 - G sum <eta>",
        runs_checked=2, runs_not_applicable=0, instances=42, violations=0,
        first_violation=None, worst_slack=-1e-7, not_applicable_reasons=[], steps=[],
    )
    return VerifyOutcome(
        claim=claim, claim_file=None,
        conditions={k: verdicts[k] for k in ("weak_resistance", "generalization_in_domain")},
        claimed=["weak_resistance"], runs=runs, worst=worst, original_worst=None,
        defence=DefenceOutcome("none", {}, None, None, None, False, 0.0, None),
        search=None, grid_size=2,
        theory=TheoryOutcome(
            summaries=[summary], checks={}, worst_constants=None, worst_run="grid-001",
            measured_again=False, reproduced=None, note="synthetic", seconds=0.0,
        ),
        stability_values=None, warnings=[], environment=ENVIRONMENT,
        timing={"grid": 1.0},
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run") / "out"
    outcome = _outcome(broken=True)
    write_outputs(outcome, folder, figures(outcome))
    return folder


# --------------------------------------------------------------------------- checkers
class _Structure(HTMLParser):
    """Tags balanced (void elements aside), every ``src``/``href`` value, the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.references: list[str] = []
        self.ids: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.references += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if values.get("id"):
            self.ids[str(values["id"])] = values | {"_tag": tag}
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


def _parse(text: str) -> _Structure:
    parser = _Structure()
    parser.feed(text)
    parser.close()
    return parser


def _external(text: str) -> list[str]:
    """Every reference the page would fetch or link outside itself."""
    urls = re.findall(r"(?:https?|ftp):/{2}[^\s\"'<>)]+|(?<![\w:])/{2}[\w.-]+\.\w+", text)
    structure = _parse(text)
    urls += [r for r in structure.references if not r.startswith(("data:", "#"))]
    return urls


def _chart_data(text: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', text,
                      re.S)
    assert match is not None
    data = json.loads(match.group(1))
    assert isinstance(data, dict)
    return data


# --------------------------------------------------------------------------- structure
def test_the_writer_puts_report_html_beside_report_md(run_dir: Path) -> None:
    assert (run_dir / HTML_NAME).is_file() and (run_dir / "report.md").is_file()


def test_the_page_parses_with_balanced_tags(run_dir: Path) -> None:
    structure = _parse((run_dir / HTML_NAME).read_text(encoding="utf-8"))
    assert structure.errors == [] and structure.stack == []
    for anchor in ("conditions", "evidence", "figures", "trajectories", "bounds", "environment",
                   "chart-data", "chart-svg", "js-errors"):
        assert anchor in structure.ids


@pytest.mark.negative_control
def test_the_tag_checker_catches_an_unclosed_element() -> None:
    structure = _parse("<html><body><table><tr><td>x</tr></table></body></html>")
    assert structure.errors


def test_the_page_names_no_external_url(run_dir: Path) -> None:
    assert _external((run_dir / HTML_NAME).read_text(encoding="utf-8")) == []


@pytest.mark.negative_control
def test_the_url_checker_catches_external_references() -> None:
    assert _external('<p>see https://example.org/x</p>')
    assert _external('<img src="figure.png">')
    assert _external('<link rel="stylesheet" href="//cdn.example.org/a.css">')
    assert not _external('<img src="data:image/png;base64,AAAA"><a href="#runs">runs</a>')


def test_every_figure_is_inline_byte_for_byte(run_dir: Path) -> None:
    structure = _parse((run_dir / HTML_NAME).read_text(encoding="utf-8"))
    names = sorted(p.name for p in (run_dir / "figures").glob("*.png"))
    assert {"conditions.png", "figure2_loss.png", "figure2_harm.png"} <= set(names)
    for name in names:
        image = structure.ids[f"figure-{name}"]
        assert image["_tag"] == "figure"
    sources = [r for r in structure.references if r.startswith("data:image/png;base64,")]
    inlined = {base64.b64decode(r.split(",", 1)[1]) for r in sources}
    assert {(run_dir / "figures" / n).read_bytes() for n in names} == inlined


def test_the_charted_series_are_the_trajectories(run_dir: Path) -> None:
    data = _chart_data((run_dir / HTML_NAME).read_text(encoding="utf-8"))
    runs = {r["name"]: r for r in data["runs"]}  # type: ignore[attr-defined]
    record = load_verdict(run_dir)
    assert set(runs) == {r.run for r in record.runs}
    for run in record.runs:
        trajectory = Trajectory.load(run_dir / run.trajectory)
        for key in ("harm", "probe_loss", "train_loss"):
            steps, values = trajectory.series(key)
            charted = np.asarray(runs[run.run]["series"][key])
            np.testing.assert_array_equal(charted[:, 0], steps)
            np.testing.assert_allclose(charted[:, 1], values, rtol=0, atol=0)
    assert data["phi"] == 0.5 and data["budget"] == 20


def test_verdict_text_is_escaped_and_shown(run_dir: Path) -> None:
    text = (run_dir / HTML_NAME).read_text(encoding="utf-8")
    assert "<b>test</b>" not in text
    assert "html &lt;b&gt;test&lt;/b&gt; &amp; co" in text
    assert 'id="verdict">VIOLATED<' in text
    # the violated condition's evidence is open, with its first violation step
    assert re.search(r'<details id="evidence-weak_resistance" open>', text)
    # T3's negative worst slack is shown with the rounding allowance explained
    assert "rounding allowance" in text and "-1e-07" in text


def test_a_folder_without_a_verdict_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HftaInputError, match=r"no verdict\.json"):
        write_html_report(tmp_path)
    (tmp_path / "verdict.json").write_text('{"schema_version": 1}')
    with pytest.raises(HftaInputError, match="verdict schema_version 1, this toolkit reads 4"):
        render_html(tmp_path)
    (tmp_path / "verdict.json").write_text('{"schema_version": 4, "verdict": "holds"}')
    with pytest.raises(HftaInputError, match=r"verdict\.json: exit_code: Field required"):
        render_html(tmp_path)
    assert not (tmp_path / HTML_NAME).exists()


def test_the_page_reads_the_typed_records(run_dir: Path) -> None:
    """The page is rendered from the shared ``VerdictDocument``: its template names no
    string key, and what it shows is the records' values."""
    from empirical.verify.html import PAGE, TEMPLATES

    template = (TEMPLATES / PAGE).read_text(encoding="utf-8")
    assert ".get(" not in template and '["' not in template
    record = load_verdict(run_dir)
    text = (run_dir / HTML_NAME).read_text(encoding="utf-8")
    assert f"Strategy <code>{record.attacker.strategy}</code>" in text
    assert f'id="bound-violations">{record.bound_violations}<' in text
    weak = record.conditions["weak_resistance"]
    assert f"<tr><th>runs</th><td>{weak.evidence.runs}</td></tr>" in text


def test_a_verdict_of_another_schema_is_refused(run_dir: Path, tmp_path: Path) -> None:
    record = json.loads((run_dir / "verdict.json").read_text(encoding="utf-8"))
    (tmp_path / "verdict.json").write_text(json.dumps(record | {"schema_version": 99}))
    with pytest.raises(HftaInputError, match="schema_version 99"):
        render_html(tmp_path)


# --------------------------------------------------------------------------- the browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0",
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)",
)


def _chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )


def _browser_problems(page: Path, work: Path) -> list[str]:
    return _render(page, work)[0]


def _render(page: Path, work: Path) -> tuple[list[str], str]:
    """Render ``page``: a screenshot and the DOM after the scripts ran. Problems: a blank
    screenshot (pixel standard deviation below 1 of 255), a console message, a script error
    caught by the page's ``window.onerror`` sentinel, or the chart script not finishing."""
    from PIL import Image

    problems: list[str] = []
    shot = work / "shot.png"
    result = _chromium(page, work / "profile-shot", "--window-size=1280,2000",
                       f"--screenshot={shot}")
    if not shot.is_file():
        return [f"no screenshot (exit {result.returncode}): {result.stderr[-400:]}"], ""
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    if pixels.std() < 1.0:
        problems.append(f"blank screenshot (pixel std {pixels.std():.3f})")
    problems += [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    dom = _chromium(page, work / "profile-dom", "--dump-dom")
    problems += [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    if 'data-js-errors="' in dom.stdout:
        problems.append("script errors caught by window.onerror")
    if 'data-rendered="ok"' not in dom.stdout:
        problems.append("the chart script did not finish")
    return problems, dom.stdout


@needs_chromium
def test_the_page_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    problems, dom = _render(run_dir / HTML_NAME, tmp_path)
    assert problems == []
    # the script drew one line per run that recorded f (the default quantity) and a legend
    drawn = re.findall(r'<polyline [^>]*data-run="([^"]+)"', dom)
    assert sorted(drawn) == sorted(r.run for r in load_verdict(run_dir).runs)
    assert dom.count('class="swatch"') == len(drawn)


@needs_chromium
@pytest.mark.negative_control
def test_the_browser_check_catches_a_script_error_and_a_blank_page(
    run_dir: Path, tmp_path: Path
) -> None:
    text = (run_dir / HTML_NAME).read_text(encoding="utf-8")
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace("  buildLegend();\n  draw();\n", "  undefinedFunction();\n"))
    problems = _browser_problems(broken, tmp_path / "a")
    assert any("CONSOLE" in p for p in problems)
    assert "script errors caught by window.onerror" in problems
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    assert any(p.startswith("blank screenshot") for p in _browser_problems(blank, tmp_path / "b"))
