"""Read users' consent settings from the serving database (the source of truth once it exists)."""

from __future__ import annotations

import pandas as pd
import psycopg

COLUMNS = ["user_id", "personalization_enabled", "data_sharing_consent", "updated_at"]


def read_settings(url: str) -> pd.DataFrame:
    """All rows of ``personalization_settings``; an empty frame when the table does not exist yet."""
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('personalization_settings') IS NOT NULL").fetchone()[0]
        if not exists:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
        rows = conn.execute(
            "SELECT user_id, personalization_enabled, data_sharing_consent, "
            "updated_at AT TIME ZONE 'UTC' FROM personalization_settings ORDER BY user_id"
        ).fetchall()
    return pd.DataFrame(rows, columns=COLUMNS)
