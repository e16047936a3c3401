"""Errors raised by theory/ when its inputs break a definition's or a theorem's assumptions.

Every error names the assumption it rests on, so a caller (the CLI in particular) can print one
clear line instead of a traceback or a silent NaN.
"""

from __future__ import annotations


class HftaInputError(ValueError):
    """Bad input to the toolkit: reported as one line on stderr with exit code 2 by the CLI."""


class HftaRunError(RuntimeError):
    """A run failed for a reason that is not the user's input (a result that does not
    reproduce, a store that holds something else): exit code 3, with a log."""


class AssumptionError(HftaInputError):
    """A numeric value violates a named assumption of a definition or a theorem.

    Example: ``AssumptionError("T4", "eta_at_most_inverse_beta", "eta = 0.5 > 1/beta = 0.1")``.
    """

    def __init__(self, owner: str, assumption: str, detail: str) -> None:
        self.owner = owner
        self.assumption = assumption
        self.detail = detail
        super().__init__(f"{owner}: assumption '{assumption}' violated: {detail}")


class DataOverlapError(HftaInputError):
    """Two data sets that a condition requires to be disjoint share items."""
