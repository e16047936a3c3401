"""Fill the README's defence table by running ``hfta verify`` once per registered defence.

    .venv/bin/python docs/defence_table.py [--out runs/defence_table]

Each claim is claims/demo.toml with the defence replaced (its own defaults), every condition
claimed (weak resistance, stability, in-domain and cross-domain generalization,
trainability) and cross-domain attacks on the held-out category ``half``. Prints a Markdown
table built from each run's verdict.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = (
    "weak_resistance",
    "stability",
    "generalization_in_domain",
    "generalization_cross_domain",
    "trainability",
)


def claim_for(defence: str) -> str:
    text = (ROOT / "claims" / "demo.toml").read_text(encoding="utf-8")
    text = re.sub(
        r"\[defence\].*?(?=\n\[data\])",
        f'[defence]\nname = "{defence}"\n\n[defence.hyperparameters]\nseed = 0\n',
        text,
        flags=re.S,
    )
    text = text.replace(
        'categories = ["next", "flip"]',
        'categories = ["next", "flip"]\ncross_domain_categories = ["half"]',
    )
    text = re.sub(
        r"\[conditions\].*?(?=\n\[statistics\])",
        "[conditions]\nclaimed = [" + ", ".join(f'"{c}"' for c in CONDITIONS) + "]\n",
        text,
        flags=re.S,
    )
    return text.replace('measure_path = "worst"', 'measure_path = "none"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "defence_table")
    args = parser.parse_args()
    names = subprocess.run(
        [sys.executable, "-m", "empirical.cli", "immunize", "--list"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        claim = args.out / f"{name}.toml"
        claim.write_text(claim_for(name), encoding="utf-8")
        out = args.out / name
        if not (out / "verdict.json").exists():
            subprocess.run(
                [sys.executable, "-m", "empirical.cli", "verify", str(claim), "--out", str(out),
                 "--quiet"],
                check=False,
            )
        verdict = json.loads((out / "verdict.json").read_text(encoding="utf-8"))
        status = {k: v["status"] for k, v in verdict["conditions"].items()}
        rows.append(f"| `{name}` | " + " | ".join(status.get(c, "-") for c in CONDITIONS) + " |")
    print("| defence | " + " | ".join(CONDITIONS) + " |")
    print("|---|" + "---|" * len(CONDITIONS))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
