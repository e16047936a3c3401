"""The verifier: turn a claimed defence guarantee into a verdict (``hfta verify``).

Published defence evaluations were fooled by one learning rate, one seed, a custom loop, a
constant schedule (Qi, Wei, Carlini et al., ICLR 2025; docs/science.md §3). The verifier therefore
runs many attacks over the claim's threat model and searches for the worst one:

* ``empirical.verify.store``: ``ResultStore``, finished attacks on disk keyed by the sha256 of
  their canonical configuration, written atomically, corrupt entries recomputed;
* ``empirical.verify.executors``: ``run_attacks``, many attacks in order, locally or as ray
  tasks, reusing what the store already holds (a killed run resumes);
* ``empirical.verify.search``: ``SearchSpace``, ``grid`` and ``search_worst_case``, an
  optuna (TPE) search for the attack that maximises harm, with pruning and a resumable
  SQLite study.
* ``empirical.verify.claim``: ``Claim``, ``load_claim``, ``parse_claim``, ``resolve_data``,
  ``DEFAULT_CLAIM``: the claim file (TOML, strict) and the data it names;
* ``empirical.verify.api``: ``verify_claim(claim, out)``, the whole of ``hfta verify`` as one
  Python call (load, prepare, claim the output, verify, write, publish), returning the verdict;
* ``empirical.verify.stages``: ``prepare`` and ``verify``, the verification as the list of its
  stages: ``workspace`` (work directory, digests, ``VerifyOptions``), ``defence`` (the cached
  M*), ``plan`` (attack configurations from the threat model), ``judge`` (harm bands,
  aggregation, stability, trainability: the one place a verdict is decided), ``theory`` (the
  bound checks), each returning a record of ``outcome`` (``VerifyOutcome`` and the rest);
  ``empirical.verify.pipeline`` re-exports all of them (the compatibility surface);
* ``empirical.verify.report``: ``document``, ``markdown``, ``write_outputs``, ``publish``:
  verdict.json, report.md, trajectories, published atomically;
* ``empirical.verify.figures``: ``figures``, the paper's Figure 2 and one panel per condition.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from empirical.verify.api import VerifyResult, verify_claim

__all__ = ["VerifyResult", "verify_claim"]


def __getattr__(name: str) -> Any:
    """``verify_claim`` and ``VerifyResult`` from ``empirical.verify.api``, imported on first
    use (importing the package stays cheap: ``empirical.verify.claim`` needs no torch)."""
    if name in __all__:
        from empirical.verify import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
