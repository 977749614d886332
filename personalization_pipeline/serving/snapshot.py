"""Build the serving :class:`Snapshot` from warehouse tables (no Dagster).

The per-user frames are streams of Arrow record batches read from DuckDB (each on its own
cursor, so they can be open at once), or Parquet files staged per user bucket for a publish
fanned out over processes: publishing them never holds the snapshot in memory.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from ..privacy.allowlist import FEATURE_COLUMNS
from ..sqlutil import has_table, quote_literal
from ..steps.buckets import bucket_sql
from ..steps.registry import RegistryEntry
from ..steps.tables import (
    EVAL_HISTORY,
    GLOBAL_RANKINGS,
    RANK_RATIONALE,
    SIMILAR_USERS,
    USER_FEATURES,
    USER_RANKINGS,
)
from .publish import COPY_CHUNK_ROWS, Snapshot, items_json_sql


def _stream(con: duckdb.DuckDBPyConnection, query: str, parameters: list | None = None) -> pa.RecordBatchReader:
    """``query``'s rows as record batches, on a cursor of their own."""
    return con.cursor().sql(query, params=parameters or []).to_arrow_reader(COPY_CHUNK_ROWS)


@dataclass(frozen=True)
class Query:
    """A DuckDB query and its parameters."""

    sql: str
    params: list[Any]


def per_user_queries(
    con: duckdb.DuckDBPyConnection, generated_at: datetime, ttl: timedelta, users: str = "true"
) -> dict[str, Query]:
    """The query of each per-user frame (see :data:`publish.PER_USER_FRAMES`) the warehouse can
    fill: rankings and features always, similar users (weekly) and rationale when present.
    ``users``: a SQL predicate on ``user_id`` choosing whose rows (everyone's by default), applied
    to the tables before anything is aggregated or sorted."""
    valid_until = generated_at + ttl
    lists = items_json_sql(
        f"(SELECT * FROM {USER_RANKINGS} WHERE {users})", ("user_id", "scope", "model_version", "experiment", "variant")
    )
    queries = {
        "ranks": Query(  # experiment and variant: the experiment's arm the list was ranked for (else null)
            f"SELECT *, ?::TIMESTAMP AS generated_at, ?::TIMESTAMP AS valid_until FROM ({lists})",
            [generated_at, valid_until],
        ),
        "features": Query(
            f"SELECT user_id, CAST(to_json(struct_pack({', '.join(FEATURE_COLUMNS)})) AS VARCHAR) AS features, "
            f"?::TIMESTAMP AS computed_at FROM {USER_FEATURES} WHERE {users} ORDER BY user_id",
            [generated_at],
        ),
    }
    if has_table(con, SIMILAR_USERS):  # computed weekly: the latest map is published with every snapshot
        queries["similar_users"] = Query(
            f"SELECT user_id, similar_user_id, similarity_score, calculated_at, common_attributes FROM {SIMILAR_USERS} "
            f"WHERE {users} ORDER BY user_id, similar_user_id",
            [],
        )
    if has_table(con, RANK_RATIONALE):  # tags per (user, scope): [{id, rank, tags}] in rank order, never served
        queries["rationale"] = Query(
            "SELECT user_id, scope, CAST(to_json(list({'id': item_id, 'rank': rank, 'tags': tags} ORDER BY rank)) "
            f"AS VARCHAR) AS tags, ?::TIMESTAMP AS generated_at FROM {RANK_RATIONALE} WHERE {users} "
            "GROUP BY user_id, scope ORDER BY user_id, scope",
            [generated_at],
        )
    return queries


def shared_frames(
    con: duckdb.DuckDBPyConnection, generated_at: datetime, ttl: timedelta, registry: dict[str, RegistryEntry]
) -> dict[str, pd.DataFrame]:
    """The frames that are not per user (small): global rankings, model registry rows, the latest metrics.

    ``registry`` holds the latest trained entry of each model (:func:`steps.registry.latest_trained`)."""
    stamp = {"generated_at": generated_at, "valid_until": generated_at + ttl}
    global_ranks = con.execute(items_json_sql(GLOBAL_RANKINGS, ("scope", "model_version"))).df().assign(**stamp)
    evals = con.execute(
        f"SELECT run_id, model_name, metric, k, value, computed_at, model_version FROM {EVAL_HISTORY} "
        f"WHERE run_id = (SELECT arg_max(run_id, computed_at) FROM {EVAL_HISTORY}) ORDER BY model_name, metric"
    ).df()
    models = pd.DataFrame(
        [
            {
                "model_name": name,
                "model_version": entry.model_version,
                "kind": entry.kind,
                "params": entry.params,
                "metrics": json.dumps(_metrics_of(evals, name)),
                "trained_at": entry.trained_at,
                "active": True,
            }
            for name, entry in sorted(registry.items())
        ]
    )
    return {"global_ranks": global_ranks, "models": models, "evals": evals}


def build_snapshot(
    con: duckdb.DuckDBPyConnection,
    *,
    generated_at: datetime,
    ttl: timedelta,
    registry: dict[str, RegistryEntry],
) -> Snapshot:
    """Rankings, fallbacks, features, model registry rows and the latest metrics, ready to publish;
    every ranking row carries the version of the model that produced it. The per-user streams
    read ``con`` as they are consumed: publish before closing it."""
    streams = {name: _stream(con, q.sql, q.params) for name, q in per_user_queries(con, generated_at, ttl).items()}
    return Snapshot(**streams, **shared_frames(con, generated_at, ttl, registry))


SLICE_ROWS = 10_000_000
"""Ranking rows aggregated per staging query: DuckDB keeps a query's per-user lists in memory
(list aggregates do not spill), so larger warehouses are staged a slice of users at a time."""
LISTED_FRAMES = ("ranks", "rationale")
"""The per-user frames aggregated into one list per user and scope, hence staged by slices of
users; the others are staged whole (their sorts spill)."""


def user_ranges(con: duckdb.DuckDBPyConnection, slice_rows: int) -> list[str]:
    """SQL predicates on ``user_id`` cutting the ranked users into ranges of about ``slice_rows``
    ranking rows each (one, ``true``, for fewer rows). The boundaries are the users at every
    ``slice_rows``-th row of ``user_rankings``, which is stored in user order: a range's scan
    skips the row groups outside it (their user id statistics), where a hash of the id read them all."""
    bounds = [
        quote_literal(user)
        for (user,) in con.execute(
            f"SELECT DISTINCT user_id FROM {USER_RANKINGS} WHERE rowid > 0 AND rowid % ? = 0 ORDER BY user_id",
            [slice_rows],
        ).fetchall()
    ]
    ranges = []
    for low, high in itertools.pairwise([None, *bounds, None]):
        limits = [f"user_id >= {low}"] if low else []
        limits += [f"user_id < {high}"] if high else []
        ranges.append(" AND ".join(limits) or "true")
    return ranges


def stage_per_user(
    con: duckdb.DuckDBPyConnection,
    generated_at: datetime,
    ttl: timedelta,
    staging: Path,
    buckets: int,
    slice_rows: int = SLICE_ROWS,
) -> tuple[tuple[str, ...], list[int]]:
    """Write each per-user frame (:func:`per_user_queries`) under ``staging/<frame>/bucket=<n>/``
    (Parquet, one directory per user bucket, :func:`steps.buckets.bucket_sql`): the listed frames
    (:data:`LISTED_FRAMES`) one range of users at a time (:func:`user_ranges`), the others whole;
    the frames, and the buckets that hold rows, ascending (0 alone when none)."""
    whole = per_user_queries(con, generated_at, ttl)
    stages = [("whole", name, query) for name, query in whole.items() if name not in LISTED_FRAMES]
    for i, users in enumerate(user_ranges(con, slice_rows)):
        listed = per_user_queries(con, generated_at, ttl, users)
        stages += [(f"slice{i}", name, listed[name]) for name in LISTED_FRAMES if name in listed]
    for prefix, name, query in stages:
        con.execute(
            f"COPY (SELECT *, {bucket_sql('user_id', buckets)} AS bucket FROM ({query.sql})) "
            f"TO '{staging / name}' (FORMAT parquet, PARTITION_BY (bucket), OVERWRITE_OR_IGNORE, "
            f"FILENAME_PATTERN '{prefix}_{{i}}')",
            query.params,
        )
    found = {int(d.name.split("=", 1)[1]) for name in whole for d in (staging / name).glob("bucket=*")}
    return tuple(whole), sorted(found) or [0]


def bucket_frames(staging: Path, bucket: int, names: tuple[str, ...]) -> dict[str, pa.RecordBatchReader]:
    """The per-user frames :func:`stage_per_user` wrote for ``bucket``, as record batch streams."""
    frames = {}
    for name in names:
        files = sorted((staging / name / f"bucket={bucket}").glob("*.parquet"))
        if files:
            frames[name] = ds.dataset(files, format="parquet").scanner(batch_size=COPY_CHUNK_ROWS).to_reader()
    return frames


def _metrics_of(evals: pd.DataFrame, model_name: str) -> dict[str, float]:
    rows = evals[evals["model_name"] == model_name]
    return {f"{r.metric}@{r.k}": float(r.value) for r in rows.itertuples()}
