"""Build the serving :class:`Snapshot` from warehouse tables (no Dagster)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import duckdb
import pandas as pd

from ..privacy.allowlist import FEATURE_COLUMNS
from .publish import Snapshot, items_json_sql

if TYPE_CHECKING:
    from ..modeling import TrainedModel


def build_snapshot(
    con: duckdb.DuckDBPyConnection,
    *,
    generated_at: datetime,
    ttl: timedelta,
    versions: dict[str, TrainedModel],
) -> Snapshot:
    """Rankings, fallbacks, features, model registry rows and the latest metrics, ready to publish.

    ``versions`` maps model name (``als``, ``popularity``) to its trained version.
    """
    valid_until = generated_at + ttl
    stamp = {"generated_at": generated_at, "valid_until": valid_until}
    ranks = (
        con.execute(items_json_sql("user_rankings", ("user_id", "scope")))
        .df()
        .assign(model_version=versions["als"].version, variant="als", **stamp)
    )
    global_ranks = (
        con.execute(items_json_sql("global_rankings", ("scope",)))
        .df()
        .assign(model_version=versions["popularity"].version, **stamp)
    )
    features = (
        con.execute(
            f"SELECT user_id, CAST(to_json(struct_pack({', '.join(FEATURE_COLUMNS)})) AS VARCHAR) AS features "
            "FROM user_features ORDER BY user_id"
        )
        .df()
        .assign(computed_at=generated_at)
    )
    evals = con.execute(
        "SELECT run_id, model_name, metric, k, value, computed_at FROM eval_history "
        "WHERE run_id = (SELECT arg_max(run_id, computed_at) FROM eval_history) ORDER BY model_name, metric"
    ).df()
    models = pd.DataFrame(
        [
            {
                "model_name": name,
                "model_version": model.version,
                "metrics": json.dumps(_metrics_of(evals, name)),
                "trained_at": model.trained_at,
                "active": True,
            }
            for name, model in sorted(versions.items())
        ]
    )
    return Snapshot(ranks=ranks, global_ranks=global_ranks, features=features, models=models, evals=evals)


def _metrics_of(evals: pd.DataFrame, model_name: str) -> dict[str, float]:
    rows = evals[evals["model_name"] == model_name]
    return {f"{r.metric}@{r.k}": float(r.value) for r in rows.itertuples()}
