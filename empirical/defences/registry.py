"""The registry of defences: ``register`` a ``Defence`` class, ``get`` one by name, list ``names``.

The built-in defences register themselves when their module is imported; ``get`` and ``names``
import them on first use, so ``import empirical.defences.registry`` stays cheap and a plug-in
from elsewhere can ``register`` its own class the same way.
"""

from __future__ import annotations

import importlib

from empirical.defences.base import Defence
from theory.errors import HftaInputError

BUILTIN_MODULES: tuple[str, ...] = (
    "alignment",
    "adversarial_loss",
    "repnoise",
    "vaccine",
    "booster",
    "tar",
    "condition_number",
    "contraction",
)
"""Modules of ``empirical.defences`` that define the built-in defences."""

_REGISTRY: dict[str, type[Defence]] = {}
_loaded = False


def register(defence: type[Defence]) -> type[Defence]:
    """Add a defence class under its ``name`` (usable as a class decorator).

    Raises:
        HftaInputError: the class lacks ``name``/``source``/``Config``, or another class holds
            the name already.
    """
    for attribute in ("name", "source", "Config"):
        if not hasattr(defence, attribute):
            raise HftaInputError(f"defence class {defence.__name__} has no '{attribute}'")
    existing = _REGISTRY.get(defence.name)
    if existing is not None and existing is not defence:
        raise HftaInputError(
            f"defence name '{defence.name}' is taken by {existing.__module__}.{existing.__name__}"
        )
    _REGISTRY[defence.name] = defence
    return defence


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for module in BUILTIN_MODULES:
            importlib.import_module(f"empirical.defences.{module}")
        _loaded = True


def names() -> list[str]:
    """The registered defence names, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: str) -> Defence:
    """An instance of the defence called ``name``.

    Raises:
        HftaInputError: no defence has that name (the message lists the known ones).
    """
    _load_builtins()
    if name not in _REGISTRY:
        raise HftaInputError(f"unknown defence '{name}' (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]()
