"""The admin routes' reads and writes of experiments, as the verified caller (row-level security
admits admin callers only; the statements are :mod:`experiments.store`'s)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from personalization_pipeline.experiments import store
from personalization_pipeline.experiments.analysis import winner
from personalization_pipeline.experiments.definition import Experiment, ExperimentSpec
from personalization_pipeline.serving.api_access import caller_query, caller_transaction
from personalization_pipeline.serving.auth import Principal


async def create(pool: AsyncConnectionPool, caller: Principal, spec: ExperimentSpec, seed: int) -> Experiment:
    """Store ``spec`` as a new active experiment. Raises :class:`store.ExperimentConflict`."""
    try:
        async with caller_transaction(pool, caller) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(store.INSERT_SQL, store.insert_params(spec, seed))
            row = await cur.fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise store.conflict(exc, spec.name) from None
    assert row is not None
    return store.from_row(row)


async def end(pool: AsyncConnectionPool, caller: Principal, name: str) -> Experiment | None:
    """End the active experiment ``name``; ``None`` when there is no active one of that name."""
    async with caller_transaction(pool, caller) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(store.END_SQL, {"name": name})
        row = await cur.fetchone()
    return store.from_row(row) if row is not None else None


async def get(pool: AsyncConnectionPool, caller: Principal, name: str | None = None) -> list[Experiment]:
    """The experiment ``name`` (none: every experiment, newest first)."""
    where = " WHERE name = %(name)s" if name is not None else ""
    query = store.SELECT_SQL + where + " ORDER BY created_at DESC, name"
    rows = await caller_query(pool, caller, query, {"name": name}, dict_row)
    return [store.from_row(row) for row in rows]


async def results(pool: AsyncConnectionPool, caller: Principal, name: str) -> dict[str, Any]:
    """The published analysis of ``name``: one entry per variant (control first) and the winner."""
    rows = await caller_query(pool, caller, store.RESULTS_SQL, {"name": name}, dict_row)
    variants = [{key: value for key, value in row.items() if key != "name"} for row in rows]
    return {"experiment": name, "winner": winner(pd.DataFrame(rows)) if rows else None, "variants": variants}
