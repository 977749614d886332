"""``personalization_settings`` (opt-out, consent): the source of truth for consent.

The lookup API reads and writes one user's row; writes take effect for rankings reads at
once. A user without a row is opted in. The pipeline reads the whole table at ingest and
seeds rows from the settings file for users the table does not know yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import psycopg
import pyarrow as pa
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from personalization_pipeline.serving.api_access import caller_query
from personalization_pipeline.serving.auth import Principal
from personalization_pipeline.serving.publish import copy_arrow
from personalization_pipeline.serving.schema import SETTINGS, ensure_schema
from personalization_pipeline.sqlutil import scalar

SETTINGS_COLUMNS = ("user_id", "personalization_enabled", "data_sharing_consent", "updated_at")
_SELECT = f"SELECT {', '.join(SETTINGS_COLUMNS)} FROM {SETTINGS}"

_UPSERT_SQL = f"""
INSERT INTO {SETTINGS} AS s (user_id, personalization_enabled, data_sharing_consent, updated_at)
VALUES (%(user_id)s, %(enabled)s, %(consent)s, now())
ON CONFLICT (user_id) DO UPDATE SET
    personalization_enabled = EXCLUDED.personalization_enabled,
    data_sharing_consent = COALESCE(EXCLUDED.data_sharing_consent, s.data_sharing_consent),
    updated_at = now()
RETURNING {", ".join(SETTINGS_COLUMNS)}
"""


@dataclass(frozen=True)
class UserSettings:
    """One user's settings; ``updated_at`` is ``None`` for the opted-in default."""

    user_id: str
    personalization_enabled: bool = True
    data_sharing_consent: bool | None = None
    updated_at: datetime | None = None


async def get_user_settings(pool: AsyncConnectionPool, caller: Principal) -> UserSettings:
    """The caller's stored settings, or the opted-in default."""
    rows = await caller_query(pool, caller, _SELECT + " WHERE user_id = %s", (caller.user_id,), dict_row)
    return UserSettings(**rows[0]) if rows else UserSettings(user_id=caller.user_id)


async def put_user_settings(conn: AsyncConnection, user_id: str, enabled: bool, consent: bool | None) -> UserSettings:
    """Store the user's opt-out flag (and consent, kept as is when ``None``)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_UPSERT_SQL, {"user_id": user_id, "enabled": enabled, "consent": consent})
    row = await cur.fetchone()
    assert row is not None
    return UserSettings(**row)


def read_settings(url: str) -> pd.DataFrame:
    """All rows of ``personalization_settings``; an empty frame when the table does not exist yet."""
    with psycopg.connect(url) as conn:
        exists = scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", (SETTINGS,))
        if not exists:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in SETTINGS_COLUMNS})
        rows = conn.execute(
            "SELECT user_id, personalization_enabled, data_sharing_consent, "
            f"updated_at AT TIME ZONE 'UTC' FROM {SETTINGS} ORDER BY user_id"
        ).fetchall()
    return pd.DataFrame(rows, columns=list(SETTINGS_COLUMNS))


def seed_settings(url: str, frame: pd.DataFrame) -> int:
    """Insert settings rows (``SETTINGS_COLUMNS``) for users the database does not know yet; return how many.

    The database is the source of truth once a user has a row there (the endpoint writes
    it); files only seed it, so existing rows are never overwritten.
    """
    with psycopg.connect(url) as conn:
        ensure_schema(conn)
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL TIME ZONE 'UTC'")  # naive timestamps are UTC
            cur.execute(
                "CREATE TEMP TABLE settings_seed (user_id text, personalization_enabled boolean, "
                "data_sharing_consent boolean, updated_at timestamptz) ON COMMIT DROP"
            )
            copy_arrow(cur, "settings_seed", pa.Table.from_pandas(frame[list(SETTINGS_COLUMNS)], preserve_index=False))
            cur.execute(
                f"INSERT INTO {SETTINGS} (user_id, personalization_enabled, data_sharing_consent, updated_at) "
                "SELECT user_id, personalization_enabled, data_sharing_consent, coalesce(updated_at, now()) "
                "FROM settings_seed ON CONFLICT (user_id) DO NOTHING"
            )
            return cur.rowcount
