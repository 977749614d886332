"""Deterministic assignment of users to an experiment's variants (DuckDB SQL).

A user's slot is the first 64 bits of the MD5 of ``<salt>:<experiment>:<user id>`` modulo 100; the
variants take the slots in the order they were defined, each as many as its traffic percentage. The
same user, experiment and salt give the same variant in every run and process; a different
experiment's salt reshuffles users independently.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd

from .definition import CONTROL, Experiment

SLOTS = 100


def slot_sql(experiment: Experiment, column: str = "user_id") -> str:
    """DuckDB expression: the 0-99 slot of the user id in ``column`` for ``experiment``."""
    prefix = f"{experiment.salt}:{experiment.name}:".replace("'", "''")
    return f"CAST(md5_number_upper('{prefix}' || {column}) % {SLOTS} AS INTEGER)"


def variant_sql(experiment: Experiment, column: str = "user_id") -> str:
    """DuckDB expression: the variant of the user id in ``column`` (cumulative traffic over the slots)."""
    slot = slot_sql(experiment, column)
    cases, upper = [], 0
    for variant in experiment.variants:
        upper += variant.traffic
        cases.append(f"WHEN {slot} < {upper} THEN '{variant.name}'")
    return f"CASE {' '.join(cases)} END"


def assign(con: duckdb.DuckDBPyConnection, experiment: Experiment, users: str, now: datetime) -> pd.DataFrame:
    """(user_id, variant) of every user id of the SQL relation ``users`` (a ``user_id`` column),
    ordered by user id; everyone is in control unless the experiment is running at ``now``."""
    variant = variant_sql(experiment) if experiment.running(now) else f"'{CONTROL}'"
    return con.execute(f"SELECT user_id, {variant} AS variant FROM ({users}) ORDER BY user_id").df()
