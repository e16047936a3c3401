"""A pytest plugin: a defence claim as test items in the user's own test suite.

Registered through the ``pytest11`` entry point (``hfta``), so it is active wherever the
toolkit is installed and does nothing unless asked:

    pytest --hfta-claim claims/demo.toml [--hfta-claim another.toml] [--hfta-out DIR]

For every claim file the plugin adds one test item per *claimed* condition
(``claims/demo.toml::weak_resistance``, ...) and one for the theorems' bound checks
(``claims/demo.toml::bound_checks``). The verifier runs once per claim per session, the
first time one of its items runs (``hfta verify CLAIM --out DIR`` in a subprocess, so the
test process never imports torch for it), and its ``verdict.json`` decides the items:

* the condition ``holds``: the item passes;
* ``violated``: the item fails, with the evidence in the failure message (the verifier's
  reason, the first violating step, the margin, what the verdict rests on, the worst attack
  and the paths of report.md / report.html);
* ``inconclusive``: the item is an expected failure (xfail) with the reason: the evidence
  neither confirms nor refutes the claim, which is not a pass;
* ``bound_checks``: fails when a measured inequality contradicted a theorem (non-zero
  ``bound_violations``), passes otherwise.

While the verifier runs, its progress reaches the terminal through pytest's terminal
reporter, outside the captured output: its stderr is a pipe, so it writes one line per stage
(``empirical.progress``), and each line is shown as it comes, indented under ``hfta:
verifying CLAIM``. With ``pytest -q`` (verbosity below 0) the verifier runs with ``--quiet``
and only that first line is shown. (A hypothesis property run's progress per example is
hypothesis' own: its ``--hypothesis-show-statistics`` and ``verbosity`` settings.)

A claim the verifier refuses (bad input, exit code 2) fails every item with its one-line
message. ``--hfta-out DIR`` keeps the outputs (one folder per claim, ``DIR/<claim stem>``;
``hfta verify`` replaces its own previous output there and refuses any other existing
folder); by default they go to pytest's temporary directory.

Fixtures for the user's own tests:

* ``hfta_verdict``: the ``verdict.json`` record of the (first) ``--hfta-claim`` (skips the
  test when no claim was given);
* ``hfta_verdicts``: every claim's record, keyed by the claim file's path as given;
* ``hfta_strategies``: ``empirical.testing.strategies``, the hypothesis strategies of the
  property tests (``attack_configs``, ``transformer_specs``, ...).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

__all__ = [
    "BOUND_ITEM",
    "ClaimItem",
    "ClaimViolationError",
    "VerifierRuns",
    "evidence_message",
]

BOUND_ITEM = "bound_checks"
"""The name of the item that fails on any bound violation."""

MAX_RUNS_SHOWN = 5
"""A failure message names at most this many of the runs that broke the condition."""

_RUNS_KEY = pytest.StashKey["VerifierRuns"]()


class ClaimViolationError(Exception):
    """A claimed condition the verifier found violated (or a verifier that failed)."""


class VerifierRuns:
    """Runs ``hfta verify`` at most once per claim per session and caches its record."""

    def __init__(self, config: pytest.Config, claims: list[str], out: str | None) -> None:
        self.config = config
        self.claims = claims
        self.out = None if out is None else Path(out)
        self.records: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, str] = {}
        self.folders: dict[str, Path] = {}

    def folder(self, claim: str) -> Path:
        if claim not in self.folders:
            stem = Path(claim).stem
            if self.out is not None:
                self.out.mkdir(parents=True, exist_ok=True)
                self.folders[claim] = self.out / stem
            else:
                factory = self.config._tmp_path_factory  # type: ignore[attr-defined]
                self.folders[claim] = Path(factory.mktemp(f"hfta-{stem}")) / "out"
        return self.folders[claim]

    def record(self, claim: str) -> dict[str, Any]:
        """The claim's ``verdict.json`` (running the verifier the first time).

        Raises:
            ClaimViolationError: the verifier refused the claim or wrote no verdict.
        """
        if claim in self.failures:
            raise ClaimViolationError(self.failures[claim])
        if claim not in self.records:
            try:
                self.records[claim] = self._run(claim)
            except ClaimViolationError as exc:
                self.failures[claim] = str(exc)
                raise
        return self.records[claim]

    def _say(self, line: str) -> None:
        """One line on the terminal, outside the test's captured output."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        if capture is None:
            reporter.write_line(line)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    @property
    def quiet(self) -> bool:
        """``pytest -q``: the verifier runs with ``--quiet`` and its stages are not shown."""
        return int(self.config.getoption("verbose")) < 0

    def command(self, claim: str, out: Path) -> list[str]:
        """``hfta verify CLAIM --out OUT --device DEVICE`` (``--quiet`` under ``pytest -q``)
        as a subprocess; the device is ``--hfta-device`` (default cpu)."""
        device = str(self.config.getoption("--hfta-device"))
        command = [sys.executable, "-m", "empirical.cli", "verify", claim, "--out", str(out)]
        command += ["--device", device]
        return [*command, "--quiet"] if self.quiet else command

    def _stream(self, command: list[str]) -> tuple[int, list[str]]:
        """Run ``command``, showing each line of its stderr as it comes (unless quiet); its
        exit code and those lines."""
        lines: list[str] = []
        with subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        ) as process:
            assert process.stderr is not None
            for line in process.stderr:
                lines.append(line.rstrip())
                if not self.quiet and lines[-1]:
                    self._say(f"  {lines[-1]}")
            code = process.wait()
        return code, lines

    def _run(self, claim: str) -> dict[str, Any]:
        out = self.folder(claim)
        self._say(f"hfta: verifying {claim} -> {out}")
        code, errors = self._stream(self.command(claim, out))
        verdict = out / "verdict.json"
        if code not in (0, 1) or not verdict.is_file():
            message = ([line for line in errors if line.strip()] or ["no message"])[-1].strip()
            raise ClaimViolationError(f"hfta verify {claim} failed (exit code {code}): {message}")
        record: dict[str, Any] = json.loads(verdict.read_text(encoding="utf-8"))
        record["_output"] = str(out)
        return record


def evidence_message(claim: str, name: str, record: dict[str, Any]) -> str:
    """The failure message of a violated condition: the verifier's evidence, in words."""
    entry = record["conditions"][name]
    lines = [
        f"{claim}: claimed condition '{name}' is {entry['status'].upper()}",
        f"  reason: {entry['reason']}",
        f"  rests on: {entry['rests_on'].get('text', '')}",
    ]
    if entry.get("first_violation_step") is not None:
        lines.append(f"  first violation at step {entry['first_violation_step']}")
    if entry.get("margin") is not None:
        lines.append(f"  margin: {entry['margin']:.4g}")
    worst = record.get("worst_attack")
    if worst is not None and name != "stability":
        broke = worst.get("broke_at_step")
        lines.append(
            f"  worst attack {worst['run']}: {worst['attack']}; "
            + (f"broke M* at step {broke}" if broke is not None else "did not break M*")
            + f", highest f = {worst.get('max_harm')} at step {worst.get('max_harm_step')}"
        )
    broken = [d for d in entry.get("evidence", {}).get("runs_detail", [])
              if d.get("status") == "violated"]
    for detail in broken[:MAX_RUNS_SHOWN]:
        lines.append(f"  {detail['run']} ({detail['attack']}): {detail['reason']}")
    if len(broken) > MAX_RUNS_SHOWN:
        lines.append(f"  ... and {len(broken) - MAX_RUNS_SHOWN} more runs that broke it "
                     "(verdict.json: conditions.<name>.evidence.runs_detail)")
    output = record.get("_output")
    if output:
        lines.append(f"  report: {output}/report.md, {output}/report.html")
    return "\n".join(lines)


def _bound_message(claim: str, record: dict[str, Any]) -> str:
    lines = [f"{claim}: {record['bound_violations']} measured inequalities contradict a theorem"]
    for bound in record.get("bounds", []):
        if bound.get("violations"):
            lines.append(
                f"  {bound['theorem']} {bound['name']}: {bound['violations']} of "
                f"{bound['instances']}, first {bound.get('first_violation')}"
            )
    return "\n".join(lines)


class ClaimItem(pytest.Item):
    """One claimed condition (or the bound checks) of one claim file."""

    def __init__(self, *, claim: str, condition: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.claim = claim
        self.condition = condition

    def runtest(self) -> None:
        runs: VerifierRuns = self.config.stash[_RUNS_KEY]
        record = runs.record(self.claim)
        if self.condition == BOUND_ITEM:
            if record.get("bound_violations"):
                raise ClaimViolationError(_bound_message(self.claim, record))
            return
        entry = record["conditions"].get(self.condition)
        if entry is None:
            raise ClaimViolationError(
                f"{self.claim}: the verdict has no condition '{self.condition}'"
            )
        status = entry["status"]
        if status == "inconclusive":
            pytest.xfail(f"inconclusive: {entry['reason']}")
        if status != "holds":
            raise ClaimViolationError(evidence_message(self.claim, self.condition, record))

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str:
        if isinstance(excinfo.value, ClaimViolationError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.claim}::{self.condition}"


class ClaimFile(pytest.File):
    """A claim file given with ``--hfta-claim``: its claimed conditions as items."""

    def __init__(self, *, claim: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.claim = claim

    def collect(self) -> list[ClaimItem]:
        from pydantic import ValidationError

        from empirical.verify.claim import parse_claim
        from theory.errors import HftaInputError

        try:
            parsed = parse_claim(self.path.read_text(encoding="utf-8"))
            names = [str(name) for name in parsed.conditions.claimed]
        except (HftaInputError, ValidationError, OSError):
            names = []  # the verifier gives the one-line reason when the item runs
        return [
            ClaimItem.from_parent(self, name=name, claim=self.claim, condition=name)
            for name in [*names, BOUND_ITEM]
        ]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hfta", "defence claims verified by hfta (empirical.pytest_plugin)")
    group.addoption(
        "--hfta-claim",
        action="append",
        default=[],
        metavar="CLAIM.toml",
        help="Verify this claim (hfta verify) and test each claimed condition (repeatable).",
    )
    group.addoption(
        "--hfta-out",
        default=None,
        metavar="DIR",
        help="Keep the verifier's outputs in DIR/<claim stem> (default: pytest's tmp dir).",
    )
    group.addoption(
        "--hfta-device",
        default="cpu",
        metavar="DEVICE",
        help="Where the verifier trains and evaluates: cpu (default) or cuda (hfta verify "
        "--device).",
    )


def pytest_configure(config: pytest.Config) -> None:
    claims = [str(c) for c in config.getoption("--hfta-claim") or []]
    config.stash[_RUNS_KEY] = VerifierRuns(config, claims, config.getoption("--hfta-out"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Add the claims' items first, so ``-k`` and ``-m`` select among them as usual."""
    runs: VerifierRuns = config.stash[_RUNS_KEY]
    added: list[pytest.Item] = []
    for claim in runs.claims:
        path = Path(claim).resolve()
        if not path.is_file():
            raise pytest.UsageError(f"--hfta-claim {claim}: no such file")
        added += ClaimFile.from_parent(session, path=path, claim=claim).collect()
    items[:0] = added


@pytest.fixture(scope="session")
def hfta_verdicts(pytestconfig: pytest.Config) -> dict[str, dict[str, Any]]:
    """Every ``--hfta-claim``'s ``verdict.json`` record, by the claim path as given."""
    runs: VerifierRuns = pytestconfig.stash[_RUNS_KEY]
    return {claim: runs.record(claim) for claim in runs.claims}


@pytest.fixture(scope="session")
def hfta_verdict(pytestconfig: pytest.Config) -> dict[str, Any]:
    """The first ``--hfta-claim``'s ``verdict.json`` record (skips without a claim)."""
    runs: VerifierRuns = pytestconfig.stash[_RUNS_KEY]
    if not runs.claims:
        pytest.skip("no --hfta-claim given")
    return runs.record(runs.claims[0])


@pytest.fixture(scope="session")
def hfta_strategies() -> ModuleType:
    """``empirical.testing.strategies``: hypothesis strategies for property tests."""
    from empirical.testing import strategies

    return strategies
