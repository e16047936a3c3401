"""empirical/: real models, the embedded benchmark, attacks, defences and the verifier.

Imports theory/ for every formula; owns the ``hfta`` command-line interface.
"""
