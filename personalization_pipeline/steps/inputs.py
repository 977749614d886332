"""What the model steps read from the warehouse."""

from __future__ import annotations

import duckdb
import pandas as pd

from ..recsys.matrices import InteractionMatrix
from ..recsys.rerank_features import USER_VECTOR_FEATURES
from .tables import ACTIVITY, ITEMS, SIGNALS, USER_FEATURES


def read_signals(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """User-item signals of opted-in users (user_id, item_id, weight, occurred_at, dismissed: any
    dismissal of the pair), ordered by (user, item)."""
    return con.execute(
        f"SELECT user_id, item_id, weight, last_at AS occurred_at, n_dismiss > 0 AS dismissed FROM {SIGNALS} "
        "ORDER BY user_id, item_id"
    ).df()


def read_history(con: duckdb.DuckDBPyConnection) -> InteractionMatrix:
    """The signals as a users x items matrix."""
    return InteractionMatrix.from_frame(read_signals(con))


def read_catalog(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """(item_id, scope, category, approved_at) of every served item, ordered by item_id."""
    return con.execute(
        f"SELECT item_id, scope, category, TRY_CAST(approved_at AS TIMESTAMP) AS approved_at FROM {ITEMS} "
        "ORDER BY item_id"
    ).df()


def read_user_vectors(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The numeric fields of the privacy-safe feature vectors the re-ranker uses, per user."""
    columns = ", ".join(USER_VECTOR_FEATURES)
    return con.execute(f"SELECT user_id, {columns} FROM {USER_FEATURES} ORDER BY user_id").df()


def read_active_users(con: duckdb.DuckDBPyConnection) -> pd.Series:
    """Ids of the opted-in users with history, ascending."""
    return con.execute(f"SELECT user_id FROM {ACTIVITY} ORDER BY user_id").df()["user_id"]
