"""Warehouse-facing steps (no Dagster): each reads warehouse tables, calls the pure core, writes its result."""
