"""A recording ``predict`` stage shared by the tests that check when the verifier states its
predictions (before any attack on M*) and what it stated."""

from __future__ import annotations

from pathlib import Path

from empirical.verify.claim import Claim, ClaimData
from empirical.verify.plan import AttackPlan
from empirical.verify.predict import PredictAttacks, Predictions, predict_attacks
from empirical.verify.workspace import Log, Workspace


class PredictRecorder:
    """A ``PredictAttacks`` that runs ``inner`` (the real stage by default), appends
    "predict" to ``events`` when it runs and keeps what it stated in ``stated``."""

    def __init__(self, events: list[str], inner: PredictAttacks = predict_attacks) -> None:
        self.events = events
        self.inner = inner
        self.stated: Predictions | None = None

    def __call__(
        self,
        claim: Claim,
        data: ClaimData,
        plan: AttackPlan,
        workspace: Workspace,
        immunized: Path | None,
        log: Log = print,
    ) -> Predictions:
        self.events.append("predict")
        self.stated = self.inner(claim, data, plan, workspace, immunized, log)
        return self.stated
