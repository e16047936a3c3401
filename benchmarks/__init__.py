"""Performance measurements. ``python -m benchmarks`` runs them and writes latest.json."""
