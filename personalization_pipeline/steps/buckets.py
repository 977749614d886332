"""User buckets: rankings fanned out over parallel processes that never open the warehouse.

DuckDB allows one writer, so the step that holds the warehouse stages what ranking reads
(signals, catalogue, feature vectors, evaluation history, the opted-in users with their bucket)
as Parquet files in a staging directory; each bucket's step opens them through an in-memory
DuckDB, ranks its users with the same code as a single-process run and writes Parquet; the
warehouse step then loads every bucket's output. A user's bucket is a stable hash of the user
id (the first 64 bits of its MD5) modulo the bucket count, the same in every process and run.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ..recsys.per_user import PerUserComposite
from ..recsys.rerank import als_neighbours
from ..sqlutil import has_table, limit_memory, quote_literal, scalar
from .rank import OUTPUT_SCHEMAS, RankingCounts, write_user_rankings
from .registry import RegistryEntry
from .rerank import RANKER, ranking_config
from .sinks import ParquetSink
from .tables import ACTIVITY, EVAL_HISTORY, EXPERIMENT_ASSIGNMENTS, ITEMS, SIGNALS, USER_FEATURES
from .train import load

USERS = "bucketed_users"
BUCKET_USERS = "bucket_users"
NEIGHBOURS = "als_neighbours"
_STAGED = (SIGNALS, ITEMS, USER_FEATURES, EVAL_HISTORY, EXPERIMENT_ASSIGNMENTS)
"""Warehouse tables the ranking step reads, staged whole (every bucket needs the whole history)."""
_MODEL_OF_RANKING = {"als": "als", "ease": "ease", "popularity": "popularity", "reranked": RANKER}
"""The registered model an experiment variant's ranking configuration names (``default``: none)."""


def bucket_sql(column: str, buckets: int) -> str:
    """DuckDB expression: the bucket of the user id in ``column`` (0 .. ``buckets`` - 1)."""
    return f"CAST(md5_number_upper({column}) % {int(buckets)} AS INTEGER)"


@dataclass(frozen=True)
class RankingPlan:
    """What every bucket's step needs: where the inputs are staged, the serving model's registry
    entry, the whole registry (the re-ranker's sources) and the per-user bundle's entry."""

    staging: str
    entry: RegistryEntry
    registry: dict[str, RegistryEntry]
    per_user: RegistryEntry | None


def stage_inputs(
    con: duckdb.DuckDBPyConnection,
    staging: Path,
    buckets: int,
    settings: Any,
    entry: RegistryEntry,
    registry: dict[str, RegistryEntry],
) -> list[int]:
    """Write the ranking inputs of ``con``'s warehouse under ``staging`` (emptied first), with the
    ALS neighbours when the re-ranker serves (searched once for every bucket); return
    the buckets that hold at least one opted-in user with history, ascending (bucket 0 alone when
    there is none, so that empty outputs are still written)."""
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "out").mkdir(parents=True)
    for table in _STAGED:
        if has_table(con, table):
            con.execute(f"COPY (SELECT * FROM {table}) TO '{staging / table}.parquet' (FORMAT parquet)")
    con.execute(
        f"COPY (SELECT user_id, {bucket_sql('user_id', buckets)} AS bucket FROM {ACTIVITY}) "
        f"TO '{staging / USERS}.parquet' (FORMAT parquet)"
    )
    if entry.model_name == RANKER and "als" in registry:
        neighbours = als_neighbours(load(registry["als"]), ranking_config(settings))
        neighbours.to_parquet(staging / f"{NEIGHBOURS}.parquet", index=False)
    rows = con.execute(f"SELECT DISTINCT bucket FROM '{staging / USERS}.parquet' ORDER BY bucket").fetchall()
    return [bucket for (bucket,) in rows] or [0]


@contextmanager
def staged_warehouse(staging: Path, bucket: int, memory_limit: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB that reads like the warehouse, restricted to ``bucket``'s users (``bucket_users``;
    the activity view, which ranking reads, starts as all of them); it spills under ``staging``."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        limit_memory(con, memory_limit, staging / f"spill-{int(bucket)}")
        for table in _STAGED:
            path = staging / f"{table}.parquet"
            if path.exists():
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM '{path}'")
        users = staging / f"{USERS}.parquet"
        con.execute(f"CREATE VIEW {BUCKET_USERS} AS SELECT user_id FROM '{users}' WHERE bucket = {int(bucket)}")
        con.execute(f"CREATE VIEW {ACTIVITY} AS SELECT user_id FROM {BUCKET_USERS}")
        yield con
    finally:
        con.close()


def rank_bucket(plan: RankingPlan, bucket: int, settings: Any) -> RankingCounts:
    """Rank ``bucket``'s users exactly as :func:`write_user_rankings` ranks everyone, into
    ``<staging>/out/<table>-<bucket>.parquet``: each variant's users of the running experiment with
    their variant's ranking configuration, everyone else with the serving model."""
    staging = Path(plan.staging)
    per_user = load(plan.per_user) if plan.per_user is not None else None
    assert per_user is None or isinstance(per_user, PerUserComposite)
    neighbours_path = staging / f"{NEIGHBOURS}.parquet"
    with staged_warehouse(staging, bucket, settings.duckdb_memory_limit) as con:
        neighbours = None
        if neighbours_path.exists():  # the bucket's users' neighbours: all its lists depend on
            neighbours = con.execute(
                f"SELECT * FROM '{neighbours_path}' WHERE user_id IN (SELECT user_id FROM {BUCKET_USERS})"
            ).df()
        paths = {table: staging / "out" / f"{table}-{bucket:05d}.parquet" for table in OUTPUT_SCHEMAS}
        counts = RankingCounts()
        with ParquetSink(paths, OUTPUT_SCHEMAS) as sink:  # written batch by batch: memory holds one batch
            for experiment, variant, ranking in _variant_groups(con):
                if not scalar(con, f"SELECT count(*) FROM {ACTIVITY}"):
                    continue
                entry = plan.registry.get(_MODEL_OF_RANKING.get(ranking, ""), plan.entry)
                own = per_user if ranking == "default" else None
                counts += write_user_rankings(
                    con, settings, entry, plan.registry, sink, own, neighbours, (experiment, variant)
                )
        return counts


def _variant_groups(con: duckdb.DuckDBPyConnection) -> Iterator[tuple[str | None, str | None, str]]:
    """For the users outside the running experiment, then each of its variants: point the activity
    view at those users of the bucket and yield (experiment, variant, ranking configuration)."""
    assigned = has_table(con, EXPERIMENT_ASSIGNMENTS)
    outside = f"WHERE user_id NOT IN (SELECT user_id FROM {EXPERIMENT_ASSIGNMENTS})" if assigned else ""
    con.execute(f"CREATE OR REPLACE VIEW {ACTIVITY} AS SELECT user_id FROM {BUCKET_USERS} {outside}")
    yield None, None, "default"
    if not assigned:
        return
    variants = con.execute(
        f"SELECT DISTINCT experiment, variant, ranking FROM {EXPERIMENT_ASSIGNMENTS} ORDER BY variant"
    ).fetchall()
    for experiment, variant, ranking in variants:
        con.execute(
            f"CREATE OR REPLACE VIEW {ACTIVITY} AS SELECT user_id FROM {BUCKET_USERS} WHERE user_id IN "
            f"(SELECT user_id FROM {EXPERIMENT_ASSIGNMENTS} WHERE variant = {quote_literal(variant)})"
        )
        yield experiment, variant, ranking


def load_outputs(con: duckdb.DuckDBPyConnection, staging: Path, in_key_order: bool = False) -> None:
    """Replace the warehouse's rankings and rationale by every bucket's output, stored in key order
    (sorted unless the outputs, read in bucket order, already are: ``in_key_order``), and remove
    the staging directory (and the run's, when empty)."""
    order = "" if in_key_order else " ORDER BY user_id, scope, rank"
    for table in OUTPUT_SCHEMAS:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM '{staging / 'out' / table}-*.parquet'{order}")
    remove_staging(staging)


def remove_staging(staging: Path) -> None:
    """Remove a fanned-out step's staging directory, and the run's once no other step uses it."""
    shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(OSError):
        staging.parent.rmdir()
