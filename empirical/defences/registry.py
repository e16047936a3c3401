"""The registry of defences: ``register`` a ``Defence`` class, ``get`` one by name, list ``names``.

Lazy: the built-in defences are known by name, module and a one-line description
(``BUILTIN_DEFENCES``) without importing them, so ``names()`` and ``descriptions()`` import
neither torch nor transformers (this module imports nothing heavy either; ``hfta immunize
--list`` relies on it). ``get(name)`` imports the one module that defines ``name``, whose class
``register``s itself; a plug-in from elsewhere can ``register`` its own class the same way
(its description is then the first line of its docstring).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from theory.errors import HftaInputError

if TYPE_CHECKING:
    from empirical.defences.base import Defence

BUILTIN_DEFENCES: dict[str, tuple[str, str]] = {
    "alignment": (
        "alignment",
        "plain safety alignment (SFT on refusals and harmless data), the baseline",
    ),
    "adversarial-loss": (
        "adversarial_loss",
        "Rosati et al. 2024's demonstration: refusal CE minus alpha * harmful CE + retain CE",
    ),
    "adversarial-loss-bounded": (
        "adversarial_loss",
        "the adversarial loss with each ascended token's loss capped (this toolkit's variant)",
    ),
    "repnoise": ("repnoise", "Representation Noising (Rosati et al., NeurIPS 2024)"),
    "vaccine": ("vaccine", "perturbation-aware alignment (Huang et al., NeurIPS 2024)"),
    "booster": ("booster", "harmful-perturbation attenuation (Huang et al., ICLR 2025)"),
    "tar": ("tar", "tamper-resistant safeguards by first-order meta-learning (Tamirisa et al.)"),
    "condition-number": (
        "condition_number",
        "Zheng et al. (ICML 2025): ill-condition the harmful probe's Hessian; linear task "
        "pairs (--pair/--sklearn, judged by slowdown) or the LM head",
    ),
    "contraction": (
        "contraction",
        "a CLAMP-like penalty that makes a simulated attacker's steps contract (T6)",
    ),
}
"""name → (module of ``empirical.defences`` that defines it, one-line description)."""

BUILTIN_MODULES: tuple[str, ...] = tuple(dict.fromkeys(m for m, _ in BUILTIN_DEFENCES.values()))
"""Modules of ``empirical.defences`` that define the built-in defences."""

_REGISTRY: dict[str, type[Defence]] = {}


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


def names() -> list[str]:
    """The known defence names (built-in and registered), sorted; imports no defence."""
    return sorted(set(BUILTIN_DEFENCES) | set(_REGISTRY))


def descriptions() -> dict[str, str]:
    """name → one-line description, sorted by name; imports no defence."""
    described = {name: text for name, (_, text) in BUILTIN_DEFENCES.items()}
    for name, defence in _REGISTRY.items():
        if name not in described:
            lines = (defence.__doc__ or "").strip().splitlines()
            described[name] = lines[0] if lines else defence.__name__
    return dict(sorted(described.items()))


def get(name: str) -> Defence:
    """An instance of the defence called ``name`` (imports its module on first use).

    Raises:
        HftaInputError: no defence has that name (the message lists the known ones).
    """
    if name not in _REGISTRY and name in BUILTIN_DEFENCES:
        importlib.import_module(f"empirical.defences.{BUILTIN_DEFENCES[name][0]}")
    if name not in _REGISTRY:
        raise HftaInputError(f"unknown defence '{name}' (known: {', '.join(names())})")
    return _REGISTRY[name]()
