"""proofs/: machine-checked proofs of every theorem in ``theory.catalogue()``."""
