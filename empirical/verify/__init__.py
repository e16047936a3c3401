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
* ``empirical.verify.pipeline``: ``prepare``, ``verify``, ``Workspace``, ``work_directory``,
  ``VerifyOptions``, ``Services``, ``VerifyOutcome``: the attacks, the statistics, the
  condition verdicts and the bound checks;
* ``empirical.verify.report``: ``document``, ``markdown``, ``write_outputs``, ``publish``:
  verdict.json, report.md, trajectories, published atomically;
* ``empirical.verify.figures``: ``figures``, the paper's Figure 2 and one panel per condition.
"""
