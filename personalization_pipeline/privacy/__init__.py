"""Privacy rules: allowlists, consent, k-anonymity, PII detection and catalogue screening (no Dagster)."""
