"""Users' consent settings in the serving database: the source of truth, seeded from files."""

from __future__ import annotations

import pandas as pd
import psycopg

from .schema import SETTINGS, ensure_schema

COLUMNS = ["user_id", "personalization_enabled", "data_sharing_consent", "updated_at"]


def read_settings(url: str) -> pd.DataFrame:
    """All rows of ``personalization_settings``; an empty frame when the table does not exist yet."""
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (SETTINGS,)).fetchone()[0]
        if not exists:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
        rows = conn.execute(
            "SELECT user_id, personalization_enabled, data_sharing_consent, "
            f"updated_at AT TIME ZONE 'UTC' FROM {SETTINGS} ORDER BY user_id"
        ).fetchall()
    return pd.DataFrame(rows, columns=COLUMNS)


def seed_settings(url: str, frame: pd.DataFrame) -> int:
    """Insert settings rows (``COLUMNS``) for users the database does not know yet; return how many.

    The database is the source of truth once a user has a row there (the endpoint writes
    it); files only seed it, so existing rows are never overwritten.
    """
    with psycopg.connect(url) as conn:
        ensure_schema(conn)
        with conn.transaction():
            conn.execute(
                "CREATE TEMP TABLE settings_seed (user_id text, personalization_enabled boolean, "
                "data_sharing_consent boolean, updated_at timestamptz) ON COMMIT DROP"
            )
            with conn.cursor().copy("COPY settings_seed FROM STDIN") as copy:
                for row in frame[COLUMNS].itertuples(index=False):
                    copy.write_row([None if pd.isna(v) else v for v in row])
            return conn.execute(
                f"INSERT INTO {SETTINGS} (user_id, personalization_enabled, data_sharing_consent, updated_at) "
                "SELECT user_id, personalization_enabled, data_sharing_consent, coalesce(updated_at, now()) "
                "FROM settings_seed ON CONFLICT (user_id) DO NOTHING"
            ).rowcount
