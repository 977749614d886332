"""Rankings: top-N per user and scope from the serving model, popularity per scope as the fallback."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np

from ..recsys.base import Recommender
from ..recsys.per_user import PerUserComposite
from ..recsys.popularity import Popularity
from ..recsys.ranking import global_rankings, iter_user_rankings
from ..recsys.registry import PERSONAL_MODELS
from ..sqlutil import scalar
from .inputs import read_active_users, read_catalog, read_history
from .registry import RegistryEntry, record
from .tables import EVAL_HISTORY, GLOBAL_RANKINGS, USER_RANKINGS
from .train import load

SELECTION_METRIC = "ndcg"


@dataclass(frozen=True)
class RankingCounts:
    users: int
    rows: int


def choose_serving_model(con: duckdb.DuckDBPyConnection, entries: dict[str, RegistryEntry]) -> RegistryEntry:
    """The personal model with the best NDCG@K in the latest evaluation of these versions (ties: the
    order of :data:`PERSONAL_MODELS`); ALS when none of them was evaluated."""
    candidates = [entries[name] for name in PERSONAL_MODELS if name in entries]
    if not candidates:
        raise ValueError("no personal model is trained: nothing to rank with")
    versions = [entry.model_version for entry in candidates]
    evaluated = (
        dict(
            con.execute(
                f"SELECT model_version, value FROM {EVAL_HISTORY} WHERE metric = ? AND list_contains(?, model_version) "
                f"QUALIFY row_number() OVER (PARTITION BY model_version ORDER BY computed_at DESC) = 1",
                [SELECTION_METRIC, versions],
            ).fetchall()
        )
        if scalar(con, f"SELECT count(*) FROM duckdb_tables() WHERE table_name = '{EVAL_HISTORY}'")
        else {}
    )
    if not evaluated:
        return entries.get("als", candidates[0])
    return max(candidates, key=lambda e: (evaluated.get(e.model_version, float("-inf")), -candidates.index(e)))


def write_user_rankings(
    con: duckdb.DuckDBPyConnection, entry: RegistryEntry, n: int, per_user: PerUserComposite | None = None
) -> RankingCounts:
    """Top-``n`` per opted-in user and scope from ``entry``'s model into ``user_rankings``, seen items
    removed; with ``per_user``, kept users are ranked by their own model over it. Every row records
    the version of the model that produced it."""
    model: Recommender = load(entry)
    kept = np.empty(0, dtype=str)
    if per_user is not None:
        model, kept = per_user.over(model), per_user.users.ids
    history = read_history(con)
    con.execute(
        f"CREATE OR REPLACE TABLE {USER_RANKINGS} (user_id VARCHAR, scope VARCHAR, rank INTEGER, "
        "item_id VARCHAR, score DOUBLE, confidence DOUBLE, model_version VARCHAR)"
    )
    for batch in iter_user_rankings(model, read_active_users(con), read_catalog(con), history, n):
        own = np.isin(batch["user_id"].to_numpy(str), kept)
        versions = np.where(own, per_user.version if per_user is not None else "", str(entry.model_version))
        con.append(USER_RANKINGS, batch.assign(model_version=versions))
    return RankingCounts(
        users=scalar(con, f"SELECT count(DISTINCT user_id) FROM {USER_RANKINGS}"),
        rows=scalar(con, f"SELECT count(*) FROM {USER_RANKINGS}"),
    )


def current_per_user(
    con: duckdb.DuckDBPyConnection, entry: RegistryEntry | None, store: Path, run_id: str, now: datetime
) -> PerUserComposite | None:
    """The registered per-user bundle without the models of users who are no longer opted in with
    history (a user who opts out loses their model at the next run: the pruned bundle is stored
    and registered in place of the old one)."""
    if entry is None:
        return None
    bundle = load(entry)
    assert isinstance(bundle, PerUserComposite)
    gone = set(bundle.users.ids) - set(read_active_users(con))
    if not gone:
        return bundle
    pruned = bundle.without(gone)
    path = pruned.save(store / entry.model_name / pruned.version)
    detail = f"{len(gone)} users no longer opted in removed"
    record(
        con,
        replace(
            entry, run_id=run_id, model_version=pruned.version, trained_at=now, detail=detail, path=str(path.parent)
        ),
    )
    return pruned


def write_global_rankings(con: duckdb.DuckDBPyConnection, entry: RegistryEntry, n: int) -> int:
    """Top-``n`` popular items per scope into ``global_rankings``; returns the scope count."""
    popularity = load(entry)
    assert isinstance(popularity, Popularity)
    frame = global_rankings(popularity, read_catalog(con), n).assign(model_version=entry.model_version)
    con.register("global_df", frame)
    con.execute(f"CREATE OR REPLACE TABLE {GLOBAL_RANKINGS} AS SELECT * FROM global_df ORDER BY scope, rank")
    con.unregister("global_df")
    return scalar(con, f"SELECT count(DISTINCT scope) FROM {GLOBAL_RANKINGS}")
