"""Privacy rules: feature allowlist and k-anonymity generalisation (no Dagster)."""
