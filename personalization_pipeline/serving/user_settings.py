"""The lookup API's reads and writes of ``personalization_settings`` (opt-out, consent).

Writes take effect for rankings reads at once. A user without a row is opted in.
Ingest reads the whole table through :mod:`settings_store`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from personalization_pipeline.serving.schema import SETTINGS

SETTINGS_COLUMNS = ("user_id", "personalization_enabled", "data_sharing_consent", "updated_at")
_SELECT = f"SELECT {', '.join(SETTINGS_COLUMNS)} FROM {SETTINGS}"

_UPSERT_SQL = f"""
INSERT INTO {SETTINGS} AS s (user_id, personalization_enabled, data_sharing_consent, updated_at)
VALUES (%(user_id)s, %(enabled)s, %(consent)s, now())
ON CONFLICT (user_id) DO UPDATE SET
    personalization_enabled = EXCLUDED.personalization_enabled,
    data_sharing_consent = COALESCE(EXCLUDED.data_sharing_consent, s.data_sharing_consent),
    updated_at = now()
RETURNING {', '.join(SETTINGS_COLUMNS)}
"""


@dataclass(frozen=True)
class UserSettings:
    """One user's settings; ``updated_at`` is ``None`` for the opted-in default."""

    user_id: str
    personalization_enabled: bool = True
    data_sharing_consent: bool | None = None
    updated_at: datetime | None = None


async def get_user_settings(conn: AsyncConnection, user_id: str) -> UserSettings:
    """The user's stored settings, or the opted-in default."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT + " WHERE user_id = %s", (user_id,))
    row = await cur.fetchone()
    return UserSettings(**row) if row else UserSettings(user_id=user_id)


async def put_user_settings(
    conn: AsyncConnection, user_id: str, enabled: bool, consent: bool | None
) -> UserSettings:
    """Store the user's opt-out flag (and consent, kept as is when ``None``)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_UPSERT_SQL, {"user_id": user_id, "enabled": enabled, "consent": consent})
    row = await cur.fetchone()
    assert row is not None
    return UserSettings(**row)

