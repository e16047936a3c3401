r"""How tight is T2's attacker-progress bound? Exact worst cases by performance estimation.

T2 bounds the attacker's progress after N steps, L_0 − L_N, by N(GηC + βη²C²/2). For gradient
steps x_{k+1} = x_k − η∇f(x_k) (so C = G bounds the step direction) on β-smooth, *nonconvex*
f with ‖∇f(x_k)‖² ≤ G² at the iterates x_0 … x_{N−1} (the iterates T2's hypothesis speaks
of), the exact worst case of f(x_0) − f(x_N) over all such functions is the value of a small
semidefinite program: the performance estimation problem (Drori & Teboulle 2014; Taylor,
Hendrickx, Glineur 2017), built here with PEPit's ``SmoothFunction`` interpolation
conditions and solved by SCS through cvxpy.

* ratio = T2 bound / worst case ≥ 1 always (a ratio below 1 would make T2 false);
  ratio = 1 means T2 is tight. The check allows a relative solver tolerance
  ``RELATIVE_TOLERANCE`` = 1e-4: SCS is a first-order (approximate) solver; it is run with
  eps_abs = eps_rel = 1e-9, and the values it returns agree with Clarabel (interior point)
  to about 1e-8 on these problems.
* The PEP machinery is checked on the known tight result for gradient descent with step 1/L
  on L-smooth *convex* f: f(x_N) − f* ≤ L‖x_0 − x*‖²/(4N+2) (Drori & Teboulle 2014; Taylor,
  Hendrickx, Glineur 2017), reproduced to the same tolerance.

* T9 (``gradient_steps_exact``) is the exact worst case: ratio T9 / PEP = 1 within
  ``RELATIVE_TOLERANCE`` (``exactness_table``), and PEPit's dual multipliers of the
  constraints ‖∇f(x_k)‖² ≤ G² equal T9's closed-form multipliers
  (``theory.theorems.gradient_steps_exact.multipliers``), the certificate its proof uses.

``python -m proofs.tightness`` prints the tables (N = 1 … 10) and exits 1 on a violation.
The bounds are evaluated from theory's statements (``THEOREM.evaluate``), never retyped.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from theory.theorems import clipped_sgd_progress as t2
from theory.theorems import gradient_steps_exact as t9

#: relative slack allowed between the SDP value and a bound (SCS is approximate)
RELATIVE_TOLERANCE = 1e-4
#: SCS settings: tight tolerances so its error stays far below RELATIVE_TOLERANCE
SOLVER_OPTIONS: dict[str, object] = {
    "solver": "SCS",
    "eps_abs": 1e-9,
    "eps_rel": 1e-9,
    "max_iters": 200_000,
}
#: step sizes η, in units of 1/β, of the attacker-progress table
STEP_SIZES: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0)
STEPS: tuple[int, ...] = tuple(range(1, 11))
#: step sizes η (units of 1/β) of T9's exactness table: T9 holds for every η > 0
T9_STEP_SIZES: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 3.0)
#: absolute slack between PEPit's dual multipliers and T9's closed form (SCS is approximate)
MULTIPLIER_TOLERANCE = 1e-5

ProgressBound = Callable[[int, float, float, float], float]


def t2_progress_bound(steps: int, beta: float, gradient_bound: float, eta: float) -> float:
    """T2's bound on L_0 − L_N with C = G: L_0 − ``THEOREM.evaluate`` at L_0 = 0."""
    lower = t2.THEOREM.evaluate(
        L0=0.0, G=gradient_bound, C=gradient_bound, eta=eta, beta=beta, t=steps
    )
    return -lower


def t9_progress_bound(steps: int, beta: float, gradient_bound: float, eta: float) -> float:
    """T9's exact worst case of L_0 − L_N: L_0 − ``THEOREM.evaluate`` at L_0 = 0."""
    return -t9.THEOREM.evaluate(L0=0.0, G=gradient_bound, eta=eta, beta=beta, t=steps)


def attacker_progress_pep(
    steps: int, beta: float, gradient_bound: float, eta: float
) -> tuple[float, list[float]]:
    """max f(x_0) − f(x_N) over β-smooth f, x_{k+1} = x_k − η∇f(x_k), ‖∇f(x_k)‖ ≤ G (k < N),
    and the dual multipliers of the N constraints ‖∇f(x_k)‖² ≤ G²."""
    from PEPit import PEP
    from PEPit.functions import SmoothFunction

    problem = PEP()
    loss = problem.declare_function(SmoothFunction, L=beta)
    x = problem.set_initial_point()
    gradient, start_value = loss.oracle(x)
    value = start_value
    bounds = []
    for _ in range(steps):
        bound = gradient**2 <= gradient_bound**2
        problem.add_constraint(bound)
        bounds.append(bound)
        x = x - eta * gradient
        gradient, value = loss.oracle(x)
    problem.set_performance_metric(start_value - value)
    worst = _solved(problem.solve(wrapper="cvxpy", verbose=0, **SOLVER_OPTIONS))
    return worst, [float(b.eval_dual()) for b in bounds]


def attacker_progress_worst_case(
    steps: int, beta: float, gradient_bound: float, eta: float
) -> float:
    """max f(x_0) − f(x_N) over β-smooth f, x_{k+1} = x_k − η∇f(x_k), ‖∇f(x_k)‖ ≤ G (k < N)."""
    return attacker_progress_pep(steps, beta, gradient_bound, eta)[0]


def convex_gd_worst_case(steps: int, smoothness: float) -> float:
    """max f(x_N) − f* over L-smooth convex f with ‖x_0 − x*‖ ≤ 1, gradient steps 1/L."""
    from PEPit import PEP
    from PEPit.functions import SmoothConvexFunction

    problem = PEP()
    loss = problem.declare_function(SmoothConvexFunction, L=smoothness)
    minimizer = loss.stationary_point()
    minimum = loss(minimizer)
    x = problem.set_initial_point()
    problem.set_initial_condition((x - minimizer) ** 2 <= 1)
    for _ in range(steps):
        x = x - (1.0 / smoothness) * loss.gradient(x)
    problem.set_performance_metric(loss(x) - minimum)
    return _solved(problem.solve(wrapper="cvxpy", verbose=0, **SOLVER_OPTIONS))


def convex_gd_reference(steps: int, smoothness: float) -> float:
    """The known tight value L‖x_0 − x*‖²/(4N+2) at ‖x_0 − x*‖ = 1 (the machinery check)."""
    return smoothness / (4 * steps + 2)


def _solved(value: object) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise RuntimeError(f"the PEP solver returned {value!r}")
    return float(value)


@dataclass(frozen=True)
class TightnessRow:
    """One attacker-progress comparison: T2's bound against the exact worst case."""

    steps: int
    eta_beta: float  # η in units of 1/β
    bound: float
    worst_case: float

    @property
    def ratio(self) -> float:
        return self.bound / self.worst_case

    @property
    def sound(self) -> bool:
        """The bound is not below the worst case (up to the solver tolerance)."""
        return self.worst_case <= self.bound * (1.0 + RELATIVE_TOLERANCE)


@dataclass(frozen=True)
class SanityRow:
    """The convex GD check: PEP value against the known tight L/(4N+2)."""

    steps: int
    worst_case: float
    reference: float

    @property
    def agrees(self) -> bool:
        return abs(self.worst_case - self.reference) <= RELATIVE_TOLERANCE * self.reference


@dataclass(frozen=True)
class ExactRow:
    """T9 against the PEP: the bound, the worst case, and the dual multipliers."""

    steps: int
    eta_beta: float
    bound: float
    worst_case: float
    multipliers: tuple[float, ...]  # PEPit's, of ‖∇f(x_k)‖² ≤ G²
    closed_form: tuple[float, ...]  # T9's ``multipliers``

    @property
    def ratio(self) -> float:
        return self.bound / self.worst_case

    @property
    def exact(self) -> bool:
        """T9 equals the worst case up to the solver tolerance."""
        return abs(self.ratio - 1.0) <= RELATIVE_TOLERANCE

    @property
    def multipliers_agree(self) -> bool:
        return len(self.multipliers) == len(self.closed_form) and all(
            abs(a - b) <= MULTIPLIER_TOLERANCE * max(1.0, abs(b))
            for a, b in zip(self.multipliers, self.closed_form, strict=True)
        )


def exactness_table(
    steps: Sequence[int] = STEPS,
    step_sizes: Sequence[float] = T9_STEP_SIZES,
    *,
    beta: float = 1.0,
    gradient_bound: float = 1.0,
    bound: ProgressBound = t9_progress_bound,
) -> list[ExactRow]:
    """T9's bound (or ``bound``, a mutant in a negative control) against the PEP, with the
    dual multipliers beside T9's closed form."""
    rows = []
    for eta_beta in step_sizes:
        eta = eta_beta / beta
        for n in steps:
            worst, duals = attacker_progress_pep(n, beta, gradient_bound, eta)
            rows.append(
                ExactRow(
                    steps=n,
                    eta_beta=eta_beta,
                    bound=bound(n, beta, gradient_bound, eta),
                    worst_case=worst,
                    multipliers=tuple(duals),
                    closed_form=tuple(t9.multipliers(n, eta=eta, beta=beta)),
                )
            )
    return rows


def render_exact(rows: Sequence[ExactRow]) -> str:
    """Markdown: T9 / exact worst case per (N, η), and whether the multipliers agree."""
    step_sizes = sorted({r.eta_beta for r in rows})
    steps = sorted({r.steps for r in rows})
    by_key = {(r.steps, r.eta_beta): r for r in rows}
    lines = [
        "T9 bound / exact worst case of f(x_0) − f(x_N) (PEPit + SCS; β = G = 1)",
        "",
        "| N | " + " | ".join(f"η = {e:g}/β" for e in step_sizes) + " |",
        "|" + "---|" * (len(step_sizes) + 1),
    ]
    for n in steps:
        cells = []
        for e in step_sizes:
            row = by_key[(n, e)]
            mark = "" if row.exact else " (NOT EXACT)"
            mark += "" if row.multipliers_agree else " (duals differ)"
            cells.append(f"{row.ratio:.6f}{mark}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    worst = max(abs(r.ratio - 1.0) for r in rows)
    lines += [
        "",
        f"largest |ratio − 1| = {worst:.2e} (tolerance {RELATIVE_TOLERANCE:g}); dual "
        f"multipliers equal T9's closed form within {MULTIPLIER_TOLERANCE:g}: "
        f"{all(r.multipliers_agree for r in rows)}",
    ]
    return "\n".join(lines)


def tightness_table(
    steps: Sequence[int] = STEPS,
    step_sizes: Sequence[float] = STEP_SIZES,
    *,
    beta: float = 1.0,
    gradient_bound: float = 1.0,
    bound: ProgressBound = t2_progress_bound,
) -> list[TightnessRow]:
    """T2's bound (or ``bound``, e.g. a mutant in a negative control) against the PEP."""
    rows = []
    for eta_beta in step_sizes:
        eta = eta_beta / beta
        for n in steps:
            rows.append(
                TightnessRow(
                    steps=n,
                    eta_beta=eta_beta,
                    bound=bound(n, beta, gradient_bound, eta),
                    worst_case=attacker_progress_worst_case(n, beta, gradient_bound, eta),
                )
            )
    return rows


def sanity_table(steps: Sequence[int] = STEPS, smoothness: float = 1.0) -> list[SanityRow]:
    """The convex GD check for each N."""
    return [
        SanityRow(n, convex_gd_worst_case(n, smoothness), convex_gd_reference(n, smoothness))
        for n in steps
    ]


def render(rows: Sequence[TightnessRow], sanity: Sequence[SanityRow]) -> str:
    """Markdown tables: the ratio T2 bound / worst case per (N, η), then the sanity check."""
    step_sizes = sorted({r.eta_beta for r in rows})
    steps = sorted({r.steps for r in rows})
    by_key = {(r.steps, r.eta_beta): r for r in rows}
    header = "| N | " + " | ".join(f"η = {e:g}/β" for e in step_sizes) + " |"
    lines = [
        "T2 bound / exact worst case of the attacker's progress f(x_0) − f(x_N)",
        "(β-smooth nonconvex f, gradient steps, ‖∇f(x_k)‖ ≤ G for k < N, C = G; β = G = 1)",
        "",
        header,
        "|" + "---|" * (len(step_sizes) + 1),
    ]
    for n in steps:
        cells = []
        for e in step_sizes:
            row = by_key[(n, e)]
            mark = "" if row.sound else " (VIOLATED)"
            cells.append(f"{row.ratio:.4f} ({row.bound:.4g} / {row.worst_case:.4g}){mark}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "PEP machinery check: GD with step 1/L on L-smooth convex f,",
        "f(x_N) − f* for ‖x_0 − x*‖ = 1",
        "",
        "| N | PEP worst case | L/(4N+2) | agrees |",
        "|---|---|---|---|",
    ]
    for s in sanity:
        agrees = "yes" if s.agrees else "NO"
        lines.append(f"| {s.steps} | {s.worst_case:.8f} | {s.reference:.8f} | {agrees} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m proofs.tightness [--steps N]``: print the tables; exit 1 on a violation."""
    parser = argparse.ArgumentParser(prog="python -m proofs.tightness")
    parser.add_argument("--steps", type=int, default=max(STEPS), help="largest N (default 10)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        sys.stderr.write("proofs.tightness: error: --steps must be >= 1\n")
        return 2
    steps = tuple(range(1, args.steps + 1))
    rows = tightness_table(steps)
    sanity = sanity_table(steps)
    exact = exactness_table(steps)
    print(render(rows, sanity))
    print()
    print(render_exact(exact))
    ok = (
        all(r.sound for r in rows)
        and all(s.agrees for s in sanity)
        and all(r.exact and r.multipliers_agree for r in exact)
    )
    print()
    print("sound: T2 never below the worst case; T9 equal to it" if ok else "VIOLATION")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
