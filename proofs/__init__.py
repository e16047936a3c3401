"""proofs/: machine-checked proofs of every theorem in ``theory.catalogue()``.

Imports theory only (never torch or empirical/). ``python -m proofs`` (or ``hfta prove``)
discharges every obligation and negative control and exits non-zero on any failure.

* ``proofs.theorems.<name>``: one proof module per catalogued theorem, ``proof() -> Proof``;
* ``proofs.axioms``: every fact taken as given, named, in one place; the calculus lemmas among
  them carry their premises and are proved in Coq (``proofs/coq/Segment.v``, run by
  ``proofs.coq``);
* ``proofs.induction``: the induction schema (base case + inductive step), stated once;
* ``proofs.translate`` / ``proofs.statements``: theory's sympy statements as z3 facts;
* ``proofs.solver``: z3 (with a per-obligation timeout) and sympy discharge;
* ``proofs.obligation``: obligations, controls, outcomes (proved / checked / refuted /
  failed / unknown), each attempt in a worker with a hard deadline; ``proofs.registry`` and
  ``proofs.runner``: the run, its time budget, the necessity audit and the report;
* ``proofs.tightness``: T2's bound against exact worst cases from PEPit, and T9 equal to them
  with PEPit's dual multipliers (run separately: ``python -m proofs.tightness``).
"""
