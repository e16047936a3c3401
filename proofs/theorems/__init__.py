"""One proof module per catalogued theorem: ``proofs/theorems/<name>.py`` exposes ``proof()``.

The module name is the theorem's name in ``theory.catalogue()``; ``proofs.registry`` pairs
them and a test fails when a catalogued theorem has none.
"""
