"""Machine-check the calculus lemmas in Coq: ``coqc`` on proofs/coq/*.v, with a time limit.

proofs/coq/Segment.v proves, in Coq's real analysis (derivatives and the mean value theorem
``MVT_cor2``; no integral), the three one-dimensional lemmas that proofs/axioms.py cites with
their premises: ``descent_sandwich`` (T1), ``segment_bound`` (T3) and ``trapezoid_bound``
(T9). The same file proves that mutated versions are *false* (a concrete
counterexample φ(τ) = τ²): the sandwich without its smoothness premise, the sandwich with
βD/4 in place of βD/2, the segment bound without its gradient bound.

A lemma's row is ``proved`` only when

* ``coqc`` compiles the file within the time limit (every ``Qed`` checked by Coq's kernel);
* ``Check <name>`` prints exactly the statement recorded here (``STATEMENTS``): the premises
  cited by the z3 layer are the premises Coq proved;
* ``Print Assumptions <name>`` lists only the axioms of Coq's classical real numbers
  (``ALLOWED_AXIOMS``): no ``Admitted`` lemma, no added axiom.

``coqc`` runs once per process (``compile_all``, memoised); the rows share its result.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from proofs.obligation import Budget, Kind, Obligation, Outcome, Status

COQ_DIR = Path(__file__).resolve().parent / "coq"
#: the Coq sources (one file: each coqc call loads Coq's Reals library, the costly part)
FILES: tuple[str, ...] = ("Segment.v",)
#: coqc's default time limit for all files together, seconds
COQ_TIMEOUT_S = 60.0
#: the time the runner gives a Coq row (coqc takes 6 to 14 s here, depending on the load)
COQ_ROW_TIMEOUT_S = 40.0

#: the axioms ``Print Assumptions`` may list: those of Coq's standard classical reals
ALLOWED_AXIOMS: frozenset[str] = frozenset(
    {
        "ClassicalDedekindReals.sig_not_dec",
        "ClassicalDedekindReals.sig_forall_dec",
        "FunctionalExtensionality.functional_extensionality_dep",
        "Classical_Prop.classic",
    }
)

#: the exact statements (Coq syntax, whitespace-normalised) the z3 layer relies on
STATEMENTS: dict[str, str] = {
    "descent_sandwich": (
        "forall (phi dphi : R -> R) (beta D : R), "
        "(forall t : R, 0 <= t <= 1 -> derivable_pt_lim phi t (dphi t)) -> "
        "(forall t : R, 0 <= t <= 1 -> Rabs (dphi t - dphi 0) <= beta * t * D) -> "
        "Rabs (phi 1 - phi 0 - dphi 0) <= beta * D / 2"
    ),
    "segment_bound": (
        "forall (phi dphi : R -> R) (M : R), "
        "(forall t : R, 0 <= t <= 1 -> derivable_pt_lim phi t (dphi t)) -> "
        "(forall t : R, 0 <= t <= 1 -> Rabs (dphi t) <= M) -> "
        "Rabs (phi 1 - phi 0) <= M"
    ),
    "trapezoid_bound": (
        "forall (phi dphi : R -> R) (K : R), "
        "(forall t : R, 0 <= t <= 1 -> derivable_pt_lim phi t (dphi t)) -> "
        "(forall t : R, 0 <= t <= 1 -> Rabs (dphi t - dphi 0) <= K * t) -> "
        "(forall t : R, 0 <= t <= 1 -> Rabs (dphi t - dphi 1) <= K * (1 - t)) -> "
        "Rabs (phi 1 - phi 0 - (dphi 0 + dphi 1) / 2) <= K / 4"
    ),
}

#: negative controls: theorems of Segment.v proving a mutated lemma false, with the
#: counterexample they construct
CONTROLS: dict[str, tuple[str, str]] = {
    "sandwich_without_smoothness_is_false": (
        "descent_sandwich",
        "phi(t)=t^2, beta=0, D=0: |phi(1)-phi(0)-phi'(0)| = 1 > 0",
    ),
    "sandwich_with_a_quarter_is_false": (
        "descent_sandwich",
        "phi(t)=t^2, beta=2, D=1: |phi(1)-phi(0)-phi'(0)| = 1 > beta*D/4 = 1/2",
    ),
    "segment_without_gradient_bound_is_false": (
        "segment_bound",
        "phi(t)=t^2, M=0: |phi(1)-phi(0)| = 1 > 0",
    ),
}


@dataclass(frozen=True)
class Compiled:
    """What coqc said: success, the printed statement and assumptions per theorem."""

    ok: bool
    detail: str
    statements: dict[str, str]
    assumptions: dict[str, tuple[str, ...]]
    seconds: float


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _queries(names: list[str]) -> str:
    """Coq commands writing each theorem's statement and assumptions to files."""
    lines = [""]
    for name in names:
        lines += [
            f'Redirect "stmt_{name}" Check {name}.',
            f'Redirect "axioms_{name}" Print Assumptions {name}.',
        ]
    return "\n".join(lines) + "\n"


def _assumptions(text: str) -> tuple[str, ...]:
    if "Closed under the global context" in text:
        return ()
    found = re.findall(r"^([A-Za-z_][\w.]*)\s*:", text, flags=re.MULTILINE)
    return tuple(name for name in found if name != "Axioms")


#: theorems whose statement and assumptions each file reports
_REPORTED: dict[str, list[str]] = {"Segment.v": [*STATEMENTS, *CONTROLS]}


class Job:
    """coqc running on a scratch copy of every file of ``FILES``, in parallel."""

    def __init__(self, source: Path = COQ_DIR) -> None:
        self.started = time.perf_counter()
        self._scratch = tempfile.TemporaryDirectory(prefix="hfta-coq-")
        self.work = Path(self._scratch.name)
        self.processes: dict[str, subprocess.Popen[str]] = {}
        self.error = ""
        coqc = shutil.which("coqc")
        if coqc is None:
            self.error = "coqc not found: install Coq (make install)"
            return
        for name in FILES:
            text = (source / name).read_text(encoding="utf-8")
            (self.work / name).write_text(text + _queries(_REPORTED[name]), encoding="utf-8")
            self.processes[name] = subprocess.Popen(
                [coqc, "-q", name],
                cwd=self.work,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

    def wait(self, timeout_s: float) -> Compiled:
        """The result, killing coqc if it is still running ``timeout_s`` from now."""
        deadline = time.perf_counter() + timeout_s
        try:
            if self.error:
                return Compiled(False, self.error, {}, {}, 0.0)
            for name, process in self.processes.items():
                left = deadline - time.perf_counter()
                try:
                    out, err = process.communicate(timeout=max(0.0, left))
                except subprocess.TimeoutExpired:
                    for other in self.processes.values():
                        other.kill()
                        other.communicate()
                    return Compiled(False, f"coqc: time limit {timeout_s:g} s", {}, {}, timeout_s)
                if process.returncode != 0:
                    message = _normalise(err or out)[:300]
                    seconds = time.perf_counter() - self.started
                    return Compiled(False, f"coqc {name} failed: {message}", {}, {}, seconds)
            names = [n for file in FILES for n in _REPORTED[file]]
            statements = {
                n: _normalise(_read(self.work / f"stmt_{n}.out").split(":", 1)[-1]) for n in names
            }
            assumptions = {n: _assumptions(_read(self.work / f"axioms_{n}.out")) for n in names}
            seconds = time.perf_counter() - self.started
            return Compiled(True, "coqc: compiled", statements, assumptions, seconds)
        finally:
            self._scratch.cleanup()

    def stop(self) -> None:
        """Kill coqc if it still runs and remove the scratch directory."""
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.communicate()
        self._scratch.cleanup()


_CACHE: dict[str, Compiled] = {}
_JOBS: dict[str, Job] = {}


def start() -> None:
    """Start coqc in the background (the run overlaps it with the z3 work); a failure
    cached by an earlier run is forgotten, so every run retries it."""
    cached = _CACHE.get("compiled")
    if cached is not None and not cached.ok:
        del _CACHE["compiled"]
    if "compiled" not in _CACHE and "job" not in _JOBS:
        _JOBS["job"] = Job()


def discard() -> None:
    """Stop a background coqc nobody waited for (the run ended before its Coq rows)."""
    job = _JOBS.pop("job", None)
    if job is not None:
        job.stop()


def compile_all(timeout_s: float = COQ_TIMEOUT_S) -> Compiled:
    """The compiled result, once per process (the rows citing Coq share it; a failure is
    shared by the rows of one run and retried by the next, see ``start``)."""
    cached = _CACHE.get("compiled")
    if cached is not None:
        return cached
    job = _JOBS.pop("job", None) or Job()
    compiled = job.wait(timeout_s)
    _CACHE["compiled"] = compiled
    return compiled


def compile_files(timeout_s: float = COQ_TIMEOUT_S, source: Path = COQ_DIR) -> Compiled:
    """Compile the files of ``FILES`` found in ``source`` now (no cache): for tests that
    check a mutated file fails."""
    return Job(source).wait(timeout_s)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def check_lemma(name: str, compiled: Compiled) -> Outcome:
    """``proved`` when ``name`` compiled with the recorded statement and allowed axioms."""
    if not compiled.ok:
        return Outcome(Status.FAILED, compiled.detail)
    printed = compiled.statements.get(name, "")
    expected = _normalise(STATEMENTS[name]) if name in STATEMENTS else printed
    if printed != expected:
        return Outcome(
            Status.FAILED, f"Coq's statement of {name} differs from the cited one: {printed}"
        )
    extra = sorted(set(compiled.assumptions.get(name, ())) - ALLOWED_AXIOMS)
    if extra:
        return Outcome(Status.FAILED, f"{name} rests on more than the real-number axioms: {extra}")
    return Outcome(
        Status.PROVED,
        f"coqc: Qed in {compiled.seconds:.1f} s; axioms: Coq's classical reals only",
    )


def lemma_obligation(name: str) -> Obligation:
    """The row "Coq: ``name``": the lemma the axiom of the same name cites, machine-checked."""

    def discharge(budget: Budget) -> Outcome:
        return check_lemma(name, compile_all(budget.timeout_s))

    return Obligation(
        f"Coq: {name} (premises stated)",
        _normalise(STATEMENTS[name]),
        "coq",
        discharge,
        uses=(name,),
    )


def control_obligation(theorem: str) -> Obligation:
    """A negative control: Coq proves that the mutated lemma ``theorem`` names is false."""
    lemma, counterexample = CONTROLS[theorem]
    kind: Kind = "control"

    def discharge(budget: Budget) -> Outcome:
        outcome = check_lemma(theorem, compile_all(budget.timeout_s))
        if outcome.status is Status.PROVED:  # the mutant is refuted, by this counterexample
            return Outcome(Status.FAILED, f"Coq proves {theorem}", counterexample)
        return outcome

    return Obligation(
        f"Coq: {lemma} mutated ({theorem})",
        f"Coq: {theorem}",
        "coq",
        discharge,
        kind,
    )
