"""A small, seeded world of model files for the quick start and for trying commands."""
