"""What the model steps read from the warehouse."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from ..recsys.matrices import IdIndex, InteractionMatrix, engaged_rows
from ..recsys.rerank_features import USER_VECTOR_FEATURES
from .tables import ACTIVITY, ITEMS, SIGNALS, USER_FEATURES


def read_signals(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """User-item signals of opted-in users (user_id, item_id, weight, occurred_at, dismissed: any
    dismissal of the pair), ordered by (user, item)."""
    return con.execute(
        f"SELECT user_id, item_id, weight, last_at AS occurred_at, n_dismiss > 0 AS dismissed FROM {SIGNALS} "
        "ORDER BY user_id, item_id"
    ).df()


_CODED_SIGNALS = f"""
WITH users AS (SELECT user_id, (row_number() OVER (ORDER BY user_id) - 1)::INTEGER AS u
               FROM (SELECT DISTINCT user_id FROM {SIGNALS})),
     items AS (SELECT item_id, (row_number() OVER (ORDER BY item_id) - 1)::INTEGER AS i
               FROM (SELECT DISTINCT item_id FROM {SIGNALS}))
SELECT u, i, coalesce(weight, 0)::DOUBLE AS weight, coalesce(n_dismiss > 0, false) AS dismissed, last_at
FROM {SIGNALS} JOIN users USING (user_id) JOIN items USING (item_id)
ORDER BY u, last_at NULLS FIRST, i
"""
"""The signals with user and item ids coded as their positions in ascending order, each user's
pairs in the order of their latest event (ties by item): the history's sequence as it stands."""


def read_coded_signals(con: duckdb.DuckDBPyConnection) -> tuple[IdIndex, IdIndex, dict[str, np.ndarray]]:
    """The signals' user and item indexes, and their rows coded in them (``u``, ``i``, ``weight``,
    ``dismissed``, ``last_at``: one per (user, item) pair, in :data:`_CODED_SIGNALS`' order)."""
    users, items = (_distinct_ids(con, column) for column in ("user_id", "item_id"))
    rows = con.execute(_CODED_SIGNALS).fetchnumpy()
    coded = {name: np.asarray(values) for name, values in rows.items() if name != "last_at"}
    return users, items, coded | {"last_at": np.ma.filled(rows["last_at"], np.datetime64("NaT"))}


def read_history(con: duckdb.DuckDBPyConnection) -> InteractionMatrix:
    """The signals as a users x items matrix: :meth:`InteractionMatrix.from_frame` of
    :func:`read_signals`, with the ids coded and the pairs ordered by DuckDB (one row per
    (user, item) pair, as the signals mart guarantees)."""
    users, items, rows = read_coded_signals(con)
    return coded_history(users, items, rows)


def coded_history(users: IdIndex, items: IdIndex, rows: dict[str, np.ndarray]) -> InteractionMatrix:
    """The matrix of coded signal rows (:func:`read_coded_signals`' form), their order its sequence."""
    return InteractionMatrix.from_codes(
        users, items, rows["u"], rows["i"], rows["weight"], coded_engaged(rows), rows["i"]
    )


def coded_engaged(rows: dict[str, np.ndarray]) -> np.ndarray:
    """:func:`engaged_rows` of coded signal rows."""
    return engaged_rows(pd.DataFrame({"weight": rows["weight"], "dismissed": rows["dismissed"]}, copy=False))


def _distinct_ids(con: duckdb.DuckDBPyConnection, column: str) -> IdIndex:
    ids = con.execute(f"SELECT DISTINCT {column} FROM {SIGNALS} ORDER BY {column}").fetchnumpy()[column]
    if np.ma.is_masked(ids):
        raise ValueError(f"{SIGNALS}.{column} contains null ids")
    return IdIndex(np.asarray(ids, dtype=str))


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
