"""The catalogue of theorems, one module per theorem (T1 ... T10).

``CATALOGUE_MODULES`` lists them in order; ``theory.catalogue()`` instantiates each module's
``THEOREM``. Adding a theorem: write ``theory/theorems/<name>.py`` defining ``THEOREM``, add
its module name here, and add ``proofs/theorems/<name>.py`` (a test enforces the pairing).
"""

from __future__ import annotations

CATALOGUE_MODULES: tuple[str, ...] = (
    "smoothness_sandwich",  # T1
    "clipped_sgd_progress",  # T2
    "path_length_adam",  # T3
    "pl_convergence",  # T4
    "quadratic_gd",  # T5
    "contraction_tail",  # T6
    "stability_displacement",  # T7
    "binomial_confidence",  # T8
    "gradient_steps_exact",  # T9
    "harm_from_loss",  # T10
    "harm_radius",  # T11
)
