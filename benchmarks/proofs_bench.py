"""Figures for proofs/: how long the whole machine-checked proof run takes on this machine.

``proofs_seconds`` is the wall-clock time of ``python -m proofs`` done in-process (building
every proof and discharging every obligation and negative control); the issue's budget is
60 s on the 2-core development machine. The PEPit tightness check is separate and not timed
here.
"""

from __future__ import annotations

import time

from proofs import runner
from proofs.obligation import Status


def run() -> dict[str, float | str]:
    started = time.perf_counter()
    rows, _, code = runner.execute(runner.Options())
    seconds = time.perf_counter() - started
    slowest = max(rows, key=lambda r: r.seconds)
    return {
        "proofs_seconds": round(seconds, 2),
        "proofs_rows": float(len(rows)),
        "proofs_controls_refuted": float(sum(r.status is Status.REFUTED for r in rows)),
        "proofs_all_ok": "yes" if code == 0 else "no",
        "proofs_slowest_obligation": (
            f"{slowest.label} {slowest.obligation} ({slowest.seconds:.2f} s)"
        ),
    }
