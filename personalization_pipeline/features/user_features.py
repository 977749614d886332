"""Privacy-safe user feature vectors, built in DuckDB from the marts and the allowlist."""

from __future__ import annotations

import duckdb

from ..privacy.allowlist import FEATURE_COLUMNS, QUASI_IDENTIFIERS
from ..privacy.k_anonymity import OTHER, generalised_sql, kept_values, with_unknown
from ..sqlutil import scalar

_EXPRESSIONS = {
    "engagement_score": "round(a.engagement_score, 4)",
    "click_through_rate": "round(a.n_clicks / nullif(a.n_views, 0), 4)",
    "sessions_7d": "a.sessions_7d",
    "sessions_30d": "a.sessions_30d",
    "avg_session_seconds": "round(a.avg_session_seconds, 1)",
    "preferred_hour": "a.preferred_hour",
    "category_preferences": "coalesce(c.category_preferences, MAP {})",
}

_BASE_SQL = """
CREATE OR REPLACE TEMP TABLE feature_base AS
WITH categories AS (
    SELECT user_id, map_from_entries(list(
        {{'key': category, 'value': {{'weight': round(w, 4), 'accepts': accepts, 'dismisses': dismisses}}}}
        ORDER BY category)) AS category_preferences
    FROM (
        SELECT user_id, category, sum(weight) AS w, sum(n_accept) AS accepts, sum(n_dismiss) AS dismisses
        FROM mart_user_item_signals WHERE category IS NOT NULL GROUP BY user_id, category
    ) GROUP BY user_id
)
SELECT a.user_id, {columns}
FROM mart_user_activity a
JOIN stg_settings s ON s.user_id = a.user_id AND s.personalization_enabled
LEFT JOIN stg_users u ON u.user_id = a.user_id
LEFT JOIN categories c ON c.user_id = a.user_id
"""


def build_user_features(con: duckdb.DuckDBPyConnection, k: int) -> dict[str, int]:
    """Create ``user_features`` (user_id, one column per allowlisted feature) for opted-in users.

    Reads ``mart_user_activity`` (opted-in users only), ``mart_user_item_signals``,
    ``stg_users`` and ``stg_settings``; quasi-identifiers are generalised for
    k-anonymity. Returns counts: users, and users shown as 'other' per quasi-identifier.
    """
    raw = {**_EXPRESSIONS, **{name: with_unknown(expr) for name, expr in QUASI_IDENTIFIERS.items()}}
    con.execute(_BASE_SQL.format(columns=", ".join(f"{raw[name]} AS {name}" for name in FEATURE_COLUMNS)))
    final = {name: name for name in FEATURE_COLUMNS}
    for name in QUASI_IDENTIFIERS:
        counts = dict(con.execute(f"SELECT {name}, count(*) FROM feature_base GROUP BY {name}").fetchall())
        final[name] = generalised_sql(name, kept_values(counts, k))
    columns = ", ".join(f"{final[name]} AS {name}" for name in FEATURE_COLUMNS)
    con.execute(
        f"CREATE OR REPLACE TABLE user_features AS SELECT user_id, {columns} FROM feature_base ORDER BY user_id"
    )
    con.execute("DROP TABLE feature_base")
    counts = {"users": scalar(con, "SELECT count(*) FROM user_features")}
    for name in QUASI_IDENTIFIERS:
        counts[f"generalised_{name}"] = scalar(con, f"SELECT count(*) FROM user_features WHERE {name} = ?", [OTHER])
    return counts
