"""User feature vectors built in the warehouse (no Dagster)."""
