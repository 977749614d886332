"""Models, rankings and offline evaluation over warehouse tables (no Dagster).

Reads the dbt marts, calls the pure :mod:`recsys` code and writes its results back
to warehouse tables: ``model_popularity``, ``user_rankings``, ``global_rankings``,
``eval_history``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd

from .config import Settings
from .recsys.als import ALSModel, ALSParams, train_als
from .recsys.beyond_accuracy import intra_list_diversity, novelty
from .recsys.matrices import IdIndex, InteractionMatrix
from .recsys.metrics import evaluate
from .recsys.popularity import PopularityModel
from .recsys.ranking import Scorer, global_rankings, iter_user_rankings, user_rankings
from .recsys.splits import stratified_random_split, temporal_holdout
from .sqlutil import scalar

SIGNALS_SQL = (
    "SELECT user_id, item_id, weight, last_at AS occurred_at FROM mart_user_item_signals ORDER BY user_id, item_id"
)
ITEM_SCOPES_SQL = "SELECT item_id, scope FROM stg_items ORDER BY item_id"
EVAL_SCOPE = "all"


def als_params(settings: Settings) -> ALSParams:
    return ALSParams(
        factors=settings.als_factors,
        iterations=settings.als_iterations,
        regularization=settings.als_regularization,
        alpha=settings.als_alpha,
        seed=settings.seed,
    )


def read_signals(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """User-item signals of opted-in users, ordered by (user_id, item_id)."""
    return con.execute(SIGNALS_SQL).df()


def model_version(name: str, *arrays: np.ndarray) -> str:
    """Content-derived version: the same training data and params give the same version."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return f"{name}-{digest.hexdigest()[:12]}"


def als_version(model: ALSModel) -> str:
    return model_version("als", model.user_factors, model.item_factors, model.items.ids.astype("U"))


def record_model_version(con: duckdb.DuckDBPyConnection, name: str, version: str, trained_at: datetime) -> None:
    """Remember the latest trained version of ``name`` in ``model_versions``."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS model_versions (model_name VARCHAR PRIMARY KEY, model_version VARCHAR, "
        "trained_at TIMESTAMP)"
    )
    con.execute("INSERT OR REPLACE INTO model_versions VALUES (?, ?, ?)", [name, version, trained_at])


@dataclass(frozen=True)
class TrainedModel:
    version: str
    trained_at: datetime


def model_versions(con: duckdb.DuckDBPyConnection) -> dict[str, TrainedModel]:
    """The latest trained version of each model and when it was trained."""
    rows = con.execute("SELECT model_name, model_version, trained_at FROM model_versions ORDER BY model_name")
    return {name: TrainedModel(version, trained_at) for name, version, trained_at in rows.fetchall()}


def train_popularity(con: duckdb.DuckDBPyConnection) -> tuple[str, int]:
    """Fit popularity on all signals into ``model_popularity``; return (version, items)."""
    model = PopularityModel.fit(InteractionMatrix.from_frame(read_signals(con)))
    frame = model.to_frame()
    con.register("popularity_df", frame)
    con.execute("CREATE OR REPLACE TABLE model_popularity AS SELECT * FROM popularity_df")
    con.unregister("popularity_df")
    return model_version("popularity", frame.to_numpy(dtype=str)), len(frame)


def load_popularity(con: duckdb.DuckDBPyConnection) -> PopularityModel:
    frame = con.execute("SELECT item_id, score FROM model_popularity ORDER BY item_id").df()
    return PopularityModel(items=IdIndex(frame["item_id"].to_numpy(dtype=str)), scores=frame["score"].to_numpy(float))


@dataclass(frozen=True)
class RankingCounts:
    users: int
    rows: int


def write_user_rankings(con: duckdb.DuckDBPyConnection, model: ALSModel, n: int) -> RankingCounts:
    """Top-``n`` per opted-in user and scope into ``user_rankings``, seen items removed."""
    history = InteractionMatrix.from_frame(read_signals(con))
    item_scopes = con.execute(ITEM_SCOPES_SQL).df()
    users = con.execute("SELECT user_id FROM mart_user_activity ORDER BY user_id").df()["user_id"]
    con.execute(
        "CREATE OR REPLACE TABLE user_rankings (user_id VARCHAR, scope VARCHAR, rank INTEGER, "
        "item_id VARCHAR, score DOUBLE, confidence DOUBLE)"
    )
    for batch in iter_user_rankings(model, users, item_scopes, history, n):
        con.append("user_rankings", batch)
    return RankingCounts(
        users=scalar(con, "SELECT count(DISTINCT user_id) FROM user_rankings"),
        rows=scalar(con, "SELECT count(*) FROM user_rankings"),
    )


def write_global_rankings(con: duckdb.DuckDBPyConnection, n: int) -> int:
    """Top-``n`` popular items per scope into ``global_rankings``; returns the scope count."""
    frame = global_rankings(load_popularity(con), con.execute(ITEM_SCOPES_SQL).df(), n)
    con.register("global_df", frame)
    con.execute("CREATE OR REPLACE TABLE global_rankings AS SELECT * FROM global_df ORDER BY scope, rank")
    con.unregister("global_df")
    return scalar(con, "SELECT count(DISTINCT scope) FROM global_rankings")


def split_for_evaluation(frame: pd.DataFrame, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The configured split: per-user temporal holdout (default) or per-user stratified random."""
    if settings.eval_split == "random":
        return stratified_random_split(frame, fraction=settings.holdout_fraction, seed=settings.seed)
    return temporal_holdout(frame, fraction=settings.holdout_fraction)


def evaluate_models(
    con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str, computed_at: datetime
) -> pd.DataFrame:
    """Train ALS and popularity on the split's train part and score their top-K on its test part
    (accuracy and coverage from :func:`evaluate`, plus intra-list diversity and novelty).

    Appends one row per (model, metric) to ``eval_history`` and returns this run's rows.
    """
    train, test = split_for_evaluation(read_signals(con), settings)
    truth = test[test["weight"] > 0][["user_id", "item_id"]]
    history = InteractionMatrix.from_frame(train)
    catalog = con.execute("SELECT item_id, category FROM stg_items ORDER BY item_id").df()
    items = catalog[["item_id"]].assign(scope=EVAL_SCOPE)  # one list over the whole catalog
    categories = catalog.set_index("item_id")["category"]
    item_users = pd.Series(np.asarray((history.weights > 0).sum(axis=0)).ravel(), index=history.items.ids)
    models: dict[str, Scorer] = {
        "als": train_als(history, als_params(settings)),
        "popularity": PopularityModel.fit(history),
    }
    k = settings.eval_k
    users = truth["user_id"].drop_duplicates().sort_values()
    rows = []
    for name, model in models.items():
        recs = user_rankings(model, users, items, history, k)
        metrics = evaluate(recs, truth, k=k, catalog_size=len(items), n_users_total=len(users))
        metrics["intra_list_diversity"] = intra_list_diversity(recs, categories, k)
        metrics["novelty"] = novelty(recs, item_users, len(history.users), k)
        rows += [
            {
                "run_id": run_id,
                "model_name": name,
                "metric": metric,
                "k": k,
                "value": float(value),
                "computed_at": computed_at,
            }
            for metric, value in metrics.items()
        ]
    result = pd.DataFrame(rows)
    con.execute(
        "CREATE TABLE IF NOT EXISTS eval_history (run_id VARCHAR, model_name VARCHAR, metric VARCHAR, "
        "k INTEGER, value DOUBLE, computed_at TIMESTAMP)"
    )
    con.execute("DELETE FROM eval_history WHERE run_id = ?", [run_id])
    con.append("eval_history", result[["run_id", "model_name", "metric", "k", "value", "computed_at"]])
    return result


def metrics_markdown(result: pd.DataFrame) -> str:
    """A models x metrics Markdown table of one evaluation run."""
    table = result.pivot(index="model_name", columns="metric", values="value").sort_index()
    header = "| model | " + " | ".join(table.columns) + " |"
    rule = "|---|" + "---|" * len(table.columns)
    body = [f"| {name} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for name, row in table.iterrows()]
    return "\n".join([header, rule, *body])
