"""Thin Dagster assets, one module per stage; each calls the pure core."""
