"""A/B experiments on the served rankings: definitions, assignment, outcome analysis (no Dagster)."""
