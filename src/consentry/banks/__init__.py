"""Banks of known models, signal types and the matcher (see matching.py, signals.py)."""
