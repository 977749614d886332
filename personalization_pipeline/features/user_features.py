"""Privacy-safe user feature vectors, built in DuckDB from the marts and the allowlist."""

from __future__ import annotations

import duckdb

from ..sqlutil import scalar

from ..privacy.allowlist import FEATURE_COLUMNS, QUASI_IDENTIFIERS
from ..privacy.k_anonymity import OTHER, generalised


def _feature_sql(k: int) -> dict[str, str]:
    expressions = {
        "engagement_score": "round(a.engagement_score, 4)",
        "click_through_rate": "round(a.n_clicks / nullif(a.n_views, 0), 4)",
        "sessions_7d": "a.sessions_7d",
        "sessions_30d": "a.sessions_30d",
        "avg_session_seconds": "round(a.avg_session_seconds, 1)",
        "preferred_hour": "a.preferred_hour",
        "category_preferences": "coalesce(c.category_preferences, MAP {})",
    }
    expressions.update({name: generalised(expr, k) for name, expr in QUASI_IDENTIFIERS.items()})
    return {name: expressions[name] for name in FEATURE_COLUMNS}


def build_user_features(con: duckdb.DuckDBPyConnection, k: int) -> dict[str, int]:
    """Create ``user_features`` (user_id, one column per allowlisted feature) for opted-in users.

    Reads ``mart_user_activity`` (opted-in users only), ``mart_user_item_signals``,
    ``stg_users`` and ``stg_settings``. Returns counts: users, and values generalised
    per quasi-identifier.
    """
    columns = ",\n    ".join(f"{expr} AS {name}" for name, expr in _feature_sql(k).items())
    con.execute(f"""
CREATE OR REPLACE TABLE user_features AS
WITH categories AS (
    SELECT user_id, map_from_entries(list(
        {{'key': category, 'value': {{'weight': round(w, 4), 'accepts': accepts, 'dismisses': dismisses}}}}
        ORDER BY category)) AS category_preferences
    FROM (
        SELECT user_id, category, sum(weight) AS w, sum(n_accept) AS accepts, sum(n_dismiss) AS dismisses
        FROM mart_user_item_signals WHERE category IS NOT NULL GROUP BY user_id, category
    ) GROUP BY user_id
)
SELECT a.user_id,
    {columns}
FROM mart_user_activity a
JOIN stg_settings s ON s.user_id = a.user_id AND s.personalization_enabled
LEFT JOIN stg_users u ON u.user_id = a.user_id
LEFT JOIN categories c ON c.user_id = a.user_id
ORDER BY a.user_id
""")
    counts = {"users": scalar(con, "SELECT count(*) FROM user_features")}
    for name in QUASI_IDENTIFIERS:
        counts[f"generalised_{name}"] = scalar(
            con, f"SELECT count(*) FROM user_features WHERE {name} = ?", [OTHER]
        )
    return counts
