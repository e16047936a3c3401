"""The JSON Schema of the claim format, for editors and validators.

``docs/claim.schema.json`` is generated from ``empirical.verify.claim.Claim`` (pydantic's
``model_json_schema``) and committed; ``python -m empirical.verify.claim_schema`` writes it
anew, and a test checks that the committed file is what the model generates. Editors that
validate TOML against a JSON Schema (Taplo / Even Better TOML, for example) can point at it
with a ``#:schema docs/claim.schema.json`` line at the top of a claim file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "claim.schema.json"


def schema_text() -> str:
    """The claim format's JSON Schema as committed text (sorted keys, two-space indent)."""
    from empirical.verify.claim import Claim

    schema = Claim.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "hfta-immunization claim"
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_FILE
    target.write_text(schema_text(), encoding="utf-8")
    sys.stdout.write(f"wrote {target}\n")
