"""``python -m proofs``: prove every catalogued theorem (see proofs/runner.py for the flags)."""

from __future__ import annotations

from proofs.runner import main

raise SystemExit(main())
