"""``python -m empirical.models.build_worker --out DIR --kernels pinned|native`` (recipe JSON on
stdin).

The child process of ``hfta build-model``: it starts with the kernel environment chosen by
``empirical.models.reproducible.run_build_child`` already in place (torch reads it at import),
trains
by the recipe and writes DIR atomically with ``build.json`` = recipe, metrics, wall time and
the ``BuildPlatform`` it ran on. Exit 2 with one ``error:`` line on bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from theory.errors import HftaInputError

BUILD_FILE = "build.json"


def main(argv: list[str] | None = None) -> int:
    """Build into ``--out``; 0 on success, 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m empirical.models.build_worker")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kernels", choices=("pinned", "native"), required=True)
    arguments = parser.parse_args(argv)
    try:
        from pydantic import ValidationError

        from empirical.models.build import BuildRecipe, build_embedded_model
        from empirical.models.model import save_model
        from empirical.models.reproducible import current_platform, pinned_here

        try:
            recipe = BuildRecipe.model_validate_json(sys.stdin.read())
        except ValidationError as exc:
            raise HftaInputError(f"recipe: {exc.errors()[0]['msg']}") from None
        here = current_platform(arguments.kernels)
        if arguments.kernels == "pinned" and not (
            pinned_here() and here.cpu_capability == "DEFAULT"
        ):
            raise HftaInputError(
                "the pinned kernel environment did not take effect "
                f"(torch reports CPU capability {here.cpu_capability})"
            )
        started = time.perf_counter()
        result = build_embedded_model(recipe)
        record = {
            "recipe": recipe.model_dump(mode="json"),
            "metrics": result.metrics.model_dump(mode="json"),
            "wall_seconds": round(time.perf_counter() - started, 2),
            "platform": here.model_dump(mode="json"),
        }
        save_model(result.model, result.tokenizer, arguments.out, extra_files={BUILD_FILE: record})
    except HftaInputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
