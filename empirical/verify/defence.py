"""Stage 1 of ``verify``: the immunized model M*, the claimed defence applied to M.

The defence comes from the ``empirical.defences`` registry (``defence_config`` validates the
claim's hyperparameters against it; ``defence_data`` builds its data from the claim's
defence and retain splits; ``apply_registered_defence`` applies it to a copy of M). M* is
cached in the work directory under ``models/<defence>-<key>`` where key is the first 24 hex
digits of sha256 over the canonical JSON of (work format, defence name, validated
hyperparameters, ``directory_digest`` of M, the defence split's ids, the retain examples'
fingerprints, the refusal): a rerun with the same inputs reuses M*, any change recomputes it.
A claim with ``defence.name = "none"`` takes M* as given (docs/science.md §1: M* = D(M)).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from empirical.datasets.data import Example, fingerprint
from empirical.verify.claim import ClaimData
from empirical.verify.outcome import DefenceOutcome, Prepared
from empirical.verify.store import canonical_json
from empirical.verify.workspace import (
    WORK_FORMAT,
    Log,
    Workspace,
    directory_digest,
    silent,
    threads,
)
from theory.errors import HftaInputError

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "ApplyDefence",
    "apply_registered_defence",
    "defence_cache_key",
    "defence_config",
    "defence_data",
    "immunize",
]


class ApplyDefence(Protocol):
    """Apply a defence to a model: (M*, the defence's record as JSON)."""

    def __call__(
        self,
        name: str,
        hyperparameters: Mapping[str, Any],
        model: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        data: ClaimData,
    ) -> tuple[nn.Module, dict[str, Any]]: ...


def defence_config(name: str, hyperparameters: Mapping[str, Any]) -> Any:
    """The registered defence's validated config (``HftaInputError`` names a bad field)."""
    from empirical.defences import registry

    try:
        defence = registry.get(name)
    except HftaInputError as exc:
        raise HftaInputError(f"defence.name: {exc}") from None
    try:
        return defence.configure(**dict(hyperparameters))
    except HftaInputError as exc:
        raise HftaInputError(f"defence.hyperparameters: {exc}") from None


def defence_data(data: ClaimData) -> Any:
    """The claim's defence data as ``empirical.defences.data.DefenceData``.

    Embedded benchmark: the defence split, each harmful prompt with the benchmark's refusal,
    the harmless retain examples. Files: ``DefenceData.from_examples`` on the defence file and
    the retain file (a safe answer to a harmful prompt is its refusal; ``data.refusal``
    answers the harmful prompts that have none).
    """
    from empirical.defences.data import DefenceData

    if data.source == "embedded":
        harmful = tuple(e for e in data.defence if not e.is_safe)
        assert data.refusal is not None
        refusals = tuple(
            Example(prompt=e.prompt, response=data.refusal, category=e.category, is_safe=True)
            for e in harmful
        )
        return DefenceData(
            harmful=harmful,
            refusals=refusals,
            retain=tuple(data.retain),
            source="embedded benchmark: the claim's defence split, its refusals, harmless "
            "retain examples",
        )
    return DefenceData.from_examples(
        [*data.defence, *data.retain], refusal=data.refusal, source="the claim's data files"
    )


def apply_registered_defence(
    name: str,
    hyperparameters: Mapping[str, Any],
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    data: ClaimData,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Apply the registered defence ``name`` (``empirical.defences``) to a copy of ``model``;
    returns (M*, the defence's record as JSON). ``on_step(done, total)`` after every step."""
    from empirical.defences import registry

    defence = registry.get(name)
    config = defence_config(name, hyperparameters)
    result = defence.apply(
        model,  # type: ignore[arg-type]
        tokenizer,
        defence_data(data),
        config,
        on_step=on_step,
    )
    return result.model, result.record.model_dump(mode="json")


def defence_cache_key(prepared: Prepared) -> str:
    """The immunized model's cache key (module docstring): everything M* depends on."""
    claim, data = prepared.claim, prepared.data
    key_material = {
        "format": WORK_FORMAT,
        "defence": claim.defence.name,
        "hyperparameters": prepared.defence_hyperparameters,
        "model": directory_digest(prepared.model),
        "defence_data": sorted(data.ids("defence")),
        "retain": sorted(fingerprint(e) for e in data.retain),
        "refusal": data.refusal,
    }
    return hashlib.sha256(canonical_json(key_material).encode()).hexdigest()[:24]


def immunize(
    prepared: Prepared,
    workspace: Workspace,
    *,
    apply: ApplyDefence | None = None,
    thread_count: int = 1,
    log: Log = silent,
    progress: bool = False,
    device: str = "cpu",
) -> DefenceOutcome:
    """M*: the claimed defence applied to M (cached by content), or the given model.

    ``apply`` defaults to ``apply_registered_defence`` (tests inject a fake defence), which
    then reports its steps on a bar when ``progress`` (``empirical.progress``). M is loaded
    on ``device`` and the defence trains there (it trains on its model's device); the cache
    is the workspace's, which is the device's own (``workspace.device_root``)."""
    claim = prepared.claim
    model_path = None if prepared.model is None else str(prepared.model)
    if not claim.defence.applies:
        return DefenceOutcome(
            name="none",
            hyperparameters={},
            model=None if prepared.original is None else str(prepared.original),
            immunized_model=model_path,
            cache_key=None,
            cached=False,
            seconds=0.0,
            record=None,
        )
    key = defence_cache_key(prepared)
    directory = workspace.models / f"{claim.defence.name}-{key}"
    record_file = directory / "defence.json"
    if (directory / "config.json").is_file() and record_file.is_file():
        record = json.loads(record_file.read_text(encoding="utf-8"))
        return DefenceOutcome(
            name=claim.defence.name,
            hyperparameters=prepared.defence_hyperparameters,
            model=model_path,
            immunized_model=str(directory),
            cache_key=key,
            cached=True,
            seconds=float(record.get("seconds", 0.0)),
            record=record.get("record"),
        )
    from empirical.models.model import load_model, save_model

    log(f"applying the defence {claim.defence.name} (cached afterwards)")
    started = time.perf_counter()
    model, tokenizer = load_model(prepared.model, device=device)
    from empirical.progress import step_progress

    inputs = (claim.defence.name, prepared.defence_hyperparameters, model, tokenizer)
    with threads(thread_count):
        if apply is not None:
            immunized, defence_record = apply(*inputs, prepared.data)
        else:
            description = f"applying {claim.defence.name}"
            with step_progress(description, None, enabled=progress) as advance:
                immunized, defence_record = apply_registered_defence(
                    *inputs, prepared.data, on_step=advance
                )
    seconds = time.perf_counter() - started
    save_model(
        immunized,  # type: ignore[arg-type]
        tokenizer,
        directory,
        extra_files={"defence.json": {"record": defence_record, "seconds": seconds, "key": key}},
    )
    return DefenceOutcome(
        name=claim.defence.name,
        hyperparameters=prepared.defence_hyperparameters,
        model=model_path,
        immunized_model=str(directory),
        cache_key=key,
        cached=False,
        seconds=seconds,
        record=defence_record,
    )
