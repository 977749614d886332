"""Atomic, idempotent publish of a pipeline snapshot into the serving tables.

Everything happens in one transaction, and readers keep seeing the previous complete publish
until commit; any error rolls the whole publish back. A frame is a pandas DataFrame or a
stream of Arrow record batches (e.g. from DuckDB), loaded batch by batch with ``COPY`` (CSV
written by pyarrow), so memory is bounded by the batch size, not by the snapshot.

Per table: rankings, global rankings, rationale, features and similar users are replaced:
their rows are deleted and the new ones copied straight into the table (MVCC readers are never
blocked; autovacuum reclaims the old rows). Models and evaluation rows are staged in
temporary tables and upserted: the published active version becomes the only active one per
model name, and evaluation history is kept. Concurrent publishes are serialised by an advisory
lock taken before the first change: the later one waits, then replaces the earlier.

Just before commit, every row of a user who is opted out in ``personalization_settings``
*at that moment* is deleted from the per-user tables (an opt-out made through the endpoint
while the run was computing is never published). The settings table is share-locked for that
last step, so an opt-out either commits before it (and is honoured here) or after the publish
(and is honoured by the endpoint at read time, and by the next run).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg import sql

from personalization_pipeline.serving import schema
from personalization_pipeline.sqlutil import quote_ident

COPY_CHUNK_ROWS = 10_000

Frame: TypeAlias = pd.DataFrame | pa.RecordBatchReader
"""Rows to publish: a DataFrame, or a stream of record batches whose JSON columns are JSON text."""


@dataclass(frozen=True)
class Snapshot:
    """Frames to publish. ``None`` leaves that table untouched; ranks and global ranks are required.

    JSON columns (``items``, ``features``, ``metrics``, ``tags``, ``common_attributes``)
    hold JSON strings (or, in a DataFrame, Python lists/dicts). Naive timestamps are taken as UTC.
    Models and evaluation rows are DataFrames (small, staged for an upsert).
    """

    ranks: Frame
    global_ranks: Frame
    features: Frame | None = None
    models: pd.DataFrame | None = None
    evals: pd.DataFrame | None = None
    rationale: Frame | None = None
    similar_users: Frame | None = None


_REPLACE = ("DELETE FROM {t}",)
_UPSERT_MODELS = (
    "UPDATE {t} AS m SET active = false FROM {s} AS s"
    " WHERE s.active AND m.active AND m.model_name = s.model_name"
    " AND m.model_version <> s.model_version",
    "INSERT INTO {t} SELECT * FROM {s} ON CONFLICT (model_name, model_version) DO UPDATE SET"
    " metrics = EXCLUDED.metrics, trained_at = EXCLUDED.trained_at, active = EXCLUDED.active,"
    " kind = EXCLUDED.kind, params = EXCLUDED.params",
)
_UPSERT_EVALS = (
    "INSERT INTO {t} SELECT * FROM {s} ON CONFLICT (run_id, model_name, metric, k) DO UPDATE SET"
    " value = EXCLUDED.value, computed_at = EXCLUDED.computed_at, model_version = EXCLUDED.model_version",
)
_PUBLISH_LOCK_KEY = 0x5E5F1A7F
_OPTED_OUT = f"SELECT user_id FROM {schema.SETTINGS} WHERE NOT personalization_enabled"
_DROP_OPTED_OUT: dict[str, str] = {
    "ranks": f"DELETE FROM {schema.RANKS} WHERE user_id IN ({_OPTED_OUT})",
    "rationale": f"DELETE FROM {schema.RATIONALE} WHERE user_id IN ({_OPTED_OUT})",
    "features": f"DELETE FROM {schema.FEATURES} WHERE user_id IN ({_OPTED_OUT})",
    "similar_users": f"DELETE FROM {schema.SIMILAR_USERS} WHERE user_id IN ({_OPTED_OUT}) "
    f"OR similar_user_id IN ({_OPTED_OUT})",
}
"""Per-user tables and the statement that removes opted-out users from each (as subject or neighbour)."""


@dataclass(frozen=True)
class _Target:
    """A serving table, the frame columns it takes and the SQL applying the frame: replaced
    tables run it before the rows are copied in, upserted ones after they are staged."""

    table: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    json_columns: tuple[str, ...]
    apply: tuple[str, ...]

    @property
    def replaced(self) -> bool:
        return self.apply == _REPLACE

    @property
    def stage(self) -> str:
        return f"stage_{self.table}"


_TARGETS: dict[str, _Target] = {
    "ranks": _Target(
        schema.RANKS,
        ("user_id", "scope", "items", "model_version", "generated_at", "valid_until"),
        ("variant",),
        ("items",),
        _REPLACE,
    ),
    "global_ranks": _Target(
        schema.GLOBAL_RANKS,
        ("scope", "items", "model_version", "generated_at", "valid_until"),
        ("variant",),
        ("items",),
        _REPLACE,
    ),
    "rationale": _Target(
        schema.RATIONALE,
        ("user_id", "scope", "tags"),
        ("generated_at",),
        ("tags",),
        _REPLACE,
    ),
    "features": _Target(
        schema.FEATURES,
        ("user_id", "features", "computed_at"),
        (),
        ("features",),
        _REPLACE,
    ),
    "similar_users": _Target(
        schema.SIMILAR_USERS,
        ("user_id", "similar_user_id", "similarity_score", "calculated_at"),
        ("common_attributes",),
        ("common_attributes",),
        _REPLACE,
    ),
    "models": _Target(
        schema.MODELS,
        ("model_name", "model_version", "trained_at"),
        ("metrics", "active", "kind", "params"),
        ("metrics", "params"),
        _UPSERT_MODELS,
    ),
    "evals": _Target(
        schema.EVAL,
        ("run_id", "model_name", "metric", "k", "value", "computed_at"),
        ("model_version",),
        (),
        _UPSERT_EVALS,
    ),
}


@dataclass(frozen=True)
class PublishResult:
    """Rows loaded per frame name (e.g. ``ranks``), and rows dropped at commit because their user
    had opted out meanwhile, per table name."""

    loaded: dict[str, int]
    dropped_opted_out: dict[str, int]


def publish_snapshot(url: str, snapshot: Snapshot) -> PublishResult:
    """Publish ``snapshot`` atomically, without any row of a user opted out at commit time."""
    frames = {f.name: getattr(snapshot, f.name) for f in fields(snapshot)}
    frames = {name: frame for name, frame in frames.items() if frame is not None}
    columns = {name: _columns(name, frame) for name, frame in frames.items()}
    counts: dict[str, int] = {}
    with psycopg.connect(url) as conn:
        schema.ensure_schema(conn)
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL TIME ZONE 'UTC'")
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_PUBLISH_LOCK_KEY,))
            for name, frame in frames.items():
                target = _TARGETS[name]
                batches = _batches(frame, columns[name], target)
                if target.replaced:
                    _apply(cur, target)
                    counts[name] = copy_batches(cur, target.table, columns[name], batches)
                    continue
                cur.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) ON COMMIT DROP"
                    ).format(sql.Identifier(target.stage), sql.Identifier(target.table))
                )
                counts[name] = copy_batches(cur, target.stage, columns[name], batches)
                _apply(cur, target)
            cur.execute(f"LOCK TABLE {schema.SETTINGS} IN SHARE MODE")  # opt-outs wait for the commit
            dropped = {}
            for name, statement in _DROP_OPTED_OUT.items():
                cur.execute(statement)
                dropped[name] = cur.rowcount
    return PublishResult(counts, dropped)


def _apply(cur: psycopg.Cursor, target: _Target) -> None:
    for statement in target.apply:
        cur.execute(sql.SQL(statement).format(t=sql.Identifier(target.table), s=sql.Identifier(target.stage)))


def _columns(name: str, frame: Frame) -> list[str]:
    target = _TARGETS[name]
    present = list(frame.columns) if isinstance(frame, pd.DataFrame) else frame.schema.names
    missing = [c for c in target.required if c not in present]
    if missing:
        raise ValueError(f"snapshot frame {name!r} lacks required column(s) {missing}")
    return list(target.required) + [c for c in target.optional if c in present]


def _batches(frame: Frame, columns: list[str], target: _Target) -> Iterator[pa.RecordBatch]:
    """``frame``'s ``columns`` in batches of at most :data:`COPY_CHUNK_ROWS` rows."""
    if isinstance(frame, pd.DataFrame):
        yield from _to_arrow(frame, columns, target.json_columns).to_batches(max_chunksize=COPY_CHUNK_ROWS)
        return
    for batch in frame:
        for start in range(0, batch.num_rows, COPY_CHUNK_ROWS):
            yield batch.slice(start, COPY_CHUNK_ROWS).select(columns)


def _json_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _to_arrow(frame: pd.DataFrame, columns: list[str], json_columns: tuple[str, ...]) -> pa.Table:
    data = frame[columns]
    converted = {
        c: data[c].map(_json_text).astype("object")
        for c in json_columns
        if c in columns and not pd.api.types.is_string_dtype(data[c])
    }
    if converted:
        data = data.assign(**converted)
    return pa.Table.from_pandas(data, preserve_index=False)


def copy_arrow(cur: psycopg.Cursor, stage: str, table: pa.Table) -> None:
    """Bulk-load ``table`` into the PostgreSQL table ``stage`` with ``COPY`` (CSV written by pyarrow)."""
    copy_batches(cur, stage, table.column_names, table.to_batches(max_chunksize=COPY_CHUNK_ROWS))


def copy_batches(cur: psycopg.Cursor, table: str, columns: list[str], batches: Iterable[pa.RecordBatch]) -> int:
    """``COPY`` ``batches`` (their ``columns``, in that order) into ``table``, one CSV chunk per
    batch; returns the rows copied."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    options = pa_csv.WriteOptions(include_header=False)
    rows = 0
    with cur.copy(statement) as copy:
        for batch in batches:
            buffer = io.BytesIO()
            pa_csv.write_csv(batch, buffer, options)
            copy.write(buffer.getbuffer())
            rows += batch.num_rows
    return rows


# 7 significant digits: round() to a number of decimals that follows the magnitude.
_SIGNIFICANT_SCORE = (
    "CASE WHEN score::DOUBLE = 0 THEN 0.0 "
    "ELSE round(score::DOUBLE, 6 - CAST(floor(log10(abs(score::DOUBLE))) AS INTEGER)) END"
)


def items_json_sql(table: str, keys: Sequence[str]) -> str:
    """DuckDB SQL collapsing long ranking rows of ``table`` to one ``items`` JSON array per ``keys``.

    Items are ordered by rank, ties by item id, as ``[{"id", "score", "confidence"}, ...]``;
    scores keep 7 significant digits (the float32 precision models score in, whatever the
    magnitude) and confidence 4 decimals. Rows are sorted by ``keys``.
    """
    key_list = ", ".join(map(quote_ident, keys))
    return f"""
        SELECT {key_list},
               CAST(to_json(list(struct_pack(id := item_id::VARCHAR, score := {_SIGNIFICANT_SCORE},
                                             confidence := round(confidence::DOUBLE, 4))
                                 ORDER BY "rank", item_id::VARCHAR)) AS VARCHAR) AS items
        FROM {table} GROUP BY {key_list} ORDER BY {key_list}
    """
