"""Atomic, idempotent publish of a pipeline snapshot into the serving tables.

Per-user tables (rankings, rationale, features, similar users) are loaded, then swapped in:
each frame is copied into a fresh load table shaped like the served one
(:func:`create_load_tables`; ``COPY`` of CSV written by pyarrow, batch by batch, so memory is
bounded by the batch size, not by the snapshot), possibly by several processes at once, each
loading its share of the users over :data:`LOAD_CONNECTIONS` connections that commit together
(:func:`load_rows`). :func:`swap_in` then replaces every served
table by its load table in one short transaction (renames, row-level security, policies and
grants re-applied): readers see the old set until that commit and never wait on the load, and
no served table accumulates the dead rows of a ``DELETE``. The same transaction replaces the
global rankings and stages and upserts models and evaluation rows: the published active version
becomes the only active one per model name, and evaluation history is kept. Swaps are
serialised by an advisory lock: a later publish waits, then replaces the earlier. Any error
leaves what is served untouched; load tables left by a failed publish are dropped by
:func:`drop_stale_load_tables` (the cleanup job) once a day old.

Just before commit, every row of a user who is opted out in ``personalization_settings``
*at that moment* is deleted from the load tables (an opt-out made through the endpoint while
the run was computing is never published). The settings table is share-locked for that last
step, so an opt-out either commits before it (and is honoured here) or after the publish (and
is honoured by the endpoint at read time, and by the next run). The same transaction adds the
published experiment lists to the experiments' exposure history and deletes opted-out users'
assignments and exposures.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import queue
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
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
_DROP_OPTED_OUT: dict[str, tuple[str, ...]] = {
    "ranks": (f"DELETE FROM {{t}} WHERE user_id IN ({_OPTED_OUT})",),
    "rationale": (f"DELETE FROM {{t}} WHERE user_id IN ({_OPTED_OUT})",),
    "features": (f"DELETE FROM {{t}} WHERE user_id IN ({_OPTED_OUT})",),
    "similar_users": (
        f"DELETE FROM {{t}} WHERE user_id IN ({_OPTED_OUT})",
        f"DELETE FROM {{t}} WHERE similar_user_id IN ({_OPTED_OUT})",
    ),
}
"""Per-user frames (loaded, then swapped in) and the statements that remove opted-out users from
each table ``{t}`` (as subject, then as neighbour). One ``IN`` per statement: PostgreSQL joins it
(a hash semi-join); two joined by ``OR`` stay subqueries, re-read for every row once the
opted-out set outgrows ``work_mem`` (hours for tier L's 19M neighbour rows and 50k opt-outs)."""
PER_USER_FRAMES: tuple[str, ...] = tuple(_DROP_OPTED_OUT)
_FORGET_OPTED_OUT = tuple(
    f"DELETE FROM {table} WHERE user_id IN ({_OPTED_OUT})"
    for table in (schema.EXPERIMENT_ASSIGNMENTS, schema.EXPERIMENT_EXPOSURES)
)
"""Opted-out users' experiment assignments and exposure history are deleted at every publish."""
_RECORD_EXPOSURES = f"""INSERT INTO {schema.EXPERIMENT_EXPOSURES} AS x
    (name, user_id, variant, first_served_at, last_served_at, last_valid_until, publishes)
SELECT experiment, user_id, min(variant), min(generated_at), max(generated_at), max(valid_until), 1
FROM {{t}} WHERE experiment IS NOT NULL GROUP BY experiment, user_id
ON CONFLICT (name, user_id) DO UPDATE SET variant = EXCLUDED.variant, last_served_at = EXCLUDED.last_served_at,
    last_valid_until = EXCLUDED.last_valid_until, publishes = x.publishes + 1"""
"""The served experiment lists of the ranks load table ``{t}`` into the exposure history: kept
there because the served tables are replaced every run."""
_LOAD_MARK = "__load_"
STALE_LOAD_AGE = timedelta(days=1)


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
        ("variant", "experiment"),
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
    """Publish ``snapshot`` atomically, without any row of a user opted out at commit time: its
    per-user frames loaded in this process, then swapped in with the rest."""
    frames = {f.name: getattr(snapshot, f.name) for f in fields(snapshot)}
    frames = {name: frame for name, frame in frames.items() if frame is not None}
    for name, frame in frames.items():
        frame_columns(name, frame)  # every frame checked before the database is touched
    per_user = {name: frame for name, frame in frames.items() if name in PER_USER_FRAMES}
    rest = {name: frame for name, frame in frames.items() if name not in PER_USER_FRAMES}
    tables = create_load_tables(url, uuid.uuid4().hex[:12], tuple(per_user))
    try:
        loaded = load_rows(url, tables, per_user)
        result = swap_in(url, tables, rest)
    except BaseException:
        drop_load_tables(url, tables)
        raise
    return PublishResult({**loaded, **result.loaded}, result.dropped_opted_out)


@dataclass(frozen=True)
class LoadTables:
    """The load tables of one publish: one per per-user frame name in ``names``, tagged ``tag``."""

    tag: str
    names: tuple[str, ...]

    def table(self, name: str) -> str:
        """The load table of frame ``name`` (e.g. ``personalization_ranks__load_<tag>``)."""
        return f"{_TARGETS[name].table}{_LOAD_MARK}{self.tag}"


def create_load_tables(url: str, tag: str, names: tuple[str, ...]) -> LoadTables:
    """Migrate the serving schema, then create empty load tables for the per-user frames ``names``,
    shaped like the served tables (columns, defaults, constraints, indexes), replacing any
    earlier ones of the same ``tag``. ``tag``: up to 16 letters, digits or underscores."""
    if not re.fullmatch(r"\w{1,16}", tag) or any(name not in PER_USER_FRAMES for name in names):
        raise ValueError(f"load tables need a tag of 1-16 word characters and per-user frames, not {tag!r} {names}")
    tables = LoadTables(tag, names)
    with psycopg.connect(url) as conn:
        schema.ensure_schema(conn)
        with conn.transaction():
            for name in names:
                load, live = sql.Identifier(tables.table(name)), sql.Identifier(_TARGETS[name].table)
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(load))
                conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(load, live))
                conn.execute(
                    sql.SQL("COMMENT ON TABLE {} IS {}").format(load, sql.Literal(datetime.now(UTC).isoformat()))
                )
    return tables


LOAD_CONNECTIONS = 2
"""Connections a load copies over at once: the server parses every list's JSON, one backend per
connection, so two keep two cores busy where one left the server on one."""
LOAD_LOCK_TIMEOUT_S = 10
"""A load waits on no lock but one: a key copied twice over two connections (the second waits on
the first's commit, which waits on the second). It fails after this many seconds instead."""


def load_rows(
    url: str, tables: LoadTables, frames: dict[str, Frame], connections: int = LOAD_CONNECTIONS
) -> dict[str, int]:
    """Copy per-user ``frames`` into their load tables over ``connections`` connections at once,
    batches shared out as they come; every connection commits only once all the rows are copied
    (any error rolls them all back). Rows copied per frame."""
    columns = {name: frame_columns(name, frame) for name, frame in frames.items()}
    with contextlib.ExitStack() as stack:
        cursors = []
        for _ in range(connections):
            conn = stack.enter_context(psycopg.connect(url))
            stack.enter_context(conn.transaction())
            cur = stack.enter_context(conn.cursor())
            cur.execute("SET LOCAL TIME ZONE 'UTC'")
            cur.execute(f"SET LOCAL lock_timeout = '{LOAD_LOCK_TIMEOUT_S}s'")
            if cur.execute(_HAS_LZ4).fetchone() == (True,):
                cur.execute("SET LOCAL default_toast_compression = 'lz4'")
            cursors.append(cur)
        counts = {}
        for name, frame in frames.items():
            batches = _batches(frame, columns[name], _TARGETS[name])
            try:
                counts[name] = _copy_in_parallel(cursors, tables.table(name), columns[name], batches)
            except (psycopg.errors.UniqueViolation, psycopg.errors.LockNotAvailable) as exc:  # one copy or two
                detail = f" ({exc.diag.message_detail})" if exc.diag.message_detail else ""
                raise ValueError(f"snapshot frame {name!r} repeats a key of {tables.table(name)}{detail}") from exc
        return counts


_HAS_LZ4 = "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
"""Whether the server compresses large values with lz4: a list's JSON (a few kB) is compressed
on the way in, and lz4 writes about a third faster than the default pglz and reads faster too."""


def swap_in(url: str, tables: LoadTables, frames: dict[str, Frame]) -> PublishResult:
    """In one transaction: replace the global rankings and upsert models and evaluation rows of
    ``frames``, drop the rows of users opted out now from the load tables, and make each load
    table the served one (the old one is dropped)."""
    columns = {name: frame_columns(name, frame) for name, frame in frames.items()}
    counts: dict[str, int] = {}
    dropped: dict[str, int] = {}
    with psycopg.connect(url) as conn, conn.transaction(), conn.cursor() as cur:
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
        for name in tables.names:
            dropped[name] = 0
            for statement in _DROP_OPTED_OUT[name]:
                cur.execute(sql.SQL(statement).format(t=sql.Identifier(tables.table(name))))
                dropped[name] += cur.rowcount
            if name == "ranks":
                cur.execute(sql.SQL(_RECORD_EXPOSURES).format(t=sql.Identifier(tables.table(name))))
            _rename_over(cur, tables.table(name), _TARGETS[name].table)
        for statement in _FORGET_OPTED_OUT:
            cur.execute(statement)
        schema.secure_tables(conn)
    return PublishResult(counts, dropped)


def _rename_over(cur: psycopg.Cursor, load: str, live: str) -> None:
    """Make table ``load`` the table ``live`` (dropping the old one), its indexes named as the old ones were."""
    cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(live)))
    cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(load), sql.Identifier(live)))
    cur.execute(sql.SQL("COMMENT ON TABLE {} IS NULL").format(sql.Identifier(live)))
    indexes = cur.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s", (live,)
    ).fetchall()
    for (index,) in indexes:
        if index.startswith(load):  # a constraint's index renames its constraint too
            renamed = live + index[len(load) :]
            cur.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(index), sql.Identifier(renamed)))


def drop_load_tables(url: str, tables: LoadTables) -> None:
    """Drop ``tables`` (a failed publish's), if they exist."""
    with psycopg.connect(url) as conn, conn.transaction():
        for name in tables.names:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(tables.table(name))))


def drop_stale_load_tables(url: str, older_than: timedelta = STALE_LOAD_AGE, now: datetime | None = None) -> list[str]:
    """Drop the load tables created more than ``older_than`` before ``now`` (left by failed
    publishes; one without a readable creation time counts as stale); their names."""
    cutoff = (now or datetime.now(UTC)) - older_than
    patterns = [f"{_TARGETS[name].table}{_LOAD_MARK}%".replace("_", r"\_") for name in PER_USER_FRAMES]
    with psycopg.connect(url) as conn, conn.transaction():
        found = conn.execute(
            "SELECT relname, obj_description(oid, 'pg_class') FROM pg_class "
            "WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace AND relname LIKE ANY(%s)",
            (patterns,),
        ).fetchall()
        stale = sorted(name for name, created in found if _created_at(created) < cutoff)
        for name in stale:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    return stale


def _created_at(comment: str | None) -> datetime:
    try:
        return datetime.fromisoformat(comment or "")
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _apply(cur: psycopg.Cursor, target: _Target) -> None:
    for statement in target.apply:
        cur.execute(sql.SQL(statement).format(t=sql.Identifier(target.table), s=sql.Identifier(target.stage)))


def frame_columns(name: str, frame: Frame) -> list[str]:
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


def _copy_in_parallel(
    cursors: Sequence[psycopg.Cursor], table: str, columns: list[str], batches: Iterable[pa.RecordBatch]
) -> int:
    """:func:`copy_batches` over each of ``cursors`` (their own connections) at once, each taking
    the next batch as it is free (at most two per cursor waiting); returns the rows copied."""
    feed: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=2 * len(cursors))

    def drain(cur: psycopg.Cursor) -> int:
        return copy_batches(cur, table, columns, iter(feed.get, None))

    with ThreadPoolExecutor(len(cursors), thread_name_prefix="copy") as pool:
        copies = [pool.submit(drain, cur) for cur in cursors]
        try:
            for item in itertools.chain(batches, [None] * len(copies)):  # then each copy's end
                while not _offered(feed, item):
                    for failed in (c for c in copies if c.done()):  # ended early: raises its error
                        failed.result()
        except BaseException:
            _empty(feed)  # the copies still running end at once, the transactions roll back
            for _ in copies:
                feed.put(None)
            raise
        return sum(c.result() for c in copies)


def _offered(feed: queue.Queue, item: Any) -> bool:
    try:
        feed.put(item, timeout=0.5)
    except queue.Full:
        return False
    return True


def _empty(feed: queue.Queue) -> None:
    while True:
        try:
            feed.get_nowait()
        except queue.Empty:
            return


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
    # list_sort of (rank, id, ...) structs, not an ordered aggregate: same order, 15% faster at scale
    return f"""
        SELECT {key_list},
               CAST(to_json(list_transform(
                   list_sort(list(struct_pack(r := "rank", i := item_id::VARCHAR, s := {_SIGNIFICANT_SCORE},
                                              c := round(confidence::DOUBLE, 4)))),
                   lambda x: struct_pack(id := x.i, score := x.s, confidence := x.c))) AS VARCHAR) AS items
        FROM {table} GROUP BY {key_list} ORDER BY {key_list}
    """
