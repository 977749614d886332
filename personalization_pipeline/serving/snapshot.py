"""Build the serving :class:`Snapshot` from warehouse tables (no Dagster).

The per-user frames are streams of Arrow record batches read from DuckDB (each on its own
cursor, so they can be open at once): publishing them never holds the snapshot in memory.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import duckdb
import pandas as pd
import pyarrow as pa

from ..privacy.allowlist import FEATURE_COLUMNS
from ..sqlutil import has_table
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


def build_snapshot(
    con: duckdb.DuckDBPyConnection,
    *,
    generated_at: datetime,
    ttl: timedelta,
    registry: dict[str, RegistryEntry],
) -> Snapshot:
    """Rankings, fallbacks, features, model registry rows and the latest metrics, ready to publish.

    ``registry`` holds the latest trained entry of each model (:func:`steps.registry.latest_trained`);
    every ranking row carries the version of the model that produced it. The streams read ``con``
    as they are consumed: publish before closing it.
    """
    valid_until = generated_at + ttl
    stamp = {"generated_at": generated_at, "valid_until": valid_until}
    ranks = _stream(  # versions are <kind>-<hash>: the variant is the kind
        con,
        "SELECT *, split_part(model_version, '-', 1) AS variant, ?::TIMESTAMP AS generated_at, "
        f"?::TIMESTAMP AS valid_until FROM ({items_json_sql(USER_RANKINGS, ('user_id', 'scope', 'model_version'))})",
        [generated_at, valid_until],
    )
    global_ranks = con.execute(items_json_sql(GLOBAL_RANKINGS, ("scope", "model_version"))).df().assign(**stamp)
    features = _stream(
        con,
        f"SELECT user_id, CAST(to_json(struct_pack({', '.join(FEATURE_COLUMNS)})) AS VARCHAR) AS features, "
        f"?::TIMESTAMP AS computed_at FROM {USER_FEATURES} ORDER BY user_id",
        [generated_at],
    )
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
    similar_users = None  # computed weekly: the latest map is published with every snapshot
    if has_table(con, SIMILAR_USERS):
        similar_users = _stream(
            con,
            f"SELECT user_id, similar_user_id, similarity_score, calculated_at, common_attributes FROM {SIMILAR_USERS} "
            "ORDER BY user_id, similar_user_id",
        )
    rationale = None  # tags per (user, scope): [{id, rank, tags}] in rank order; never readable by the endpoint
    if has_table(con, RANK_RATIONALE):
        rationale = _stream(
            con,
            "SELECT user_id, scope, CAST(to_json(list({'id': item_id, 'rank': rank, 'tags': tags} ORDER BY rank)) "
            f"AS VARCHAR) AS tags, ?::TIMESTAMP AS generated_at FROM {RANK_RATIONALE} GROUP BY user_id, scope "
            "ORDER BY user_id, scope",
            [generated_at],
        )
    return Snapshot(
        ranks=ranks,
        rationale=rationale,
        global_ranks=global_ranks,
        features=features,
        models=models,
        evals=evals,
        similar_users=similar_users,
    )


def _metrics_of(evals: pd.DataFrame, model_name: str) -> dict[str, float]:
    rows = evals[evals["model_name"] == model_name]
    return {f"{r.metric}@{r.k}": float(r.value) for r in rows.itertuples()}
