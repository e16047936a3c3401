"""One module per ``hfta`` command; each registers itself on ``empirical.cli.app``."""
