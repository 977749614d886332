"""Similar-user maps: neighbours by the cosine of ALS user factors and what they share. The
re-ranker turns a user's neighbours into candidates itself (:class:`~..recsys.sources.NeighbourScorer`).

Only opted-in users with a feature vector are subjects or neighbours. ``common_attributes``
come from the privacy-safe feature vector (generalised device, country and timezone groups;
``other`` and ``unknown`` are not shared attributes) and from behaviour (shared top-3
categories of the screened catalogue): never a raw value.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..recsys.als import ALS
from ..recsys.similarity import NeighbourIndex, SearchParams, approximate_recall
from ..sqlutil import scalar
from .buckets import bucket_sql, remove_staging
from .registry import latest_trained
from .tables import SIGNALS, SIMILAR_USER_CANDIDATES, SIMILAR_USERS, USER_FEATURES
from .train import load

TOP_CATEGORIES = 3
SHARED_FEATURES = ("device_type", "country", "timezone")

_COMMON_SQL = f"""
CREATE OR REPLACE TABLE {SIMILAR_USERS} AS
WITH top_categories AS (
    SELECT user_id, list(category ORDER BY w DESC, category) AS categories
    FROM (
        SELECT user_id, category, sum(weight) AS w,
               row_number() OVER (PARTITION BY user_id ORDER BY sum(weight) DESC, category) AS r
        FROM {SIGNALS} WHERE category IS NOT NULL AND weight > 0 GROUP BY user_id, category
    ) WHERE r <= {TOP_CATEGORIES} GROUP BY user_id
)
SELECT n.user_id, n.similar_user_id, n.similarity_score,
       CAST(to_json(list_concat(
           list_transform(list_sort(list_intersect(coalesce(a.categories, []), coalesce(b.categories, []))),
                          lambda c: 'category:' || c),
           list_filter([{
    ", ".join(
        f"CASE WHEN fa.{f} = fb.{f} AND fa.{f} NOT IN ('other', 'unknown') THEN '{f}:' || fa.{f} END"
        for f in SHARED_FEATURES
    )
}], lambda x: x IS NOT NULL)
       )) AS VARCHAR) AS common_attributes,
       ?::TIMESTAMP AS calculated_at
FROM neighbours n
JOIN {USER_FEATURES} fa ON fa.user_id = n.user_id
JOIN {USER_FEATURES} fb ON fb.user_id = n.similar_user_id
LEFT JOIN top_categories a ON a.user_id = n.user_id
LEFT JOIN top_categories b ON b.user_id = n.similar_user_id
ORDER BY n.user_id, n.similarity_score DESC, n.similar_user_id
"""

RECALL_SAMPLE = 1000
_SUBJECTS = "subjects.parquet"
_NEIGHBOURS_SCHEMA = pa.schema(
    [("user_id", pa.string()), ("similar_user_id", pa.string()), ("similarity_score", pa.float64())]
)


@dataclass(frozen=True)
class SimilarityCounts:
    """Subjects with neighbours, rows."""

    subjects: int
    rows: int


@dataclass(frozen=True)
class SimilarityStage:
    """What staging left for the bucket steps: the buckets holding subjects, how many users the
    index holds and, with the graph search, its recall against exact on a sample."""

    buckets: list[int]
    searched: int
    approximate_recall: float | None


def subject_vectors(con: duckdb.DuckDBPyConnection) -> tuple[np.ndarray, np.ndarray]:
    """The ids of the opted-in users with a feature vector that the registered ALS model knows,
    ascending, and their ALS user factors."""
    model = load(latest_trained(con)["als"])
    assert isinstance(model, ALS)
    subjects = con.execute(f"SELECT user_id FROM {USER_FEATURES} ORDER BY user_id").df()["user_id"]
    rows = model.users.positions(subjects)
    known = rows >= 0
    return subjects[known].to_numpy(str), model.user_factors[rows[known]]


def stage_similarity(
    con: duckdb.DuckDBPyConnection, staging: Path, buckets: int, params: SearchParams
) -> SimilarityStage:
    """Build the neighbour index of the registered ALS model's opted-in users (those with a feature
    vector) once, and write it under ``staging`` (emptied first) with each indexed user's bucket."""
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "out").mkdir(parents=True)
    index = NeighbourIndex.build(*subject_vectors(con), params)
    index.save(staging)
    con.register("indexed", pd.DataFrame({"row": np.arange(len(index.ids)), "user_id": index.ids}))
    con.execute(
        f"COPY (SELECT row, {bucket_sql('user_id', buckets)} AS bucket FROM indexed) TO '{staging / _SUBJECTS}' "
        "(FORMAT parquet)"
    )
    con.unregister("indexed")
    found = con.execute(f"SELECT DISTINCT bucket FROM '{staging / _SUBJECTS}' ORDER BY bucket").fetchall()
    recall = approximate_recall(index, params, RECALL_SAMPLE) if len(index.ids) > params.exact_max else None
    return SimilarityStage([bucket for (bucket,) in found] or [0], len(index.ids), recall)


def search_bucket(staging: Path, bucket: int, params: SearchParams) -> int:
    """Search the neighbours of ``bucket``'s users in the staged index (never opens the warehouse)
    into ``<staging>/out/neighbours-<bucket>.parquet``; the rows written."""
    index = NeighbourIndex.load(staging, params)
    subjects = pd.read_parquet(staging / _SUBJECTS)
    rows = subjects.loc[subjects["bucket"] == bucket, "row"].to_numpy(np.int64)
    neighbours = index.search(rows, params)
    table = pa.Table.from_pandas(neighbours, schema=_NEIGHBOURS_SCHEMA, preserve_index=False)
    pq.write_table(table, staging / "out" / f"neighbours-{bucket:05d}.parquet")
    return len(neighbours)


def load_similar_users(con: duckdb.DuckDBPyConnection, staging: Path, calculated_at: datetime) -> SimilarityCounts:
    """Build ``similar_users`` from every bucket's neighbours (dropping the candidate table earlier
    versions derived from it, so no stale copy of the map outlives it) and remove the staging
    directory (and the run's, when empty)."""
    con.execute(f"CREATE OR REPLACE TEMP VIEW neighbours AS SELECT * FROM '{staging / 'out'}/neighbours-*.parquet'")
    con.execute(_COMMON_SQL, [calculated_at])
    con.execute("DROP VIEW neighbours")
    con.execute(f"DROP TABLE IF EXISTS {SIMILAR_USER_CANDIDATES}")
    remove_staging(staging)
    return SimilarityCounts(
        subjects=scalar(con, f"SELECT count(DISTINCT user_id) FROM {SIMILAR_USERS}"),
        rows=scalar(con, f"SELECT count(*) FROM {SIMILAR_USERS}"),
    )
